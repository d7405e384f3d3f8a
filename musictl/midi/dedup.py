"""Near-duplicate pieces: copies of one tune that are transposed, re-timed, re-voiced or re-barred.

Works on Octuple token rows (a tokens artifact, or any ``(n, 8)`` arrays), so it runs after encoding
with no second MIDI parse.

**What is compared.** A piece's *melody line* is its highest voice: at each onset (consecutive rows with
the same bar and position; rows are in onset order), the highest pitch of its pitched notes (drums and
rows holding a special id are left out). Its *intervals* are the steps in semitones between successive
melody pitches, repeated pitches (steps of 0) left out. They do not change under transposition, tempo,
note lengths, bar lines or re-articulated repeated notes. Each run of :data:`SHINGLE` (12) successive
intervals is hashed to 64 bits (a *shingle*); a piece is the set of its distinct shingles.

**When two pieces are near-duplicates.** When the share of the smaller set's shingles found in the other
set is at least the threshold (:data:`DEFAULT_THRESHOLD`, 0.8): a copy, or a piece contained in another.
A piece with fewer than :data:`MIN_SHINGLES` distinct shingles (fewer than 20 melody notes, or one short
figure repeated) is never a near-duplicate: too little to tell a copy from a shared figure, and through
such a piece unrelated pieces would chain into one group. Shingles found in more than
:func:`common_limit` pieces are ignored on both sides (they tell no piece apart and would cost pairs).
Groups are the connected components of the near-duplicate pairs (what a union-find over the pairs
gives).

**Cost.** Never all pairs: one sorted copy of every piece's shingles finds the shingles that two or more
pieces share (most are in one piece only); those form a sparse piece x shingle matrix (an inverted
index), and that matrix times its transpose, in blocks of rows, counts the shared shingles of exactly
the pairs that share any. Memory grows with the corpus's shingles (the sets, and the sorted copy); the
time and memory measured on all of ../shared/datasets, and on it five times over, are in
benchmarks/results/dedup.md (``python benchmarks/dedup.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from musictl import constants as C
from musictl.midi.settings import TokenizeSettings

SHINGLE = 12  # intervals per shingle
MIN_SHINGLES = 8  # distinct shingles a piece needs to be compared at all
DEFAULT_THRESHOLD = TokenizeSettings.default_of("dedup_threshold")  # 0.8; tokenize --dedup-threshold
COMMON_PIECES = 1000  # a shingle in more pieces than this (and than COMMON_SHARE of them) is ignored
COMMON_SHARE = 0.02
_BLOCK_WORK = 1 << 22  # shared-shingle counts one block of rows may produce (bounds memory)

_MIX = tuple(np.uint64(k) for k in (0x9E3779B97F4A7C15, 0x632BE59BD9B4E019, 0xC2B2AE3D27D4EB4F, 0xBF58476D1CE4E5B9))
_DRUMS = C.DRUM_PROGRAM + C.N_SPECIAL  # the instrument id of drums


class Pair(NamedTuple):
    """Two near-duplicate pieces: ``a`` and ``b`` index the sets compared, ``share`` is the share of the
    smaller piece's shingles found in the other."""

    a: int
    b: int
    share: float


def melody_intervals(tokens: np.ndarray) -> np.ndarray:
    """Steps in semitones between successive notes of the highest voice, repeated pitches left out.

    ``tokens``: Octuple rows (ids) in onset order. Drums and rows with a special id are ignored.
    """
    rows = np.asarray(tokens)
    if rows.ndim != 2 or rows.shape[1] != C.N_FIELDS or len(rows) < 2:
        return np.zeros(0, np.int16)
    notes = (rows.min(axis=1) >= C.N_SPECIAL) & (rows[:, C.INSTRUMENT] != _DRUMS)
    if not notes.all():
        rows = rows[notes]
    if len(rows) < 2:
        return np.zeros(0, np.int16)
    onset = (rows[:, C.BAR].astype(np.int32) << 16) | rows[:, C.POSITION]  # ids < 2**16 each
    starts = np.empty(len(onset), dtype=bool)
    starts[0] = True
    np.not_equal(onset[1:], onset[:-1], out=starts[1:])
    top = np.maximum.reduceat(rows[:, C.PITCH].astype(np.int16), np.flatnonzero(starts))
    steps = np.diff(top)
    return steps[steps != 0]


def shingles(tokens: np.ndarray) -> np.ndarray:
    """The distinct 64-bit hashes (sorted ``uint64``) of every run of :data:`SHINGLE` successive melody
    intervals of a piece (:func:`melody_intervals`); empty for a melody of fewer than 13 notes."""
    steps = melody_intervals(tokens)
    if len(steps) < SHINGLE:
        return np.zeros(0, np.uint64)
    data = (np.clip(steps, -127, 127) & 0xFF).astype(np.uint8)  # one byte per interval
    count = len(data) - SHINGLE + 1
    # the 12 bytes of each run, read in place as 8 + 4 little-endian bytes, then mixed into 64 bits
    low = np.ndarray((count,), dtype="<u8", buffer=data, offset=0, strides=(1,)).astype(np.uint64)
    high = np.ndarray((count,), dtype="<u4", buffer=data, offset=8, strides=(1,)).astype(np.uint64)
    hashes = low * _MIX[0] ^ (high + _MIX[1]) * _MIX[2]
    hashes ^= hashes >> np.uint64(31)
    hashes *= _MIX[3]
    hashes ^= hashes >> np.uint64(29)
    return np.unique(hashes)


