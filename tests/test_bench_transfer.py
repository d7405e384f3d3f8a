"""benchmarks/transfer.py's bookkeeping: the work folder is keyed by the settings that shape its artifacts, and a
(style, method) whose pieces were scored is read back, not walked again."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import transfer
from harness import cells


def _args(**changes) -> argparse.Namespace:
    values = {"corpus": "shared", "styles": "", "per_style": 150, "split": "0.6,0.1,0.3", "bert_steps": 3000,
              "bert_lr": 1e-3, "classifier_epochs": 6, "adapt_epochs": 50, "adapt_max_len": 256, "walks": 40, "bars": 16,
              "null_draws": 100, "gcn_epochs": 300, "work": None}
    return argparse.Namespace(**{**values, **changes})


def test_the_work_folder_changes_with_what_shapes_its_artifacts_only(monkeypatch, tmp_path):
    monkeypatch.setenv("MUSICTL_BENCH_WORK", str(tmp_path))
    base = transfer.work_folder(_args())
    assert base.parent == tmp_path / "transfer"
    assert transfer.work_folder(_args(walks=10)) == base  # the walks are cells of the folder's walks.json
    assert transfer.work_folder(_args(bert_steps=300)) != base and transfer.work_folder(_args(per_style=40)) != base
    assert transfer.work_folder(_args(work=str(tmp_path / "mine"))) == tmp_path / "mine"


def test_scored_methods_are_read_back_and_the_rest_made(tmp_path, monkeypatch):
    done = cells.Results(tmp_path / "walks.json", "benchmarks/transfer.py", {"walks": 40}, command="c")
    for method in transfer.WALK_METHODS[:-2]:
        done.put({"style": "jigs", "method": method}, {"tokens_per_s": 1.0, "mix": None})
    asked = []

    def sources(ws, style, methods, adapted):  # as if the missing methods were walked and scored
        asked.append((style, tuple(methods), adapted))
        for method in methods:
            done.put({"style": style, "method": method}, {"tokens_per_s": 2.0, "mix": None})
        return None, []

    monkeypatch.setattr(transfer, "walk_sources", sources)
    facts = {"best_epoch": 3}  # read from the adapted artifact on every run (made only once)
    monkeypatch.setattr(transfer, "adapted_model", lambda ws, style, args, unseen=False: (tmp_path / f"adapted-{unseen}", facts))
    rows = transfer.walk_rows(tmp_path, "jigs", _args(), None, done)
    assert asked == [("jigs", (transfer.TRANSFORMER, transfer.UNSEEN),  # only the methods not yet scored
                      {transfer.TRANSFORMER: tmp_path / "adapted-False", transfer.UNSEEN: tmp_path / "adapted-True"})]
    assert [r["method"] for r in rows] == list(transfer.WALK_METHODS) and "settings" not in rows[0]
    assert rows[-1]["tokens_per_s"] == 2.0 and rows[0]["tokens_per_s"] == 1.0
    assert rows[-1]["adapted"] == facts == rows[-2]["adapted"] and rows[0]["adapted"] is None
    asked.clear()
    assert transfer.walk_rows(tmp_path, "jigs", _args(), None, done) == rows and asked == []  # all read back


def _row(style: str, method: str, accuracy: float, percentile: float, apart: bool) -> dict:
    return {"style": style, "method": method,
            "fidelity": {"judge": {"accuracy": accuracy, "percentile": percentile, "distinguishable": apart}}}


def test_the_planned_answer_reads_the_walk_and_the_ngram_against_the_null():
    told = [_row("a", "walk", 0.9, 1.0, True), _row("a", "interpolated n-gram", 0.8, 1.0, True),
            _row("a", "Markov chain", 0.5, 0.4, False)]  # another method not told apart does not answer it
    assert transfer.planned_answer(told).startswith("**no**") and "walk 0.90 (100th percentile), n-gram 0.80" in \
        transfer.planned_answer(told)
    closer = [_row("a", "walk", 0.6, 0.9, False), _row("a", "interpolated n-gram", 0.8, 1.0, True),
              _row("b", "walk", 0.9, 1.0, True), _row("b", "interpolated n-gram", 0.9, 1.0, True)]
    assert transfer.planned_answer(closer).startswith("**yes** on 1 of 2 styles")
    assert transfer.planned_answer([_row("a", "walk", 0.6, 0.9, False)]) is None  # no n-gram row: not answered
