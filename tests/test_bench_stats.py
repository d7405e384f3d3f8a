"""The benchmarks' bootstrap (benchmarks/stats.py): pieces are resampled with all their segments, and
paired differences share seeds and resamples."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import stats


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
    assert segment["resampled"] == "items" and piece["resampled"] == "pieces" and piece["pieces"] == 40
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
