"""``musictl embed`` and ``musictl adjacency``: the inputs of the cross-style chain (embeddings, a style graph)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from musictl.commands._common import (
    OutOpt,
    Overwrite,
    TokensOpt,
    Workdir,
    complete_style,
    option,
    reports_errors,
    tokens_dir,
    warn_if_untrained,
)
from musictl.transfer.settings import (
    Edges,
    EmbedMode,
    EmbedSettings,
    Export,
    GraphPieces,
    GraphSettings,
    KeyMode,
    Normalize,
)

# The settings classes each command reads (for the defaults test).
SETTINGS = {"embed": (EmbedSettings,), "adjacency": (GraphSettings,)}


@reports_errors
def embed(
    model: Annotated[
        Optional[str], typer.Option(help="MidiBert directory [default: WORKDIR/bert], or a Hugging Face model directory / hub id.")
    ] = None,
    mode: EmbedMode = option(EmbedSettings, "mode"),
    style: Optional[str] = option(EmbedSettings, "style", autocompletion=complete_style),
    tokens: TokensOpt = None,
    out: OutOpt = None,
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Write the embedding of every graph token (field, value) and the positional table.

    Example: musictl embed --model musictl-work/bert --mode static
    """
    from musictl import artifacts
    from musictl.commands._tables import progress_after
    from musictl.console import info
    from musictl.transfer.pipeline import make_embeddings

    settings = EmbedSettings.from_values(locals())
    out_dir = out or artifacts.artifact_dir(workdir, artifacts.EMBEDDINGS)
    warn_if_untrained(model or artifacts.artifact_dir(workdir, artifacts.BERT), workdir)
    with progress_after("embed windows") as on_progress:
        result = make_embeddings(model, tokens_dir(workdir, tokens), out_dir, settings, overwrite, workdir=workdir,
                                 on_progress=on_progress)
    info(f"{result.graph_tokens} graph tokens x {result.dim} dims ({result.mapped_tokens} from the model), "
         f"{result.positions} positions")
    print(out_dir)


@reports_errors
def adjacency(
    style: Annotated[str, typer.Option(help="Style (a folder name given to tokenize).", autocompletion=complete_style)],
    nodes: str = option(GraphSettings, "nodes"),
    edges: Edges = option(GraphSettings, "edges"),
    window: int = option(GraphSettings, "window"),
    pieces: GraphPieces = option(GraphSettings, "pieces"),
    key: KeyMode = option(GraphSettings, "key"),
    normalize: Normalize = option(GraphSettings, "normalize"),
    export: Optional[Export] = option(GraphSettings, "export"),
    tokens: TokensOpt = None,
    out: OutOpt = None,
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Build the weighted graph of one style over its musical tokens (sparse, only tokens that occur), from its
    training pieces: by default directed note-to-next-note transitions of each part, each piece counted transposed
    to C major / A minor (--key common; --key as-is counts pitches as they are).

    Example: musictl adjacency --style fiddle-tunes   |   the graph of earlier versions:
    musictl adjacency --style fiddle-tunes --nodes all --edges cooccurrence --window 2 --pieces all --key as-is
    """
    from musictl import artifacts
    from musictl.commands._tables import progress_after
    from musictl.console import info
    from musictl.transfer.pipeline import make_graph

    settings = GraphSettings.from_values(locals())
    out_dir = out or artifacts.artifact_dir(workdir, artifacts.GRAPH, style)
    with progress_after("adjacency") as on_progress:
        result = make_graph(tokens_dir(workdir, tokens), style, out_dir, settings, overwrite, on_progress, workdir=workdir)
    repeats = f", self-loop weight {result.loop_weight}" if result.loop_weight else ""
    info(f"{result.nodes} nodes, {result.edges} edges, density {result.density}, {result.components} component(s) "
         f"from {result.pieces} pieces{repeats}")
    if result.keys:
        found = ", ".join(f"{name} {n}" for name, n in result.keys["keys"].items())
        info(f"counted in {result.keys['key_reference']}; the pieces' keys: {found}")
    print(out_dir)
