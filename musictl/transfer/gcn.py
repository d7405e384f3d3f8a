"""GCN link prediction on a style's token graph (PyTorch Geometric), with a clean edge split.

Four small pieces, as in PyG's ``examples/link_pred.py``: :func:`encode` (node embeddings by message
passing over the training graph), :func:`decode` (a logit per node pair), :func:`train` (one epoch
on the training edges and as many fresh negatives) and :func:`test` (ROC-AUC and average precision
on a held-out split). ``RandomLinkSplit`` keeps validation and test edges (both directions) out of
the message-passing graph; training stops early on validation ROC-AUC; the weights of the best
validation epoch are restored and the test split is scored once, at the end.

Every held-out split is scored against two sets of negatives: ``uniform`` (any non-edge, as
``RandomLinkSplit`` draws them; a degree count already rejects most) and ``same_field`` (for each
positive, one end replaced by a token of the same field that is not linked to the other end: a
pitch-pitch edge against pitch-pitch non-edges). Training draws its negatives either way
(``--negatives``), and the validation score of that kind selects the epoch.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from musictl.errors import MusictlError
from musictl.progress import Progress
from musictl.transfer.settings import TEST_SHARE, VAL_SHARE, GcnSettings


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Python's, numpy's and torch's global RNGs seeded ``seed`` for the block (None: left as they are), and put
    back as they were after it (``torch.random.fork_rng``): PyG's layers' initialisation, ``RandomLinkSplit`` and
    ``negative_sampling`` take no generator, only the global RNGs, and the caller's draws must not shift."""
    python, numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng():
        try:
            if seed is not None:  # own seeding: PyG draws only from the global RNGs; forked here, put back below
                random.seed(seed)
                np.random.seed(seed)
                torch.manual_seed(seed)
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)


class Encoder(nn.Module):
    """``layers`` GCNConv (edge weights) or SAGEConv layers with ReLU and dropout between them."""

    def __init__(self, in_dim: int, settings: GcnSettings):
        super().__init__()
        from torch_geometric.nn import GCNConv, SAGEConv

        dims = [in_dim] + [settings.hidden] * (settings.layers - 1) + [settings.out_dim]
        conv = {"gcn": GCNConv, "sage": SAGEConv}[settings.conv]
        self.uses_weights = settings.conv == "gcn"
        self.convs = nn.ModuleList(conv(a, b) for a, b in itertools.pairwise(dims))
        self.dropout = settings.dropout

    def forward(self, x, edge_index, edge_weight=None):
        for i, conv in enumerate(self.convs):
            x = conv(x, edge_index, edge_weight) if self.uses_weights else conv(x, edge_index)
            if i < len(self.convs) - 1:
                x = nn.functional.dropout(torch.relu(x), self.dropout, self.training)
        return x


class MlpEncoder(nn.Module):
    """The same layer sizes without message passing: what the node features alone predict."""

    def __init__(self, in_dim: int, settings: GcnSettings):
        super().__init__()
        dims = [in_dim] + [settings.hidden] * (settings.layers - 1) + [settings.out_dim]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.dropout = settings.dropout

    def forward(self, x, edge_index=None, edge_weight=None):
        for i, linear in enumerate(self.linears):
            x = linear(x)
            if i < len(self.linears) - 1:
                x = nn.functional.dropout(torch.relu(x), self.dropout, self.training)
        return x


class LinkDecoder(nn.Module):
    """Link logits from two node embeddings: their dot product, or an MLP on their element-wise
    product (as PyG's / OGB's link predictors do), which copes better with hub tokens."""

    def __init__(self, dim: int, kind: str):
        super().__init__()
        if kind not in ("dot", "mlp"):
            raise MusictlError(f"--decoder {kind!r}: choose mlp or dot")
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1)) if kind == "mlp" else None

    def forward(self, z: torch.Tensor, edge_label_index: torch.Tensor) -> torch.Tensor:
        product = z[edge_label_index[0]] * z[edge_label_index[1]]
        return product.sum(dim=-1) if self.mlp is None else self.mlp(product).squeeze(-1)


