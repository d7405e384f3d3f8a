"""One source for every default: each command option's default equals its settings field.

Every command module declares ``SETTINGS = {"command name": (SettingsClass, ...)}``; this test walks
every command of the CLI (the modules of ``musictl.cli.COMMANDS``, the one registry) and compares each
parameter with the settings field of the same name.
"""

from __future__ import annotations

import dataclasses
import enum
import sys

import pytest
import typer

from musictl.cli import COMMANDS as REGISTRY
from musictl.cli import app

# Commands whose options are all shared plumbing (workspace, output, format switches), not settings.
NO_SETTINGS = {"status"}


def _click_commands():
    root = typer.main.get_command(app)

    def walk(group, prefix):
        for name, command in group.commands.items():
            path = f"{prefix} {name}".strip()
            if hasattr(command, "commands"):
                yield from walk(command, path)
            else:
                yield path, command

    return dict(walk(root, ""))


def _declared_settings() -> dict[str, tuple]:
    declared = {}
    for module in dict.fromkeys(sys.modules[function.__module__] for _, function in REGISTRY):
        declared.update(getattr(module, "SETTINGS", {}))
    return declared


COMMANDS = _click_commands()
DECLARED = _declared_settings()


def _plain(value):
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def test_every_command_declares_its_settings():
    missing = sorted(set(COMMANDS) - set(DECLARED) - NO_SETTINGS)
    assert not missing, f"commands without a SETTINGS entry: {missing}"
    unknown = sorted(set(DECLARED) - set(COMMANDS))
    assert not unknown, f"SETTINGS names commands that do not exist: {unknown}"


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - NO_SETTINGS))
def test_option_defaults_equal_settings_fields(command):
    classes = DECLARED.get(command, ())
    fields = {}
    for cls in classes:
        for field in dataclasses.fields(cls):
            fields.setdefault(field.name, (cls, field))
    params = {p.name: p for p in COMMANDS[command].params}
    matched = 0
    for name, param in params.items():
        if name not in fields:
            continue
        cls, field = fields[name]
        expected = field.default_factory() if field.default is dataclasses.MISSING else field.default
        assert _plain(param.default) == _plain(expected), (
            f"{command} --{name}: CLI default {param.default!r} != {cls.__name__}.{name} {expected!r}")
        help_text = field.metadata.get("help")
        if help_text:
            assert param.help and help_text.split("[")[0].strip()[:30] in param.help, f"{command} --{name}: help not from {cls.__name__}"
        matched += 1
    assert matched >= 1, f"{command}: no option reads a settings field"


def test_finetune_learning_rate_defaults_to_the_one_measured_for_its_start():
    from musictl.bert.settings import FINETUNE_LR_PRETRAINED, FINETUNE_LR_SCRATCH, FinetuneSettings

    assert FinetuneSettings(task="melody").lr == FINETUNE_LR_PRETRAINED == 1e-3
    assert FinetuneSettings(task="melody", from_scratch=True).lr == FINETUNE_LR_SCRATCH == 3e-4
    assert FinetuneSettings(task="melody", from_scratch=True, lr=2e-5).lr == 2e-5  # a given rate is kept
