"""The benchmarks' one bootstrap: resample what varies (test pieces *and* seeds), pair what is paired.

Scores come as ``(seeds, items)``: one row per run (a fine-tuning seed, with its own training subset),
one column per scored item (a segment of a piece, or a whole piece). An item is ``[correct, total]``
(a sequence task's segment: ``[1 or 0, 1]``; a token task's segment: notes right, notes scored; a
likelihood: the NLL summed over a piece's notes, its note count). Items of one piece are not
independent, so every resample draws **pieces** with replacement, each with all its items
(``piece_of[i]`` = the piece of item ``i``; without it each item is its own piece), and draws **seeds**
with replacement: what a reader wants to know is how the number moves with other test pieces *and*
other training runs, and 3 seeds that disagree say more about the second than any number of pieces.

The metric is the pooled ratio ``sum(correct) / sum(total)`` over the drawn pieces, averaged over the
drawn seeds. :func:`paired_difference` compares two rows run with the same seeds (and training subsets)
on the same items: seed ``k`` of one row minus seed ``k`` of the other, on the same resampled pieces and
seeds, so what the rows share (hard pieces, a lucky subset) cancels. :class:`Resamples` is the shared
draw (every row of a table uses the same one, made from the same ``seed``); :func:`bootstrap_metric`
takes any metric of the resampled items (macro-F1, say). Every result says what was resampled.
numpy only.
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


def piece_sums(values, pieces: np.ndarray) -> np.ndarray:
    """Sum ``values`` (..., items) over the items of each piece -> (..., pieces)."""
    values = np.asarray(values, dtype=float)
    n = int(pieces.max()) + 1 if len(pieces) else 0
    out = np.zeros((*values.shape[:-1], n))
    np.add.at(out, (..., pieces), values)
    return out


class Resamples:
    """The draws every row of a table shares: ``n`` resamples of ``n_pieces`` pieces and ``n_seeds`` seeds,
    each with replacement. ``pieces``/``seeds``: (n, P) / (n, S) how often each was drawn. The piece draws
    depend only on ``seed`` and ``n_pieces`` (a table's rows with other seed counts share them);
    ``resample_seeds=False`` keeps every seed in every resample (the seeds held fixed)."""

    def __init__(self, n_pieces: int, n_seeds: int = 1, n: int = BOOTSTRAP, seed: int = 0, resample_seeds: bool = True):
        if n_pieces < 1 or n_seeds < 1:
            raise ValueError(f"nothing to resample: {n_pieces} pieces, {n_seeds} seeds")
        drawn = np.random.default_rng(seed).integers(0, n_pieces, (n, n_pieces))
        self.pieces = np.zeros((n, n_pieces))
        np.add.at(self.pieces, (np.arange(n)[:, None], drawn), 1)
        self.piece_draws = drawn
        self.resample_seeds = resample_seeds and n_seeds > 1
        if self.resample_seeds:
            picked = np.random.default_rng([seed, 1]).integers(0, n_seeds, (n, n_seeds))
            self.seeds = np.zeros((n, n_seeds))
            np.add.at(self.seeds, (np.arange(n)[:, None], picked), 1)
        else:
            self.seeds = np.ones((n, n_seeds))
        self.n, self.n_pieces, self.n_seeds = n, n_pieces, n_seeds

    @property
    def resampled(self) -> str:
        return "pieces and seeds" if self.resample_seeds else "pieces"

    def ratio(self, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        """(n,) resampled ratios: ``numerator`` (S, P) and ``denominator`` (P,) or (S, P) summed over the drawn
        pieces, their ratio averaged over the drawn seeds."""
        numerator = np.atleast_2d(np.asarray(numerator, dtype=float))
        denominator = np.asarray(denominator, dtype=float)
        if numerator.shape != (self.n_seeds, self.n_pieces):
            raise ValueError(f"scores of shape {numerator.shape} for {self.n_seeds} seeds and {self.n_pieces} pieces")
        top = numerator @ self.pieces.T  # (S, n)
        bottom = denominator @ self.pieces.T  # (n,) or (S, n)
        per_seed = top / np.maximum(bottom, 1e-12)
        return (per_seed * self.seeds.T).sum(0) / self.n_seeds

    def items(self, members: list[np.ndarray], row: int) -> np.ndarray:
        """The item indices of resample ``row``: every item of each drawn piece, repeated as drawn."""
        return np.concatenate([members[p] for p in self.piece_draws[row]])

    def seed_list(self, row: int) -> np.ndarray:
        """The seeds drawn in resample ``row`` (each index repeated as drawn)."""
        return np.repeat(np.arange(self.n_seeds), self.seeds[row].astype(int))


def _runs(correct) -> np.ndarray:
    array = np.asarray(correct, dtype=float)
    return array[None] if array.ndim == 1 else array


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def _what(piece_of, resamples: Resamples) -> str:
    return resamples.resampled if piece_of is not None else resamples.resampled.replace("pieces", "items")


def ratio_bootstrap(correct, total, piece_of: Sequence | None = None, n: int = BOOTSTRAP, seed: int = 0,
                    level: float = LEVEL, resample_seeds: bool = True, scale: float = 100, digits: int | None = 2) -> dict:
    """The pooled ratio (accuracy %, by default) of ``correct`` (seeds, items) or (items,) over ``total``
    (items,) or (seeds, items): the mean over seeds, its ``level`` bootstrap interval (pieces and seeds
    drawn with replacement), the standard deviation over seeds. ``resampled`` says what was resampled."""
    runs = _runs(correct)
    total = np.asarray(total, dtype=float)
    pieces = piece_index(piece_of, runs.shape[-1])
    c, t = piece_sums(runs, pieces), piece_sums(total, pieces)
    per_run = c.sum(-1) / t.sum(-1)
    draws = Resamples(c.shape[-1], len(runs), n, seed, resample_seeds)
    low, high = interval(draws.ratio(c, t), level)
    out = lambda v: round(scale * v, digits) if digits is not None else scale * v  # noqa: E731
    return {"mean": out(float(per_run.mean())), "low": out(low), "high": out(high),
            "seed_sd": out(float(per_run.std(ddof=1))) if len(runs) > 1 else None, "seeds": len(runs),
            "items": runs.shape[-1], "pieces": int(c.shape[-1]), "resampled": _what(piece_of, draws)}


def paired_difference(correct_a, correct_b, total, piece_of: Sequence | None = None, n: int = BOOTSTRAP,
                      seed: int = 0, level: float = LEVEL, resample_seeds: bool = True, scale: float = 100,
                      digits: int | None = 2) -> dict:
    """Row a minus row b (points, by default): runs paired by position (same seed, same training subset),
    both on the same items; each resample draws pieces and pairs with replacement, the same for both rows.
    The mean over pairs, its interval, the share of resamples above 0, and the per-pair differences."""
    a, b = _runs(correct_a), _runs(correct_b)
    if a.shape != b.shape:
        raise ValueError(f"paired rows need the same runs and items: {a.shape} vs {b.shape}")
    total = np.asarray(total, dtype=float)
    pieces = piece_index(piece_of, a.shape[-1])
    diff_sums, t = piece_sums(a - b, pieces), piece_sums(total, pieces)
    per_pair = diff_sums.sum(-1) / t.sum(-1)
    draws = Resamples(t.shape[-1], len(a), n, seed, resample_seeds)
    resampled = draws.ratio(diff_sums, t)
    low, high = interval(resampled, level)
    out = lambda v: round(scale * v, digits) if digits is not None else scale * v  # noqa: E731
    return {"mean": out(float(per_pair.mean())), "low": out(low), "high": out(high),
            "above_zero": round(float((resampled > 0).mean()), 3), "pairs": len(a),
            "per_pair": [out(float(v)) for v in per_pair], "resampled": _what(piece_of, draws)}


def bootstrap_metric(metric: Callable[..., float], piece_of: Sequence, n: int = BOOTSTRAP, seed: int = 0,
                     level: float = LEVEL, seeds: int | None = None) -> dict:
    """Any metric of a set of item indices (macro-F1, say), with an interval: each resample draws pieces with
    replacement and passes the indices of all their items (repeated as drawn). With ``seeds`` (runs), the
    metric is ``metric(indices, run)``, averaged over the runs, and each resample also draws runs."""
    pieces = piece_index(piece_of, len(piece_of))
    members = [np.flatnonzero(pieces == p) for p in range(int(pieces.max()) + 1)]
    draws = Resamples(len(members), seeds or 1, n, seed)
    if seeds is None:
        values = np.array([metric(draws.items(members, r)) for r in range(n)])
        value = float(metric(np.arange(len(pieces))))
    else:
        values = np.array([np.mean([metric(draws.items(members, r), s) for s in draws.seed_list(r)]) for r in range(n)])
        value = float(np.mean([metric(np.arange(len(pieces)), s) for s in range(seeds)]))
    low, high = interval(values, level)
    return {"value": value, "low": low, "high": high, "resampled": draws.resampled}
