"""The cross-style chain under faults: outputs checked before the work, names that stay inside the
workspace, stale inputs refused with the command to re-run, ranges and -o checks of generate-rwr."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from symusic import Score
from typer.testing import CliRunner

from musictl import artifacts
from musictl.cli import app
from tests.midi_factory import style_piece

runner = CliRunner()
TINY_BERT = ["--hidden-size", "32", "--layers", "1", "--heads", "2", "--field-embed-dim", "8", "--max-len", "64",
             "--max-steps", "3", "--eval-every", "3", "--device", "cpu"]
TINY_GCN = ["--epochs", "5", "--hidden", "16", "--out-dim", "8", "--device", "cpu"]


def invoke(ws, *args):
    return runner.invoke(app, [*args, "--workdir", str(ws)])


def ok(ws, *args):
    result = invoke(ws, *args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def chain(tokens_dir, tmp_path_factory):
    """A workspace with tokens, a tiny bert, embeddings, graph/waltz and gcn/waltz. Copy before changing it."""
    ws = tmp_path_factory.mktemp("chain") / "ws"
    shutil.copytree(tokens_dir, ws / "tokens")
    ok(ws, "pretrain-bert", *TINY_BERT)
    ok(ws, "embed")
    ok(ws, "adjacency", "--style", "waltz")
    ok(ws, "train-gcn", "--style", "waltz", *TINY_GCN, "--no-baselines")
    return ws


@pytest.fixture
def ws(chain, tmp_path):
    copy = tmp_path / "ws"
    shutil.copytree(chain, copy)
    return copy


def _must_not_run(*args, **kwargs):
    raise AssertionError("the work started before the output was checked")


@pytest.mark.slow
def test_existing_outputs_are_refused_before_the_work(ws, monkeypatch):
    import musictl.transfer.adjacency as graphs
    import musictl.transfer.pipeline as pipeline
    import musictl.transfer.train_gcn as train_gcn

    monkeypatch.setattr(graphs, "build_graph", _must_not_run)
    monkeypatch.setattr(train_gcn, "prepare_split", _must_not_run)
    monkeypatch.setattr(pipeline, "embedding_tables", _must_not_run)
    for args in (("adjacency", "--style", "waltz"), ("train-gcn", "--style", "waltz"), ("embed",)):
        result = invoke(ws, *args)
        # (train-gcn, a resumable run: "already holds a train-gcn run of waltz; pass --overwrite ..., or --resume")
        assert result.exit_code == 1 and "already" in result.output and "; pass --overwrite" in result.output, result.output


@pytest.mark.slow
def test_a_locked_artifact_is_refused_at_once(ws, monkeypatch):
    import musictl.transfer.adjacency as graphs

    monkeypatch.setattr(graphs, "build_graph", _must_not_run)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from musictl import artifacts; "
         "lock = artifacts.locked(Path(sys.argv[1])); lock.__enter__(); print('locked', flush=True); time.sleep(120)",
         str(ws / "graph" / "waltz")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = invoke(ws, "adjacency", "--style", "waltz", "--overwrite")
        assert result.exit_code == 1 and f"in use by pid {holder.pid}" in result.output, result.output
    finally:
        holder.kill()
        holder.wait()
    assert (ws / "graph" / "waltz" / "graph.npz").is_file()


@pytest.mark.slow
def test_style_names_from_the_index_never_leave_the_workspace(ws):
    tokens = ws / "tokens"
    rows = [json.loads(line) for line in (tokens / "index.jsonl").read_text().splitlines()]
    evil = "../../../victim"
    for row in rows:
        if row["style"] == "blues":
            row["style"] = evil
    (tokens / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    artifacts.write_manifest(tokens, artifacts.read_manifest(tokens))  # a consistent, if hostile, artifact
    victim = (ws / "graph" / evil).resolve()
    victim.mkdir(parents=True, exist_ok=True)
    (victim / "precious.txt").write_text("keep me")
    assert not victim.is_relative_to(ws.resolve())
    for args in (("adjacency", "--style", evil, "--overwrite"), ("train-gcn", "--style", evil, "--overwrite"),
                 ("generate-rwr", "--style", evil, "-o", str(ws / "x.mid"))):
        result = invoke(ws, *args)
        assert result.exit_code == 2 and "cannot name a folder" in result.output, result.output
    assert (victim / "precious.txt").read_text() == "keep me"


@pytest.mark.slow
def test_train_gcn_refuses_embeddings_of_an_older_bert(ws):
    metrics = ws / "bert" / "metrics.json"  # as if pretrain-bert --overwrite had made a new model
    metrics.write_text(metrics.read_text() + "\n")
    artifacts.write_manifest(ws / "bert", artifacts.read_manifest(ws / "bert"))
    result = invoke(ws, "train-gcn", "--style", "waltz", "--overwrite", *TINY_GCN)
    assert result.exit_code == 1 and "is stale" in result.output and "musictl embed --overwrite" in result.output
    ok(ws, "embed", "--overwrite")
    ok(ws, "train-gcn", "--style", "waltz", "--overwrite", *TINY_GCN, "--no-baselines")


@pytest.mark.slow
def test_stale_graph_gcn_and_bert_are_refused_after_the_tokens_change(ws, style_corpus):
    from musictl.midi.corpus import assign_splits, find_midi_files
    from musictl.midi.pipeline import tokenize_corpus
    from musictl.midi.vocab import TokenizerConfig

    files = find_midi_files([style_corpus])  # tokenize again with other splits: new tokens
    tokenize_corpus(files, assign_splits(files, (0.6, 0.2, 0.2), 7), ws / "tokens", TokenizerConfig(), overwrite=True)
    out = ws / "walk.mid"
    result = invoke(ws, "generate-rwr", "-n", "2", "-o", str(out))
    assert result.exit_code == 1 and "musictl adjacency --style waltz --overwrite" in result.output, result.output
    ok(ws, "adjacency", "--style", "waltz", "--overwrite")
    result = invoke(ws, "generate-rwr", "-n", "2", "-o", str(out))
    assert result.exit_code == 1 and "musictl train-gcn --style waltz --overwrite" in result.output, result.output
    result = invoke(ws, "embed", "--overwrite")  # the bert was trained on the old version of these tokens
    assert result.exit_code == 1 and "musictl pretrain-bert --overwrite" in result.output, result.output
    assert not out.exists()


@pytest.mark.slow
def test_generate_checks_ranges_and_its_output_before_walking(ws, monkeypatch):
    import musictl.transfer.generator as generator

    for args in (("--evaluate", "-1"), ("-n", "0"), ("--count", "0"), ("--temperature", "0")):
        assert invoke(ws, "generate-rwr", *args).exit_code == 2
    existing = ws / "old.mid"
    existing.write_bytes(b"keep")
    monkeypatch.setattr(generator, "generate_pieces", _must_not_run)
    result = invoke(ws, "generate-rwr", "-o", str(existing))
    assert result.exit_code == 1 and "already exists" in result.output
    prompt = ws / "prompt.mid"
    prompt.write_bytes(style_piece("waltz", 1, bars=2))
    result = invoke(ws, "generate-rwr", "--prompt", str(prompt), "-o", str(prompt), "--overwrite")
    assert result.exit_code == 2 and "one of this command's inputs" in result.output
    result = invoke(ws, "generate-rwr", "--count", "2", "-o", str(existing))
    assert result.exit_code == 2 and "-o DIR" in result.output
    assert existing.read_bytes() == b"keep"


@pytest.mark.slow
def test_count_writes_k_pieces_into_a_folder_in_one_run(ws):
    out = ws / "pieces"
    ok(ws, "generate-rwr", "-n", "16", "--count", "3", "-o", str(out), "--seed", "5", "--plot")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["waltz-5.mid", "waltz-5.png", "waltz-6.mid", "waltz-6.png", "waltz-7.mid", "waltz-7.png"]
    for name in ("waltz-5.mid", "waltz-6.mid", "waltz-7.mid"):
        score = Score(str(out / name))
        assert len(score.tempos) == 1 and len(score.time_signatures) == 1
        ts = score.time_signatures[0]
        bar = score.ticks_per_quarter * 4 * ts.numerator // ts.denominator
        starts = {int(n.time) // bar for t in score.tracks for n in t.notes}
        assert starts == set(range(16)) and max(n.end for t in score.tracks for n in t.notes) <= 16 * bar
    again = invoke(ws, "generate-rwr", "-n", "4", "--count", "3", "-o", str(out), "--seed", "5")
    assert again.exit_code == 1 and "already exists" in again.output


@pytest.mark.slow
def test_train_gcn_writes_baselines_and_prints_them(ws):
    result = ok(ws, "train-gcn", "--style", "waltz", "--overwrite", "--model", "1", *TINY_GCN)
    metrics = json.loads((ws / "gcn" / "waltz" / "metrics.json").read_text())
    assert {"test_auc", "test_ap", "baselines"} <= set(metrics) and metrics["settings"]["graph"] == "similarity"
    assert set(metrics["baselines"]) == {"common_neighbours", "adamic_adar", "resource_allocation", "degree_product",
                                         "gcn_random_features", "mlp_embeddings"}
    assert all(set(v) == {"auc", "ap", "auc_same_field", "ap_same_field"} for v in metrics["baselines"].values())
    assert metrics["settings"]["predict"] == "style" and metrics["test_auc_same_field"] is not None
    assert "degree product" in result.output and "best baseline" in result.output


def test_embed_with_a_missing_local_model_fails_at_once(tokens_dir, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(tokens_dir, ws / "tokens")
    result = invoke(ws, "embed", "--model", "./no-such-model-dir")
    assert result.exit_code == 1 and "no model at ./no-such-model-dir" in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    result = invoke(ws, "embed")
    assert result.exit_code == 1 and "run: musictl pretrain-bert" in result.output
