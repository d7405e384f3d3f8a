"""Resume that trusts what it reads: settings that shape a checkpoint must match it, a damaged checkpoint is
one line with the two ways on, and ``musictl status`` shows it as damaged."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from musictl import artifacts, workspace
from musictl.bert.pretrain import PretrainSettings, pretrain
from musictl.bert.settings import FinetuneSettings
from musictl.cli import app
from musictl.errors import UsageError
from musictl.training import TrainerState
from musictl.transfer.settings import GcnSettings
from musictl.violin.settings import LoraTrainSettings

runner = CliRunner()
TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, field_embed_dim=8, max_len=64, batch_size=4,
            eval_every=2, seed=3, objective="mlm", device="cpu")
TINY_ARGS = ["--hidden-size", "32", "--layers", "1", "--heads", "2", "--field-embed-dim", "8", "--max-len", "64",
             "--batch-size", "4", "--objective", "mlm", "--device", "cpu", "--seed", "3"]

# Another valid value for every setting a trainer declares ``fixed``: a new fixed setting must be added here.
CHANGED = {
    PretrainSettings: {"seed": 4, "size": "small", "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "field_embed_dim": 16, "dropout": 0.0, "objective": "adversarial", "mask_ratio": 0.3,
                       "random_share": 0.5, "freeze_every": 2, "weight_source": "valid", "max_len": 128, "monitor": "loss"},
    FinetuneSettings: {"seed": 4, "task": "composer", "label_pattern": "^(x)", "labels_file": "labels.csv", "mask_ratio": 0.0,
                       "from_scratch": True, "pitch_shift": 2, "max_len": 128, "dropout": 0.0, "monitor": "both"},
    LoraTrainSettings: {"seed": 4, "base": "elsewhere", "lora_targets": "attention-mlp", "targets": "q_proj", "rank": 4,
                        "alpha": 8.0, "dropout": 0.1, "drop_text": 0.0},
    GcnSettings: {"seed": 4, "model": 1, "features": "token-pos", "graph": "similarity", "conv": "sage", "decoder": "dot",
                  "edge_weight": "linear", "degree_features": False, "layers": 3, "hidden": 64, "out_dim": 32, "dropout": 0.0,
                  "similarity_k": 5, "negatives": "uniform", "predict": "own"},
}
BASE = {PretrainSettings: dict(TINY), FinetuneSettings: {"task": "style", "seed": 3}, LoraTrainSettings: {"seed": 3},
        GcnSettings: {"seed": 3}}


def test_the_table_above_covers_every_fixed_setting():
    for cls, changes in CHANGED.items():
        assert set(changes) == set(cls.fixed_on_resume()), cls.__name__
    assert {"size", "objective", "max_len", "seed"} <= set(PretrainSettings.fixed_on_resume())
    assert "lr" not in PretrainSettings.fixed_on_resume()  # the optimisation may change on resume


@pytest.mark.parametrize("cls,field", [(cls, f) for cls, changes in CHANGED.items() for f in changes],
                         ids=lambda v: getattr(v, "__name__", v))
def test_resume_with_a_changed_shaping_setting_is_refused(cls, field, tmp_path):
    made = cls(**BASE[cls])
    state = TrainerState(settings=made.to_dict())
    state.check_resume(cls(**BASE[cls]), tmp_path)  # the same settings continue
    changed = cls(**{**BASE[cls], field: CHANGED[cls][field]})
    with pytest.raises(UsageError) as caught:
        state.check_resume(changed, tmp_path)
    message = str(caught.value)
    assert f"--{field.replace('_', '-')} {made.to_dict()[field]}" in message and "\n" not in message
    assert "--overwrite" in message


@pytest.fixture
def bert(tokens_dir, tmp_path):
    out = tmp_path / "bert"
    pretrain(tokens_dir, out, PretrainSettings(**TINY, max_steps=2))
    return out


def test_resume_with_another_size_is_one_line_and_leaves_the_artifact_as_it_was(bert, tokens_dir):
    before = artifacts.require(bert, artifacts.BERT).fingerprint
    result = runner.invoke(app, ["pretrain-bert", "--tokens", str(tokens_dir), "--out", str(bert), *TINY_ARGS,
                                 "--max-steps", "4", "--resume", "--size", "small"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "--size tiny, not --size small" in lines[0]
    assert artifacts.require(bert, artifacts.BERT).fingerprint == before
    assert json.loads((bert / "config.json").read_text())["hidden_size"] == 32


def interrupted(bert):
    """The finished run's checkpoint laid out as an interrupted first run's (``.bert.staging/checkpoints/last``, no
    ``bert/`` yet)."""
    run = artifacts.resumable(bert, artifacts.BERT)
    shutil.copytree(bert / "checkpoints" / "last", run.checkpoint)
    shutil.rmtree(bert)
    return run


@pytest.mark.parametrize("damage,said", [
    (lambda c: (c / "model.safetensors").write_bytes((c / "model.safetensors").read_bytes()[:200]), "model.safetensors is truncated"),
    (lambda c: (c / "trainer_state.json").write_text(""), "trainer_state.json is empty"),
    (lambda c: (c / "model.safetensors").unlink(), "model.safetensors (the weights) is missing"),
    (lambda c: (c / "optimizer.bin").write_bytes((c / "optimizer.bin").read_bytes()[:100]), "optimizer.bin is truncated"),
], ids=["truncated-weights", "empty-state", "missing-weights", "truncated-optimizer"])
def test_a_damaged_checkpoint_is_one_line_with_the_two_ways_on(bert, tokens_dir, damage, said):
    run = interrupted(bert)
    damage(run.checkpoint)
    args = ["pretrain-bert", "--tokens", str(tokens_dir), "--out", str(bert), *TINY_ARGS, "--max-steps", "4"]
    for extra in (["--resume"], []):  # resuming it, or starting over it without --overwrite
        result = runner.invoke(app, [*args, *extra])
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert lines[0].startswith("error: damaged checkpoint in ") and said in lines[0]
        assert "--overwrite" in lines[0] and "restore its files" in lines[0] and "Traceback" not in result.output
        assert run.checkpoint.is_dir()  # left for the user to restore
    report = workspace.scan(bert.parent)
    assert [(r.kind, r.command) for r in report.resumable] == [("bert", "musictl pretrain-bert --overwrite")]
    assert said in report.resumable[0].damaged
    status = runner.invoke(app, ["status", "-w", str(bert.parent)])
    assert "damaged" in status.output and said in " ".join(status.output.split())
    result = runner.invoke(app, [*args, "--overwrite"])  # the first way on: start afresh
    assert result.exit_code == 0, result.output
    assert not run.staging.exists() and workspace.scan(bert.parent).resumable == []


def test_a_damaged_checkpoint_of_a_finished_run_is_named_on_resume(bert, tokens_dir):
    (bert / "checkpoints" / "last" / "trainer_state.json").write_text("{")
    result = runner.invoke(app, ["pretrain-bert", "--tokens", str(tokens_dir), "--out", str(bert), *TINY_ARGS,
                                 "--max-steps", "4", "--resume"])
    assert result.exit_code == 1 and "damaged checkpoint in" in result.output and "trainer_state.json is unreadable" in result.output
