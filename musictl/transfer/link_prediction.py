"""Link prediction on a style graph: the GCN of :mod:`musictl.transfer.gcn` beside the baselines of
:mod:`musictl.transfer.baselines`, on one clean edge split (the test edges scored once, by each)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from musictl.progress import Progress
from musictl.transfer.baselines import baseline_scores
from musictl.transfer.gcn import Encoder, fit_and_test, node_inputs, score_row, split_edges, to_data
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
    # own seeding: RandomLinkSplit, negative_sampling and the layers' initialisation take no generator, only the global
    # RNGs (Python's, torch's, numpy's); the split is a data split, kept as published
    random.seed(settings.seed)  # PyG's negative_sampling draws with Python's random
    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)
    data = to_data(features, adjacency, settings.edge_weight, fields)
    passing = to_data(features, message, settings.edge_weight) if message is not None else None
    split = split_edges(data, device, settings.seed, passing)
    train_graph, val, test_split = split
    raw = train_graph.x
    x = node_inputs(raw, train_graph, settings)
    train_graph.x = val.x = test_split.x = x  # degrees of the message-passing graph, the same for every split
    encoder, decoder, chosen, test_scores = fit_and_test(encoder_cls, x, split, settings, device, on_progress, score_test)
    baselines = baseline_scores(split, raw, settings, device, on_progress) if settings.baselines and score_test else {}
    encoder.eval()
    with torch.no_grad():  # final embeddings: message passing over every edge
        full = (passing if passing is not None else data).clone().to(device)
        embeddings = encoder(node_inputs(full.x, full, settings), full.edge_index, full.edge_weight).cpu()
    state = {**encoder.state_dict(), **{f"decoder.{k}": v for k, v in decoder.state_dict().items()}}
    return LinkPrediction(
        **_scores(test_scores, "test_"), **_scores(chosen.scores, "val_"), selected_on=chosen.selected_on,
        best_epoch=chosen.best_epoch, epochs_run=len(chosen.history),
        train_edges=int(train_graph.edge_label_index.size(1)), val_edges=int(val.edge_label.sum()),
        test_edges=int(test_split.edge_label.sum()), nodes=int(data.num_nodes), in_dim=int(x.shape[1]), settings=settings,
        baselines=baselines, state={k: v.detach().cpu() for k, v in state.items()}, embeddings=embeddings,
        history=chosen.history, split=split)
