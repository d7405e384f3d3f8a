"""The weighted graph of one style over the tokens that carry its music, sparse.

Nodes are the tokens of the chosen fields (default: pitch, duration, velocity, position within the
bar, instrument; bar numbers, metre and tempo are opt-in) that occur in the style's pieces. Edges:

- ``transition`` (default): directed counts from each token of a note to each token of the next note
  of the same part (the next row of the same instrument), for every pair of node fields: the
  evidence a Markov chain uses. ``adjacency[i, j]`` counts ``i -> j``.
- ``cooccurrence``: the tokens of a note link to each other (weight 1), and every token of a note
  links to every token of the notes up to ``window`` places later (weight 1/distance); symmetric.
  ``--nodes all --edges cooccurrence --window 2 --pieces all --key as-is`` is the graph of earlier versions.

A token that recurs (a repeated pitch, the same duration again) is a self-loop: the adjacency keeps
an empty diagonal (link prediction has nothing to learn there) and the loops' weights are kept
beside it in ``loops`` for the walk (repeated notes).

``key="common"`` (``musictl adjacency``'s default) counts each piece transposed to C major / A minor
(:mod:`musictl.transfer.keys`): the graph's pitch nodes are then scale degrees of one key, not a mix of every
key of the style; the graph records each piece's key and shift (``keys``, saved as ``key.json``). The library
default ``"as-is"`` counts pitches as they are (the few-shot likelihoods and the Markov-chain baseline rely on it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from musictl import constants as C
from musictl.midi.tokens import Piece, TokenCorpus
from musictl.midi.vocab import TokenizerConfig
from musictl.progress import Progress
from musictl.transfer.keys import KEY_FILE, StyleKeys, to_common_key

GRAPH_FILE = "graph.npz"
NODES_FILE = "nodes.npy"
LOOPS_FILE = "loops.npy"
META_FILE = "graph.json"
EDGE_KINDS = ("cooccurrence", "transition")


@dataclass
class StyleGraph:
    nodes: np.ndarray  # flat graph-token id of each node, sorted
    adjacency: sp.csr_matrix  # (n_nodes, n_nodes), weighted, empty diagonal; symmetric unless ``edges == "transition"``
    loops: np.ndarray | None = None  # (n_nodes,) self-loop weight of each node (the token recurring); None: unknown
    edges: str = "cooccurrence"
    fields: tuple[int, ...] = field(default=tuple(range(C.N_FIELDS)))  # the node fields (column indices)
    keys: StyleKeys | None = None  # counted in the common key: each piece's key and shift; None: pitches as they are

    @property
    def directed(self) -> bool:
        return self.edges == "transition"

    def undirected(self) -> sp.csr_matrix:
        """The symmetric graph link prediction learns: ``A + A.T`` of a transition graph, else ``A``."""
        return (self.adjacency + self.adjacency.T).tocsr() if self.directed else self.adjacency

    def node_fields(self, config: TokenizerConfig) -> np.ndarray:
        """The field (column index) of each node."""
        return node_fields(self.nodes, config)

    def stats(self) -> dict:
        from scipy.sparse.csgraph import connected_components

        n = len(self.nodes)
        off_diagonal = int(self.adjacency.nnz - self.adjacency.diagonal().astype(bool).sum())
        edges = off_diagonal if self.directed else off_diagonal // 2
        pairs = n * (n - 1) if self.directed else n * (n - 1) // 2
        components = int(connected_components(self.adjacency, directed=self.directed, connection="weak")[0]) if n else 0
        halve = 1 if self.directed else 2
        loops = round(float(self.loops.sum()) / halve, 3) if self.loops is not None else None
        return {"nodes": n, "edges": edges, "density": round(edges / pairs, 5) if pairs else 0.0,
                "components": components, "total_weight": round(float(self.adjacency.sum()) / halve, 3),
                "loop_weight": loops}


def graph_ids(tokens: np.ndarray, config: TokenizerConfig) -> np.ndarray:
    """(n_notes, 8) flat graph-token ids of a piece's note rows."""
    return tokens.astype(np.int64) - C.N_SPECIAL + config.field_offsets


def style_split(corpus: TokenCorpus, style: str) -> tuple[list[Piece], list[Piece]]:
    """(the pieces a style's graph and tables are built from: its train split, or every piece when it has no train
    split; its held-out pieces: valid and test, which fidelity compares with)."""
    train = corpus.select(style=style, split="train")
    if not train:
        return corpus.select(style=style), []
    return train, [p for p in corpus.select(style=style) if p.split in ("valid", "test")]


def node_fields(nodes: np.ndarray, config: TokenizerConfig) -> np.ndarray:
    """The field (column index) of each flat graph-token id."""
    return np.searchsorted(config.field_offsets, nodes, side="right") - 1


def parts(values: np.ndarray) -> list[np.ndarray]:
    """Row indices of each part (instrument) of a piece's note values, in row order."""
    return [np.flatnonzero(values[:, C.INSTRUMENT] == program) for program in np.unique(values[:, C.INSTRUMENT])]


def _cooccurrence(ids: np.ndarray, window: int):
    """(sources, targets, weights) of a piece: within each note, and to the next ``window`` notes."""
    k = ids.shape[1]
    pairs = np.array(list(combinations(range(k), 2)), dtype=np.int64).reshape(-1, 2)
    rows, cols, weights = [ids[:, pairs[:, 0]].ravel()], [ids[:, pairs[:, 1]].ravel()], [np.ones(len(ids) * len(pairs))]
    for d in range(1, window + 1):
        if len(ids) <= d:
            break
        a, b = ids[:-d], ids[d:]
        rows.append(np.repeat(a, k, axis=1).ravel())
        cols.append(np.tile(b, (1, k)).ravel())
        weights.append(np.full(a.shape[0] * k * k, 1.0 / d))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)