class LinkPredictor(nn.Module):
    """Encoder + decoder as one module (what :class:`musictl.training.Run` trains and checkpoints): ``forward``
    is :func:`encode` then :func:`decode`. Its weights on disk (:meth:`weights`) are the encoder's under their own
    names and the decoder's under ``decoder.*``, as ``gcn/STYLE/model.safetensors`` has always held them."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x: torch.Tensor, graph, pairs: torch.Tensor) -> torch.Tensor:
        return decode(self.decoder, encode(self.encoder, x, graph), pairs)

    def weights(self) -> dict[str, torch.Tensor]:
        return {**self.encoder.state_dict(), **{f"decoder.{k}": v for k, v in self.decoder.state_dict().items()}}

    def save_pretrained(self, directory: Path) -> None:
        """``model.safetensors`` (the module's own state dict: ``best/`` of a checkpoint)."""
        from safetensors.torch import save_file

        Path(directory).mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(Path(directory) / "model.safetensors"))


def similarity_graph(features: np.ndarray, k: int) -> sp.csr_matrix:
    """Symmetric k-nearest-neighbour graph by cosine similarity (weights = similarity > 0)."""
    x = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    k = min(k, len(x) - 1)
    neighbours = np.argpartition(-sim, k, axis=1)[:, :k]
    rows = np.repeat(np.arange(len(x)), k)
    weights = np.maximum(sim[rows, neighbours.ravel()], 1e-3)
    matrix = sp.coo_matrix((weights, (rows, neighbours.ravel())), shape=sim.shape).tocsr()
    return matrix.maximum(matrix.T).tocsr()


NEGATIVES = ("uniform", "same_field")  # the negative sets every held-out split is scored on
SAMPLING_TRIES = 20  # rejection rounds when drawing a same-field non-edge


def negatives_key(setting: str) -> str:
    """The metrics key of a ``--negatives`` value: ``same-field`` -> ``same_field``."""
    return setting.replace("-", "_")


def to_data(features: np.ndarray, adjacency: sp.csr_matrix, edge_weight: str = "log", fields: np.ndarray | None = None):
    """A PyG graph with both directions of every edge (the diagonal is left out); weights scaled to a maximum of 1.
    ``fields`` (the Octuple field of each node; default: one field for all) is kept as ``data.field``.

    Co-occurrence counts span orders of magnitude (a metre token meets every note), so ``log``
    compresses them: with ``linear`` most edges would carry almost no message next to the self-loops.
    """
    from torch_geometric.data import Data

    if edge_weight not in ("log", "linear"):
        raise MusictlError(f"edge weight {edge_weight!r}: choose log or linear")
    coo = sp.triu(adjacency, k=1).tocoo()
    edge_index = torch.tensor(np.vstack([coo.row, coo.col]), dtype=torch.long)
    weight = torch.tensor(np.log1p(coo.data) if edge_weight == "log" else coo.data, dtype=torch.float)
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    weight = torch.cat([weight, weight])
    field_of = torch.zeros(adjacency.shape[0], dtype=torch.long) if fields is None else torch.as_tensor(
        np.asarray(fields), dtype=torch.long)
    return Data(x=torch.tensor(features, dtype=torch.float), edge_index=edge_index,
                edge_weight=weight / weight.max().clamp_min(1e-12), field=field_of)


