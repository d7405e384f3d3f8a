"""The melody of a MIDI file: its highest voice (or a named track), moved into violin range, cut into clips."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musictl.violin.render import Note

VIOLIN_LOW = 55  # G3, the open G string
VIOLIN_HIGH = 100  # E7, a practical top


@dataclass
class Melody:
    notes: list[Note]
    bpm: float
    source: Path


def extract_melody(path: Path, track: str | None = None) -> Melody:
    """Skyline melody: at each onset the highest note, cut where the next onset begins."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(str(path))
    instruments = [i for i in midi.instruments if not i.is_drum and i.notes]
    if track is not None:
        instruments = [i for i in instruments if i.name.strip().lower() == track.strip().lower()]
        if not instruments:
            raise ValueError(f"no track named '{track}'")
    raw = sorted((n for i in instruments for n in i.notes), key=lambda n: (round(n.start, 4), -n.pitch))
    skyline: list[Note] = []
    for n in raw:
        if n.end - n.start < 1e-3 or (skyline and abs(skyline[-1].start - n.start) < 1e-4):
            continue
        if skyline and skyline[-1].end > n.start:
            last = skyline[-1]
            skyline[-1] = Note(last.start, n.start, last.pitch, last.velocity)
        skyline.append(Note(float(n.start), float(n.end), int(n.pitch), int(n.velocity)))
    _, tempi = midi.get_tempo_changes()
    bpm = float(tempi[0]) if len(tempi) else 120.0
    return Melody(to_violin_range(skyline), bpm, Path(path))


def to_violin_range(notes: list[Note]) -> list[Note]:
    """Transpose by whole octaves so the lowest note is playable on a violin (and the top stays in range)."""
    if not notes:
        return notes
    pitches = np.array([n.pitch for n in notes])
    shift = 0
    while pitches.min() + shift < VIOLIN_LOW:
        shift += 12
    while pitches.max() + shift > VIOLIN_HIGH and pitches.min() + shift - 12 >= VIOLIN_LOW:
        shift -= 12
    return [Note(n.start, n.end, int(np.clip(n.pitch + shift, VIOLIN_LOW, VIOLIN_HIGH)), n.velocity) for n in notes]


def cut_clips(melody: Melody, seconds: float, min_notes: int = 4) -> list[list[Note]]:
    """Consecutive windows of ``seconds``, notes re-timed to the window start and cut at its end."""
    if not melody.notes:
        return []
    clips = []
    end = max(n.end for n in melody.notes)
    start = 0.0
    while start + seconds / 2 <= end:
        window = [
            Note(n.start - start, min(n.end, start + seconds) - start, n.pitch, n.velocity)
            for n in melody.notes
            if start <= n.start < start + seconds
        ]
        if len(window) >= min_notes:
            clips.append(window)
        start += seconds
    return clips