def common_limit(pieces: int) -> int:
    """Shingles found in more than this many of ``pieces`` pieces are ignored."""
    return max(COMMON_PIECES, int(COMMON_SHARE * pieces))


def similar_pairs(left: Sequence[np.ndarray], right: Sequence[np.ndarray] | None = None,
                  threshold: float = DEFAULT_THRESHOLD) -> list[Pair]:
    """Near-duplicate pairs among shingle sets (:func:`shingles`), sorted by ``(a, b)``.

    Without ``right``: pairs within ``left`` (``a < b``). With ``right``: pairs across the two (``a``
    indexes ``left``, ``b`` indexes ``right``), none within either.
    """
    import scipy.sparse as sp

    n_left = len(left)
    sets = [np.asarray(x, dtype=np.uint64) for x in (left if right is None else [*left, *right])]
    n = len(sets)
    usable = np.array([len(x) >= MIN_SHINGLES for x in sets], dtype=bool)
    if n < 2 or usable.sum() < 2:
        return []
    # 1. the shingles found in two or more pieces (one sorted copy of every hash; most are in one piece only)
    every = np.concatenate([x for x, ok in zip(sets, usable) if ok])
    every.sort()
    repeated = np.unique(every[1:][every[1:] == every[:-1]])
    del every
    if len(repeated) == 0:
        return []
    # 2. each piece's repeated shingles: (piece, shingle column) entries, few
    pieces, columns = [], []
    for i, x in enumerate(sets):
        if usable[i] and len(x):
            at = np.minimum(np.searchsorted(repeated, x), len(repeated) - 1)
            hit = at[repeated[at] == x]
            pieces.append(np.full(len(hit), i, dtype=np.int32))
            columns.append(hit.astype(np.int32))
    piece, column = np.concatenate(pieces), np.concatenate(columns)
    counts = np.bincount(column, minlength=len(repeated))  # pieces per repeated shingle
    # 3. common shingles leave the sets and their sizes; a piece left with too few is not compared
    common = counts[column] > common_limit(n)
    sizes = np.array([len(x) for x in sets], dtype=np.int64) - np.bincount(piece[common], minlength=n)
    keep = ~common & (sizes[piece] >= MIN_SHINGLES)
    piece, column = piece[keep], column[keep]
    if len(piece) == 0:
        return []
    width = int(column.max()) + 1
    matrix = sp.csr_matrix((np.ones(len(piece), np.int32), (piece, column)), shape=(n, width))
    rows, cols = (matrix, matrix) if right is None else (matrix[:n_left], matrix[n_left:])
    cols_t = cols.T.tocsr()
    # each row's work: the number of (row, other piece) counts it produces at most
    per_column = np.diff(cols_t.indptr)
    bounds = np.r_[0, np.cumsum(per_column[rows.indices])][rows.indptr[1:]]  # work up to the end of each row
    found: list[np.ndarray] = []
    start = 0
    total = rows.shape[0]
    while start < total:
        done = bounds[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(bounds, done + _BLOCK_WORK, side="right")))
        block = (rows[start:stop] @ cols_t).tocoo()
        a = block.row.astype(np.int64) + start
        b = block.col.astype(np.int64)
        count = block.data.astype(np.int64)
        size_a = sizes[a]
        size_b = sizes[b if right is None else b + n_left]
        mask = count >= threshold * np.minimum(size_a, size_b) - 1e-9
        if right is None:
            mask &= b > a
        if mask.any():
            share = count[mask] / np.minimum(size_a[mask], size_b[mask])
            found.append(np.stack([a[mask], b[mask], share], axis=1))
        start = stop
    if not found:
        return []
    table = np.concatenate(found)
    table = table[np.lexsort((table[:, 1], table[:, 0]))]
    return [Pair(int(a), int(b), round(float(s), 4)) for a, b, s in table]


def duplicate_groups(n: int, pairs: Iterable[Pair | tuple]) -> list[list[int]]:
    """Connected components of ``pairs`` over ``n`` pieces with two or more members: each sorted, the
    groups ordered by their first member."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    edges = np.array([(int(p[0]), int(p[1])) for p in pairs], dtype=np.int64).reshape(-1, 2)
    if n == 0 or len(edges) == 0:
        return []
    graph = sp.coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    order = np.argsort(labels, kind="stable")
    cuts = np.flatnonzero(np.diff(labels[order])) + 1
    groups = [g.tolist() for g in np.split(order, cuts) if len(g) > 1]
    return sorted(groups, key=lambda g: g[0])


def corpus_shingles(corpus, pieces=None) -> list[np.ndarray]:
    """The shingle sets of a :class:`~musictl.midi.tokens.TokenCorpus`'s pieces (default: all), read
    one piece at a time from its memory-mapped array."""
    chosen = corpus.pieces if pieces is None else pieces
    return [shingles(corpus.tokens[p.offset : p.offset + p.length]) for p in chosen]


def _sets(pieces) -> list[np.ndarray]:
    if hasattr(pieces, "tokens") and hasattr(pieces, "pieces"):  # a TokenCorpus
        return corpus_shingles(pieces)
    return [shingles(t) for t in pieces]


def near_duplicates(a, b=None, threshold: float = DEFAULT_THRESHOLD) -> list[Pair]:
    """Near-duplicate pairs within ``a``, or across ``a`` and ``b``.

    ``a`` and ``b``: a :class:`~musictl.midi.tokens.TokenCorpus` (its pieces, in index order) or a
    sequence of ``(n, 8)`` token arrays. Pair indices are positions in ``a`` (and ``b``).
    """
    return similar_pairs(_sets(a), None if b is None else _sets(b), threshold)
