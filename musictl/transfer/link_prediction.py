"""Link prediction on a style graph: the GCN of :mod:`musictl.transfer.gcn` beside the baselines of
:mod:`musictl.transfer.baselines`, on one clean edge split (the test edges scored once, by each)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from musictl.progress import Progress
from musictl.transfer.baselines import baseline_scores
from musictl.transfer.gcn import Encoder, fit_and_test, node_inputs, score_row, seeded, split_edges, to_data
from musictl.transfer.settings import GcnSettings


@dataclass
class LinkPrediction:
    """A trained link predictor, its scores (test once, at the best validation epoch) and its baselines.

    ``test_auc`` / ``test_ap`` are scored against uniform negatives, ``*_same_field`` against negatives of the
    same field pair as each positive (None where the graph has none); each baseline has the same four keys.
    """

    test_auc: float | None
    test_ap: float | None
    val_auc: float
    val_ap: float
    best_epoch: int
    epochs_run: int
    train_edges: int
    val_edges: int
    test_edges: int
    nodes: int
    in_dim: int
    settings: GcnSettings
    test_auc_same_field: float | None = None
    test_ap_same_field: float | None = None
    val_auc_same_field: float | None = None
    val_ap_same_field: float | None = None
    selected_on: str = "same_field"
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    state: dict = field(default_factory=dict, repr=False)  # encoder weights + ``decoder.*``
    embeddings: torch.Tensor | None = field(default=None, repr=False)  # message passing over every edge
    history: list[dict] = field(default_factory=list, repr=False)
    split: tuple = field(default=(), repr=False)

    def to_dict(self) -> dict:
        keys = ("test_auc", "test_ap", "test_auc_same_field", "test_ap_same_field", "val_auc", "val_ap",
                "val_auc_same_field", "val_ap_same_field", "selected_on", "best_epoch", "epochs_run", "train_edges",
                "val_edges", "test_edges", "nodes", "in_dim")
        return {**{k: getattr(self, k) for k in keys}, "baselines": self.baselines, "settings": self.settings.to_dict()}


def _scores(scores: dict, prefix: str) -> dict:
    row = score_row(scores, prefix) if scores else {}
    return {f"{prefix}{k}": row.get(f"{prefix}{k}") for k in ("auc", "ap", "auc_same_field", "ap_same_field")}


def prepare_split(features: np.ndarray, adjacency: sp.csr_matrix, settings: GcnSettings, device: str = "cpu",
                  fields: np.ndarray | None = None, message: sp.csr_matrix | None = None):
    """((train, validation, test) graphs, the whole graph, the message graph or None): the clean edge split of
    :func:`~musictl.transfer.gcn.split_edges`, seeded by ``settings.seed`` without touching the caller's RNGs
    (``RandomLinkSplit`` draws from the global ones: forked for the block). Each split's ``x`` is the encoder's
    input (with the log-degrees of the message-passing graph), ``raw_x`` the node features alone."""
    data = to_data(features, adjacency, settings.edge_weight, fields)
    passing = to_data(features, message, settings.edge_weight) if message is not None else None
    with seeded(settings.seed):
        split = split_edges(data, device, settings.seed, passing)
    train_graph = split[0]
    raw = train_graph.x
    x = node_inputs(raw, train_graph, settings)
    for graph in split:
        graph.raw_x, graph.x = raw, x  # degrees of the message-passing graph, the same for every split
    return split, data, passing


def full_embeddings(encoder, data, passing, settings: GcnSettings, device: str) -> torch.Tensor:
    """The final node embeddings: message passing over every edge (the message graph's, where there is one)."""
    encoder.eval()
    with torch.no_grad():
        full = (passing if passing is not None else data).clone().to(device)
        return encoder(node_inputs(full.x, full, settings), full.edge_index, full.edge_weight).cpu()


def train_link_prediction(features: np.ndarray, adjacency: sp.csr_matrix, settings: GcnSettings, device: str = "cpu",
                          on_progress: Progress | None = None, score_test: bool = True, fields: np.ndarray | None = None,
                          message: sp.csr_matrix | None = None, encoder_cls=Encoder) -> LinkPrediction:
    """Split the edges of ``adjacency`` (symmetric), train encoder + decoder with early stopping, score the test
    edges once (and the baselines), against uniform and same-field negatives.

    ``fields``: the Octuple field of each node (for same-field negatives; default: one field). ``message``: a
    graph over the same nodes that carries the messages instead (models 1 and 2: their similarity graph), so
    the edges of ``adjacency`` are only predicted. ``encoder_cls``: :class:`~musictl.transfer.gcn.Encoder` (message
    passing) or :class:`~musictl.transfer.gcn.MlpEncoder` (the node features alone). ``score_test=False`` (a sweep
    choosing on validation) leaves the test edges untouched: test scores are None.
    """
    split, data, passing = prepare_split(features, adjacency, settings, device, fields, message)
    train_graph, val, test_split = split
    raw, x = train_graph.raw_x, train_graph.x
    encoder, decoder, chosen, test_scores = fit_and_test(encoder_cls, x, split, settings, device, on_progress, score_test)
    baselines = baseline_scores(split, raw, settings, device, on_progress) if settings.baselines and score_test else {}
    embeddings = full_embeddings(encoder, data, passing, settings, device)
    state = {**encoder.state_dict(), **{f"decoder.{k}": v for k, v in decoder.state_dict().items()}}
    return LinkPrediction(
        **_scores(test_scores, "test_"), **_scores(chosen.scores, "val_"), selected_on=chosen.selected_on,
        best_epoch=chosen.best_epoch, epochs_run=len(chosen.history),
        train_edges=int(train_graph.edge_label_index.size(1)), val_edges=int(val.edge_label.sum()),
        test_edges=int(test_split.edge_label.sum()), nodes=int(data.num_nodes), in_dim=int(x.shape[1]), settings=settings,
        baselines=baselines, state={k: v.detach().cpu() for k, v in state.items()}, embeddings=embeddings,
        history=chosen.history, split=split)
