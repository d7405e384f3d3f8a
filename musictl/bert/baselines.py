"""Count-table baselines of masked-note accuracy: what a hidden note's visible neighbours alone predict.

A masked-note model sees both neighbours of a hidden note, so its floor is a count table over the same
context (docs: pretrain-bert.md, "Did it learn?"). :class:`NeighbourTables` holds, per field, the most
frequent value given the previous and the next note's values of that field, counted on the training
windows (ties: the smallest value). A pair never seen backs off to the previous note's value alone,
then, when the previous note is absent, to the next note's alone, then to the field's most frequent
value (the unigram). At evaluation a neighbour the model cannot read (before the window's first note,
after its last, padding, or itself masked or replaced) is passed as :data:`ABSENT` and treated as such.

The window-aware baseline, :class:`ContextTables`, adds what the rest of the window says: per field, the
distribution of a value given both neighbours (Witten-Bell back-off to one neighbour, then to the add-one
unigram), tilted by the window's visible notes: a value's score is multiplied by how much more often its class
occurs among the window's visible notes (add-one) than in the training split. The class of a pitch is its pitch
class (the window's pitch-class histogram: its key), of any other field the value itself. The guess is the
highest score.

numpy only; counting is one ``bincount`` per table where the context x value grid is small, a sort
otherwise, so all eight fields of 30,000 windows of 256 notes count in a few seconds.
"""

from __future__ import annotations

import dataclasses

import numpy as np

ABSENT = -1  # a neighbour the model cannot see (or that does not exist)
DENSE_LIMIT = 1 << 22  # count on a dense grid up to this many (context, value) cells, else by sorting
CONTEXT_LIMIT = 1 << 24  # the window-aware table's (previous, next, value) grid; a field with more backs off to neighbours
PITCH_CLASSES = 12

__all__ = ["ABSENT", "ContextField", "ContextTables", "FieldTable", "ModeTable", "NeighbourTables", "codes_of",
           "neighbours_of"]


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


@dataclasses.dataclass(frozen=True)
class ContextField:
    """One field's window-aware table: counts of a value code given the (previous, next) codes, code ``k`` standing
    for an absent neighbour (each training note is counted in its four contexts: both neighbours, the previous
    only, the next only, neither), and the share of training notes of each value class."""

    values: np.ndarray  # code -> value, increasing
    counts: np.ndarray  # (k + 1, k + 1, k) float32
    classes: np.ndarray  # code -> class
    prior: np.ndarray  # (n_classes,) share of training notes in each class

    @classmethod
    def count(cls, values: np.ndarray, lengths: np.ndarray, pitch: bool) -> ContextField | None:
        """From one field's values of consecutive windows (as :meth:`FieldTable.count`); None when the grid
        would exceed :data:`CONTEXT_LIMIT` cells."""
        values = np.asarray(values, dtype=np.int64)
        seen = np.flatnonzero(np.bincount(values)) if len(values) else values
        k = len(seen)
        if k == 0 or (k + 1) ** 2 * k > CONTEXT_LIMIT:
            return None
        v = codes_of(seen, values)
        p, n = neighbours_of(v, np.asarray(lengths))
        p, n = np.where(p < 0, k, p), np.where(n < 0, k, n)
        counts = np.zeros((k + 1) * (k + 1) * k, dtype=np.float32)
        for a, b in ((p, n), (p, np.full_like(n, k)), (np.full_like(p, k), n), (np.full_like(p, k), np.full_like(n, k))):
            counts += np.bincount((a * (k + 1) + b) * k + v, minlength=len(counts)).astype(np.float32)
        classes = seen % PITCH_CLASSES if pitch else np.arange(k)
        n_classes = int(classes.max()) + 1
        prior = np.bincount(classes[v], minlength=n_classes).astype(np.float64) / len(v)
        return cls(seen, counts.reshape(k + 1, k + 1, k), classes, prior)

    def distribution(self, previous: np.ndarray, following: np.ndarray) -> np.ndarray:
        """P(value code | the neighbours' values), (n, k): Witten-Bell interpolation of both neighbours over the
        mean of the one-neighbour distributions, each over the add-one unigram (:data:`ABSENT`: not visible)."""
        k = len(self.values)
        p, n = codes_of(self.values, previous), codes_of(self.values, following)
        p, n = np.where(p < 0, k, p), np.where(n < 0, k, n)
        unigram = self.counts[k, k] + 1.0
        unigram = unigram / unigram.sum()

        def backed_off(counts: np.ndarray, lower: np.ndarray) -> np.ndarray:
            total, types = counts.sum(-1, keepdims=True), (counts > 0).sum(-1, keepdims=True)
            return np.where(total > 0, (counts + types * lower) / np.maximum(total + types, 1), lower)

        only_previous = backed_off(self.counts[p, k], unigram)
        only_next = backed_off(self.counts[k, n], unigram)
        one = np.where((p < k)[:, None] & (n < k)[:, None], (only_previous + only_next) / 2,
                       np.where((p < k)[:, None], only_previous, only_next))
        return np.where(((p < k) & (n < k))[:, None], backed_off(self.counts[p, n], one), one)

    def predict(self, previous: np.ndarray, following: np.ndarray, window_classes: np.ndarray) -> np.ndarray:
        """The guess for notes with these neighbours and their windows' visible class counts (n, n_classes):
        the value maximising P(value | neighbours) x (window share of its class, add-one) / (training share)."""
        window = np.asarray(window_classes, dtype=np.float64)[:, : len(self.prior)]
        share = (window + 1.0) / (window.sum(-1, keepdims=True) + len(self.prior))
        tilt = share[:, self.classes] / np.maximum(self.prior[self.classes], 1e-12)
        return self.values[np.argmax(self.distribution(previous, following) * tilt, axis=-1)]


@dataclasses.dataclass(frozen=True)
class ContextTables:
    """The window-aware baseline of every field; a field without a table (grid too large) takes the neighbours
    baseline's guess."""

    fields: tuple[ContextField | None, ...]
    neighbours: NeighbourTables
    pitch_field: int

    @classmethod
    def count(cls, windows: list[np.ndarray], neighbours: NeighbourTables, pitch_field: int) -> ContextTables:
        windows = [w for w in windows if len(w)]
        notes, lengths = np.concatenate(windows).astype(np.int64, copy=False), np.array([len(w) for w in windows])
        return cls(tuple(ContextField.count(np.ascontiguousarray(notes[:, f]), lengths, f == pitch_field)
                         for f in range(notes.shape[1])), neighbours, pitch_field)

    def class_of(self, field: int, size: int) -> np.ndarray:
        """Token value -> class of ``field`` for values 0..size-1: any pitch's pitch class; another field's
        value when seen in training, else -1."""
        out = np.full(size, -1, dtype=np.int64)
        table = self.fields[field]
        if table is not None and field == self.pitch_field:
            out = np.arange(size) % PITCH_CLASSES
        elif table is not None:
            inside = table.values < size
            out[table.values[inside]] = table.classes[inside]
        return out

    def predict(self, previous: np.ndarray, following: np.ndarray, window_classes: list[np.ndarray]) -> np.ndarray:
        """Guesses (n, F); ``window_classes[f]`` the class counts of each note's window's visible notes (n, classes)."""
        fallback = self.neighbours.predict(previous, following)
        return np.stack([fallback[:, f] if t is None else t.predict(previous[:, f], following[:, f], window_classes[f])
                         for f, t in enumerate(self.fields)], axis=-1)


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
