"""The ``musictl`` command: a Typer app whose commands live in :mod:`musictl.commands`.

Command modules import only Typer and torch-free settings at the top, so this stays instant.
"""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from musictl import __version__
from musictl.commands import bert, status, tokenize, transfer, violin

app = typer.Typer(
    name="musictl",
    help="Machine learning on music: tokenize MIDI, pre-train and fine-tune MidiBert, "
    "cross-style generation through token graphs, violin text-to-music with LoRA.",
    no_args_is_help=True,
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
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error (also MUSICTL_DEBUG=1).")] = False,
) -> None:
    """Machine learning on music from the command line."""
    if debug:
        os.environ["MUSICTL_DEBUG"] = "1"


# The order here is the order of ``musictl --help``.
for _module in (tokenize, bert, transfer, violin, status):
    _module.register(app)


def main() -> None:
    app()
