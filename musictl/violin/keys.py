"""Key finding (Krumhansl-Schmuckler) shared by the captions (from MIDI) and the metrics (from audio chroma)."""

from __future__ import annotations

import numpy as np

NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_key(profile: np.ndarray) -> tuple[int, str]:
    """(tonic pitch class, 'major'|'minor') whose key profile correlates best with a 12-bin profile."""
    best = (-2.0, 0, "major")
    for tonic in range(12):
        for mode, template in (("major", MAJOR), ("minor", MINOR)):
            r = float(np.corrcoef(np.asarray(profile, float), np.roll(template, tonic))[0, 1])
            if np.isfinite(r) and r > best[0]:
                best = (r, tonic, mode)
    return best[1], best[2]


def key_name(tonic: int, mode: str) -> str:
    return f"{NAMES[tonic % 12]} {mode}"


def parse_key(text: str) -> tuple[int, str] | None:
    """The first 'X major|minor' in a caption, or None."""
    import re

    match = re.search(r"\b([A-G](?:#|b)?) (major|minor)\b", text)
    if not match:
        return None
    aliases = {"Db": "C#", "D#": "Eb", "Gb": "F#", "G#": "Ab", "A#": "Bb"}
    name = aliases.get(match.group(1), match.group(1))
    return (NAMES.index(name), match.group(2)) if name in NAMES else None
