"""A caption from a clip's own music: key and mode, tempo, register, articulation, dynamics."""

from __future__ import annotations

import numpy as np

from musictl.violin.keys import estimate_key, key_name
from musictl.violin.render import Note

TUNE_TYPES = ("reel", "jig", "hornpipe", "polka", "waltz", "march", "strathspey", "slide")


def attributes(notes: list[Note], bpm: float, source_name: str = "") -> dict:
    """The musical facts a caption is made of (also stored in metadata.jsonl)."""
    pitches = np.array([n.pitch for n in notes])
    durations = np.array([n.end - n.start for n in notes])
    profile = np.bincount(pitches % 12, weights=durations, minlength=12)
    tonic, mode = estimate_key(profile)
    onsets = np.array(sorted(n.start for n in notes))
    gaps = np.diff(onsets)
    fill = float(np.median(durations[:-1] / np.maximum(gaps, 1e-3))) if len(gaps) else 1.0
    velocity = float(np.mean([n.velocity for n in notes]))
    lower = source_name.lower()
    return {
        "key": key_name(tonic, mode),
        "tonic": tonic,
        "mode": mode,
        "bpm": round(float(bpm)),
        "median_pitch": float(np.median(pitches)),
        "register": "warm low register"
        if np.median(pitches) < 67
        else "singing middle register"
        if np.median(pitches) < 79
        else "bright upper register",
        "articulation": "staccato" if fill < 0.6 else "legato" if fill > 0.9 else "detached bowing",
        "dynamics": "soft" if velocity < 60 else "loud" if velocity > 95 else "moderately loud",
        "character": "lively" if bpm >= 110 else "gentle",
        "tune_type": next((t for t in TUNE_TYPES if t in lower), "tune"),
    }


def caption(attrs: dict) -> str:
    """e.g. 'solo violin, lively reel in D major, 120 bpm, bright upper register, detached bowing, loud'."""
    return (
        f"solo violin, {attrs['character']} {attrs['tune_type']} in {attrs['key']}, {attrs['bpm']} bpm, "
        f"{attrs['register']}, {attrs['articulation']}, {attrs['dynamics']}"
    )
