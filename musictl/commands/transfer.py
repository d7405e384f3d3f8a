"""Cross-style generation: ``embed`` and ``adjacency`` here; ``train-gcn``, ``generate-rwr``, ``demo`` and
``render`` live in :mod:`musictl.commands.gcn`, :mod:`~musictl.commands.generate`, :mod:`~musictl.commands.demo`
and :mod:`~musictl.commands.render`, registered from :func:`register`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from musictl.commands._common import Overwrite, Workdir, option, reports_errors
from musictl.transfer.settings import EmbedMode, EmbedSettings, Export, GraphSettings, Normalize

TokensOpt = Annotated[Optional[Path], typer.Option("--tokens", help="Tokens artifact [default: WORKDIR/tokens].")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Output artifact directory [default: in WORKDIR].")]

# The settings classes each command reads (for the defaults test).
SETTINGS = {"embed": (EmbedSettings,), "adjacency": (GraphSettings,)}


def register(app: typer.Typer) -> None:
    from musictl.commands import demo, gcn, generate, render

    app.command("embed")(embed)
    app.command("adjacency")(adjacency)
    gcn.register(app)
    generate.register(app)
    demo.register(app)
    render.register(app)


def tokens_dir(workdir, tokens: Path | None) -> Path:
    from musictl import artifacts

    return tokens or artifacts.artifact_dir(workdir, "tokens")


@reports_errors
def embed(
    model: Annotated[
        Optional[str], typer.Option(help="MidiBert directory [default: WORKDIR/bert], or a Hugging Face model directory / hub id.")
    ] = None,
    mode: EmbedMode = option(EmbedSettings, "mode"),
    style: Optional[str] = option(EmbedSettings, "style"),
    tokens: TokensOpt = None,
    out: OutOpt = None,
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Write the embedding of every graph token (field, value) and the positional table.

    Example: musictl embed --model musictl-work/bert --mode static
    """
    from musictl import artifacts
    from musictl.console import info
    from musictl.transfer.pipeline import make_embeddings

    settings = EmbedSettings.from_values(locals())
    out_dir = out or artifacts.artifact_dir(workdir, "embeddings")
    result = make_embeddings(model, tokens_dir(workdir, tokens), out_dir, settings, overwrite, workdir=workdir)
    info(f"{result.graph_tokens} graph tokens x {result.dim} dims ({result.mapped_tokens} from the model), "
         f"{result.positions} positions")
    print(out_dir)


@reports_errors
def adjacency(
    style: Annotated[str, typer.Option(help="Style (a folder name given to tokenize).")],
    window: int = option(GraphSettings, "window"),
    normalize: Normalize = option(GraphSettings, "normalize"),
    export: Optional[Export] = option(GraphSettings, "export"),
    tokens: TokensOpt = None,
    out: OutOpt = None,
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Build the weighted token co-occurrence graph of one style (sparse, only tokens that occur).

    Example: musictl adjacency --style fiddle-tunes --window 2 --export graphml
    """
    from musictl import artifacts
    from musictl.commands.transfer_render import progress_after
    from musictl.console import info
    from musictl.transfer.pipeline import make_graph

    settings = GraphSettings.from_values(locals())
    out_dir = out or artifacts.artifact_dir(workdir, "graph", style)
    with progress_after("adjacency") as on_progress:
        result = make_graph(tokens_dir(workdir, tokens), style, out_dir, settings, overwrite, on_progress)
    repeats = f", self-loop weight {result.loop_weight}" if result.loop_weight else ""
    info(f"{result.nodes} nodes, {result.edges} edges, density {result.density}, {result.components} component(s) "
         f"from {result.pieces} pieces{repeats}")
    print(out_dir)
