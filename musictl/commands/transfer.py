"""Cross-style generation: ``embed``, ``adjacency``, ``train-gcn``, ``generate-rwr`` and ``demo``."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from musictl import constants as C
from musictl.commands._common import Device, DeviceOpt, Overwrite, Seed, Workdir, emit_binary, reports_errors, resolve_device

TokensOpt = Annotated[Optional[Path], typer.Option("--tokens", help="Tokens artifact [default: WORKDIR/tokens].")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Output artifact directory [default: in WORKDIR].")]


class Mode(str, enum.Enum):
    static = "static"
    contextual = "contextual"


class Conv(str, enum.Enum):
    gcn = "gcn"
    sage = "sage"


class Features(str, enum.Enum):
    token = "token"
    token_pos = "token-pos"


class Decoder(str, enum.Enum):
    mlp = "mlp"
    dot = "dot"


class EdgeWeight(str, enum.Enum):
    log = "log"
    linear = "linear"


class GraphKind(str, enum.Enum):
    cooccurrence = "cooccurrence"
    similarity = "similarity"


class Normalize(str, enum.Enum):
    none = "none"
    sym = "sym"
    row = "row"


def register(app: typer.Typer) -> None:
    app.command("embed")(embed)
    app.command("adjacency")(adjacency)
    app.command("train-gcn")(train_gcn)
    app.command("generate-rwr")(generate_rwr)
    app.command("demo")(demo)


def _paths(workdir, tokens):
    from musictl import artifacts

    return tokens or artifacts.artifact_dir(workdir, "tokens")


@reports_errors
def embed(
    model: Annotated[
        Optional[str], typer.Option(help="MidiBert directory [default: WORKDIR/bert], or a Hugging Face model directory / hub id.")
    ] = None,
    mode: Annotated[Mode, typer.Option(help="static: embedding tables; contextual: mean last hidden state over --style.")] = Mode.static,
    style: Annotated[Optional[str], typer.Option(help="Style whose pieces give contextual embeddings.")] = None,
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

    model_path = model or str(artifacts.artifact_dir(workdir, "bert"))
    out_dir = out or artifacts.artifact_dir(workdir, "embeddings")
    metrics = make_embeddings(model_path, _paths(workdir, tokens), out_dir, mode.value, style, overwrite)
    info(f"{metrics['graph_tokens']} graph tokens x {metrics['dim']} dims ({metrics['mapped_tokens']} from the model), "
         f"{metrics['positions']} positions")
    print(out_dir)


@reports_errors
def adjacency(
    style: Annotated[str, typer.Option(help="Style (a folder name given to tokenize).")],
    window: Annotated[int, typer.Option(help="Link each note to the next N notes (weight 1/distance).")] = 2,
    normalize: Annotated[Normalize, typer.Option(help="none: raw counts; sym: D^-1/2 A D^-1/2; row: transition matrix.")] = Normalize.none,
    export: Annotated[Optional[str], typer.Option(help="Also write the graph as graphml (networkx).")] = None,
    tokens: TokensOpt = None,
    out: OutOpt = None,
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Build the weighted token co-occurrence graph of one style (sparse, only tokens that occur).

    Example: musictl adjacency --style fiddle-tunes --window 2 --export graphml
    """
    from musictl import artifacts
    from musictl.console import info
    from musictl.transfer.pipeline import make_graph

    out_dir = out or artifacts.artifact_dir(workdir, "graph", style)
    stats = make_graph(_paths(workdir, tokens), style, out_dir, window, normalize.value, export, overwrite)
    info(f"{stats['nodes']} nodes, {stats['edges']} edges, density {stats['density']}, {stats['components']} component(s) "
         f"from {stats['pieces']} pieces")
    print(out_dir)


