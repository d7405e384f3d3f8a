"""The ``musictl`` command: a Typer app whose commands live in :mod:`musictl.commands`.

:data:`COMMANDS` lists every command's name and function, in the order of ``musictl --help``; a name with a
space is a sub-command of a group, whose help :data:`GROUPS` holds.
Command modules import only Typer and torch-free settings at the top, so this stays instant.
"""

from __future__ import annotations

import functools
import inspect
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
    add_help_option=False,  # its own --help below: flags show no <bool> in --help
)


def _show_help(ctx: typer.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        typer.echo(ctx.get_help(), color=ctx.color)
        raise typer.Exit()


# Typer's own --help is listed with a "<bool>" type and takes no metavar: every command, group and the root
# use this one instead (the same behaviour, shown as a flag).
HelpOpt = Annotated[Optional[bool], typer.Option("--help", help="Show this message and exit.", is_eager=True,
                                                 expose_value=False, callback=_show_help, metavar="")]


def with_help(function):
    """``function`` with the ``--help`` of :data:`HelpOpt` added to its parameters (``add_help_option=False``)."""
    signature = inspect.signature(function, eval_str=True)

    @functools.wraps(function)
    def command(*args, **kwargs):
        kwargs.pop("show_help", None)  # Typer passes it (None) although it is not exposed
        return function(*args, **kwargs)

    extra = inspect.Parameter("show_help", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=HelpOpt)
    command.__signature__ = signature.replace(parameters=[*signature.parameters.values(), extra])
    command.__annotations__ = {**getattr(function, "__annotations__", {}), "show_help": HelpOpt}
    return command


def _version(value: bool) -> None:
    if value:
        print(f"musictl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.",
                                     metavar="")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error (also MUSICTL_DEBUG=1).",
                                        metavar="")] = False,
    show_help: HelpOpt = None,
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
    ("adapt", bert.adapt),
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
            target.command(name, add_help_option=False)(with_help(function))
            continue
        if group not in subapps:
            subapps[group] = typer.Typer(help=groups[group], no_args_is_help=True, add_help_option=False)
            subapps[group].callback(help=groups[group])(with_help(_group))
            target.add_typer(subapps[group], name=group)
        subapps[group].command(sub, add_help_option=False)(with_help(function))


def _group() -> None:
    pass


register(app)


def main() -> None:
    app()
