"""Pieces from generate-rwr sound like their style to a listener: on each bundled style, and on a style built
only from a user's folder, their silence share and median duration-to-next-onset ratio are within 0.1 of the
style's test pieces (the graph, the link predictor and the tables come from the training pieces only)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from musictl.cli import app

runner = CliRunner()
TINY_BERT = ["--hidden-size", "32", "--layers", "1", "--heads", "2", "--field-embed-dim", "8", "--max-len", "64",
             "--max-steps", "3", "--eval-every", "3", "--device", "cpu"]
TINY_GCN = ["--epochs", "20", "--hidden", "16", "--out-dim", "8", "--no-baselines", "--device", "cpu"]
BUNDLED = ["bach-chorales", "fiddle-tunes", "german-folk", "palestrina"]
TOLERANCE = 0.1


def _ok(ws, *args):
    result = runner.invoke(app, [*args, "--workdir", str(ws)])
    assert result.exit_code == 0, result.output
    return result


def _workspace(ws, inputs: list[str], styles: list[str]):
    """tokenize INPUTS (none: the bundled corpus) -> tiny pretrain-bert -> embed -> adjacency and train-gcn per style."""
    _ok(ws, "tokenize", *inputs)
    _ok(ws, "pretrain-bert", *TINY_BERT)
    _ok(ws, "embed")
    for style in styles:
        _ok(ws, "adjacency", "--style", style)
        _ok(ws, "train-gcn", "--style", style, *TINY_GCN)
    return ws


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    return _workspace(tmp_path_factory.mktemp("legato") / "ws", [], BUNDLED)


@pytest.fixture(scope="module")
def users_folder(style_corpus, tmp_path_factory):
    return _workspace(tmp_path_factory.mktemp("legato-user") / "ws", [str(style_corpus)], ["waltz"])


def _report(ws, style: str) -> dict:
    report = json.loads(_ok(ws, "generate-rwr", "--style", style, "-n", "16", "--evaluate", "8").stdout)
    assert report["reference"]["split"] == "test"  # the validation pieces chose the walk's mix
    return report["listening"]


def _close(listening: dict) -> None:
    generated, held_out = listening["generated"], listening["held_out"]
    assert abs(generated["silence_share"] - held_out["silence_share"]) <= TOLERANCE, listening
    assert abs(generated["duration_ratio"] - held_out["duration_ratio"]) <= TOLERANCE, listening


@pytest.mark.parametrize("style", BUNDLED)
def test_generated_pieces_are_as_legato_as_the_bundled_style(bundled, style):
    _close(_report(bundled, style))


def test_generated_pieces_are_as_legato_as_a_users_style(users_folder):
    _close(_report(users_folder, "waltz"))