@reports_errors
def train_gcn(
    style: Annotated[str, typer.Option(help="Style whose graph to learn.")],
    conv: Annotated[Conv, typer.Option(help="gcn (uses edge weights) or sage.")] = Conv.gcn,
    features: Annotated[Features, typer.Option(help="token, or token-pos (token + positional embeddings).")] = Features.token,
    graph: Annotated[
        GraphKind, typer.Option(help="cooccurrence: the style graph; similarity: cosine kNN of the embeddings.")
    ] = GraphKind.cooccurrence,
    decoder: Annotated[Decoder, typer.Option(help="mlp: MLP on the Hadamard product; dot: dot product.")] = Decoder.mlp,
    edge_weight: Annotated[EdgeWeight, typer.Option(help="GCN edge weights: log(1 + count) or the count, scaled to max 1.")] = (
        EdgeWeight.log
    ),
    degree_features: Annotated[
        bool, typer.Option(help="Append log-degrees (of the message-passing graph only) to the node features.")
    ] = True,
    layers: Annotated[int, typer.Option(min=1, help="Graph convolution layers.")] = 2,
    hidden: Annotated[int, typer.Option(min=2, help="Hidden size.")] = 128,
    out_dim: Annotated[int, typer.Option("--out-dim", min=2, help="Node embedding size.")] = 64,
    epochs: Annotated[int, typer.Option(min=1, help="Maximum epochs.")] = C.GCN_MAX_EPOCHS,
    patience: Annotated[int, typer.Option(min=1, help="Stop after N epochs without a better validation AUC.")] = 30,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 0.01,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.9)] = 0.2,
    tokens: TokensOpt = None,
    graph_dir: Annotated[Optional[Path], typer.Option(help="Graph artifact [default: WORKDIR/graph/STYLE].")] = None,
    embeddings: Annotated[Optional[Path], typer.Option(help="Embeddings artifact [default: WORKDIR/embeddings].")] = None,
    out: OutOpt = None,
    seed: Seed = 0,
    device: DeviceOpt = Device.auto,
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Train a GCN link predictor on a style graph; report test ROC-AUC and AP at the best validation epoch.

    Example: musictl train-gcn --style fiddle-tunes --conv gcn --features token --graph cooccurrence
    """
    from musictl import artifacts
    from musictl.console import err, progress
    from musictl.transfer.gcn import GcnSettings
    from musictl.transfer.pipeline import make_gcn

    settings = GcnSettings(conv=conv.value, decoder=decoder.value, layers=layers, hidden=hidden, out=out_dim, dropout=dropout,
                           lr=lr, epochs=epochs, patience=patience, features=features.value, graph=graph.value,
                           edge_weight=edge_weight.value, degree_features=degree_features, seed=seed)
    with progress() as bar:
        task = bar.add_task("train-gcn", total=epochs)
        metrics = make_gcn(
            workdir, style, out or artifacts.artifact_dir(workdir, "gcn", style), settings, _paths(workdir, tokens),
            graph_dir or artifacts.artifact_dir(workdir, "graph", style), embeddings or artifacts.artifact_dir(workdir, "embeddings"),
            resolve_device(device), overwrite, on_epoch=lambda e, total, row: bar.update(task, completed=e),
        )
    err.print(f"test ROC-AUC {metrics['test_auc']:.4f}  AP {metrics['test_ap']:.4f}  (best epoch {metrics['best_epoch']}, "
              f"validation AUC {metrics['val_auc']:.4f}, {metrics['nodes']} nodes)")
    print(out or artifacts.artifact_dir(workdir, "gcn", style))


@reports_errors
def generate_rwr(
    bars: Annotated[int, typer.Option("-n", "--bars", help="Bars to generate.")] = 16,
    style: Annotated[Optional[str], typer.Option(help="Style [default: the most recently trained GCN's].")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="MIDI file; default: stdout when redirected.")] = None,
    prompt: Annotated[Optional[Path], typer.Option(help="MIDI file whose first notes seed the walk.")] = None,
    temperature: Annotated[float, typer.Option(help="Weight of GCN-embedding similarity (lower: sharper).")] = 0.5,
    restart: Annotated[float, typer.Option(min=0.0, max=1.0, help="Per-note probability of jumping back to a seed note.")] = 0.1,
    program: Annotated[Optional[int], typer.Option(min=0, max=127, help="Play the result with this GM program.")] = None,
    tempo: Annotated[Optional[float], typer.Option(min=16.0, max=256.0, help="Tempo in BPM for the whole piece.")] = None,
    evaluate: Annotated[int, typer.Option(help="Instead of MIDI, write style-fidelity JSON of N generated pieces.")] = 0,
    tokens: TokensOpt = None,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Generate music in a style by a random walk with restart on its graph, decoded to MIDI.

    Example: musictl generate-rwr -n 16 > out.mid
    """
    import json
    import sys

    from musictl.console import info
    from musictl.errors import UsageError
    from musictl.midi.decode import tokens_to_midi_bytes
    from musictl.transfer.pipeline import generate, latest_gcn_style, load_walker
    from musictl.transfer.walk import WalkSettings

    if bars < 1:
        raise UsageError("-n must be at least 1 bar")
    if prompt is not None and not prompt.is_file():
        raise UsageError(f"--prompt {prompt}: no such file")
    if not evaluate and out is None and sys.stdout.isatty():
        raise UsageError("refusing to write binary MIDI to a terminal; pass -o FILE or redirect: musictl generate-rwr > out.mid")
    style = style or latest_gcn_style(workdir)
    tokens_path = _paths(workdir, tokens)
    walker_and_corpus = load_walker(workdir, style, tokens_path)
    settings = WalkSettings(bars=bars, temperature=temperature, restart=restart, seed=seed)
    if evaluate:
        from dataclasses import replace

        from musictl.transfer.fidelity import style_fidelity

        pieces = [generate(workdir, style, replace(settings, seed=seed + i), tokens_path, prompt, tempo, walker_and_corpus)
                  for i in range(evaluate)]
        report = style_fidelity(pieces, walker_and_corpus[1], style)
        text = json.dumps(report, indent=2) + "\n"
        if out is not None:
            from musictl.artifacts import atomic_write_bytes

            atomic_write_bytes(out, text.encode())
            info(f"wrote {out}")
        else:
            sys.stdout.write(text)
        return
    notes = generate(workdir, style, settings, tokens_path, prompt, tempo, walker_and_corpus)
    info(f"{style}: {len(notes)} notes in {bars} bars (seed {seed})")
    emit_binary(tokens_to_midi_bytes(notes, walker_and_corpus[1].config, program=program), out, overwrite=overwrite,
                inputs=[prompt] if prompt else [])


