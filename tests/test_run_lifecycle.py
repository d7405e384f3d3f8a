"""The one run lifecycle (musictl.training.Run) as every trainer uses it: SIGINT and resume to the same
weights, ``musictl status`` listing a resumable run, a full disk as one line, trackers that match
metrics.jsonl, curves.png in every training artifact."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from musictl import artifacts, training, workspace
from musictl.bert.pretrain import PretrainSettings, pretrain
from musictl.cli import app
from musictl.errors import Interrupted
from tests.violin_factory import lora_settings, make_data

REPO = Path(__file__).resolve().parents[1]
TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, field_embed_dim=8, max_len=64, batch_size=4,
            eval_every=2, seed=3, objective="mlm", device="cpu")
TINY_ARGS = ["--hidden-size", "32", "--layers", "1", "--heads", "2", "--field-embed-dim", "8", "--max-len", "64",
             "--batch-size", "4", "--objective", "mlm", "--device", "cpu"]
runner = CliRunner()


def sigint_at(step: int):
    """A progress callback that sends this process a real SIGINT (Ctrl-C) when ``step`` is done."""

    def callback(done, total, row=None):
        if done == step:
            os.kill(os.getpid(), signal.SIGINT)

    return callback


def same_weights(a: Path, b: Path) -> bool:
    first, second = load_file(str(a)), load_file(str(b))
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_pretrain_interrupted_by_sigint_resumes_to_the_weights_of_an_uninterrupted_run(tokens_dir, tmp_path):
    settings = PretrainSettings(**TINY, max_steps=6)
    pretrain(tokens_dir, tmp_path / "whole", settings)
    out = tmp_path / "bert"
    with pytest.raises(Interrupted, match=r"checkpoint at step 4 kept in .*musictl pretrain-bert --resume"):
        pretrain(tokens_dir, out, settings, on_progress=sigint_at(5))
    report = workspace.scan(tmp_path)  # tmp_path is the workspace: bert/ is its bert artifact
    assert [(r.kind, r.step, r.command) for r in report.resumable] == [("bert", 4, "musictl pretrain-bert --resume")]
    assert report.next_step == "musictl pretrain-bert --resume"
    result = pretrain(tokens_dir, out, settings, resume=True)
    assert result.steps == 6
    assert same_weights(tmp_path / "whole" / "model.safetensors", out / "model.safetensors")
    assert [r["step"] for r in artifacts.read_jsonl(out / "metrics.jsonl") if "valid" in r] == [2, 4, 6]
    assert (out / "curves.png").is_file() and workspace.scan(tmp_path).resumable == []


def test_status_lists_a_resumable_run_with_its_step_and_command(tokens_dir, tmp_path):
    with pytest.raises(Interrupted):
        pretrain(tokens_dir, tmp_path / "bert", PretrainSettings(**TINY, max_steps=6), on_progress=sigint_at(3))
    result = runner.invoke(app, ["status", "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "resumable: an interrupted bert run at step 2" in text and "continue it with: musictl pretrain-bert --resume" in text
    assert "next: musictl pretrain-bert --resume" in text


def test_a_new_kind_in_the_registry_shows_up_in_status(tmp_path, monkeypatch):
    """docs/architecture.md's "how to add a kind" recipe: one entry in artifacts.KINDS."""
    kind = artifacts.ArtifactKind("toy", "toys/{name}", ("toy.json",), "musictl make-toy --name {name}", "a toy artifact")
    monkeypatch.setitem(artifacts.KINDS, "toy", kind)
    target = tmp_path / "toys" / "first"
    target.mkdir(parents=True)
    (target / "toy.json").write_text("{}")
    artifacts.write_manifest(target, artifacts.Manifest(kind="toy", parameters={}))
    (tmp_path / "toys" / ".second.staging" / "checkpoints" / "last").mkdir(parents=True)
    (tmp_path / "toys" / ".second.staging" / "checkpoints" / "last" / artifacts.STATE_FILE).write_text('{"step": 7}')
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(2, dtype=np.float32)}, str(tmp_path / "toys" / ".second.staging" / "checkpoints" / "last" /
                                                       "model.safetensors"))  # a whole checkpoint holds weights
    report = workspace.scan(tmp_path)
    assert [(a.kind, a.name, a.state, a.made_by) for a in report.artifacts] == [("toy", "first", "fresh", "musictl make-toy --name first")]
    assert [(r.kind, r.name, r.step, r.command) for r in report.resumable] == [
        ("toy", "second", 7, "musictl make-toy --name second --resume")]


