"""Shared fixtures: real MIDI made by the suite, a small tokens artifact, ../shared datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.midi_factory import write_style_corpus

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def pytest_configure(config):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests use one thread: fast on 2 cores and deterministic."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    yield


@pytest.fixture
def shared_datasets() -> Path:
    """``../shared/datasets``, or skip when it is absent (a user's fresh machine)."""
    if not SHARED.is_dir():
        pytest.skip("../shared/datasets is not present")
    return SHARED


@pytest.fixture(scope="session")
def style_corpus(tmp_path_factory) -> Path:
    """Three synthetic styles x 8 pieces of real MIDI (waltz 3/4, march 4/4, blues 6/8)."""
    return write_style_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def tokens_dir(style_corpus, tmp_path_factory) -> Path:
    """A tokens artifact of :func:`style_corpus` (split 0.5/0.25/0.25, seed 0). Read-only."""
    from musictl.midi.corpus import assign_splits, find_midi_files
    from musictl.midi.pipeline import tokenize_corpus
    from musictl.midi.vocab import TokenizerConfig

    out = tmp_path_factory.mktemp("work") / "tokens"
    files = find_midi_files([style_corpus])
    tokenize_corpus(files, assign_splits(files, (0.5, 0.25, 0.25), 0), out, TokenizerConfig(), workers=1)
    return out


@pytest.fixture
def invoke():
    """``musictl ARGS`` through Typer's runner; ``result.text`` is its output on one line (rich wraps at any width)."""
    from typer.testing import CliRunner

    from musictl.cli import app

    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, [str(a) for a in args])
        result.text = " ".join(result.output.split())
        return result

    return run


@pytest.fixture()
def violin_cli():
    """``musictl lora-violin ARGS`` through Typer's runner: ``violin_cli("prepare", ...)``."""
    import typer
    from typer.testing import CliRunner

    from musictl.cli import COMMANDS, register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """test root"""

    register(app, [(name, function) for name, function in COMMANDS if name.startswith("lora-violin ")])
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["lora-violin", *map(str, args)])