@reports_errors
def demo(
    style: Annotated[str, typer.Option(help="Style of the bundled corpus to generate in.")] = "fiddle-tunes",
    bars: Annotated[int, typer.Option("-n", "--bars", help="Bars of demo.mid.")] = 16,
    steps: Annotated[int, typer.Option(help="Pre-training steps of the tiny MidiBert.")] = 500,
    gcn_epochs: Annotated[int, typer.Option(min=1, help="Maximum GCN epochs (early stopping usually ends sooner).")] = C.GCN_MAX_EPOCHS,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write demo.mid and demo.png.")] = Path("."),
    seed: Seed = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a workspace made by other commands.")] = False,
    workdir: Workdir = None,
) -> None:
    """Run the whole cross-style chain on the bundled corpus with tiny settings (a few minutes on CPU).

    tokenize -> pretrain-bert -> embed -> adjacency -> train-gcn -> generate-rwr; leaves demo.mid and a
    piano-roll demo.png, and prints a summary. Re-running replaces the demo's own artifacts; a workspace
    made by other commands is kept unless --overwrite.

    Example: musictl demo --style fiddle-tunes -n 16
    """
    from musictl.transfer.demo import run_demo

    run_demo(workdir, style, bars, steps, out, seed, overwrite, gcn_epochs)
