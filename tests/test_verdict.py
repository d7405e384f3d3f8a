"""The pre-training verdict reaches the user again: embed, train-gcn, finetune-mask and status warn (one line,
with the command that helps) when the encoder they read learned no field beyond its trivial baselines, and
train-gcn's table names the graph that was built."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from musictl import artifacts
from musictl.bert.verdict import encoder_verdict, read_verdict
from musictl.cli import app

runner = CliRunner()
TINY_BERT = ["--hidden-size", "32", "--layers", "1", "--heads", "2", "--field-embed-dim", "8", "--max-len", "64",
             "--max-steps", "3", "--eval-every", "3", "--device", "cpu"]
TINY_GCN = ["--epochs", "3", "--hidden", "16", "--out-dim", "8", "--device", "cpu", "--no-baselines"]
REMEDY = "train it longer: musictl pretrain-bert --max-steps 3000 --overwrite"


def ok(ws, *args):
    result = runner.invoke(app, [*args, "--workdir", str(ws)])
    assert result.exit_code == 0, result.output
    return result


def set_margins(bert, **margins):
    """As if pre-training had ended with these per-field margins over the trivial predictors (metrics.json)."""
    metrics = json.loads((bert / "metrics.json").read_text())
    metrics["learned"] = {name: margins.get(name, -0.2) for name in metrics["learned"]}
    (bert / "metrics.json").write_text(json.dumps(metrics))
    artifacts.write_manifest(bert, artifacts.read_manifest(bert))


def warnings(result) -> list[str]:
    return [line for line in result.output.splitlines() if "warning" in line]


@pytest.fixture(scope="module")
def untrained(tokens_dir, tmp_path_factory):
    """tokens + a tiny bert whose every field is NOT learned (as 3 steps leave it)."""
    ws = tmp_path_factory.mktemp("verdict") / "ws"
    shutil.copytree(tokens_dir, ws / "tokens")
    ok(ws, "pretrain-bert", *TINY_BERT)
    set_margins(ws / "bert")
    return ws


@pytest.fixture
def ws(untrained, tmp_path):
    copy = tmp_path / "ws"
    shutil.copytree(untrained, copy)
    return copy


def test_the_verdict_is_read_from_the_model_and_through_what_was_made_from_it(ws):
    verdict = read_verdict(ws / "bert")
    assert verdict.learned_nothing and verdict.steps == 3 and len(verdict.margins) == 8
    assert verdict.summary() == "learned no field beyond its baselines"
    assert verdict.remedy(ws / "bert") == "musictl pretrain-bert --max-steps 3000 --overwrite"
    assert verdict.remedy(ws / "elsewhere").endswith(" -o " + str(ws / "bert"))
    set_margins(ws / "bert", pitch=0.05, duration=0.01)
    verdict = read_verdict(ws / "bert")
    assert not verdict.learned_nothing and verdict.summary() == "learned pitch, duration (2 of 8 fields)"
    assert encoder_verdict(ws / "tokens") is None and encoder_verdict(ws / "nothing") is None


def test_embed_on_a_model_that_learned_nothing_warns_in_one_line_with_the_next_step(ws):
    result = ok(ws, "embed")
    [line] = warnings(result)
    assert line.startswith("warning: ") and "learned no field beyond its baselines after 3 steps" in line
    assert line.endswith(REMEDY)
    assert encoder_verdict(ws / "embeddings").learned_nothing  # followed through the embeddings' manifest
    set_margins(ws / "bert", pitch=0.05)
    assert warnings(ok(ws, "embed", "--overwrite")) == []


def test_status_shows_the_verdict_beside_the_bert_artifact(ws):
    report = json.loads(ok(ws, "status", "--json").stdout)
    [bert] = [a for a in report["artifacts"] if a["kind"] == "bert"]
    assert bert["verdict"] == "learned no field beyond its baselines" and bert["warning"].endswith(REMEDY)
    result = runner.invoke(app, ["status", "--workdir", str(ws)], env={"COLUMNS": "250"})
    assert "learned no field beyond its baselines" in result.output
    [line] = warnings(result)
    assert line.startswith("warning: ") and line.endswith(REMEDY)
    set_margins(ws / "bert", pitch=0.05)
    result = runner.invoke(app, ["status", "--workdir", str(ws)], env={"COLUMNS": "250"})
    assert warnings(result) == []  # (the verdict's words are in a table cell, wrapped at the console's width)
    [bert] = [a for a in json.loads(ok(ws, "status", "--json").stdout)["artifacts"] if a["kind"] == "bert"]
    assert bert["verdict"] == "learned pitch (1 of 8 fields)" and not bert["warning"]


def test_finetune_mask_warns_about_its_encoder(ws):
    result = ok(ws, "finetune-mask", "--task", "style", "--max-len", "64", "--batch-size", "4", "--epochs", "1",
                "--device", "cpu")
    [line] = warnings(result)
    assert line.startswith("warning: ") and line.endswith(REMEDY)


@pytest.mark.slow
def test_train_gcn_warns_about_the_encoder_behind_the_embeddings_and_names_the_graph_it_built(ws):
    ok(ws, "embed")
    ok(ws, "adjacency", "--style", "waltz")  # transitions, the default
    result = runner.invoke(app, ["train-gcn", "--style", "waltz", *TINY_GCN, "--workdir", str(ws)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    [line] = warnings(result)
    assert line.startswith("warning: ") and line.endswith(REMEDY)
    assert "(token features + transition graph)" in result.output and "cooccurrence" not in result.output
    ok(ws, "adjacency", "--style", "waltz", "--edges", "cooccurrence", "--overwrite")
    result = runner.invoke(app, ["train-gcn", "--style", "waltz", *TINY_GCN, "--overwrite", "--workdir", str(ws)],
                           env={"COLUMNS": "250"})
    assert "(token features + cooccurrence graph)" in result.output
    result = runner.invoke(app, ["train-gcn", "--style", "waltz", *TINY_GCN, "--model", "1", "--overwrite", "--workdir",
                                 str(ws)], env={"COLUMNS": "250"})
    assert "(token features + similarity graph)" in result.output