def _transitions(ids: np.ndarray, values: np.ndarray):
    """(sources, targets, weights) of a piece: each note's tokens to the next note of its part's, every field pair."""
    k = ids.shape[1]
    rows, cols = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for rows_of_part in parts(values):
        a, b = ids[rows_of_part[:-1]], ids[rows_of_part[1:]]
        rows.append(np.repeat(a, k, axis=1).ravel())
        cols.append(np.tile(b, (1, k)).ravel())
    row, col = np.concatenate(rows), np.concatenate(cols)
    return row, col, np.ones(len(row))


def build_graph(corpus: TokenCorpus, pieces: list[Piece], window: int | None = None, normalize: str = "none",
                on_progress: Progress | None = None, fields: tuple[int, ...] | None = None,
                edges: str | None = None, key: str = "as-is") -> StyleGraph:
    """The style graph of ``pieces`` over the tokens of ``fields`` (column indices); ``None`` takes the default of
    :class:`musictl.transfer.settings.GraphSettings` (the musical graph). ``key``: ``as-is`` counts pitches as they
    are; ``common`` first transposes each piece to C major / A minor (:mod:`musictl.transfer.keys`; the default of
    ``musictl adjacency``, :class:`~musictl.transfer.settings.GraphSettings`) and records the shifts in ``keys``."""
    from musictl.transfer.settings import GraphSettings

    defaults = GraphSettings()
    config = corpus.config
    window = defaults.window if window is None else window
    edges = defaults.edges if edges is None else edges
    fields = defaults.fields if fields is None else tuple(sorted(fields))
    if edges not in EDGE_KINDS:
        raise ValueError(f"unknown edges {edges!r} ({', '.join(EDGE_KINDS)})")
    if key not in ("common", "as-is"):
        raise ValueError(f"unknown key {key!r} (common, as-is)")
    rows, cols, weights = [], [], []
    keys = StyleKeys() if key == "common" else None
    for done, piece in enumerate(pieces, 1):
        if on_progress:
            on_progress(done, len(pieces), None)
        tokens = corpus.piece_tokens(piece)
        if keys is not None:
            (tokens,), (found,) = to_common_key([tokens], config)
            keys.pieces[piece.id], keys.names[piece.id] = found, Path(piece.path).name
        ids = graph_ids(tokens, config)[:, list(fields)]
        r, c, w = (_transitions(ids, tokens.astype(np.int64) - C.N_SPECIAL) if edges == "transition"
                   else _cooccurrence(ids, window))
        rows += [r, ids.ravel()]  # every token of a note is a node, even one with no edge
        cols += [c, ids.ravel()]
        weights += [w, np.zeros(ids.size)]
    row, col, w = np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)
    nodes, inverse = np.unique(np.concatenate([row, col]), return_inverse=True)
    r, c = inverse[: len(row)], inverse[len(row) :]
    off = r != c  # a token recurring: a self-loop, kept apart from the edges
    loops = np.bincount(r[~off], weights=w[~off], minlength=len(nodes))
    matrix = sp.coo_matrix((w[off], (r[off], c[off])), shape=(len(nodes), len(nodes))).tocsr()
    if edges == "cooccurrence":
        matrix, loops = (matrix + matrix.T).tocsr(), 2 * loops  # symmetrised like the edges
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    if normalize != "none":  # D^-1/2 L D^-1/2 and D^-1 L agree on the diagonal
        loops = loops / np.maximum(np.asarray(matrix.sum(axis=1)).ravel(), 1e-12)
    return StyleGraph(nodes=nodes, adjacency=normalise(matrix, normalize), loops=loops, edges=edges, fields=fields,
                      keys=keys)


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
    names = [C.FIELDS[f] for f in graph.fields]
    (folder / META_FILE).write_text(json.dumps({"edges": graph.edges, "fields": names}) + "\n")
    if graph.keys is not None:
        graph.keys.save(folder)


def load_graph(folder) -> StyleGraph:
    """A saved graph; ``loops`` is None for graphs made before self-loops were kept, and a graph without
    ``graph.json`` (made before node fields were chosen) is a co-occurrence graph over every field; ``keys`` is read
    from ``key.json`` (a graph counted in the common key), else None."""
    from musictl.errors import ArtifactError

    try:
        loops = np.load(folder / LOOPS_FILE, allow_pickle=False) if (folder / LOOPS_FILE).is_file() else None
        meta = json.loads((folder / META_FILE).read_text()) if (folder / META_FILE).is_file() else {}
        fields = tuple(C.FIELDS.index(name) for name in meta.get("fields", C.FIELDS))
        keys = StyleKeys.load(folder) if (folder / KEY_FILE).is_file() else None
        return StyleGraph(nodes=np.load(folder / NODES_FILE, allow_pickle=False),
                          adjacency=sp.load_npz(folder / GRAPH_FILE).tocsr(), loops=loops,
                          edges=meta.get("edges", "cooccurrence"), fields=fields, keys=keys)
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{folder}: unreadable graph ({exc}); remake it: musictl adjacency --style "
                            f"{folder.name} --overwrite") from None


def export_graphml(graph: StyleGraph, config: TokenizerConfig, path) -> None:
    import networkx as nx

    g = nx.from_scipy_sparse_array(graph.adjacency, create_using=nx.DiGraph if graph.directed else nx.Graph)
    nx.set_node_attributes(g, {i: config.graph_token_name(int(t)) for i, t in enumerate(graph.nodes)}, "token")
    nx.set_node_attributes(g, {i: int(t) for i, t in enumerate(graph.nodes)}, "graph_id")
    nx.write_graphml(g, path)
