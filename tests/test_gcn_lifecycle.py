"""train-gcn on the shared run lifecycle (musictl.training.Run): SIGINT and --resume to the same weights, ``status``
listing the interrupted run, fixed settings refused on resume, --report-to, curves.png, and no global seeding."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from musictl import artifacts, workspace
from musictl.cli import app
from musictl.curves import curve_panels
from musictl.errors import Interrupted, UsageError
from musictl.transfer.pipeline import make_embeddings, make_gcn, make_graph
from musictl.transfer.settings import EmbedSettings, GcnSettings
from tests.test_run_lifecycle import same_weights, sigint_at
from tests.test_transfer import _hf_model

# patience = epochs: no early stop before the interrupt; no baselines: the GCN alone, fast
TINY = GcnSettings(epochs=8, patience=8, hidden=16, out_dim=8, baselines=False, seed=1)
runner = CliRunner()


@pytest.fixture(scope="module")
def ws(tokens_dir, tmp_path_factory):
    """A workspace with tokens, static embeddings of a tiny HF model and the waltz graph."""
    root = tmp_path_factory.mktemp("gcn-ws")
    shutil.copytree(tokens_dir, root / "tokens")
    names = [f"Pitch_{p}" for p in range(21, 109)] + [f"Velocity_{v}" for v in range(3, 128, 8)] + ["Program_0"]
    make_embeddings(str(_hf_model(root / "hf-model", names)), root / "tokens", root / "embeddings",
                    EmbedSettings(mode="static"))
    make_graph(root / "tokens", "waltz", root / "graph" / "waltz")
    return root


def gcn_run(ws, out, settings=TINY, **options):
    return make_gcn("waltz", out, settings, ws / "tokens", ws / "graph" / "waltz", ws / "embeddings", "cpu", **options)


def test_train_gcn_interrupted_by_sigint_resumes_to_the_weights_of_an_uninterrupted_run(ws, tmp_path):
    whole = gcn_run(ws, tmp_path / "whole")
    work = tmp_path / "work"  # a workspace of its own: gcn/waltz is its gcn artifact
    out = work / "gcn" / "waltz"
    with pytest.raises(Interrupted, match=r"checkpoint at step 5 kept in .*musictl train-gcn --style waltz --resume"):
        gcn_run(ws, out, on_progress=sigint_at(5))
    assert [(r.kind, r.step, r.command) for r in workspace.scan(work).resumable] == [
        ("gcn", 5, "musictl train-gcn --style waltz --resume")]
    status = runner.invoke(app, ["status", "--workdir", str(work)])
    assert status.exit_code == 0 and "musictl train-gcn --style waltz --resume" in " ".join(status.output.split())
    with pytest.raises(UsageError, match="was made with --hidden 16, not --hidden 32"):  # a setting that shapes the model
        gcn_run(ws, out, dataclasses.replace(TINY, hidden=32), resume=True)
    seen = []
    resumed = gcn_run(ws, out, resume=True, on_progress=lambda done, total, row=None: seen.append(done))
    assert seen == [6, 7, 8]  # continued after the checkpoint, not started again
    for name in ("model.safetensors", "node_embeddings.safetensors"):
        assert same_weights(tmp_path / "whole" / name, out / name), name
    assert (resumed.test_auc, resumed.val_auc, resumed.best_epoch, resumed.epochs_run) == (
        whole.test_auc, whole.val_auc, whole.best_epoch, whole.epochs_run)
    rows = artifacts.read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == list(range(1, 9)) == [r["epoch"] for r in artifacts.read_jsonl(out / "history.jsonl")]
    assert rows == artifacts.read_jsonl(tmp_path / "whole" / "metrics.jsonl")
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test_auc", "test_ap", "val_auc", "best_epoch", "epochs_run", "baselines", "settings"} <= set(metrics)
    assert (out / "curves.png").is_file() and (out / "README.md").is_file() and workspace.scan(work).resumable == []
    artifacts.require(out, artifacts.GCN)


def test_curves_draw_the_gcn_losses_and_its_auc_and_ap_on_zero_to_one():
    rows = [{"epoch": e, "loss": 0.7 - 0.1 * e, "val_auc": 0.6 + 0.05 * e, "val_ap": 0.5 + 0.05 * e,
             "val_auc_same_field": 0.55, "val_ap_same_field": 0.5} for e in (1, 2, 3)]
    panels = {panel.unit: panel for panel in curve_panels(rows)}
    assert set(panels) == {"cross-entropy (nats)", "share (0 to 1)"}
    assert set(panels["share (0 to 1)"].series) == {"val_auc", "val_ap", "val_auc_same_field", "val_ap_same_field"}
    assert panels["share (0 to 1)"].limits == (0.0, 1.0) and panels["share (0 to 1)"].x == "epoch"


def test_make_gcn_leaves_the_global_random_generators_as_they_were(ws, tmp_path):
    torch.manual_seed(1234)
    random.seed(1234)
    np.random.seed(1234)
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    gcn_run(ws, tmp_path / "gcn", dataclasses.replace(TINY, epochs=2, baselines=True))
    assert torch.equal(torch.get_rng_state(), before[0])
    assert random.getstate() == before[1] and np.array_equal(np.random.get_state()[1], before[2])


def test_train_gcn_report_to_tensorboard_writes_one_run_of_the_metrics_rows(ws, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    work = tmp_path / "work"
    shutil.copytree(ws, work)
    result = runner.invoke(app, ["train-gcn", "--style", "waltz", "--epochs", "3", "--patience", "3", "--hidden", "16",
                                 "--out-dim", "8", "--no-baselines", "--device", "cpu", "--report-to", "tensorboard",
                                 "--workdir", str(work)])
    assert result.exit_code == 0, result.output
    out = work / "gcn" / "waltz"
    events = sorted((out / "logs").rglob("events.out.tfevents.*"))
    assert len({e.parent for e in events}) == 1, events
    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    rows = artifacts.read_jsonl(out / "metrics.jsonl")
    for name in ("loss", "val_auc", "val_ap"):
        logged = accumulator.Scalars(name)
        assert [e.step for e in logged] == [r["epoch"] for r in rows] == [1, 2, 3]
        assert [e.value for e in logged] == pytest.approx([r[name] for r in rows], rel=1e-6)
    assert (out / "curves.png").is_file()
    artifacts.require(out, artifacts.GCN)  # the event files are part of the fingerprinted artifact
