"""``musictl train-gcn``: link prediction on a style graph, beside its baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from musictl.commands._common import (
    FLAG,
    DeviceOpt,
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
from musictl.settings import ReportTo
from musictl.transfer.settings import Conv, Decoder, EdgeWeight, Features, GcnSettings, GraphKind, LinkTarget, Negatives

# The settings classes each command reads (for the defaults test).
SETTINGS = {"train-gcn": (GcnSettings,)}


@reports_errors
def train_gcn(
    style: Annotated[str, typer.Option(help="Style whose graph to learn.", autocompletion=complete_style)],
    model: int = option(GcnSettings, "model"),
    features: Optional[Features] = option(GcnSettings, "features"),
    graph: Optional[GraphKind] = option(GcnSettings, "graph"),
    conv: Conv = option(GcnSettings, "conv"),
    decoder: Decoder = option(GcnSettings, "decoder"),
    edge_weight: EdgeWeight = option(GcnSettings, "edge_weight"),
    degree_features: bool = option(GcnSettings, "degree_features"),
    layers: int = option(GcnSettings, "layers"),
    hidden: int = option(GcnSettings, "hidden"),
    out_dim: int = option(GcnSettings, "out_dim"),
    epochs: int = option(GcnSettings, "epochs"),
    patience: int = option(GcnSettings, "patience"),
    lr: float = option(GcnSettings, "lr"),
    dropout: float = option(GcnSettings, "dropout"),
    similarity_k: int = option(GcnSettings, "similarity_k"),
    negatives: Negatives = option(GcnSettings, "negatives"),
    predict: LinkTarget = option(GcnSettings, "predict"),
    baselines: bool = option(GcnSettings, "baselines"),
    tokens: TokensOpt = None,
    graph_dir: Annotated[Optional[Path], typer.Option(help="Graph artifact [default: WORKDIR/graph/STYLE].")] = None,
    embeddings: Annotated[Optional[Path], typer.Option(help="Embeddings artifact [default: WORKDIR/embeddings].")] = None,
    out: OutOpt = None,
    report_to: ReportTo = option(GcnSettings, "report_to"),
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint (of an interrupted run, or of a finished "
                                              "one with a larger --epochs).", metavar=FLAG)] = False,
    seed: int = option(GcnSettings, "seed"),
    device: DeviceOpt = "auto",
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Train a GCN link predictor on a style graph; report test ROC-AUC and AP beside the baselines.

    The edges are split into train / validation / test; early stopping uses validation ROC-AUC only,
    and the test edges are scored once, for the GCN and for every baseline (heuristics on the
    training graph, a GCN on random features, an MLP on the embeddings without the graph), against
    uniform negatives and against negatives of the same field pair (metrics.json holds both).
    Each epoch ends with a checkpoint: Ctrl-C keeps it, --resume continues it; metrics.jsonl and
    curves.png hold the losses and validation scores, --report-to sends them to a tracker too.

    Example: musictl train-gcn --style fiddle-tunes --model 3
    """
    from musictl import artifacts
    from musictl.commands._tables import gcn_table, gcn_verdict
    from musictl.console import err, track
    from musictl.transfer.pipeline import make_gcn

    settings = GcnSettings.from_values(locals())
    out_dir = out or artifacts.artifact_dir(workdir, artifacts.GCN, style)
    embeddings = embeddings or artifacts.artifact_dir(workdir, artifacts.EMBEDDINGS)
    warn_if_untrained(embeddings, workdir)  # the encoder the embeddings came from
    with track("train-gcn", settings.epochs,
               describe=lambda row: f"{row['model']} epoch {row['epoch']} val AUC {row['val_auc']:.4f}") as on_progress:
        result = make_gcn(style, out_dir, settings, tokens_dir(workdir, tokens),
                          graph_dir or artifacts.artifact_dir(workdir, artifacts.GRAPH, style),
                          embeddings, device, overwrite, on_progress, workdir=workdir, resume=resume)
    err.print(gcn_table(result))
    err.print(gcn_verdict(result))
    err.print(f"validation AUC {result.val_auc:.4f}, {result.nodes} nodes")
    print(out_dir)
