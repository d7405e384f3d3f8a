"""The benchmarks' bootstrap (benchmarks/harness/stats.py): pieces are resampled with all their segments, seeds
are resampled too, and paired differences share seeds and resamples."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from harness import stats


def _width(cell: dict) -> float:
    return cell["high"] - cell["low"]


def _pieces(n_pieces: int, per_piece: int) -> list[int]:
    return [p for p in range(n_pieces) for _ in range(per_piece)]


def test_correlated_segments_widen_the_piece_level_interval():
    """40 pieces x 10 segments, every segment of a piece right or every one wrong: 400 segments but only 40
    independent outcomes, so the piece-level interval is about sqrt(10) times the per-segment one."""
    rng = np.random.default_rng(1)
    right = rng.random(40) < 0.6
    correct = np.repeat(right, 10).astype(float)
    total = np.ones(400)
    segment = stats.ratio_bootstrap(correct, total)
    piece = stats.ratio_bootstrap(correct, total, _pieces(40, 10))
    assert segment["mean"] == piece["mean"]
    assert segment["resampled"] == "items" and piece["resampled"] == "pieces" and piece["pieces"] == 40  # one seed
    assert _width(piece) > 2.5 * _width(segment)
    assert 2.5 < _width(piece) / _width(segment) < 4.5


def test_independent_segments_give_the_same_interval_either_way():
    rng = np.random.default_rng(2)
    correct = (rng.random(400) < 0.6).astype(float)
    segment = stats.ratio_bootstrap(correct, np.ones(400))
    piece = stats.ratio_bootstrap(correct, np.ones(400), _pieces(40, 10))
    assert 0.75 < _width(piece) / _width(segment) < 1.33


def test_pooled_accuracy_weights_pieces_by_their_notes():
    """Token tasks: a segment is [notes right, notes scored]; the accuracy pools notes, not segment means."""
    correct, total = np.array([90.0, 1.0]), np.array([100.0, 10.0])
    cell = stats.ratio_bootstrap(correct, total, [0, 1], n=200)
    assert cell["mean"] == pytest.approx(100 * 91 / 110, abs=0.01)
    assert cell["low"] <= cell["mean"] <= cell["high"]


def test_seeds_share_resamples_and_report_their_spread():
    correct = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=float)
    cell = stats.ratio_bootstrap(correct, np.ones(4), [0, 0, 1, 1], n=500)
    assert cell["seeds"] == 2 and cell["mean"] == 37.5
    assert cell["seed_sd"] == pytest.approx(100 * np.std([0.5, 0.25], ddof=1), abs=0.01)


def test_paired_difference_cancels_what_rows_share():
    """Row b is row a plus 8 more right pieces out of 60: hard pieces are hard for both, so the paired
    interval is narrow and above 0, while the rows' own intervals overlap widely."""
    rng = np.random.default_rng(3)
    hard = rng.random(60) < 0.5
    a = np.repeat(~hard, 5).astype(float)
    fixed = np.flatnonzero(hard)[:8]
    b_pieces = ~hard
    b_pieces[fixed] = True
    b = np.repeat(b_pieces, 5).astype(float)
    total, owners = np.ones(300), _pieces(60, 5)
    diff = stats.paired_difference(b, a, total, owners)
    assert diff["mean"] == pytest.approx(100 * 8 / 60, abs=0.01)
    assert 0 < diff["low"] <= diff["mean"] <= diff["high"] and diff["above_zero"] > 0.95
    cell_a, cell_b = stats.ratio_bootstrap(a, total, owners), stats.ratio_bootstrap(b, total, owners)
    assert cell_a["high"] > cell_b["low"]  # unpaired, the rows cannot be told apart
    assert _width(diff) < 0.7 * np.hypot(_width(cell_a), _width(cell_b))  # the unpaired difference's width


def test_identical_rows_differ_by_exactly_zero_and_pairs_must_match():
    a = np.array([[1, 0, 1, 1], [0, 0, 1, 1]], dtype=float)
    diff = stats.paired_difference(a, a.copy(), np.ones(4), [0, 0, 1, 1], n=100)
    assert (diff["mean"], diff["low"], diff["high"], diff["pairs"]) == (0, 0, 0, 2)
    with pytest.raises(ValueError):
        stats.paired_difference(a, a[:1], np.ones(4))


