"""lora-violin under faults: interrupts, locks, leftovers, corrupt inputs, -o files, moved workspaces, ranges.

Every artifact here is made by the library on a tiny random base (seconds on a CPU); the tests that
start ``musictl`` processes (SIGTERM, ``accelerate launch``) carry the ``slow`` marker.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")

from musictl import artifacts  # noqa: E402
from musictl.errors import ArtifactError, Interrupted, UsageError  # noqa: E402
from tests.processes import launch_line  # noqa: E402
from tests.violin_factory import lora_settings, make_data  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from musictl.violin.model import build_tiny_base

    torch.set_num_threads(1)
    return build_tiny_base(tmp_path_factory.mktemp("base") / "tiny")


def train(root: Path, tiny: Path, overwrite: bool = False, resume: bool = False, on_progress=None, **changes):
    import musictl.violin.train

    return musictl.violin.train.train(lora_settings(tiny, device="cpu", **changes), root / "violin/data", root / "violin/lora",
                                      root, resume, overwrite, on_progress)


@pytest.fixture(scope="module")
def workspace(tiny, tmp_path_factory) -> Path:
    """Data and a trained adapter (read-only: tests that change it copy it first)."""
    root = tmp_path_factory.mktemp("ws")
    make_data(root)
    train(root, tiny)
    return root


def copy_workspace(workspace: Path, tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(workspace, root, symlinks=True)
    return root


def _stop_at(step: int):
    def on_progress(done, total, row=None):
        if done == step:
            raise KeyboardInterrupt

    return on_progress


# ----- training: interrupts, locks, leftovers, resume ---------------------------------------------
def test_interrupted_overwrite_keeps_the_old_adapter_and_says_which_checkpoint(workspace, tiny, tmp_path):
    root = copy_workspace(workspace, tmp_path)
    lora = root / "violin/lora"
    staging = artifacts.resumable(lora).staging
    before = artifacts.require(lora, "violin-lora").fingerprint
    with pytest.raises(Interrupted) as caught:
        train(root, tiny, overwrite=True, on_progress=_stop_at(3), max_steps=6)
    message = str(caught.value)
    assert f"checkpoint at step 2 kept in {staging}" in message
    assert "resume with musictl lora-violin train --resume" in message and f"{lora} is unchanged" in message
    assert artifacts.require(lora, "violin-lora").fingerprint == before  # whole and unchanged
    assert artifacts.leftovers(lora) == [] and artifacts.lock_owner(lora) is None

    run = train(root, tiny, overwrite=True, resume=True, max_steps=6)
    assert run.result.start_step == 2 and run.result.steps == 6
    rows = [json.loads(line) for line in (lora / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert artifacts.require(lora, "violin-lora").fingerprint != before
    assert not staging.exists() and (lora / "checkpoints/last/trainer_state.json").is_file()


def test_an_interrupt_before_the_first_checkpoint_says_nothing_was_kept(tiny, tmp_path):
    make_data(tmp_path)
    with pytest.raises(Interrupted, match=r"no checkpoint had been written yet, so nothing was kept"):
        train(tmp_path, tiny, on_progress=_stop_at(1), eval_every=3)
    assert not (tmp_path / "violin/lora").exists() and artifacts.leftovers(tmp_path / "violin/lora") == []


def test_resume_with_other_settings_is_refused(workspace, tiny, tmp_path):
    root = copy_workspace(workspace, tmp_path)
    with pytest.raises(Interrupted):
        train(root, tiny, overwrite=True, on_progress=_stop_at(3), max_steps=6)
    with pytest.raises(UsageError, match=r"was made with --rank 2, not --rank 4: these shape what it holds; resume with the values"):
        train(root, tiny, overwrite=True, resume=True, max_steps=6, rank=4)


def test_the_write_lock_is_held_for_the_whole_run(tiny, tmp_path):
    make_data(tmp_path)
    owners = []
    train(tmp_path, tiny, on_progress=lambda done, total, row=None: owners.append(artifacts.lock_owner(tmp_path / "violin/lora")))
    assert len(owners) == 4 and all(owner and owner.startswith(f"{os.getpid()} ") for owner in owners)
    assert artifacts.lock_owner(tmp_path / "violin/lora") is None


def test_the_next_run_removes_what_killed_runs_left(tiny, tmp_path):
    make_data(tmp_path)
    lora = tmp_path / "violin/lora"
    staging = lora.with_name(".lora.x1y2.tmp")
    half_checkpoint = artifacts.resumable(lora).checkpoint.with_name(".last.tmp")
    for folder in (staging, half_checkpoint):
        folder.mkdir(parents=True)
        (folder / "junk").write_bytes(b"x" * 100)
    train(tmp_path, tiny)
    assert not staging.exists() and not half_checkpoint.exists()
    artifacts.require(lora, "violin-lora")


def test_a_checkpoint_is_never_discarded_unasked(tiny, tmp_path, caplog):
    import logging

    make_data(tmp_path)
    with pytest.raises(Interrupted):
        train(tmp_path, tiny, on_progress=_stop_at(3))
    checkpoint = artifacts.resumable(tmp_path / "violin/lora").staging
    with pytest.raises(ArtifactError, match="interrupted LoRA training run at step 2; continue it with musictl lora-violin train "
                                            "--resume, or pass --overwrite"):
        train(tmp_path, tiny)
    assert (checkpoint / "checkpoints/last/trainer_state.json").is_file()
    logger = logging.getLogger("musictl")  # the CLI's log routing may have stopped it propagating to caplog
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="musictl"):
            run = train(tmp_path, tiny, overwrite=True)
    finally:
        logger.removeHandler(caplog.handler)
    assert run.result.start_step == 0 and not checkpoint.exists()
    assert any("removed the checkpoint of an interrupted run at step 2" in r.getMessage() for r in caplog.records)


def test_lora_targets_presets_are_recorded(workspace, tiny, tmp_path):
    root = copy_workspace(workspace, tmp_path)
    run = train(root, tiny, overwrite=True, lora_targets="attention-mlp", max_steps=1)
    manifest = artifacts.require(root / "violin/lora", "violin-lora")
    assert manifest.parameters["lora_targets"] == "attention-mlp" and manifest.metrics["lora_targets"] == "attention-mlp"
    assert manifest.parameters["targets"] == ["q_proj", "v_proj", "fc1", "fc2"]
    assert "preset `attention-mlp`" in (root / "violin/lora/README.md").read_text()
    from safetensors.torch import load_file

    names = load_file(str(root / "violin/lora/adapter_model.safetensors"))
    assert any(".fc1." in n for n in names) and any(".fc2." in n for n in names) and not any("k_proj" in n for n in names)
    assert run.result.trainable > artifacts.read_manifest(workspace / "violin/lora").metrics["trainable_parameters"]
    train(root, tiny, overwrite=True, targets="q_proj,k_proj", max_steps=1)
    manifest = artifacts.require(root / "violin/lora", "violin-lora")
    assert manifest.parameters["lora_targets"] == "custom" and manifest.parameters["targets"] == ["q_proj", "k_proj"]


# ----- consumers refuse inputs that do not match their manifest ---------------------------------------
def test_train_refuses_data_that_changed_or_lacks_its_manifest(tiny, tmp_path):
    data = make_data(tmp_path)
    sf.write(data / "clips/00000.wav", np.zeros(16_000), 32_000)  # edited after prepare
    with pytest.raises(ArtifactError, match="do not match its manifest"):
        train(tmp_path, tiny)
    (data / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match=r"no manifest\.json"):
        train(tmp_path, tiny)
    assert not (tmp_path / "violin/lora").exists()


@pytest.mark.parametrize("damage", ["truncate", "no-manifest"])
def test_generate_and_evaluate_refuse_a_damaged_adapter(workspace, tiny, tmp_path, damage):
    from musictl.violin import pipeline
    from musictl.violin.settings import EvaluateSettings, GenerateSettings

    root = copy_workspace(workspace, tmp_path)
    lora = root / "violin/lora"
    if damage == "truncate":
        weights = lora / "adapter_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        (lora / "manifest.json").unlink()
    expected = "do not match its manifest" if damage == "truncate" else r"no manifest\.json"
    with pytest.raises(ArtifactError, match=expected):
        pipeline.generate(GenerateSettings(seconds=0.5), "solo violin", tmp_path / "x.wav", workdir=root)
    with pytest.raises(ArtifactError, match=expected):
        pipeline.evaluate(EvaluateSettings(seconds=0.5, limit=1), workdir=root)
    assert not (tmp_path / "x.wav").exists() and not (root / "violin/eval").exists()


# ----- files named with -o ---------------------------------------------------------------------------
def test_generate_output_is_never_replaced_unasked(workspace, tmp_path):
    from musictl.violin import pipeline
    from musictl.violin.settings import GenerateSettings

    settings = GenerateSettings(seconds=0.5)
    out = tmp_path / "song.wav"
    out.write_bytes(b"precious")
    with pytest.raises(ArtifactError, match="already exists; pass --overwrite"):
        pipeline.generate(settings, "solo violin, reel in D major", out, workdir=workspace)
    assert out.read_bytes() == b"precious"
    with pytest.raises(UsageError, match="one of this command's inputs"):
        pipeline.generate(settings, "solo violin", workspace / "violin/lora/README.md", workdir=workspace, overwrite=True)
    result = pipeline.generate(settings, "solo violin, reel in D major", out, workdir=workspace, overwrite=True)
    assert result.adapter == workspace / "violin/lora"  # found in the workspace by default
    audio, rate = sf.read(out)
    assert rate == 32_000 and len(audio) == 16_000
    artifacts.require(workspace / "violin/lora", "violin-lora")  # the adapter is untouched


def test_generate_without_an_adapter_says_how_to_play_the_base_alone(tiny, tmp_path):
    from musictl.violin import pipeline
    from musictl.violin.settings import GenerateSettings

    with pytest.raises(ArtifactError, match="--no-adapter"):
        pipeline.generate(GenerateSettings(seconds=0.5), "solo violin", tmp_path / "a.wav", workdir=tmp_path)
    result = pipeline.generate(GenerateSettings(base=str(tiny), seconds=0.5), "solo violin", tmp_path / "a.wav",
                               use_adapter=False, workdir=tmp_path)
    assert result.adapter is None and result.random_base and (tmp_path / "a.wav").stat().st_size > 1000


def test_evaluate_writes_a_violin_eval_artifact_and_the_named_file(workspace, tmp_path):
    from musictl.violin import pipeline
    from musictl.violin.settings import EvaluateSettings

    root = copy_workspace(workspace, tmp_path)
    out = tmp_path / "scores.json"
    settings = EvaluateSettings(seconds=0.5, limit=1)
    result = pipeline.evaluate(settings, output=out, workdir=root)
    manifest = artifacts.require(root / "violin/eval", "violin-eval")
    assert result.path == root / "violin/eval" and manifest.metrics["base+adapter"]["clap"] is None
    assert set(manifest.inputs) == {"adapter", "data"}
    assert json.loads(out.read_text()) == json.loads((root / "violin/eval/eval_results.json").read_text()) == result.results
    with pytest.raises(ArtifactError, match="already exists; pass --overwrite"):
        pipeline.evaluate(settings, output=tmp_path / "new.json", workdir=root)  # the eval artifact exists
    with pytest.raises(ArtifactError, match="already exists; pass --overwrite"):
        pipeline.evaluate(settings, output=out, workdir=root)
    pipeline.evaluate(settings, output=out, workdir=root, overwrite=True)


# ----- a workspace is a place ---------------------------------------------------------------------------
def test_a_moved_workspace_finds_its_own_inputs(workspace, tmp_path, monkeypatch):
    from musictl.violin import pipeline
    from musictl.violin.settings import EvaluateSettings

    manifest = artifacts.read_manifest(workspace / "violin/lora")
    assert manifest.inputs["data"]["path"] == "../data"  # relative to the artifact, not to the cwd
    moved = tmp_path / "elsewhere" / "ws"
    shutil.copytree(workspace, moved)
    monkeypatch.chdir(tmp_path)
    result = pipeline.evaluate(EvaluateSettings(seconds=0.5, limit=1), workdir=Path("elsewhere/ws"))
    assert Path(result.results["data"]) == (moved / "violin/data").resolve()
    assert Path(result.results["adapter"]) == (moved / "violin/lora").resolve()


# ----- the command line --------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ("train", "--rank", 0), ("train", "--lr", 0), ("train", "--alpha", 0), ("train", "--drop-text", 1.5),
    ("train", "--batch-size", 0), ("train", "--eval-every", 0), ("train", "--lora-targets", "everything"),
    ("generate", "-p", "violin", "-o", "x.wav", "--seconds", 0), ("generate", "-p", "violin", "-o", "x.wav", "--guidance", 0.5),
    ("evaluate", "--limit", 0), ("evaluate", "--seconds", 31), ("prepare", "--valid", 0.9), ("prepare", "--limit", 0),
])
def test_out_of_range_numbers_are_usage_errors(violin_cli, tmp_path, args):
    result = violin_cli(*args, "-w", tmp_path)
    assert result.exit_code == 2, result.output


def _musictl(*args: str) -> list[str]:
    return [sys.executable, "-m", "musictl", *args]


def _env() -> dict:
    return os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_sigterm_during_training_keeps_the_checkpoint_and_says_so(tiny, tmp_path):
    make_data(tmp_path)
    lora = tmp_path / "violin/lora"
    args = _musictl("lora-violin", "train", "--base", str(tiny), "--rank", "2", "--batch-size", "2", "--max-steps", "100000",
                    "--eval-every", "2", "--device", "cpu", "-w", str(tmp_path))
    process = subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = artifacts.resumable(lora).checkpoint / "trainer_state.json"
    try:
        for _ in range(1200):  # poll for the first checkpoint (a bound, not a timing assertion)
            if state.is_file() or process.poll() is not None:
                break
            subprocess.run(["sleep", "0.1"])
        assert state.is_file(), process.communicate()[1] if process.poll() is not None else "no checkpoint"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    step = json.loads(state.read_text())["step"]
    assert process.returncode == 130
    assert f"checkpoint at step {step} kept in" in " ".join(stderr.split()) and "--resume" in stderr
    assert not lora.exists() and artifacts.leftovers(lora) == []


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path):
    """``accelerate launch`` with 2 CPU processes (gloo): batch 1 x 2 processes = one process with batch 2."""
    from musictl.violin.generate import load_for_generation
    from musictl.violin.model import build_tiny_base

    tiny = build_tiny_base(tmp_path / "tiny-no-dropout", dropout=0.0)  # the decoder's own dropout would differ per rank
    make_data(tmp_path)
    one = train(tmp_path, tiny, batch_size=2, max_steps=4, lr=1e-2)
    assert one.result.processes == 1
    launch = launch_line(2)
    two_dir = tmp_path / "violin/lora2"
    args = ["lora-violin", "train", "--base", str(tiny), "--rank", "2", "--alpha", "4", "--dropout", "0", "--lr", "1e-2",
            "--batch-size", "1", "--max-steps", "4", "--eval-every", "2", "--device", "cpu", "-w", str(tmp_path), "-o", str(two_dir)]
    done = subprocess.run([*launch, *args], env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines() == [str(two_dir)]  # reported once, by the main process
    manifest = artifacts.require(two_dir, "violin-lora")
    assert manifest.parameters["processes"] == 2 and manifest.parameters["global_batch_size"] == 2
    rows = [json.loads(line) for line in (two_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # each step once
    alone = [json.loads(line) for line in (tmp_path / "violin/lora/metrics.jsonl").read_text().splitlines()]
    # Adam turns float noise in near-zero gradients into +-lr steps, so weights are not compared element by
    # element; the losses are (they agreed to ~1e-6 here, while training on one rank's half of each batch
    # moved the validation loss by ~5e-5 relative).
    assert rows[0]["train_loss"] == pytest.approx(alone[0]["train_loss"], rel=1e-5)
    assert [r["step"] for r in rows if "valid_loss" in r] == [r["step"] for r in alone if "valid_loss" in r] == [2, 4]
    for ours, theirs in zip(alone, rows):
        assert theirs["train_loss"] == pytest.approx(ours["train_loss"], rel=1e-3)
        if "valid_loss" in ours:
            assert theirs["valid_loss"] == pytest.approx(ours["valid_loss"], rel=1e-5)
    load_for_generation(two_dir / "base", two_dir, "cpu")  # the adapter reloads


def test_a_hub_id_on_a_machine_without_network_fails_at_once_with_one_line(monkeypatch, tmp_path):
    import socket

    from musictl.violin.model import load_base, resolve_base

    def unreachable(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(ArtifactError, match="hub cannot be reached; download it where the hub is reachable and pass its directory"):
        load_base("musictl-test/no-such-musicgen")
    with pytest.raises(UsageError, match=r"no config\.json"):
        load_base(resolve_base("./no-such-dir/musicgen", tmp_path))  # a path, never looked up on the hub