def test_lora_training_interrupted_by_sigint_resumes_to_the_same_adapter(tmp_path):
    from musictl.violin.model import build_tiny_base
    from musictl.violin.train import train

    tiny = build_tiny_base(tmp_path / "tiny")
    make_data(tmp_path)
    settings = lora_settings(tiny, max_steps=6, device="cpu")
    whole = train(settings, tmp_path / "violin/data", tmp_path / "whole", tmp_path)
    lora = tmp_path / "violin/lora"
    with pytest.raises(Interrupted, match=r"checkpoint at step 4 kept in .*musictl lora-violin train --resume"):
        train(settings, tmp_path / "violin/data", lora, tmp_path, on_progress=sigint_at(5))
    assert [(r.kind, r.step) for r in workspace.scan(tmp_path).resumable] == [("violin-lora", 4)]
    resumed = train(settings, tmp_path / "violin/data", lora, tmp_path, resume=True)
    assert (resumed.result.start_step, resumed.result.steps) == (4, 6)
    assert resumed.result.valid_loss == whole.result.valid_loss
    assert same_weights(whole.path / "adapter_model.safetensors", lora / "adapter_model.safetensors")
    assert (lora / "curves.png").is_file()


def fill_the_disk(monkeypatch) -> None:
    """Every model and checkpoint write of the trainers fails as a full disk does (wrapped by safetensors)."""
    import accelerate.checkpointing
    import peft.peft_model
    import transformers.modeling_utils

    for module, name in ((accelerate.checkpointing, "save"), (transformers.modeling_utils, "safe_save_file"),
                         (peft.peft_model, "safe_save_file")):
        monkeypatch.setattr(module, name, _disk_full)


def _disk_full(*args, **kwargs):
    from safetensors import SafetensorError

    raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No space left on device\" })")


@pytest.mark.parametrize("command", ["pretrain-bert", "finetune-mask"])
def test_a_full_disk_at_a_trainer_save_is_one_line_and_keeps_the_old_artifact(command, tokens_dir, tmp_path, monkeypatch):
    bert = tmp_path / "bert"
    pretrain(tokens_dir, bert, PretrainSettings(**TINY, max_steps=2))
    if command == "pretrain-bert":
        args, target = ["pretrain-bert", "--tokens", str(tokens_dir), "--out", str(bert), *TINY_ARGS, "--max-steps", "2"], bert
    else:
        target = tmp_path / "style"
        args = ["finetune-mask", "--task", "style", "--tokens", str(tokens_dir), "--model", str(bert), "--out", str(target),
                "--max-len", "64", "--batch-size", "4", "--epochs", "1", "--device", "cpu"]
        assert runner.invoke(app, args).exit_code == 0
    before = artifacts.require(target, artifacts.read_manifest(target).kind).fingerprint
    fill_the_disk(monkeypatch)
    result = runner.invoke(app, [*args, "--overwrite"])
    # (finetune-mask first warns that the 2-step encoder learned nothing: a line of its own, before the work; without a
    # terminal the progress is plain lines, "pretrain-bert: 1/2 (50%), ...")
    lines = [line for line in result.output.splitlines()
             if line.strip() and not line.startswith(("warning: ", "pretrain-bert: ", "finetune style: "))]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and "No space left on device; the disk is full; free some space" in lines[0]
    assert "Traceback" not in result.output and "SafetensorError" not in result.output
    assert artifacts.require(target, artifacts.read_manifest(target).kind).fingerprint == before


def test_a_full_disk_at_a_lora_save_is_one_line_and_keeps_the_old_adapter(tmp_path, monkeypatch):
    from musictl.violin.model import build_tiny_base
    from musictl.violin.train import train

    tiny = build_tiny_base(tmp_path / "tiny")
    make_data(tmp_path)
    lora = tmp_path / "violin/lora"
    train(lora_settings(tiny, max_steps=2, device="cpu"), tmp_path / "violin/data", lora, tmp_path)
    before = artifacts.require(lora, "violin-lora").fingerprint
    fill_the_disk(monkeypatch)
    result = runner.invoke(app, ["lora-violin", "train", "--base", str(tiny), "--rank", "2", "--batch-size", "2", "--max-steps", "2",
                                 "--eval-every", "2", "--device", "cpu", "-w", str(tmp_path), "--overwrite"])
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith(("warning", "note"))]
    assert result.exit_code == 1 and lines[-1].startswith("error: ") and "the disk is full" in lines[-1], result.output
    assert "Traceback" not in result.output
    assert artifacts.require(lora, "violin-lora").fingerprint == before