def test_bootstrap_metric_resamples_whole_pieces():
    owners = _pieces(30, 4)
    labels = np.repeat(np.arange(30) % 2, 4)
    predicted = labels.copy()
    predicted[:20] = 1 - predicted[:20]  # the first 5 pieces wrong
    seen = []

    def accuracy(indices):
        seen.append(indices)
        return float((predicted[indices] == labels[indices]).mean())

    out = stats.bootstrap_metric(accuracy, owners, n=50)
    assert out["value"] == pytest.approx(25 / 30)
    assert out["low"] < out["value"] < out["high"]
    for indices in seen[:-1]:  # every resample holds whole pieces
        assert np.all(np.bincount(np.asarray(owners)[indices], minlength=30) % 4 == 0)


def _disagreeing_seeds(spread: float) -> tuple[np.ndarray, np.ndarray]:
    """Row a beats row b by 10 points on average over 3 seeds, the seeds' gains ``10 - spread``, 10, ``10 + spread``
    (60 pieces of 5 notes; each seed flips a different share of b's wrong notes)."""
    rng = np.random.default_rng(4)
    b = (rng.random((3, 300)) < 0.5).astype(float)
    a = b.copy()
    for seed, gain in enumerate((10 - spread, 10, 10 + spread)):
        wrong = np.flatnonzero(b[seed] == 0)
        a[seed, wrong[: int(round(gain * 3))]] = 1
    return a, b


def test_resampling_seeds_widens_the_interval_when_seeds_disagree():
    owners = _pieces(60, 5)
    a, b = _disagreeing_seeds(8)
    both = stats.paired_difference(a, b, np.ones(300), owners)
    pieces_only = stats.paired_difference(a, b, np.ones(300), owners, resample_seeds=False)
    assert both["mean"] == pieces_only["mean"] == pytest.approx(10, abs=0.01)
    assert both["resampled"] == "pieces and seeds" and pieces_only["resampled"] == "pieces"
    assert _width(both) > 1.5 * _width(pieces_only)
    assert both["per_pair"] == pytest.approx([2, 10, 18], abs=0.01)
    agreeing = stats.paired_difference(*_disagreeing_seeds(0), np.ones(300), owners)  # seeds that agree: little to add
    assert _width(agreeing) < _width(both)


def test_a_constant_difference_has_a_zero_width_interval():
    """Every seed's row a is right on exactly 6 more notes of every 10-note piece than row b: whatever pieces and
    seeds are drawn, the difference is 60 points."""
    rng = np.random.default_rng(5)
    b = np.tile(np.repeat(rng.integers(0, 4, 40), 1), (3, 1)).astype(float)
    a = b + 6
    diff = stats.paired_difference(a, b, np.full(40, 10.0), list(range(40)))
    assert (diff["mean"], diff["low"], diff["high"], diff["above_zero"]) == (60, 60, 60, 1.0)


def test_the_ratio_of_sums_gives_per_piece_means():
    """Likelihoods: each piece's summed NLL over its note count, pooled: sum of NLL over sum of notes, with the same
    draws for every row (a :class:`Resamples` shared by two rows)."""
    nll, notes = np.array([[10.0, 30.0, 5.0]]), np.array([5.0, 10.0, 5.0])
    cell = stats.ratio_bootstrap(nll, notes, [0, 1, 2], scale=1, digits=None, n=300)
    assert cell["mean"] == pytest.approx(45 / 20)
    draws = stats.Resamples(3, 1, n=300)
    assert np.allclose(draws.ratio(nll, notes) - draws.ratio(nll * 0.5, notes), draws.ratio(nll * 0.5, notes))
    assert np.all(draws.pieces.sum(1) == 3) and np.all(draws.seeds == 1)


def test_seed_draws_are_with_replacement_and_piece_draws_do_not_depend_on_the_seed_count():
    one, three = stats.Resamples(20, 1, n=200), stats.Resamples(20, 3, n=200)
    assert np.array_equal(one.pieces, three.pieces)  # rows with other seed counts share the piece draws
    assert np.all(three.seeds.sum(1) == 3) and (three.seeds.max(1) > 1).any()  # some resample repeats a seed
    fixed = stats.Resamples(20, 3, n=200, resample_seeds=False)
    assert np.all(fixed.seeds == 1) and fixed.resampled == "pieces"


def test_bootstrap_metric_draws_runs_too():
    owners = _pieces(10, 2)
    values = {0: 0.2, 1: 0.8}
    out = stats.bootstrap_metric(lambda indices, run: values[run], owners, n=400, seeds=2)
    assert out["value"] == pytest.approx(0.5) and out["resampled"] == "pieces and seeds"
    assert out["low"] == pytest.approx(0.2) and out["high"] == pytest.approx(0.8)  # both runs drawn twice, sometimes
