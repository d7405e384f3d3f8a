"""The ``musictl`` command: a Typer app whose commands live in :mod:`musictl.commands`."""

from __future__ import annotations

import importlib
from typing import Annotated, Optional

import typer

from musictl import __version__

# Each module has ``register(app)``; the order is the order of ``musictl --help``.
COMMAND_MODULES = ("tokenize", "bert", "transfer", "violin")

app = typer.Typer(
    name="musictl",
    help="Machine learning on music: tokenize MIDI, pre-train and fine-tune MidiBert, "
    "cross-style generation through token graphs, violin text-to-music with LoRA.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"musictl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
) -> None:
    """Machine learning on music from the command line."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"musictl.commands.{_name}").register(app)


def main() -> None:
    app()
