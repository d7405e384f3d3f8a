"""Flags are flags: --help shows no ``<bool>`` type for them, and a value given to one (``--overwrite true``) is a
one-line usage error that says flags take no value."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from musictl.cli import app
from tests.midi_factory import style_piece

runner = CliRunner()
CLICK = typer.main.get_command(app)


def _paths(command, prefix=()):
    if hasattr(command, "commands"):
        yield prefix
        for name, sub in command.commands.items():
            yield from _paths(sub, (*prefix, name))
    else:
        yield prefix


def _flags(command) -> list[str]:
    return [p.opts[0] for p in command.params if getattr(p, "is_flag", False)]


COMMANDS = list(_paths(CLICK))


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "musictl")
def test_help_shows_flags_without_a_bool_type(path):
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.lstrip("│ ").startswith("--")]
    assert any(line.lstrip("│ ").startswith("--help ") for line in lines)
    typer_own = ("--install-completion", "--show-completion")  # Typer adds these to the root, out of reach
    offending = [line.strip() for line in lines if "<bool>" in line and not line.lstrip("│ ").startswith(typer_own)]
    assert offending == []


def test_flags_still_work_as_flags(tmp_path):
    command = CLICK.commands["tokenize"]
    assert {"--overwrite", "--help"} <= set(_flags(command))
    result = runner.invoke(app, ["status", "--json", "--workdir", str(tmp_path / "none")])
    assert result.exit_code == 0 and result.stdout.lstrip().startswith("{")
    assert runner.invoke(app, ["status", "--no-such-flag"]).exit_code == 2


@pytest.mark.parametrize("value", ["true", "false", "True", "yes"])
def test_a_value_after_a_flag_is_a_usage_error_that_says_flags_take_none(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MUSICTL_WORKDIR", raising=False)
    folder = tmp_path / "midi"
    folder.mkdir()
    (folder / "a.mid").write_bytes(style_piece("waltz", 1, bars=2))
    result = runner.invoke(app, ["tokenize", str(folder), "--overwrite", value])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: '{value}' is not a file: --overwrite is a flag and takes no value; write the flag alone to "
                     "turn it on, leave it out to keep it off"]
    assert not (tmp_path / "musictl-work").exists()
    song = tmp_path / "song.mid"
    song.write_bytes(style_piece("waltz", 2, bars=2))
    result = runner.invoke(app, ["predict", "--model", str(tmp_path / "m"), str(song), "--overwrite", value])
    assert result.exit_code == 2 and "--overwrite is a flag and takes no value" in result.output


def test_a_missing_path_named_true_without_a_flag_is_still_a_missing_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["tokenize", "true"])
    assert result.exit_code == 2 and "no such file" in result.output and "flag" not in result.output
