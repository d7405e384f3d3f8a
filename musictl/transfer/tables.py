"""What a style's pieces say about whole pieces and their rhythm, counted once for the walk.

- Piece plans: the metre, the tempo and the instrumentation (programs and their share of the notes)
  of each piece. A generated piece takes one plan, so it has one tempo, one metre and one ensemble.
- Onset transitions per metre: from each position in the bar (or the bar line) to the next onset
  position in the same bar, or to the bar's end. Walked in order, they fill each bar with the
  style's rhythms.
- Chord sizes per metre and position: how many notes start together.
- The share of notes that repeat the previous pitch of their instrument (repeated notes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from musictl import constants as C
from musictl.midi.vocab import TokenizerConfig

MAX_CHORD = 8


@dataclass
class PiecePlan:
    """One piece's metre, tempo (field values) and instrumentation."""

    time_signature: int
    tempo: int
    programs: np.ndarray  # instrument values
    shares: np.ndarray  # share of the notes each program plays

    @classmethod
    def of_values(cls, values: np.ndarray) -> PiecePlan:
        """The most common metre and tempo of a piece's note values, and its programs."""
        programs, counts = np.unique(values[:, C.INSTRUMENT], return_counts=True)
        return cls(time_signature=_mode(values[:, C.TIME_SIGNATURE]), tempo=_mode(values[:, C.TEMPO]),
                   programs=programs.astype(np.int64), shares=counts / counts.sum())

    def with_program(self, program: int) -> PiecePlan:
        """Every pitched part played by ``program`` (drums stay drums)."""
        drums = self.programs == C.DRUM_PROGRAM
        programs = np.array([program] + ([C.DRUM_PROGRAM] if drums.any() else []), dtype=np.int64)
        shares = np.array([self.shares[~drums].sum()] + ([self.shares[drums].sum()] if drums.any() else []))
        return PiecePlan(self.time_signature, self.tempo, programs, shares / max(shares.sum(), 1e-12))


def _mode(column: np.ndarray) -> int:
    values, counts = np.unique(column, return_counts=True)
    return int(values[np.argmax(counts)])


@dataclass
class StyleTables:
    """Plans, onset transitions and chord sizes of a style (see the module docstring)."""

    config: TokenizerConfig
    plans: list[PiecePlan] = field(default_factory=list)
    onsets: dict[int, np.ndarray] = field(default_factory=dict)  # metre -> (units + 1, units + 1) counts
    chords: dict[int, np.ndarray] = field(default_factory=dict)  # metre -> (units, MAX_CHORD) counts
    repeat_share: float = 0.0

    @classmethod
    def from_pieces(cls, pieces: list[np.ndarray], config: TokenizerConfig) -> StyleTables:
        """Count the tables over token arrays (ids, ``(n, 8)``) of a style's pieces."""
        tables = cls(config)
        repeats = total = 0
        for tokens in pieces:
            values = tokens.astype(np.int64) - C.N_SPECIAL
            if len(values) == 0:
                continue
            tables.plans.append(PiecePlan.of_values(values))
            tables._count_rhythm(values)
            same, pairs = repeated_notes(values)
            repeats, total = repeats + same, total + pairs
        tables.repeat_share = repeats / max(total, 1)
        return tables

    def _count_rhythm(self, values: np.ndarray) -> None:
        bar, position, metre = values[:, C.BAR], values[:, C.POSITION], values[:, C.TIME_SIGNATURE]
        new_onset = np.concatenate([[True], (bar[1:] != bar[:-1]) | (position[1:] != position[:-1])])
        starts = np.flatnonzero(new_onset)
        sizes = np.diff(np.append(starts, len(values)))
        new_bar = np.concatenate([[True], bar[starts][1:] != bar[starts][:-1]])
        for i, row in enumerate(starts):
            ts = int(metre[row])
            units = int(self.config.time_signature_units[ts])
            pos = min(int(position[row]), units - 1)
            onsets = self.onsets.setdefault(ts, np.zeros((units + 1, units + 1)))
            chords = self.chords.setdefault(ts, np.zeros((units, MAX_CHORD)))
            previous = units if new_bar[i] else min(int(position[starts[i - 1]]), units - 1)
            onsets[previous, pos] += 1
            if i + 1 == len(starts) or new_bar[i + 1]:
                onsets[pos, units] += 1  # the bar's last onset
            chords[pos, min(int(sizes[i]), MAX_CHORD) - 1] += 1

    def next_onset(self, ts: int, position: int | None, rng: np.random.Generator) -> int | None:
        """The next onset position after ``position`` (None: at the bar line) in a bar of metre ``ts``,
        or None for the end of the bar. A bar always gets a first onset."""
        units = int(self.config.time_signature_units[ts])
        counts = self.onsets.get(ts, np.zeros((units + 1, units + 1)))
        row = counts[units if position is None else position].copy()
        if position is not None:
            row[: position + 1] = 0  # positions only move forward
        else:
            row[units] = 0  # no empty bars
        if row.sum() <= 0:  # unseen in the style: the next beat
            beat = self.config.positions_per_beat
            following = 0 if position is None else (position // beat + 1) * beat
            return following if following < units else None
        choice = int(rng.choice(units + 1, p=row / row.sum()))
        return None if choice == units else choice

    def chord_size(self, ts: int, position: int, rng: np.random.Generator) -> int:
        """How many notes start together at ``position`` (from the style's counts there, else 1)."""
        counts = self.chords.get(ts)
        if counts is None or position >= len(counts) or counts[position].sum() <= 0:
            return 1
        return int(rng.choice(MAX_CHORD, p=counts[position] / counts[position].sum())) + 1


def repeated_notes(values: np.ndarray) -> tuple[int, int]:
    """(notes that repeat the previous pitch of their instrument, notes that follow another of it)."""
    same = pairs = 0
    for program in np.unique(values[:, C.INSTRUMENT]):
        part = values[values[:, C.INSTRUMENT] == program]
        onset_key = part[:, C.BAR] * (1 << 16) + part[:, C.POSITION]
        first = np.concatenate([[True], onset_key[1:] != onset_key[:-1]])  # one note per onset: the lowest
        pitch = part[first, C.PITCH]
        same += int(np.sum(pitch[1:] == pitch[:-1]))
        pairs += max(len(pitch) - 1, 0)
    return same, pairs