TOKENIZE_ON_A_FULL_DISK = """
import errno, sys
import musictl.midi.pipeline as pipeline
original = pipeline.write_index
def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "tokens.npy")
pipeline.write_index = full
from musictl.cli import main
sys.argv = ["musictl", *sys.argv[1:]]
main()
"""


def test_a_full_disk_under_tokenize_with_two_workers_is_one_line(style_corpus, tmp_path):
    out = tmp_path / "tokens"
    assert runner.invoke(app, ["tokenize", str(style_corpus), "-o", str(out)]).exit_code == 0
    before = artifacts.require(out, "tokens").fingerprint
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.run([sys.executable, "-c", TOKENIZE_ON_A_FULL_DISK, "tokenize", str(style_corpus), "-o", str(out),
                              "--workers", "2", "--overwrite"], capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in process.stderr.splitlines() if line.strip()]
    assert process.returncode == 1, process.stderr
    assert lines[-1].startswith("error: ") and "the disk is full" in lines[-1], process.stderr
    assert not any(line.startswith(("error", "Error", "  File", "KeyboardInterrupt", "Process")) for line in lines[:-1]), process.stderr
    assert "Traceback" not in process.stderr + process.stdout
    assert artifacts.require(out, "tokens").fingerprint == before


def test_report_to_tensorboard_writes_the_rows_of_metrics_jsonl(tokens_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "bert"
    result = runner.invoke(app, ["pretrain-bert", "--tokens", str(tokens_dir), "--out", str(out), *TINY_ARGS, "--max-steps", "4",
                                 "--eval-every", "2", "--report-to", "tensorboard"])
    assert result.exit_code == 0, result.output
    events = sorted((out / "logs").rglob("events.out.tfevents.*"))
    assert len({e.parent for e in events}) == 1, events  # one run per artifact: no extra run holding only the settings
    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    assert "_hparams_/experiment" in accumulator.Tags()["tensors"] + list(accumulator.summary_metadata)  # in that run
    rows = artifacts.read_jsonl(out / "metrics.jsonl")
    for name, pick in (("loss", lambda r: r.get("loss")), ("valid/accuracy", lambda r: r.get("valid", {}).get("accuracy")),
                       ("valid/fields/pitch/unigram", lambda r: r.get("valid", {}).get("fields", {}).get("pitch", {}).get("unigram"))):
        expected = [(r["step"], pick(r)) for r in rows if pick(r) is not None]
        logged = [(e.step, e.value) for e in accumulator.Scalars(name)]
        assert [s for s, _ in logged] == [s for s, _ in expected]
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)
    artifacts.require(out, "bert")  # the event files are part of the fingerprinted artifact


def test_report_to_a_tracker_that_is_not_installed_is_refused_before_work(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("no wandb")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(Exception, match="--report-to wandb: the wandb package is not installed"):
        training.trackers_of("wandb")


def test_disk_errors_turn_wrapped_enospc_back_into_oserror():
    with pytest.raises(OSError) as caught, artifacts.disk_errors(Path("x")):
        _disk_full()
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == "x"
    with pytest.raises(ValueError), artifacts.disk_errors():
        raise ValueError("something else")


def test_a_checkpoint_from_before_the_trainer_state_still_resumes_where_it_stood(tmp_path):
    old = {"step": 40, "windows_seen": 320, "best": {"accuracy": 0.5, "step": 40}, "last_eval": {"accuracy": 0.5, "loss": 1.0},
           "tokens": {"path": "../tokens", "kind": "tokens", "fingerprint": "abc"}}
    (tmp_path / artifacts.STATE_FILE).write_text(__import__("json").dumps(old))
    state = training.TrainerState.read(tmp_path)
    assert (state.step, state.position, state.inputs["tokens"]["fingerprint"]) == (40, 320, "abc")
