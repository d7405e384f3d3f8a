"""Node features and graphs of the study's three models, from the embeddings and the style graph.

- ``token``: each node's token embedding (the model's static or contextual table).
- ``token-pos``: the token embedding concatenated with the positional embedding at the mean
  sequence index where the token occurs in the style's pieces.
- ``position-profile``: the token embedding's dot product with every positional embedding
  (``token_table @ position_table.T``), the study's ``tok_pos_mult_mat`` of its model 2.

The graph is the style's graph (``cooccurrence``: whatever ``musictl adjacency`` built), or
(``similarity``) the cosine k-nearest-neighbour graph of the node features, as the study's models 1
and 2 built theirs from cosine similarity. A similarity graph made from the features is easy to
predict from those same features (the circularity of the study's models 1 and 2), so by default
(``--predict style``) it only carries the messages and the edges to predict are the style graph's,
the same test edges as model 3; ``--predict own`` scores the study's circular set-up.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from musictl import constants as C
from musictl.errors import ArtifactError, UsageError
from musictl.midi.tokens import TokenCorpus
from musictl.transfer.adjacency import graph_ids, style_split
from musictl.transfer.settings import GcnSettings


def mean_positions(corpus: TokenCorpus, style: str, nodes: np.ndarray, n_positions: int) -> np.ndarray:
    """The mean sequence index (within ``n_positions``-note windows) at which each node occurs in the style's
    training pieces (those its graph is built from)."""
    config = corpus.config
    total = np.zeros(config.n_graph_tokens)
    count = np.zeros(config.n_graph_tokens)
    for piece in style_split(corpus, style)[0]:
        ids = graph_ids(corpus.piece_tokens(piece), config)
        index = np.arange(len(ids)) % n_positions
        np.add.at(total, ids.ravel(), np.repeat(index, C.N_FIELDS))
        np.add.at(count, ids.ravel(), 1)
    return np.minimum(np.rint(total[nodes] / np.maximum(count[nodes], 1)).astype(np.int64), n_positions - 1)


def node_features(table: np.ndarray, positions: np.ndarray, nodes: np.ndarray, corpus: TokenCorpus, style: str,
                  features: str) -> np.ndarray:
    """``(n_nodes, dim)`` features of the graph's nodes (see the module docstring)."""
    token = table[nodes]
    if features == "token":
        return token
    if not np.abs(positions).any():
        raise ArtifactError(f"--features {features} needs positional embeddings, and the embeddings artifact has none "
                            "(its model has no position table); use --features token or --model 3")
    if features == "token-pos":
        return np.concatenate([token, positions[mean_positions(corpus, style, nodes, len(positions))]], axis=1)
    if features == "position-profile":
        profile = token @ positions.T  # (n_nodes, n_positions)
        return (profile - profile.mean(0)) / np.maximum(profile.std(0), 1e-8)
    raise UsageError(f"--features {features!r}: choose token, token-pos or position-profile")


def model_graph(settings: GcnSettings, features: np.ndarray, style_graph: sp.csr_matrix) -> sp.csr_matrix:
    """The model's graph: the style graph (``--graph cooccurrence``: whatever adjacency built), or the similarity
    graph of the features."""
    from musictl.transfer.gcn import similarity_graph

    if settings.graph == "cooccurrence":
        return style_graph
    if settings.graph == "similarity":
        return similarity_graph(features, settings.similarity_k)
    raise UsageError(f"--graph {settings.graph!r}: choose cooccurrence or similarity")


def model_graphs(settings: GcnSettings, features: np.ndarray, style_graph: sp.csr_matrix):
    """(the graph whose edges are predicted, the message-passing graph where it differs, else None)."""
    graph = model_graph(settings, features, style_graph)
    if graph is style_graph or settings.predict == "own":
        return graph, None
    return style_graph, graph
