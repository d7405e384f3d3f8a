"""What a link predictor has to beat, scored on exactly its held-out test edges and negatives (uniform and
same-field, see :mod:`musictl.transfer.gcn`).

- Parameter-free heuristics on the training edges of the graph being predicted only: common neighbours,
  Adamic-Adar, resource allocation and the degree product (preferential attachment).
- ``gcn_random_features``: the same GCN with the node embeddings replaced by Gaussian noise of the
  same width (log-degrees kept when ``--degree-features``): what the graph alone gives.
- ``mlp_embeddings``: the same layer sizes without message passing, on the embeddings alone: what
  the embeddings give without the graph.

If the GCN does not beat these, the embeddings add nothing the graph's degrees do not already say.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from musictl.progress import Progress
from musictl.transfer.gcn import Encoder, MlpEncoder, fit_and_test, labelled_pairs, link_scores, node_inputs, score_row
from musictl.transfer.settings import GcnSettings

HEURISTICS = ("common_neighbours", "adamic_adar", "resource_allocation", "degree_product")


def heuristic_scores(edge_index: np.ndarray, num_nodes: int, pairs: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of each pair ``(2, m)`` by each heuristic, on the unweighted graph of ``edge_index``."""
    adjacency = sp.coo_matrix((np.ones(edge_index.shape[1]), (edge_index[0], edge_index[1])), shape=(num_nodes, num_nodes))
    adjacency = (adjacency.tocsr() > 0).astype(np.float64)
    adjacency.setdiag(0)
    adjacency.eliminate_zeros()
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    left, right = adjacency[pairs[0]], adjacency[pairs[1]]
    shared = left.multiply(right)  # (m, n): 1 where a node neighbours both ends

    def weighted(weights: np.ndarray) -> np.ndarray:
        return np.asarray(shared @ weights).ravel()

    with np.errstate(divide="ignore"):
        inverse_log = np.where(degree > 1, 1.0 / np.log(np.maximum(degree, 2)), 0.0)
        inverse = np.where(degree > 0, 1.0 / np.maximum(degree, 1), 0.0)
    return {
        "common_neighbours": np.asarray(shared.sum(axis=1)).ravel(),
        "adamic_adar": weighted(inverse_log),
        "resource_allocation": weighted(inverse),
        "degree_product": degree[pairs[0]] * degree[pairs[1]],
    }


def baseline_scores(split: tuple, features: torch.Tensor, settings: GcnSettings, device: str = "cpu",
                    on_progress: Progress | None = None) -> dict[str, dict[str, float]]:
    """``{name: {"auc", "ap", "auc_same_field", "ap_same_field"}}`` of every baseline on the test split of ``split``."""
    train_graph, _, test_split = split
    known = train_graph.target_index.cpu().numpy()  # the training edges of the graph being predicted
    out: dict[str, dict[str, float]] = {name: {} for name in HEURISTICS}
    for kind, (pairs, labels) in labelled_pairs(test_split).items():
        for name, scores in heuristic_scores(known, train_graph.num_nodes, pairs.cpu().numpy()).items():
            out[name].update(score_row({kind: link_scores(labels, scores)}))
    generator = torch.Generator().manual_seed(settings.seed)  # own seeding: the random-feature baseline's features
    noise = torch.randn(features.shape, generator=generator).to(features.device)
    models = {
        "gcn_random_features": (Encoder, node_inputs(noise, train_graph, settings)),
        "mlp_embeddings": (MlpEncoder, features),
    }
    for name, (encoder_cls, x) in models.items():
        _, _, _, scores = fit_and_test(encoder_cls, x, split, settings, device, on_progress, name=name)
        out[name] = score_row(scores)
    return out


def markov_walker(corpus, pieces, tables):
    """A first-order Markov chain on the same tokens, for the walk to match or beat: the same plans, rhythm and
    articulation tables, and each field of a note drawn from how often it followed the previous note's value of
    that field in the same part (directed counts, repeats included); no link predictor."""
    from musictl import constants as C
    from musictl.transfer.adjacency import build_graph
    from musictl.transfer.walk import RandomWalker

    graph = build_graph(corpus, pieces, fields=(C.INSTRUMENT, C.PITCH, C.DURATION, C.VELOCITY), edges="transition")
    return RandomWalker(graph.nodes, graph.adjacency, corpus.config, tables, graph.loops, links=None, directed=True)
