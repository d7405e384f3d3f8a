"""The weighted token co-occurrence graph of one style, sparse, over the tokens that occur.

Edges: the 8 tokens of a note link to each other (weight 1), and every token of a note links to
every token of the notes up to ``window`` places later (weight 1/distance). Counts are summed over
the style's pieces and symmetrised; nodes are only the graph tokens that occur. A token that recurs
within the window (a repeated pitch, the same duration again) is a self-loop: the adjacency keeps an
empty diagonal (link prediction has nothing to learn there) and the loops' weights, symmetrised the
same way, are kept beside it in ``loops`` for the walk (repeated notes).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import scipy.sparse as sp

from musictl import constants as C
from musictl.midi.tokens import Piece, TokenCorpus
from musictl.midi.vocab import TokenizerConfig
from musictl.progress import Progress

KIND = "graph"
GRAPH_FILE = "graph.npz"
NODES_FILE = "nodes.npy"
LOOPS_FILE = "loops.npy"


@dataclass
class StyleGraph:
    nodes: np.ndarray  # flat graph-token id of each node, sorted
    adjacency: sp.csr_matrix  # (n_nodes, n_nodes), symmetric, weighted, empty diagonal
    loops: np.ndarray | None = None  # (n_nodes,) self-loop weight of each node (the token recurring); None: unknown

    def stats(self) -> dict:
        from scipy.sparse.csgraph import connected_components

        n = len(self.nodes)
        edges = int((self.adjacency.nnz - self.adjacency.diagonal().astype(bool).sum()) // 2)
        components = int(connected_components(self.adjacency, directed=False)[0]) if n else 0
        loops = round(float(self.loops.sum()) / 2, 3) if self.loops is not None else None
        return {"nodes": n, "edges": edges, "density": round(2 * edges / (n * (n - 1)), 5) if n > 1 else 0.0,
                "components": components, "total_weight": round(float(self.adjacency.sum()) / 2, 3), "loop_weight": loops}


def graph_ids(tokens: np.ndarray, config: TokenizerConfig) -> np.ndarray:
    """(n_notes, 8) flat graph-token ids of a piece's note rows."""
    return tokens.astype(np.int64) - C.N_SPECIAL + config.field_offsets


def build_graph(corpus: TokenCorpus, pieces: list[Piece], window: int = 2, normalize: str = "none",
                on_progress: Progress | None = None) -> StyleGraph:
    config = corpus.config
    rows, cols, weights = [], [], []
    pairs = np.array(list(combinations(range(C.N_FIELDS), 2)))
    for done, piece in enumerate(pieces, 1):
        if on_progress:
            on_progress(done, len(pieces), None)
        ids = graph_ids(corpus.piece_tokens(piece), config)
        rows.append(ids[:, pairs[:, 0]].ravel())
        cols.append(ids[:, pairs[:, 1]].ravel())
        weights.append(np.ones(len(ids) * len(pairs)))
        for d in range(1, window + 1):
            if len(ids) <= d:
                break
            a, b = ids[:-d], ids[d:]
            rows.append(np.repeat(a, C.N_FIELDS, axis=1).ravel())
            cols.append(np.tile(b, (1, C.N_FIELDS)).ravel())
            weights.append(np.full(a.shape[0] * C.N_FIELDS * C.N_FIELDS, 1.0 / d))
    row, col, w = np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)
    nodes, inverse = np.unique(np.concatenate([row, col]), return_inverse=True)
    r, c = inverse[: len(row)], inverse[len(row) :]
    off = r != c  # a token recurring within the window: a self-loop, kept apart from the edges
    loops = 2 * np.bincount(r[~off], weights=w[~off], minlength=len(nodes))  # symmetrised like the edges
    matrix = sp.coo_matrix((w[off], (r[off], c[off])), shape=(len(nodes), len(nodes))).tocsr()
    matrix = (matrix + matrix.T).tocsr()
    matrix.sum_duplicates()
    if normalize != "none":  # D^-1/2 L D^-1/2 and D^-1 L agree on the diagonal
        loops = loops / np.maximum(np.asarray(matrix.sum(axis=1)).ravel(), 1e-12)
    return StyleGraph(nodes=nodes, adjacency=normalise(matrix, normalize), loops=loops)


def normalise(matrix: sp.csr_matrix, how: str) -> sp.csr_matrix:
    """``none``: raw weighted counts; ``sym``: D^-1/2 A D^-1/2; ``row``: rows sum to 1 (transition matrix)."""
    if how == "none":
        return matrix
    degree = np.asarray(matrix.sum(axis=1)).ravel()
    if how == "row":
        return sp.diags(1.0 / np.maximum(degree, 1e-12)) @ matrix
    if how == "sym":
        scale = sp.diags(1.0 / np.sqrt(np.maximum(degree, 1e-12)))
        return (scale @ matrix @ scale).tocsr()
    raise ValueError(f"unknown normalisation '{how}' (none, sym, row)")


def save_graph(graph: StyleGraph, folder) -> None:
    sp.save_npz(folder / GRAPH_FILE, graph.adjacency.tocsr())
    np.save(folder / NODES_FILE, graph.nodes)
    if graph.loops is not None:
        np.save(folder / LOOPS_FILE, graph.loops)


def load_graph(folder) -> StyleGraph:
    """A saved graph; ``loops`` is None for graphs made before self-loops were kept."""
    from musictl.errors import ArtifactError

    try:
        loops = np.load(folder / LOOPS_FILE, allow_pickle=False) if (folder / LOOPS_FILE).is_file() else None
        return StyleGraph(nodes=np.load(folder / NODES_FILE, allow_pickle=False),
                          adjacency=sp.load_npz(folder / GRAPH_FILE).tocsr(), loops=loops)
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{folder}: unreadable graph ({exc}); remake it: musictl adjacency --style "
                            f"{folder.name} --overwrite") from None


def export_graphml(graph: StyleGraph, config: TokenizerConfig, path) -> None:
    import networkx as nx

    g = nx.from_scipy_sparse_array(graph.adjacency)
    nx.set_node_attributes(g, {i: config.graph_token_name(int(t)) for i, t in enumerate(graph.nodes)}, "token")
    nx.set_node_attributes(g, {i: int(t) for i, t in enumerate(graph.nodes)}, "graph_id")
    nx.write_graphml(g, path)
