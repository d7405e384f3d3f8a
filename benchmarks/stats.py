"""Bootstrap intervals for the benchmarks: resample what is independent (pieces), pair what is paired.

A test set is a list of *items* (segments of a piece, or whole pieces), each scored as
``[correct, total]`` (a sequence task's segment: ``[1 or 0, 1]``; a token task's segment: notes right,
notes scored). Items of one piece are not independent, so every interval here resamples **pieces**:
a piece drawn goes in with all its items (``piece_of[i]`` = the piece of item ``i``). Without
``piece_of`` each item is its own piece (the old per-segment bootstrap, kept for comparison).

The metric is the pooled accuracy ``sum(correct) / sum(total)`` of the resampled items, averaged over
runs (fine-tuning seeds) that share every resample. :func:`paired_difference` compares two rows run
with the same seeds on the same test items: run ``k`` of one row minus run ``k`` of the other, on the
same resamples, so what the rows share (which pieces are hard) cancels. :func:`bootstrap_metric` is
the general form (any metric of the resampled item indices). numpy only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

BOOTSTRAP = 2000  # resamples
LEVEL = 0.95


def piece_index(piece_of: Sequence | None, n_items: int) -> np.ndarray:
    """``piece_of`` as dense piece numbers 0..P-1 in order of first appearance (items alone: 0..n-1)."""
    if piece_of is None:
        return np.arange(n_items)
    keys = list(piece_of)
    if len(keys) != n_items:
        raise ValueError(f"piece_of has {len(keys)} entries for {n_items} items")
    numbers: dict = {}
    return np.array([numbers.setdefault(k, len(numbers)) for k in keys], dtype=np.int64)


def piece_sums(values: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """Sum ``values`` (..., items) over the items of each piece -> (..., pieces)."""
    values = np.asarray(values, dtype=float)
    n = int(pieces.max()) + 1 if len(pieces) else 0
    out = np.zeros((*values.shape[:-1], n))
    np.add.at(out, (..., pieces), values)
    return out


def draws(n_pieces: int, n: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """(n, n_pieces) piece numbers drawn with replacement: the resamples every row of a table shares."""
    return np.random.default_rng(seed).integers(0, n_pieces, (n, n_pieces))


def _runs(correct) -> np.ndarray:
    array = np.asarray(correct, dtype=float)
    return array[None] if array.ndim == 1 else array


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def ratio_bootstrap(correct, total, piece_of: Sequence | None = None, n: int = BOOTSTRAP, seed: int = 0,
                    level: float = LEVEL) -> dict:
    """Accuracy (%) of ``correct`` (runs, items) or (items,) over ``total`` (items,): the mean over runs,
    its ``level`` bootstrap interval over pieces (the same resamples for every run), and the standard
    deviation over runs. ``resampled`` says what was resampled: ``pieces`` or ``items``."""
    runs = _runs(correct)
    total = np.asarray(total, dtype=float)
    pieces = piece_index(piece_of, len(total))
    c, t = piece_sums(runs, pieces), piece_sums(total, pieces)
    per_run = c.sum(-1) / t.sum()
    picked = draws(t.shape[-1], n, seed)
    resampled = (c[:, picked].sum(-1) / t[picked].sum(-1)).mean(0)
    low, high = _interval(resampled, level)
    return {"mean": round(100 * float(per_run.mean()), 2), "low": round(100 * low, 2), "high": round(100 * high, 2),
            "seed_sd": round(100 * float(per_run.std(ddof=1)), 2) if len(runs) > 1 else None, "seeds": len(runs),
            "items": len(total), "pieces": int(t.shape[-1]), "resampled": "pieces" if piece_of is not None else "items"}


def paired_difference(correct_a, correct_b, total, piece_of: Sequence | None = None, n: int = BOOTSTRAP,
                      seed: int = 0, level: float = LEVEL) -> dict:
    """Accuracy of row a minus row b in points: runs paired by position (same seed, same training subset),
    both on the same test items, each resample of pieces shared; the mean over pairs, its interval, and
    the share of resamples in which the difference is above 0."""
    a, b = _runs(correct_a), _runs(correct_b)
    if a.shape != b.shape:
        raise ValueError(f"paired rows need the same runs and items: {a.shape} vs {b.shape}")
    total = np.asarray(total, dtype=float)
    pieces = piece_index(piece_of, len(total))
    diff_sums, t = piece_sums(a - b, pieces), piece_sums(total, pieces)
    whole = float((diff_sums.sum(-1) / t.sum()).mean())
    picked = draws(t.shape[-1], n, seed)
    resampled = (diff_sums[:, picked].sum(-1) / t[picked].sum(-1)).mean(0)
    low, high = _interval(resampled, level)
    return {"mean": round(100 * whole, 2), "low": round(100 * low, 2), "high": round(100 * high, 2),
            "above_zero": round(float((resampled > 0).mean()), 3), "pairs": len(a),
            "resampled": "pieces" if piece_of is not None else "items"}


def bootstrap_metric(metric: Callable[[np.ndarray], float], piece_of: Sequence, n: int = BOOTSTRAP, seed: int = 0,
                     level: float = LEVEL) -> dict:
    """Any metric of a set of item indices (macro-F1, say), with an interval over pieces: each resample
    draws pieces with replacement and passes the indices of all their items (repeated as drawn)."""
    pieces = piece_index(piece_of, len(piece_of))
    members = [np.flatnonzero(pieces == p) for p in range(int(pieces.max()) + 1)]
    values = np.array([metric(np.concatenate([members[p] for p in row])) for row in draws(len(members), n, seed)])
    low, high = _interval(values, level)
    return {"value": float(metric(np.arange(len(pieces)))), "low": low, "high": high}
