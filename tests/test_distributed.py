"""Training on several processes (accelerate + gloo on the CPU) is the same training as on one.

The launch line is the one docs/distributed.md gives for CPU processes. ``accelerate launch --cpu``
starts a single process whatever ``--num_processes`` says (accelerate 1.15 starts several CPU
processes only through torchrun, i.e. ``--multi_gpu``, or mpirun), so the CPU line is
``accelerate launch --multi_gpu --num_processes 2 -m musictl ... --device cpu``.

One process with ``--grad-accum 2`` and two processes with ``--grad-accum 1`` take optimizer steps
over the same 4 windows (global batch = per-device batch x processes x accumulation), micro-batch by
micro-batch, with the same masks: their weights must agree.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from musictl import artifacts, training
from musictl.bert.model import load_encoder
from musictl.bert.pretrain import PretrainSettings, pretrain
from musictl.errors import UsageError
from musictl.settings import RunSettings
from tests.processes import environment, launch_line

TINY = ["--hidden-size", "32", "--layers", "1", "--heads", "2", "--field-embed-dim", "8", "--max-len", "64", "--dropout", "0"]


def launch(args: list[str], processes: int = 2, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([*launch_line(processes), *args], capture_output=True, text=True, env=environment(), timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def assert_same_weights(a: Path, b: Path, atol: float = 1e-5) -> None:
    left, right = weights(a), weights(b)
    assert left.keys() == right.keys()
    worst = max(float((left[k] - right[k]).abs().max()) for k in left)
    assert worst <= atol, f"weights differ by up to {worst}"


def one_process_settings(**overrides) -> PretrainSettings:
    base = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, field_embed_dim=8, max_len=64, dropout=0.0,
                batch_size=2, grad_accum=2, eval_every=2, seed=3, objective="mlm", device="cpu")
    return PretrainSettings(**{**base, **overrides})


def test_ranks_see_disjoint_windows_whose_union_is_the_epoch():
    from accelerate.data_loader import BatchSamplerShard

    n, batch = 24, 3
    stream = training.StreamDataset(list(range(n)), seed=5)
    steps = n // (batch * 2)  # one epoch of 2 processes x batch 3
    ranks = [[stream.index_at(p) for micro in BatchSamplerShard(training.StreamBatches(batch, 0, steps * 2), 2, r)
              for p in micro] for r in range(2)]
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == list(range(n))
    one = [stream.index_at(p) for micro in training.StreamBatches(batch, 0, steps * 2) for p in micro]
    assert one == list(training.epoch_permutation(n, 5, 0))  # the 1-process epoch, in its order
    # step k of the 2-process run is micro-batches 2k (rank 0) and 2k+1 (rank 1) of the 1-process stream
    assert ranks[0][:batch] == one[:batch] and ranks[1][:batch] == one[batch : 2 * batch]


def test_global_batch_size_sets_the_accumulation():
    assert training.plan_batches(2, 2, global_batch_size=8).grad_accum == 2
    assert training.plan_batches(4, 1, grad_accum=3).global_batch == 12
    with pytest.raises(UsageError, match="not a multiple"):
        training.plan_batches(3, 2, global_batch_size=8)


def test_a_cpu_launch_that_would_train_alone_is_refused(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")  # what accelerate launch --cpu --num_processes 2 sets ...
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)  # ... for the one process it starts
    with pytest.raises(UsageError, match="--multi_gpu --num_processes N"):
        training.Run(RunSettings(device="cpu"))


@pytest.mark.slow
def test_pretrain_on_two_processes_equals_one_and_writes_once(tokens_dir, tmp_path):
    two = tmp_path / "two"
    launch(["pretrain-bert", "--tokens", str(tokens_dir), "--out", str(two), *TINY, "--batch-size", "2", "--max-steps", "4",
            "--eval-every", "2", "--objective", "mlm", "--seed", "3", "--device", "cpu"])
    one = tmp_path / "one"
    pretrain(tokens_dir, one, one_process_settings(max_steps=4))
    assert_same_weights(one, two)
    rows = artifacts.read_jsonl(two / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # each step once: only the main process writes
    assert artifacts.require(two, "bert").kind == "bert"  # manifest complete, files match it
    metrics = json.loads((two / "metrics.json").read_text())
    assert (metrics["processes"], metrics["per_device_batch_size"], metrics["grad_accum"], metrics["global_batch_size"]) == (2, 2, 1, 4)
    assert metrics["final_valid"] == json.loads((one / "metrics.json").read_text())["final_valid"]  # gathered validation
    assert load_encoder(two).config.num_hidden_layers == 1
    assert not list(tmp_path.glob(".two*"))  # no staging, lock or temporary left beside it


@pytest.mark.slow
def test_finetune_on_two_processes_equals_one(tokens_dir, tmp_path):
    from typer.testing import CliRunner

    from musictl.cli import app

    args = ["finetune-mask", "--task", "style", "--tokens", str(tokens_dir), "--from-scratch", "--epochs", "2", "--patience", "2",
            "--max-len", "64", "--batch-size", "2", "--lr", "1e-3", "--dropout", "0", "--device", "cpu"]
    launch([*args, "--out", str(tmp_path / "two")])
    result = CliRunner().invoke(app, [*args, "--grad-accum", "2", "--out", str(tmp_path / "one")])
    assert result.exit_code == 0, result.output
    assert_same_weights(tmp_path / "one", tmp_path / "two")
    two, one = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("two", "one"))
    assert two["processes"] == 2 and two["global_batch_size"] == one["global_batch_size"] == 4
    assert two["history"] == one["history"] and two["test"]["accuracy"] == one["test"]["accuracy"]
    artifacts.require(tmp_path / "two", "finetune", "two")


@pytest.mark.slow
def test_a_two_process_checkpoint_resumes_on_one_process(tokens_dir, tmp_path):
    out = tmp_path / "bert"
    staging = tmp_path / ".bert.staging"
    steps = 40
    job = subprocess.Popen([*launch_line(2), "pretrain-bert", "--tokens", str(tokens_dir), "--out", str(out), *TINY,
                            "--batch-size", "2", "--max-steps", str(steps), "--eval-every", "2", "--objective", "mlm",
                            "--seed", "3", "--device", "cpu"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())
    state = staging / "checkpoints" / "last" / training.STATE_FILE
    deadline = time.monotonic() + 200
    while not state.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=120)
    if job.returncode == 0:
        pytest.skip("the run finished before it could be interrupted")
    kept = json.loads(state.read_text())["step"]
    assert f"checkpoint at step {kept} kept" in " ".join(stderr.split()), stderr[-3000:]
    assert not out.exists()  # nothing half-written where the artifact goes
    two_rows = {r["step"]: r["loss"] for r in artifacts.read_jsonl(staging / "metrics.jsonl") if r["step"] <= kept}

    pretrain(tokens_dir, out, one_process_settings(max_steps=steps), resume=True)  # 1 process, same global batch
    rows = artifacts.read_jsonl(out / "metrics.jsonl")
    logged = [r["step"] for r in rows]
    assert logged == sorted(set(logged)) and logged[-1] == steps
    assert {r["step"]: r["loss"] for r in rows if r["step"] <= kept} == two_rows  # the 2-process history, kept as it was
    reference = tmp_path / "reference"
    pretrain(tokens_dir, reference, one_process_settings(max_steps=steps))
    assert_same_weights(reference, out, atol=1e-4)
    assert np.isclose(json.loads((out / "metrics.json").read_text())["final_valid"]["accuracy"],
                      json.loads((reference / "metrics.json").read_text())["final_valid"]["accuracy"], atol=1e-3)
