"""Real MIDI files made by the test suite: small, varied, and with a known content.

Three synthetic styles with distinct scales, metres and rhythms, so that style-aware code
(splits, graphs, classifiers) has something real to find.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

STYLES = {
    # name: (scale degrees, metre numerator/denominator, note length in beats, tempo, program)
    "waltz": ([0, 2, 4, 5, 7, 9, 11], (3, 4), 1.0, 150, 0),
    "march": ([0, 2, 3, 5, 7, 8, 10], (4, 4), 0.5, 112, 56),
    "blues": ([0, 3, 5, 6, 7, 10], (6, 8), 0.75, 90, 26),
}


def midi_bytes(
    notes: list[tuple[float, float, int, int]],
    *,
    tpq: int = 480,
    tempo: float = 120.0,
    time_signature: tuple[int, int] = (4, 4),
    program: int = 0,
    is_drum: bool = False,
    track_name: str = "piano",
    extra_tracks: list[tuple[str, int, list[tuple[float, float, int, int]]]] = (),
) -> bytes:
    """A MIDI file from (onset beats, duration beats, pitch, velocity) notes."""
    from symusic import Note, Score, Tempo, TimeSignature, Track

    score = Score(tpq)
    for name, prog, items, drum in [(track_name, program, notes, is_drum)] + [(n, p, i, False) for n, p, i in extra_tracks]:
        track = Track(name=name, program=prog, is_drum=drum)
        if items:
            arr = np.array(items, dtype=np.float64)
            track.notes = Note.from_numpy(
                time=np.rint(arr[:, 0] * tpq).astype(np.int32),
                duration=np.rint(arr[:, 1] * tpq).astype(np.int32),
                pitch=arr[:, 2].astype(np.int8),
                velocity=arr[:, 3].astype(np.int8),
            )
        score.tracks.append(track)
    score.tempos = Tempo.from_numpy(time=np.array([0], dtype=np.int32), mspq=np.array([round(60e6 / tempo)], dtype=np.int32))
    score.time_signatures = TimeSignature.from_numpy(
        time=np.array([0], dtype=np.int32),
        numerator=np.array([time_signature[0]], dtype=np.uint8),
        denominator=np.array([time_signature[1]], dtype=np.uint8),
    )
    return score.dumps_midi()


def style_piece(style: str, seed: int, bars: int = 12) -> bytes:
    """A melody + bass piece in one of :data:`STYLES`, seeded."""
    scale, (num, den), step, tempo, program = STYLES[style]
    rng = np.random.default_rng(seed)
    bar_beats = num * 4 / den
    root = 60 + int(rng.integers(-3, 4))
    melody, bass = [], []
    degree = 0
    t = 0.0
    while t < bars * bar_beats - 1e-9:
        degree = int(np.clip(degree + rng.choice([-2, -1, 1, 2]), -5, 12))
        octave, idx = divmod(degree, len(scale))
        pitch = root + 12 * octave + scale[idx]
        melody.append((t, step * 0.9, pitch, int(rng.integers(60, 110))))
        t += step
    for bar in range(bars):
        bass.append((bar * bar_beats, bar_beats * 0.95, root - 24 + scale[(bar * 3) % len(scale)], 70))
    return midi_bytes(
        melody, tempo=tempo, time_signature=(num, den), program=program, track_name="melody",
        extra_tracks=[("bass", 32, bass)],
    )


def write_style_corpus(root: Path, pieces_per_style: int = 8, bars: int = 12) -> Path:
    """``root/<style>/<style>_<i>.mid`` for every synthetic style."""
    for s_i, style in enumerate(STYLES):
        folder = root / style
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(pieces_per_style):
            (folder / f"{style}_{i:02d}.mid").write_bytes(style_piece(style, seed=100 * s_i + i, bars=bars))
    return root


SILENT_BARS = 300  # bars of silence before the first note of :func:`silence_and_overlaps_piece`


def silence_and_overlaps_piece() -> bytes:
    """A 4/4 piece that is hard to round-trip: its first note comes after :data:`SILENT_BARS` silent
    bars, a 260-bar rest splits it, the same pitch overlaps itself (nested, partly, and twice at one
    onset) on one track, two tracks share one program, and one note lasts 300 beats (beyond the
    longest duration code)."""
    start = SILENT_BARS * 4.0
    lead = [(start, 4.0, 60, 90), (start + 1, 1.0, 60, 70), (start + 2, 3.0, 60, 80),  # nested, then partial
            (start + 4, 2.0, 64, 80), (start + 4, 0.5, 64, 60),  # two notes of one pitch at one onset
            (start + 8, 300.0, 67, 75)]  # clipped
    later = start + 4 * 260
    lead += [(later + i * 0.5, 0.75, 62 + (i % 3), 85) for i in range(12)]  # overlapping repeated notes
    second = [(start + 1.5, 1.0, 60, 50), (later + 1, 2.0, 62, 55)]  # same program, same pitches as the lead
    bass = [(start + b * 4.0, 4.0, 36, 70) for b in range(4)] + [(later, 8.0, 38, 70)]
    return midi_bytes(lead, track_name="lead", program=0,
                      extra_tracks=[("second piano", 0, second), ("bass", 33, bass)])
