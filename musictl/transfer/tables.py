"""What a style's pieces say about whole pieces and their rhythm, counted once for the walk.

- Piece plans: the metre, the tempo and the instrumentation (programs and their share of the notes)
  of each piece. A generated piece takes one plan, so it has one tempo, one metre and one ensemble.
- Onset transitions per metre: from each position in the bar (or the bar line) to the next onset
  position in the same bar, or to the bar's end. Walked in order, they fill each bar with the
  style's rhythms.
- Chord sizes per metre and position: how many notes start together.
- Articulation: the ratio of a note's duration to the time until the next onset of its part (1:
  legato, below 1: detached, above 1: overlapping), as a histogram on a log scale. The walk chooses
  each duration knowing that time, so its pieces are as legato (or as detached) as the style's.
- Per instrument, how often each pitch, duration and velocity occurs: the values of a field that is
  not a node of the style graph come from here.
- The share of notes that repeat the previous pitch of their instrument (repeated notes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from musictl import constants as C
from musictl.midi.vocab import TokenizerConfig

MAX_CHORD = 8
RATIO_EDGES = np.linspace(-5.0, 3.0, 81)  # log2 of duration / time to the next onset of the part: 1/32 .. 8
MARGINAL_FIELDS = (C.PITCH, C.DURATION, C.VELOCITY)


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
    ratios: np.ndarray = field(default_factory=lambda: np.zeros(len(RATIO_EDGES) - 1))  # log2 duration / gap counts
    values: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)  # field -> program -> value counts
    parts: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)  # metre -> program -> onsets per position
    repeat_share: float = 0.0

    @classmethod
    def from_pieces(cls, pieces: list[np.ndarray], config: TokenizerConfig, key: str = "as-is") -> StyleTables:
        """Count the tables over token arrays (ids, ``(n, 8)``) of a style's pieces; ``key="common"``: each piece
        transposed to C major / A minor first, as a common-key graph counted it (:mod:`musictl.transfer.keys`;
        only the pitch values change)."""
        if key == "common":
            from musictl.transfer.keys import to_common_key

            pieces = to_common_key(pieces, config)[0]
        tables = cls(config)
        repeats = total = 0
        for tokens in pieces:
            values = tokens.astype(np.int64) - C.N_SPECIAL
            if len(values) == 0:
                continue
            tables.plans.append(PiecePlan.of_values(values))
            tables._count_rhythm(values)
            tables._count_notes(values)
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

    def _count_notes(self, values: np.ndarray) -> None:
        from musictl.midi.decode import onsets

        gap = next_onset_gaps(onsets(values, self.config)[0], values[:, C.INSTRUMENT])
        has = gap > 0
        ratio = np.log2(self.config.duration_centres[values[has, C.DURATION]] / gap[has])
        self.ratios += np.histogram(np.clip(ratio, RATIO_EDGES[0], RATIO_EDGES[-1] - 1e-9), RATIO_EDGES)[0]
        for ts in np.unique(values[:, C.TIME_SIGNATURE]):
            units = int(self.config.time_signature_units[ts])
            in_metre = values[values[:, C.TIME_SIGNATURE] == ts]
            for program in np.unique(in_metre[:, C.INSTRUMENT]):
                counts = self.parts.setdefault(int(ts), {}).setdefault(int(program), np.zeros(units))
                positions = np.minimum(in_metre[in_metre[:, C.INSTRUMENT] == program, C.POSITION], units - 1)
                counts += np.bincount(positions, minlength=units)
        for f in MARGINAL_FIELDS:
            by_program = self.values.setdefault(f, {})
            for program in np.unique(values[:, C.INSTRUMENT]):
                counts = by_program.setdefault(int(program), np.zeros(self.config.field_sizes[f]))
                counts += np.bincount(values[values[:, C.INSTRUMENT] == program, f], minlength=len(counts))

    def part_weights(self, ts: int, position: int, programs: np.ndarray, shares: np.ndarray) -> np.ndarray:
        """Over ``programs``: how often each plays at ``position`` of a bar of metre ``ts`` in the style, plus its
        share of the piece's notes (so a program the style never plays still gets its share)."""
        counts = self.parts.get(int(ts), {})
        seen = np.array([counts[int(p)][position] if int(p) in counts and position < len(counts[int(p)]) else 0.0
                         for p in programs])
        return seen + np.asarray(shares, dtype=np.float64)

    def duration_weights(self, gap: float) -> np.ndarray:
        """Over duration codes: how well each fits a note whose part plays again ``gap`` positions later,
        by the style's articulation (the ratio histogram, blurred over neighbouring bins; uniform for a style
        without one)."""
        kernel = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)
        hist = np.convolve(self.ratios / max(self.ratios.sum(), 1.0), kernel / kernel.sum(), mode="same") + 1e-6
        ratio = np.log2(self.config.duration_centres / max(gap, 1))
        bins = np.clip(np.searchsorted(RATIO_EDGES, ratio, side="right") - 1, 0, len(hist) - 1)
        per_bin = np.bincount(bins, minlength=len(hist))  # codes sharing a bin share its weight
        return hist[bins] / per_bin[bins]

    def value_weights(self, field_index: int, program: int) -> np.ndarray:
        """How often each value of a field occurs in the instrument's notes (in the style's, when it never plays),
        plus one: the values of a field that is not a node of the graph."""
        by_program = self.values.get(field_index, {})
        counts = by_program.get(int(program))
        if counts is None:
            counts = sum(by_program.values()) if by_program else np.zeros(self.config.field_sizes[field_index])
        return np.asarray(counts, dtype=np.float64) + 1.0

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


def next_onset_gaps(onset: np.ndarray, part: np.ndarray, end: float | None = None) -> np.ndarray:
    """For each note, the time from its onset to the next (later) onset of its part; for a part's last onset,
    ``end - onset`` (0 without ``end``)."""
    gap = np.zeros(len(onset), dtype=np.float64)
    for program in np.unique(part):
        rows = np.flatnonzero(part == program)
        starts = np.unique(onset[rows])
        following = np.searchsorted(starts, onset[rows], side="right")
        last = following >= len(starts)
        nxt = starts[np.minimum(following, len(starts) - 1)]
        gap[rows] = np.where(last, (end - onset[rows]) if end is not None else 0.0, nxt - onset[rows])
    return gap


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
