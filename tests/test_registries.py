"""A fine-tuning task and a pre-training objective are each ONE registry entry (docs/architecture.md, "A
fine-tuning task", "A pre-training objective"): a toy of each, registered here and nowhere else, is a choice of
the command line, passes the settings' validation, trains, and (the task) shows in ``musictl status``.

The CLI reads the registries when ``musictl.cli.register`` adds a command, so each test registers the commands
it runs into a fresh ``typer.Typer()`` after patching the registry (``musictl.cli.app`` keeps the choices it
was built with).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from musictl import constants as C
from musictl.bert import objectives, tasks
from musictl.bert.objective import MlmObjective
from musictl.bert.settings import FinetuneSettings, PretrainSettings
from musictl.errors import UsageError
from musictl.midi.tokens import TokenCorpus

runner = CliRunner()
TINY_FINETUNE = ["--device", "cpu", "--max-len", "64", "--batch-size", "4", "--epochs", "1", "--patience", "1"]
TINY_PRETRAIN = ["--hidden-size", "32", "--layers", "1", "--heads", "2", "--field-embed-dim", "8", "--max-len", "64",
                 "--batch-size", "4", "--eval-every", "2", "--max-steps", "2", "--device", "cpu"]

REGISTER = tasks.Task("register", "low or high notes (the pitch field hidden)", per_note=True, classes=("low", "high"),
                      label=lambda piece, tokens, config, spec: (tokens[:, C.PITCH].astype(np.int64) - C.N_SPECIAL >= 60)
                      .astype(np.int64), hides=C.PITCH)


class ToyObjective(MlmObjective):
    """mlm under another name, counting its steps: an objective only this test registers."""

    name = "toy-mlm"
    steps = 0

    def step(self, *args, **kwargs):
        type(self).steps += 1
        return super().step(*args, **kwargs)


TOY_OBJECTIVE = objectives.ObjectiveEntry("toy-mlm", "random masking, registered by a test", f"{__name__}:ToyObjective")


def fresh_cli(*names: str) -> typer.Typer:
    """A ``musictl`` with the commands ``names``, registered now (with the registries as they are now)."""
    from musictl.cli import COMMANDS, register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test root"""

    register(app, [(name, function) for name, function in COMMANDS if name in names])
    return app


def help_of(app: typer.Typer, command: str, option: str) -> str:
    """The help text of ``--option`` of ``command``."""
    return next(p.help for p in typer.main.get_command(app).commands[command].params if p.name == option)


def choices_of(app: typer.Typer, command: str, option: str) -> str:
    """What the command line says the choices of ``--option`` are (given a value that is none of them)."""
    result = runner.invoke(app, [command, f"--{option}", "none-of-them"])
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split())


def run(app: typer.Typer, *args) -> object:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def register_task(monkeypatch):
    monkeypatch.setitem(tasks.TASKS, REGISTER.name, REGISTER)


@pytest.fixture
def toy_objective(monkeypatch):
    monkeypatch.setitem(objectives.OBJECTIVES, TOY_OBJECTIVE.name, TOY_OBJECTIVE)
    ToyObjective.steps = 0


def test_the_registries_import_nothing_heavy():
    """``musictl --help`` reads them: neither numpy nor torch may load with them."""
    code = ("import sys, musictl.bert.tasks, musictl.bert.objectives, musictl.bert.settings; "
            "print(sorted(m for m in ('numpy', 'torch', 'symusic') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_every_objective_entry_names_its_class():
    for entry in objectives.OBJECTIVES.values():
        assert entry.load().name == entry.name


def test_an_unregistered_task_or_objective_is_refused_with_the_registered_ones():
    with pytest.raises(UsageError, match=r"--task 'register': choose one of melody, velocity \(per note\)"):
        FinetuneSettings(task="register")
    with pytest.raises(UsageError, match="--objective 'toy-mlm': choose one of adversarial, hard-mining, mlm"):
        PretrainSettings(objective="toy-mlm")
    with pytest.raises(UsageError, match="--task label needs --labels FILE"):  # an entry's needs
        FinetuneSettings(task="label")
    choices = choices_of(fresh_cli("finetune-mask"), "finetune-mask", "task")
    assert "'label'" in choices and "'register'" not in choices


def test_a_task_is_one_entry(register_task, tokens_dir, tmp_path, monkeypatch):
    """The entry alone: --task's choices and help, the settings, the hidden field, a fine-tuning run, status."""
    from musictl import workspace
    from musictl.bert.finetune import _batch

    app = fresh_cli("finetune-mask", "status")
    assert "'register'" in choices_of(app, "finetune-mask", "task")
    assert REGISTER.describe() in help_of(app, "finetune-mask", "task")
    assert FinetuneSettings(task="register").task == "register"

    window = TokenCorpus.open(tokens_dir).piece_tokens(0)[:16]
    inputs, attention, _ = _batch([window], [REGISTER.label(None, window, None, None)], [0], True, "register", None, 0.0, "cpu")
    assert (inputs[..., C.PITCH][attention.bool()] == C.MASK_ID).all()  # its label's field never shows

    work = tmp_path / "ws"
    run(app, "finetune-mask", "--task", "register", "--tokens", tokens_dir, "--from-scratch", "--workdir", work, *TINY_FINETUNE)
    metrics = json.loads((work / "finetune" / "register" / "metrics.json").read_text())
    assert metrics["task"] == "register" and metrics["classes"] == ["low", "high"]

    status = json.loads(run(app, "status", "--json", "--workdir", work).stdout)
    listed = [a for a in status["artifacts"] if a["kind"] == "finetune"]
    assert [a["name"] for a in listed] == ["register"] and listed[0]["state"] == "fresh"
    assert listed[0]["verdict"].startswith(REGISTER.describe() + ": test accuracy") and not listed[0]["warning"]

    monkeypatch.delitem(tasks.TASKS, "register")  # a model whose task this version no longer registers
    again = next(a for a in workspace.scan(work).artifacts if a.kind == "finetune")
    assert "does not register" in again.warning


def test_an_objective_is_one_entry(toy_objective, tokens_dir, tmp_path):
    """The entry alone: --objective's choices and help, the settings, make_objective, a 2-step pre-training."""
    app = fresh_cli("pretrain-bert")
    assert "'toy-mlm'" in choices_of(app, "pretrain-bert", "objective")
    assert "toy-mlm: random masking, registered by a test" in help_of(app, "pretrain-bert", "objective")
    assert PretrainSettings(objective="toy-mlm").objective == "toy-mlm"

    torch.set_num_threads(1)
    out = tmp_path / "bert"
    run(app, "pretrain-bert", "--objective", "toy-mlm", "--tokens", tokens_dir, "-o", out, *TINY_PRETRAIN)
    assert ToyObjective.steps >= 2
    assert json.loads((out / "manifest.json").read_text())["parameters"]["objective"] == "toy-mlm"
