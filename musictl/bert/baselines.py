"""Count-table baselines of masked-note accuracy: what a hidden note's visible neighbours alone predict.

A masked-note model sees both neighbours of a hidden note, so its floor is a count table over the same
context (docs: pretrain-bert.md, "Did it learn?"). :class:`NeighbourTables` holds, per field, the most
frequent value given the previous and the next note's values of that field, counted on the training
windows (ties: the smallest value). A pair never seen backs off to the previous note's value alone,
then, when the previous note is absent, to the next note's alone, then to the field's most frequent
value (the unigram). At evaluation a neighbour the model cannot read (before the window's first note,
after its last, padding, or itself masked or replaced) is passed as :data:`ABSENT` and treated as such.

numpy only; counting is one ``bincount`` per table where the context x value grid is small, a sort
otherwise, so all eight fields of 30,000 windows of 256 notes count in a few seconds.
"""

from __future__ import annotations

import dataclasses

import numpy as np

ABSENT = -1  # a neighbour the model cannot see (or that does not exist)
DENSE_LIMIT = 1 << 22  # count on a dense grid up to this many (context, value) cells, else by sorting

__all__ = ["ABSENT", "FieldTable", "ModeTable", "NeighbourTables", "codes_of", "neighbours_of"]


@dataclasses.dataclass(frozen=True)
class ModeTable:
    """The most frequent value code per context key (ties: the smallest code); ``lookup`` gives -1 for a key
    never seen (or a negative key)."""

    keys: np.ndarray  # sorted context keys that were seen
    modes: np.ndarray  # the mode of each
    hits: np.ndarray  # how often the mode was seen in that context
    totals: np.ndarray  # how often the context was seen

    @classmethod
    def count(cls, context: np.ndarray, values: np.ndarray, n_contexts: int, n_values: int) -> ModeTable:
        """Count ``values`` (codes in [0, n_values)) per ``context`` (keys in [0, n_contexts))."""
        context, values = np.asarray(context, dtype=np.int64), np.asarray(values, dtype=np.int64)
        if len(context) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, empty, empty, empty)
        if n_contexts * n_values <= DENSE_LIMIT:
            counts = np.bincount(context * n_values + values, minlength=n_contexts * n_values).reshape(n_contexts, n_values)
            keys = np.flatnonzero(counts.any(axis=1))
            seen = counts[keys]
            modes = seen.argmax(axis=1)  # the first (smallest) of tied values
            return cls(keys, modes, seen[np.arange(len(keys)), modes], seen.sum(axis=1))
        cells, counts = np.unique(context * n_values + values, return_counts=True)
        ctx, val = cells // n_values, cells % n_values
        order = np.lexsort((val, -counts, ctx))  # per context: most frequent first, then the smallest value
        ctx, val, counts = ctx[order], val[order], counts[order]
        first = np.ones(len(ctx), dtype=bool)
        first[1:] = ctx[1:] != ctx[:-1]
        return cls(ctx[first], val[first], counts[first], np.add.reduceat(counts, np.flatnonzero(first)))

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.int64)
        if len(self.keys) == 0:
            return np.full(keys.shape, -1, dtype=np.int64)
        at = np.clip(np.searchsorted(self.keys, keys), 0, len(self.keys) - 1)
        return np.where((keys >= 0) & (self.keys[at] == keys), self.modes[at], -1)


@dataclasses.dataclass(frozen=True)
class FieldTable:
    """One field's tables over compact value codes (a code is the index of a value among those seen in training)."""

    values: np.ndarray  # code -> value, increasing
    pair: ModeTable  # (previous code, next code) -> mode
    previous: ModeTable  # previous code -> mode
    next: ModeTable  # next code -> mode
    unigram: int  # the field's most frequent value

    @classmethod
    def count(cls, values: np.ndarray, lengths: np.ndarray) -> FieldTable:
        """From one field's values of consecutive windows of ``lengths`` notes, stacked (n,)."""
        values = np.asarray(values, dtype=np.int64)
        seen = np.flatnonzero(np.bincount(values)) if len(values) else values
        k = len(seen)
        v = codes_of(seen, values)
        p, n = neighbours_of(v, np.asarray(lengths))
        both, has_p, has_n = (p >= 0) & (n >= 0), p >= 0, n >= 0
        return cls(seen, pair=ModeTable.count(p[both] * k + n[both], v[both], k * k, k),
                   previous=ModeTable.count(p[has_p], v[has_p], k, k), next=ModeTable.count(n[has_n], v[has_n], k, k),
                   unigram=int(np.bincount(values).argmax()) if len(values) else 0)

    def predict(self, previous: np.ndarray, following: np.ndarray) -> np.ndarray:
        """The guess for notes whose visible neighbours have these values (:data:`ABSENT`: not visible)."""
        k = len(self.values)
        p, n = codes_of(self.values, previous), codes_of(self.values, following)
        code = self.pair.lookup(np.where((p >= 0) & (n >= 0), p * k + n, -1))
        code = np.where(code < 0, self.previous.lookup(p), code)
        code = np.where(code < 0, self.next.lookup(n), code)
        guess = np.full(code.shape, self.unigram, dtype=np.int64)
        guess[code >= 0] = self.values[code[code >= 0]]
        return guess


@dataclasses.dataclass(frozen=True)
class NeighbourTables:
    """The neighbours baseline of every field (:data:`musictl.constants.FIELDS` order)."""

    fields: tuple[FieldTable, ...]

    @classmethod
    def count(cls, windows: list[np.ndarray]) -> NeighbourTables:
        """Count on the training windows, (n, 8) each; a note's neighbours are those of its window."""
        windows = [w for w in windows if len(w)]
        if not windows:
            raise ValueError("no training notes to count")
        notes, lengths = np.concatenate(windows).astype(np.int64, copy=False), np.array([len(w) for w in windows])
        return cls(tuple(FieldTable.count(np.ascontiguousarray(notes[:, f]), lengths) for f in range(notes.shape[1])))

    @property
    def unigram(self) -> np.ndarray:
        return np.array([t.unigram for t in self.fields], dtype=np.int64)

    def predict(self, previous: np.ndarray, following: np.ndarray) -> np.ndarray:
        """Guesses (n, 8) from the neighbours' values (n, 8), :data:`ABSENT` where the model cannot see one."""
        return np.stack([t.predict(previous[:, f], following[:, f]) for f, t in enumerate(self.fields)], axis=-1)


def neighbours_of(notes: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The previous and next value of every note of consecutive windows of ``lengths`` notes stacked in ``notes``
    (n,) or (n, F); :data:`ABSENT` across a window's edges."""
    ends = np.cumsum(lengths)
    starts = ends - lengths
    previous = np.full_like(notes, ABSENT)
    following = np.full_like(notes, ABSENT)
    previous[1:], following[:-1] = notes[:-1], notes[1:]
    previous[starts[lengths > 0]] = ABSENT
    following[ends[lengths > 0] - 1] = ABSENT
    return previous, following


def codes_of(seen: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The index of each value in the sorted ``seen``, -1 for :data:`ABSENT` or a value not in it."""
    values = np.asarray(values, dtype=np.int64)
    if len(seen) == 0:
        return np.full(values.shape, -1, dtype=np.int64)
    top = int(seen[-1]) + 1
    table = np.full(top + 1, -1, dtype=np.int64)  # the last cell: absent or out of range
    table[seen] = np.arange(len(seen))
    return table[np.where((values >= 0) & (values < top), values, top)]
