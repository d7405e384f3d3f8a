"""The ``musictl`` command: a Typer app whose commands live in :mod:`musictl.commands`.

:data:`COMMANDS` is the one registry: every command's name and function, in the order of
``musictl --help``; a name with a space is a sub-command of the group :data:`GROUPS` describes.
Command modules import only Typer and torch-free settings at the top, so this stays instant.
"""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from musictl import __version__
from musictl.commands import bert, demo, gcn, generate, render, status, tokenize, transfer, violin

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


# Every command, in the order of ``musictl --help`` (Typer lists groups after the plain commands).
COMMANDS = (
    ("tokenize", tokenize.tokenize),
    ("detokenize", tokenize.detokenize),
    ("pretrain-bert", bert.pretrain_bert),
    ("finetune-mask", bert.finetune_mask),
    ("predict", bert.predict),
    ("embed", transfer.embed),
    ("adjacency", transfer.adjacency),
    ("train-gcn", gcn.train_gcn),
    ("generate-rwr", generate.generate_rwr),
    ("demo", demo.demo),
    ("render", render.render),
    ("status", status.status),
    ("lora-violin prepare", violin.prepare),
    ("lora-violin train", violin.train),
    ("lora-violin generate", violin.generate),
    ("lora-violin evaluate", violin.evaluate),
)
GROUPS = {"lora-violin": violin.HELP}  # the help of each group of sub-commands


def register(target: typer.Typer, commands=COMMANDS, groups=GROUPS) -> None:
    """Add ``commands`` to ``target``: plain names as commands, ``"group name"`` under a group's sub-app."""
    subapps: dict[str, typer.Typer] = {}
    for name, function in commands:
        group, _, sub = name.rpartition(" ")
        if not group:
            target.command(name)(function)
            continue
        if group not in subapps:
            subapps[group] = typer.Typer(help=groups[group], no_args_is_help=True)
            target.add_typer(subapps[group], name=group)
        subapps[group].command(sub)(function)


register(app)


def main() -> None:
    app()
