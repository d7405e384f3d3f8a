"""pretrain-bert, finetune-mask and predict under faults: interrupts, overwrites, stale and broken inputs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from musictl import artifacts, training
from musictl.bert.model import load_encoder
from musictl.bert.pretrain import PretrainSettings, pretrain
from musictl.cli import app
from musictl.errors import ArtifactError, Interrupted

runner = CliRunner()
TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, field_embed_dim=8, max_len=64, batch_size=4,
            eval_every=2, seed=3, objective="mlm", device="cpu")
TINY_ARGS = ["--hidden-size", "32", "--layers", "1", "--heads", "2", "--field-embed-dim", "8", "--max-len", "64",
             "--batch-size", "4", "--objective", "mlm", "--device", "cpu"]
FINETUNE = ["--task", "style", "--max-len", "64", "--batch-size", "4", "--epochs", "1", "--device", "cpu"]


def settings(**overrides) -> PretrainSettings:
    return PretrainSettings(**{**TINY, **overrides})


@pytest.fixture(scope="module")
def bert_dir(tokens_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bert") / "bert"
    pretrain(tokens_dir, out, settings(max_steps=2))
    return out


def sigint_at(step: int):
    """A progress callback that sends this process a real SIGINT (Ctrl-C) once ``step`` is reached."""
    import os
    import signal

    def callback(done, total, row=None):
        if done == step:
            os.kill(os.getpid(), signal.SIGINT)

    return callback


def interrupt_at(step: int):
    def on_progress(done, total, row):
        if done == step:
            raise KeyboardInterrupt

    return on_progress


@pytest.mark.slow
def test_sigterm_keeps_the_old_model_and_says_what_was_kept(tokens_dir, tmp_path):
    out = tmp_path / "bert"
    pretrain(tokens_dir, out, settings(max_steps=2))
    before = (out / "model.safetensors").read_bytes()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    job = subprocess.Popen([sys.executable, "-m", "musictl", "pretrain-bert", "--tokens", str(tokens_dir), "--out", str(out),
                            *TINY_ARGS, "--max-steps", "5000", "--eval-every", "2", "--overwrite"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    state = tmp_path / ".bert.staging" / "checkpoints" / "last" / training.STATE_FILE
    deadline = time.monotonic() + 120
    while not state.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=60)
    message = " ".join(stderr.split())
    assert job.returncode == 130, stderr[-2000:]
    step = json.loads(state.read_text())["step"]
    assert f"checkpoint at step {step} kept in {tmp_path / '.bert.staging'}; resume with musictl pretrain-bert --resume" in message
    assert f"{out} is unchanged" in message
    assert (out / "model.safetensors").read_bytes() == before  # the old model, whole and loadable
    artifacts.require(out, "bert")
    load_encoder(out)


def test_overwrite_keeps_the_old_model_until_the_new_one_is_complete(tokens_dir, tmp_path):
    out = tmp_path / "bert"
    pretrain(tokens_dir, out, settings(max_steps=2))
    old = artifacts.read_manifest(out).fingerprint
    seen = []

    def look(done, total, row):
        artifacts.require(out, "bert")  # mid-run, the old artifact verifies against its manifest
        seen.append(artifacts.read_manifest(out).fingerprint)

    pretrain(tokens_dir, out, settings(max_steps=4, seed=4), overwrite=True, on_progress=look)
    assert seen == [old] * 4
    assert artifacts.require(out, "bert").fingerprint != old
    assert not (tmp_path / ".bert.staging").exists()


def test_interrupt_before_the_first_checkpoint_removes_the_staging(tokens_dir, bert_dir, tmp_path):
    out = tmp_path / "bert"
    shutil.copytree(bert_dir, out)
    with pytest.raises(Interrupted, match=re.escape(f"no checkpoint had been written yet, so nothing was kept; {out} is unchanged")):
        pretrain(tokens_dir, out, settings(max_steps=6, eval_every=4), overwrite=True, on_progress=interrupt_at(1))
    assert not (tmp_path / ".bert.staging").exists()
    artifacts.require(out, "bert")


def test_a_killed_resume_never_leaves_a_stale_manifest(tokens_dir, bert_dir, tmp_path):
    out = tmp_path / "bert"
    shutil.copytree(bert_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(Interrupted, match="checkpoint at step 4 kept"):
        pretrain(tokens_dir, out, settings(max_steps=8), resume=True, on_progress=interrupt_at(4))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    artifacts.require(out, "bert")  # manifest and files agree
    assert not (tmp_path / ".bert.staging" / artifacts.MANIFEST).exists()
    result = pretrain(tokens_dir, out, settings(max_steps=8), resume=True)  # continues the interrupted resume
    assert result.steps == 8 and [r["step"] for r in artifacts.read_jsonl(out / "metrics.jsonl")] == list(range(1, 9))


def test_an_interrupted_run_is_not_silently_replaced(tokens_dir, tmp_path):
    out = tmp_path / "bert"
    with pytest.raises(Interrupted):
        pretrain(tokens_dir, out, settings(max_steps=6), on_progress=interrupt_at(2))
    with pytest.raises(ArtifactError, match=r"holds an interrupted pre-training run.*--resume.*--overwrite"):
        pretrain(tokens_dir, out, settings(max_steps=6))


def test_out_of_range_numbers_are_refused_by_the_command_line(tokens_dir, tmp_path):
    for args in (["pretrain-bert", "--max-steps", "0"], ["pretrain-bert", "--eval-every", "0"], ["pretrain-bert", "--mask-ratio", "0"],
                 ["finetune-mask", "--task", "style", "--epochs", "0"], ["finetune-mask", "--task", "style", "--patience", "0"],
                 ["pretrain-bert", "--objective", "masked"], ["pretrain-bert", "--mixed-precision", "fp8"]):
        result = runner.invoke(app, [*args, "--tokens", str(tokens_dir), "--out", str(tmp_path / "x")])
        assert result.exit_code == 2, (args, result.output)
    assert not (tmp_path / "x").exists()


def test_an_empty_validation_split_is_refused(style_corpus, tmp_path):
    tokens = tmp_path / "tokens"
    assert runner.invoke(app, ["tokenize", str(style_corpus), "-o", str(tokens), "--split", "0.8,0,0.2"]).exit_code == 0
    result = runner.invoke(app, ["pretrain-bert", "--tokens", str(tokens), "--out", str(tmp_path / "b"), *TINY_ARGS])
    assert result.exit_code == 1
    assert "has 0 validation windows: no validation split; use --split in musictl tokenize" in " ".join(result.output.split())
    assert not (tmp_path / "b").exists() and not (tmp_path / ".b.staging").exists()
    result = runner.invoke(app, ["finetune-mask", *FINETUNE, "--tokens", str(tokens), "--from-scratch", "--out", str(tmp_path / "f")])
    assert result.exit_code == 1 and "0 labelled valid pieces" in result.output
    assert not (tmp_path / "f").exists()


def test_finetune_refuses_a_bert_without_or_against_its_manifest(tokens_dir, bert_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(bert_dir, broken)
    (broken / artifacts.MANIFEST).unlink()
    result = runner.invoke(app, ["finetune-mask", *FINETUNE, "--tokens", str(tokens_dir), "--model", str(broken),
                                 "--out", str(tmp_path / "f")])
    assert result.exit_code == 1 and "has no manifest.json" in result.output
    shutil.copy2(bert_dir / artifacts.MANIFEST, broken / artifacts.MANIFEST)
    with (broken / "model.safetensors").open("r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\0\0\0\0")
    result = runner.invoke(app, ["finetune-mask", *FINETUNE, "--tokens", str(tokens_dir), "--model", str(broken),
                                 "--out", str(tmp_path / "f")])
    assert result.exit_code == 1 and "do not match its manifest" in result.output
    assert len(result.output.strip().splitlines()) <= 2  # one line (rich may wrap it)
    assert not (tmp_path / "f").exists()


def test_finetune_refuses_a_bert_made_from_an_older_version_of_its_tokens(style_corpus, tmp_path):
    tokens = tmp_path / "tokens"
    assert runner.invoke(app, ["tokenize", str(style_corpus), "-o", str(tokens), "--split", "0.5,0.25,0.25"]).exit_code == 0
    pretrain(tokens, tmp_path / "bert", settings(max_steps=2))
    result = runner.invoke(app, ["finetune-mask", *FINETUNE, "--tokens", str(tokens), "--model", str(tmp_path / "bert"),
                                 "--out", str(tmp_path / "fresh")])
    assert result.exit_code == 0, result.output
    manifest = artifacts.require(tmp_path / "fresh", "finetune", "fresh")
    assert set(manifest.inputs) == {"tokens", "bert"}  # what it was made from
    remake = ["tokenize", str(style_corpus), "-o", str(tokens), "--split", "0.5,0.25,0.25", "--seed", "1", "--overwrite"]
    assert runner.invoke(app, remake).exit_code == 0  # other splits: another version of the same tokens
    result = runner.invoke(app, ["finetune-mask", *FINETUNE, "--tokens", str(tokens), "--model", str(tmp_path / "bert"),
                                 "--out", str(tmp_path / "stale")])
    assert result.exit_code == 1 and "is stale" in result.output and "musictl pretrain-bert --overwrite" in result.output


def test_predict_refuses_what_is_not_a_finetuned_model(tokens_dir, bert_dir, tmp_path):
    song = tmp_path / "song.mid"
    shutil.copy2(next(Path(p.path) for p in __import__("musictl.midi.tokens", fromlist=["TokenCorpus"]).TokenCorpus
                      .open(tokens_dir).pieces), song)
    gcn = tmp_path / "gcn" / "x"
    gcn.mkdir(parents=True)
    artifacts.write_manifest(gcn, artifacts.Manifest(kind="gcn"))
    for model, expected in ((gcn, "holds a 'gcn' artifact, not 'finetune'"), (tmp_path / "nowhere", "no finetune artifact"),
                            (bert_dir, "holds a 'bert' artifact, not 'finetune'")):
        result = runner.invoke(app, ["predict", "--model", str(model), str(song), "--device", "cpu"])
        assert result.exit_code == 1 and expected in result.output, result.output
        assert "Traceback" not in result.output and "None" not in result.output


def test_an_interrupted_finetune_keeps_its_checkpoint_and_resumes_to_the_same_weights(tokens_dir, tmp_path):
    from safetensors.torch import load_file

    from musictl.bert.finetune import finetune
    from musictl.bert.settings import FinetuneSettings

    settings = FinetuneSettings(task="style", from_scratch=True, max_len=64, batch_size=4, epochs=3, patience=5, device="cpu")
    whole = finetune(tokens_dir, tmp_path / "none", tmp_path / "whole", settings)
    out = tmp_path / "style"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(Interrupted, match=re.escape("checkpoint at step") + ".*" + re.escape(f"--resume; {out} is unchanged")):
        finetune(tokens_dir, tmp_path / "none", out, settings, overwrite=True, on_progress=sigint_at(2))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    resumed = finetune(tokens_dir, tmp_path / "none", out, settings, overwrite=True, resume=True)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3] and resumed.test == whole.test
    first, second = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert [r["epoch"] for r in artifacts.read_jsonl(out / "metrics.jsonl")] == [1, 2, 3]
    assert (out / "curves.png").is_file() and not (tmp_path / ".style.staging").exists()
