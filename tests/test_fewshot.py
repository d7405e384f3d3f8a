"""The few-shot unseen-style protocol: count models by hand, the link predictor mixed in on validation, and a
smoke run of ``benchmarks/transfer.py --few-shot`` on the bundled corpus that writes its tables and resumes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from musictl import constants as C
from musictl.transfer import fewshot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_count_models_are_distributions_and_match_hand_counts():
    counts = np.zeros((4, 4))
    counts[0, 1], counts[0, 2], counts[1, 1] = 3, 1, 2  # 0 -> 1 three times, 0 -> 2 once, 1 -> 1 twice
    for model in (fewshot.add_alpha(counts, 0.5), fewshot.witten_bell(counts), fewshot.interval_model(counts, 0.5)):
        assert np.allclose(model.sum(1), 1) and (model > 0).all()
    assert fewshot.add_alpha(counts, 0.5)[0, 1] == pytest.approx(3.5 / 6)
    unigram = (np.array([0, 5, 1, 0]) + 1) / (6 + 4)
    # Witten-Bell: (N(x, c) + T(x) U(c)) / (N(x) + T(x)); x = 0 was followed by 2 distinct values
    assert fewshot.witten_bell(counts)[0, 1] == pytest.approx((3 + 2 * unigram[1]) / (4 + 2))
    assert np.allclose(fewshot.witten_bell(counts)[3], unigram)  # an unseen context backs off to the unigram
    steps = fewshot.interval_model(counts, 0.0)  # steps: +1 three times, +2 once, 0 twice
    assert steps[2, 3] == pytest.approx(3 / 5)  # from 2: step 0 (2), +1 (3); +2 leaves the range
    link = np.zeros((4, 4))
    link[0] = [0, 0, 0, 1]
    mixed = fewshot.mixed(fewshot.witten_bell(counts), link, 0.5)
    assert mixed[0, 3] > 0.5 and np.allclose(mixed[1], fewshot.witten_bell(counts)[1])  # rows the predictor knows


def test_transitions_stay_within_a_part_and_ranks_share_ties():
    tokens = np.array([[0, 0, 0, 60, 3, 10, 0, 0], [0, 0, 32, 36, 9, 10, 0, 0], [0, 8, 0, 62, 3, 10, 0, 0],
                       [0, 16, 0, 64, 5, 10, 0, 0]]) + C.N_SPECIAL
    previous, following = fewshot.transitions(tokens, C.PITCH)
    assert sorted(zip(previous.tolist(), following.tolist())) == [(60, 62), (62, 64)]  # the bass note starts no pair
    model = np.array([[0.5, 0.25, 0.25], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3]])
    assert fewshot._ranks(model, np.array([0, 0, 2]), np.array([0, 1, 1])).tolist() == [1.0, 2.5, 2.0]


@pytest.fixture(scope="module")
def bench():
    import transfer as bench

    return bench


def _args(tmp_path: Path) -> list[str]:
    return ["--few-shot", "--styles", "fiddle-tunes", "--shots", "1,all", "--seeds", "2", "--bert-steps", "2",
            "--fewshot-epochs", "20", "--threads", "1", "--work", str(tmp_path / "work"), "--results",
            str(tmp_path / "results"), "--write"]


def test_few_shot_smoke_run_writes_every_row_and_resumes(bench, tmp_path, monkeypatch):
    bench.main(_args(tmp_path))
    page = (tmp_path / "results" / "transfer_fewshot.md").read_text()
    data = json.loads((tmp_path / "results" / "transfer_fewshot.json").read_text())
    assert "python benchmarks/transfer.py --few-shot --styles fiddle-tunes" in page  # the command beside the table
    summary = data["styles"]["fiddle-tunes"]
    assert set(summary) == {"1", "all"}
    for block in summary.values():
        assert block["seeds"] == 2 and block["best_baseline"] in fewshot.BASELINES
        assert set(block["rows"]) == set(fewshot.METHODS)
        for row in block["rows"].values():
            for name in ("pitch_nll", "duration_nll", "pitch_mrr", "pitch_hits10", "note_nll_minus_best"):
                assert row[name]["low"] <= row[name]["mean"] <= row[name]["high"] or name == "note_nll_minus_best"
        assert block["rows"][block["best_baseline"]]["note_nll_minus_best"]["mean"] == 0
        mixes = block["choices"]["pitch"]["predictor_bert"]
        assert len(mixes) == 2 and all(m in fewshot.MIXES or m == "graph too small" for m in mixes)
    for method in fewshot.METHODS:
        assert f"| {method} |" in page

    cells = list((tmp_path / "work").rglob("k*-seed*.json"))
    assert len(cells) == 4  # (k = 1, all) x 2 seeds, each cached as it finished
    calls = []
    real = fewshot.run_cell
    monkeypatch.setattr(fewshot, "run_cell", lambda *a, **k: calls.append(a[2:4]) or real(*a, **k))
    cells[0].unlink()
    bench.main(_args(tmp_path))  # resumes: only the missing cell runs again, the BERT is not pre-trained again
    assert len(calls) == 1
    assert json.loads((tmp_path / "results" / "transfer_fewshot.json").read_text())["styles"] == data["styles"]

    # a given encoder (--bert-model): its own cells and page, labelled as an optimistic bound; the per-style ones kept
    given = next((tmp_path / "work").rglob("bert-without-fiddle-tunes/bert"))
    calls.clear()
    args = _args(tmp_path)
    args[args.index("--work") + 1] = str(tmp_path / "work-given")
    bench.main([*args, "--bert-model", str(given)])
    assert len(calls) == 4  # new cells: a different feature table must not read the held-out encoder's cells
    assert not list((tmp_path / "work-given").rglob("bert-without-*/bert"))  # no per-style encoder pre-trained for it
    page = (tmp_path / "results" / "transfer_fewshot_given.md").read_text()
    assert "optimistic bound" in page and "| fiddle-tunes | 1 |" in page
    assert json.loads((tmp_path / "results" / "transfer_fewshot.json").read_text())["styles"] == data["styles"]
