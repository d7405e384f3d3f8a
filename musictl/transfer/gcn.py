"""GCN link prediction on a style's token graph (PyTorch Geometric), with a clean edge split.

Four small pieces, as in PyG's ``examples/link_pred.py``: :func:`encode` (node embeddings by message
passing over the training graph), :func:`decode` (a logit per node pair), :func:`train` (one epoch
on the training edges and as many fresh negatives) and :func:`test` (ROC-AUC and average precision
on a held-out split). ``RandomLinkSplit`` keeps validation and test edges out of the
message-passing graph; training stops early on validation ROC-AUC; the weights of the best
validation epoch are restored and the test split is scored once, at the end.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from musictl.errors import MusictlError
from musictl.progress import Progress
from musictl.transfer.settings import TEST_SHARE, VAL_SHARE, GcnSettings

KIND = "gcn"


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


def to_data(features: np.ndarray, adjacency: sp.csr_matrix, edge_weight: str = "log"):
    """A PyG graph with both directions of every edge (the diagonal is left out); weights scaled to a maximum of 1.

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
    return Data(x=torch.tensor(features, dtype=torch.float), edge_index=edge_index, edge_weight=weight / weight.max())


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


def split_edges(data, device: str = "cpu"):
    """(train, validation, test) graphs: held-out edges are not in the training message-passing graph."""
    import torch_geometric.transforms as transforms

    n_edges = data.edge_index.shape[1] // 2
    if n_edges < 20 or data.num_nodes < 5:
        raise MusictlError(
            f"the graph is too small to split into train/validation/test edges ({data.num_nodes} nodes, {n_edges} edges); "
            "use more pieces of the style or a larger --window in musictl adjacency"
        )
    split = transforms.RandomLinkSplit(num_val=VAL_SHARE, num_test=TEST_SHARE, is_undirected=True,
                                       add_negative_train_samples=False, split_labels=False)
    return tuple(d.to(device) for d in split(data))


# ----- the four steps ------------------------------------------------------------------------
def encode(encoder: nn.Module, x: torch.Tensor, graph) -> torch.Tensor:
    """Node embeddings by message passing over ``graph`` (the training graph)."""
    return encoder(x, graph.edge_index, graph.edge_weight)


def decode(decoder: nn.Module, z: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """A link logit for each node pair (a ``(2, m)`` index)."""
    return decoder(z, pairs)


def train(encoder: nn.Module, decoder: nn.Module, optimizer, x: torch.Tensor, graph) -> float:
    """One epoch: the training edges against as many negatives, drawn afresh."""
    from torch_geometric.utils import negative_sampling

    encoder.train()
    decoder.train()
    optimizer.zero_grad()
    z = encode(encoder, x, graph)
    positives = graph.edge_label_index
    negatives = negative_sampling(graph.edge_index, num_nodes=graph.num_nodes, num_neg_samples=positives.size(1))
    labels = torch.cat([torch.ones(positives.size(1)), torch.zeros(negatives.size(1))]).to(x.device)
    loss = nn.functional.binary_cross_entropy_with_logits(decode(decoder, z, torch.cat([positives, negatives], 1)), labels)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def test(encoder: nn.Module, decoder: nn.Module, x: torch.Tensor, graph, split) -> tuple[float, float]:
    """(ROC-AUC, AP) on ``split``'s labelled pairs, message passing over the training ``graph``."""
    encoder.eval()
    decoder.eval()
    return link_scores(split.edge_label, decode(decoder, encode(encoder, x, graph), split.edge_label_index))


# ----- training with early stopping on validation --------------------------------------------
@dataclass
class Fit:
    """What early stopping chose: the best validation epoch (its weights are restored)."""

    best_epoch: int
    val_auc: float
    val_ap: float
    history: list[dict] = field(default_factory=list)


def fit(encoder: nn.Module, decoder: nn.Module, x: torch.Tensor, train_graph, val, settings: GcnSettings,
        on_progress: Progress | None = None, name: str = "gcn") -> Fit:
    """Train until ``patience`` epochs pass without a better validation ROC-AUC; keep the best weights."""
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=settings.lr)
    best, best_state, history = Fit(0, -1.0, 0.0), None, []
    for epoch in range(1, settings.epochs + 1):
        loss = train(encoder, decoder, optimizer, x, train_graph)
        val_auc, val_ap = test(encoder, decoder, x, train_graph, val)
        history.append({"epoch": epoch, "loss": round(loss, 5), "val_auc": round(val_auc, 5), "val_ap": round(val_ap, 5)})
        if on_progress:
            on_progress(epoch, settings.epochs, {**history[-1], "model": name})
        if val_auc > best.val_auc:
            best = Fit(epoch, val_auc, val_ap)
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
    torch.manual_seed(settings.seed)
    encoder = encoder_cls(x.shape[1], settings).to(device)
    decoder = LinkDecoder(settings.out_dim, settings.decoder).to(device)
    chosen = fit(encoder, decoder, x, train_graph, val, settings, on_progress, name)
    scores = test(encoder, decoder, x, train_graph, test_split) if score_test else (None, None)
    return encoder, decoder, chosen, scores