def edge_keys(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Sorted keys ``u * n + v`` of both directions of every edge: the pairs a negative must avoid."""
    keys = torch.cat([edge_index[0] * num_nodes + edge_index[1], edge_index[1] * num_nodes + edge_index[0]])
    return torch.unique(keys)


def same_field_negatives(positives: torch.Tensor, field: torch.Tensor, forbidden: torch.Tensor,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """One negative per positive ``(u, v)`` where one can be found: one end replaced by a node of the same field,
    such that the pair is not an edge (``forbidden`` keys, :func:`edge_keys`) and not a node with itself. The end
    is chosen at random; when it finds no such node, the other end is tried; a positive whose field pair has no
    such non-edge at either end gets none. So each negative has the field pair of its positive and keeps one of
    its nodes."""
    device = positives.device
    positives, field, forbidden = positives.cpu(), field.cpu(), forbidden.cpu()
    n, m = len(field), positives.size(1)
    order = torch.argsort(field, stable=True)
    counts = torch.bincount(field, minlength=int(field.max()) + 1 if n else 1)
    starts = torch.cumsum(counts, 0) - counts
    first_right = torch.rand(m, generator=generator) < 0.5  # replace v first (else u)
    found = torch.full((m,), -1, dtype=torch.long)
    right = first_right.clone()
    pending = torch.arange(m)
    for attempt in range(SAMPLING_TRIES):
        if len(pending) == 0:
            break
        side = first_right[pending] ^ (attempt >= SAMPLING_TRIES // 2)  # the other end for the second half
        fixed = torch.where(side, positives[0, pending], positives[1, pending])
        f = field[torch.where(side, positives[1, pending], positives[0, pending])]
        candidate = order[starts[f] + (torch.rand(len(pending), generator=generator) * counts[f]).long()]
        ok = (candidate != fixed) & ~torch.isin(fixed * n + candidate, forbidden)
        found[pending[ok]], right[pending[ok]] = candidate[ok], side[ok]
        pending = pending[~ok]
    for i in pending.tolist():  # rare: few nodes of the field are left; look at every one
        for side in (bool(first_right[i]), not first_right[i]):
            fixed, other = (positives[0, i], positives[1, i]) if side else (positives[1, i], positives[0, i])
            pool = order[starts[field[other]]:starts[field[other]] + counts[field[other]]]
            pool = pool[(pool != fixed) & ~torch.isin(fixed * n + pool, forbidden)]
            if len(pool):
                found[i] = pool[torch.randint(len(pool), (1,), generator=generator)]
                right[i] = side
                break
    keep = found >= 0
    pairs = torch.stack([torch.where(right, positives[0], found), torch.where(right, found, positives[1])])
    return pairs[:, keep].to(device)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC of link scores; a clear error when a split holds only one class."""
    from sklearn.metrics import roc_auc_score

    if labels.min() == labels.max():
        raise MusictlError("ROC-AUC needs positive and negative edges; the graph is too small to evaluate")
    return float(roc_auc_score(labels, scores))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (area under the step-wise precision-recall curve)."""
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, scores))


def link_scores(labels: torch.Tensor | np.ndarray, scores: torch.Tensor | np.ndarray) -> tuple[float, float]:
    """(ROC-AUC, AP) of scores against 0/1 labels."""
    y = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    p = scores.detach().float().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores, dtype=float)
    return roc_auc(y, p), average_precision(y, p)


def degree_features(edge_index: torch.Tensor, edge_weight: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """(num_nodes, 2) log of 1 + degree and of 1 + weighted degree, standardised.

    Computed on the graph the encoder passes messages over, so held-out edges never inform them.
    """
    ones = torch.ones_like(edge_weight)
    degree = torch.zeros(num_nodes).index_add_(0, edge_index[0].cpu(), ones.cpu())
    strength = torch.zeros(num_nodes).index_add_(0, edge_index[0].cpu(), edge_weight.float().cpu())
    x = torch.log1p(torch.stack([degree, strength], dim=1))
    return ((x - x.mean(0)) / x.std(0).clamp_min(1e-6)).to(edge_weight.device)


def node_inputs(features: torch.Tensor, graph, settings: GcnSettings) -> torch.Tensor:
    """The encoder's input: node features, plus log-degrees of the message-passing ``graph``."""
    if not settings.degree_features:
        return features
    return torch.cat([features, degree_features(graph.edge_index, graph.edge_weight, graph.num_nodes)], dim=1)


def split_edges(data, device: str = "cpu", seed: int = 0, message=None):
    """(train, validation, test) graphs: held-out edges are not in the training message-passing graph.

    Each graph keeps the training edges to predict as ``target_index`` (both directions) and the pairs a
    negative must avoid as ``forbidden``; validation and test get same-field negatives beside the uniform ones
    (``hard_label_index``, ``hard_label``). ``message`` (a graph over the same nodes, e.g. the similarity graph
    of models 1 and 2) replaces the message-passing edges: then the edges of ``data`` are only predicted.
    """
    import torch_geometric.transforms as transforms

    n_edges = data.edge_index.shape[1] // 2
    if n_edges < 20 or data.num_nodes < 5:
        raise MusictlError(
            f"the graph is too small to split into train/validation/test edges ({data.num_nodes} nodes, {n_edges} edges); "
            "use more pieces of the style, or more node fields (musictl adjacency --nodes) or edges (--edges cooccurrence "
            "--window N)"
        )
    split = transforms.RandomLinkSplit(num_val=VAL_SHARE, num_test=TEST_SHARE, is_undirected=True,
                                       add_negative_train_samples=False, split_labels=False)
    graphs = split(data)
    every_edge = edge_keys(data.edge_index, data.num_nodes)
    generator = torch.Generator().manual_seed(seed)  # own seeding: the split's negatives (a data split, kept as published)
    train_graph = graphs[0]
    for graph in graphs:
        graph.target_index = train_graph.edge_index
        graph.forbidden = edge_keys(train_graph.edge_index, data.num_nodes)
        if message is not None:
            graph.edge_index, graph.edge_weight = message.edge_index, message.edge_weight
    for graph in graphs[1:]:
        positives = graph.edge_label_index[:, graph.edge_label == 1]
        negatives = same_field_negatives(positives, data.field, every_edge, generator)
        graph.hard_label_index = torch.cat([positives, negatives], dim=1)
        graph.hard_label = torch.cat([torch.ones(positives.size(1)), torch.zeros(negatives.size(1))])
    return tuple(g.to(device) for g in graphs)


def labelled_pairs(split) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{negatives kind: (pairs (2, m), 0/1 labels)}`` of a held-out split: uniform, and same_field where drawn."""
    sets = {"uniform": (split.edge_label_index, split.edge_label)}
    hard = getattr(split, "hard_label", None)
    if hard is not None and hard.numel() and hard.min() < 1:
        sets["same_field"] = (split.hard_label_index, hard)
    return sets


# ----- the four steps ------------------------------------------------------------------------
def encode(encoder: nn.Module, x: torch.Tensor, graph) -> torch.Tensor:
    """Node embeddings by message passing over ``graph`` (the training graph)."""
    return encoder(x, graph.edge_index, graph.edge_weight)


def decode(decoder: nn.Module, z: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """A link logit for each node pair (a ``(2, m)`` index)."""
    return decoder(z, pairs)


def draw_negatives(graph, count: int, kind: str = "same-field", generator: torch.Generator | None = None) -> torch.Tensor:
    """Fresh training negatives: ``uniform`` non-edges of the training graph, or ``same-field`` ones (one per
    training edge, one end replaced by a token of its field). With ``generator`` (a run's stream), the draw comes
    from it alone: ``negative_sampling`` takes no generator, so it runs seeded from it under :func:`seeded`."""
    from torch_geometric.utils import negative_sampling

    if kind == "uniform":
        if generator is None:
            return negative_sampling(graph.target_index, num_nodes=graph.num_nodes, num_neg_samples=count)
        with seeded(int(torch.randint(2**31 - 1, (1,), generator=generator))):
            return negative_sampling(graph.target_index, num_nodes=graph.num_nodes, num_neg_samples=count)
    return same_field_negatives(graph.edge_label_index, graph.field, graph.forbidden, generator)


def train(encoder: nn.Module, decoder: nn.Module, optimizer, x: torch.Tensor, graph, negatives: str = "same-field") -> float:
    """One epoch: the training edges against as many negatives, drawn afresh (``uniform`` or ``same-field``)."""
    encoder.train()
    decoder.train()
    optimizer.zero_grad()
    z = encode(encoder, x, graph)
    positives = graph.edge_label_index
    negatives = draw_negatives(graph, positives.size(1), negatives)
    labels = torch.cat([torch.ones(positives.size(1)), torch.zeros(negatives.size(1))]).to(x.device)
    loss = nn.functional.binary_cross_entropy_with_logits(decode(decoder, z, torch.cat([positives, negatives], 1)), labels)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def test(encoder: nn.Module, decoder: nn.Module, x: torch.Tensor, graph, split) -> dict[str, tuple[float, float]]:
    """``{negatives kind: (ROC-AUC, AP)}`` on ``split``'s labelled pairs, message passing over the training ``graph``."""
    encoder.eval()
    decoder.eval()
    z = encode(encoder, x, graph)
    return {kind: link_scores(labels, decode(decoder, z, pairs)) for kind, (pairs, labels) in labelled_pairs(split).items()}


def score_row(scores: dict[str, tuple[float, float]], prefix: str = "") -> dict[str, float]:
    """``{"auc", "ap", "auc_same_field", "ap_same_field"}`` (with ``prefix``) of :func:`test`'s scores, rounded."""
    row = {}
    for kind, (auc, ap) in scores.items():
        suffix = "" if kind == "uniform" else f"_{kind}"
        row[f"{prefix}auc{suffix}"], row[f"{prefix}ap{suffix}"] = round(auc, 5), round(ap, 5)
    return row


# ----- training with early stopping on validation --------------------------------------------
@dataclass
class Fit:
    """What early stopping chose: the best validation epoch (its weights are restored) and its validation scores."""

    best_epoch: int
    scores: dict[str, tuple[float, float]]
    selected_on: str = "uniform"
    history: list[dict] = field(default_factory=list)

    @property
    def val_auc(self) -> float:
        return self.scores[self.selected_on][0] if self.scores else -1.0


def fit(encoder: nn.Module, decoder: nn.Module, x: torch.Tensor, train_graph, val, settings: GcnSettings,
        on_progress: Progress | None = None, name: str = "gcn") -> Fit:
    """Train until ``patience`` epochs pass without a better validation ROC-AUC (on the negatives of the kind
    training uses, where the split has them); keep the best weights."""
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=settings.lr)
    wanted = negatives_key(settings.negatives)
    selected_on = wanted if wanted in labelled_pairs(val) else "uniform"
    best, best_state, history = Fit(0, {}, selected_on), None, []
    for epoch in range(1, settings.epochs + 1):
        loss = train(encoder, decoder, optimizer, x, train_graph, settings.negatives)
        scores = test(encoder, decoder, x, train_graph, val)
        history.append({"epoch": epoch, "loss": round(loss, 5), **score_row(scores, "val_")})
        if on_progress:
            on_progress(epoch, settings.epochs, {**history[-1], "model": name})
        if scores[selected_on][0] > best.val_auc:
            best = Fit(epoch, scores, selected_on)
            best_state = copy.deepcopy((encoder.state_dict(), decoder.state_dict()))
        elif epoch - best.best_epoch >= settings.patience:
            break
    encoder.load_state_dict(best_state[0])
    decoder.load_state_dict(best_state[1])
    best.history = history
    return best


def fit_and_test(encoder_cls, x: torch.Tensor, split, settings: GcnSettings, device: str,
                 on_progress: Progress | None = None, score_test: bool = True, name: str = "gcn"):
    """Build a fresh (seeded) encoder + decoder, fit on validation, score the test split once."""
    train_graph, val, test_split = split
    with seeded(settings.seed):  # PyG's layers and sampling take no generator: the global RNGs, forked for the block
        encoder = encoder_cls(x.shape[1], settings).to(device)
        decoder = LinkDecoder(settings.out_dim, settings.decoder).to(device)
        chosen = fit(encoder, decoder, x, train_graph, val, settings, on_progress, name)
    scores = test(encoder, decoder, x, train_graph, test_split) if score_test else {}
    return encoder, decoder, chosen, scores


@torch.no_grad()
def link_probabilities(decoder: nn.Module, z: torch.Tensor, chunk: int = 1 << 18) -> np.ndarray:
    """``(n, n)`` sigmoid of the decoder's logit for every node pair (float32): what the walk mixes with counts."""
    decoder.eval()
    n = z.size(0)
    out = np.empty((n, n), dtype=np.float32)
    rows = max(1, chunk // max(n, 1))
    cols = torch.arange(n)
    for start in range(0, n, rows):
        block = torch.arange(start, min(n, start + rows))
        pairs = torch.stack([block.repeat_interleave(n), cols.repeat(len(block))])
        out[start:start + len(block)] = torch.sigmoid(decode(decoder, z, pairs)).view(len(block), n).numpy()
    return out
