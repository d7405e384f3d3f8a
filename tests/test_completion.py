"""Shell completion of --style (the workspace's styles) and --task (every task, the fine-tuned ones marked)."""

from __future__ import annotations

import shutil
import typing
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from musictl import artifacts
from musictl.bert.settings import TaskName
from musictl.cli import app
from musictl.commands._common import complete_style, complete_task

runner = CliRunner()


@pytest.fixture
def ws(tokens_dir, tmp_path):
    """Tokens of blues, march and waltz, a graph of 'folk' and a GCN of 'jazz' (made elsewhere), a melody model."""
    ws = tmp_path / "ws"
    shutil.copytree(tokens_dir, ws / "tokens")
    for kind, name in ((artifacts.GRAPH, "folk"), (artifacts.GCN, "jazz"), (artifacts.FINETUNE, "melody")):
        path = artifacts.artifact_dir(ws, kind, name)
        path.mkdir(parents=True)
        artifacts.write_manifest(path, artifacts.Manifest(kind=kind))
    (ws / "graph" / ".folk.abc.tmp").mkdir()  # a leftover is no style
    return ws


def complete(*words: str) -> list[str]:
    """What bash completion offers after ``musictl WORDS`` (the last word is the one being completed)."""
    env = {"_MUSICTL_COMPLETE": "complete_bash", "COMP_WORDS": " ".join(["musictl", *words]),
           "COMP_CWORD": str(len(words))}
    result = runner.invoke(app, [], prog_name="musictl", env=env)
    assert result.exit_code == 0, result.output
    return result.output.split()


def test_style_completion_lists_the_workspace_styles(ws):
    ctx = SimpleNamespace(params={"workdir": ws, "tokens": None})
    assert complete_style(ctx, "") == ["blues", "folk", "jazz", "march", "waltz"]
    assert complete_style(ctx, "W") == ["waltz"]  # case aside
    assert complete_style(SimpleNamespace(params={"workdir": ws / "none"}), "") == []


@pytest.mark.parametrize("command", ["train-gcn", "adjacency", "generate-rwr", "embed"])
def test_the_shell_completes_style_from_the_workspace(command, ws):
    assert complete(command, "--workdir", str(ws), "--style", "") == ["blues", "folk", "jazz", "march", "waltz"]
    assert complete(command, "--workdir", str(ws), "--style", "ma") == ["march"]


def test_the_shell_completes_task_names(ws):
    ctx = SimpleNamespace(params={"workdir": ws})
    offered = complete_task(ctx, "")
    assert [task for task, _ in offered] == list(typing.get_args(TaskName))
    assert dict(offered)["melody"] == "fine-tuned in the workspace" and dict(offered)["composer"] == "task"
    assert complete("finetune-mask", "--workdir", str(ws), "--task", "m") == ["melody"]
    assert complete("finetune-mask", "--task", "") == list(typing.get_args(TaskName))