@dataclass
class LinkPrediction:
    """A trained link predictor, its scores (test once, at the best validation epoch) and its baselines."""

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
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    state: dict = field(default_factory=dict, repr=False)  # encoder weights + ``decoder.*``
    embeddings: torch.Tensor | None = field(default=None, repr=False)  # message passing over every edge
    history: list[dict] = field(default_factory=list, repr=False)
    split: tuple = field(default=(), repr=False)

    def to_dict(self) -> dict:
        keys = ("test_auc", "test_ap", "val_auc", "val_ap", "best_epoch", "epochs_run", "train_edges", "val_edges",
                "test_edges", "nodes", "in_dim")
        return {**{k: getattr(self, k) for k in keys}, "baselines": self.baselines, "settings": self.settings.to_dict()}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 5)


def train_link_prediction(features: np.ndarray, adjacency: sp.csr_matrix, settings: GcnSettings, device: str = "cpu",
                          on_progress: Progress | None = None, score_test: bool = True) -> LinkPrediction:
    """Split the edges, train encoder + decoder with early stopping, score the test edges once (and the baselines).

    ``score_test=False`` (a sweep choosing on validation) leaves the test edges untouched: test scores are None.
    """
    from musictl.transfer.baselines import baseline_scores

    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)
    data = to_data(features, adjacency, settings.edge_weight)
    split = split_edges(data, device)
    train_graph, val, test_split = split
    raw = train_graph.x
    x = node_inputs(raw, train_graph, settings)
    train_graph.x = val.x = test_split.x = x  # degrees of the message-passing graph, the same for every split
    encoder, decoder, chosen, (test_auc, test_ap) = fit_and_test(Encoder, x, split, settings, device, on_progress, score_test)
    baselines = baseline_scores(split, raw, settings, device, on_progress) if settings.baselines and score_test else {}
    encoder.eval()
    with torch.no_grad():  # final embeddings: message passing over every edge of the style graph
        full = data.clone().to(device)
        embeddings = encoder(node_inputs(full.x, full, settings), full.edge_index, full.edge_weight).cpu()
    state = {**encoder.state_dict(), **{f"decoder.{k}": v for k, v in decoder.state_dict().items()}}
    return LinkPrediction(
        test_auc=_rounded(test_auc), test_ap=_rounded(test_ap), val_auc=round(chosen.val_auc, 5),
        val_ap=round(chosen.val_ap, 5), best_epoch=chosen.best_epoch, epochs_run=len(chosen.history),
        train_edges=int(train_graph.edge_label_index.size(1)), val_edges=int(val.edge_label.sum()),
        test_edges=int(test_split.edge_label.sum()), nodes=int(data.num_nodes), in_dim=int(x.shape[1]), settings=settings,
        baselines=baselines, state={k: v.detach().cpu() for k, v in state.items()}, embeddings=embeddings,
        history=chosen.history, split=split)
