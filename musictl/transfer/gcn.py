"""GCN link prediction on a style's token graph (PyTorch Geometric), with a clean edge split.

``RandomLinkSplit`` keeps validation and test edges out of the message-passing graph, negatives
are drawn afresh every epoch, training stops early on validation ROC-AUC, and the test ROC-AUC and
average precision are those of the best validation epoch. GCN layers use the edge weights.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from musictl import constants as C
from musictl.errors import MusictlError

KIND = "gcn"


@dataclass
class GcnSettings:
    conv: str = "gcn"  # gcn | sage
    layers: int = 2
    hidden: int = 128
    out: int = 64
    dropout: float = 0.2
    lr: float = 0.01
    epochs: int = C.GCN_MAX_EPOCHS
    patience: int = 30
    decoder: str = "mlp"  # mlp (Hadamard product -> MLP) | dot
    features: str = "token"  # token | token-pos
    graph: str = "cooccurrence"  # cooccurrence | similarity
    similarity_k: int = 10
    edge_weight: str = "log"  # log: log(1 + count) | linear: count (both scaled to a maximum of 1)
    degree_features: bool = True  # append log-degrees measured on the message-passing graph only
    seed: int = 0


class Encoder(nn.Module):
    def __init__(self, in_dim: int, settings: GcnSettings):
        super().__init__()
        from torch_geometric.nn import GCNConv, SAGEConv

        dims = [in_dim] + [settings.hidden] * (settings.layers - 1) + [settings.out]
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
    """A PyG graph with both directions of every edge; weights scaled to a maximum of 1.

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


def degree_features(edge_index: torch.Tensor, edge_weight: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """(num_nodes, 2) log of 1 + degree and of 1 + weighted degree, standardised.

    Computed on the graph the encoder passes messages over, so held-out edges never inform them.
    """
    ones = torch.ones_like(edge_weight)
    degree = torch.zeros(num_nodes).index_add_(0, edge_index[0].cpu(), ones.cpu())
    strength = torch.zeros(num_nodes).index_add_(0, edge_index[0].cpu(), edge_weight.float().cpu())
    x = torch.log1p(torch.stack([degree, strength], dim=1))
    return ((x - x.mean(0)) / x.std(0).clamp_min(1e-6)).to(edge_weight.device)


def _with_degrees(data, settings: GcnSettings):
    if settings.degree_features:
        data.x = torch.cat([data.x, degree_features(data.edge_index, data.edge_weight, data.num_nodes)], dim=1)
    return data


def _scores(labels: torch.Tensor, logits: torch.Tensor) -> tuple[float, float]:
    y, p = labels.cpu().numpy(), logits.detach().float().cpu().numpy()
    return roc_auc(y, p), average_precision(y, p)


def train_link_prediction(features: np.ndarray, adjacency: sp.csr_matrix, settings: GcnSettings, device: str = "cpu",
                          on_epoch=None) -> dict:
    """Train encoder + dot-product decoder; returns model state, node embeddings and metrics."""
    import torch_geometric.transforms as T
    from torch_geometric.utils import negative_sampling

    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)
    data = to_data(features, adjacency, settings.edge_weight)
    n_edges = data.edge_index.shape[1] // 2
    if n_edges < 20 or data.num_nodes < 5:
        raise MusictlError(
            f"the graph is too small to split into train/validation/test edges ({data.num_nodes} nodes, {n_edges} edges); "
            "use more pieces of the style or a larger --window in musictl adjacency"
        )
    split = T.RandomLinkSplit(num_val=0.1, num_test=0.1, is_undirected=True, add_negative_train_samples=False,
                              split_labels=False)
    train, val, test = (d.to(device) for d in split(data))
    train.x = val.x = test.x = _with_degrees(train.clone(), settings).x  # degrees of the message-passing graph
    model = Encoder(train.num_features, settings).to(device)
    decode = LinkDecoder(settings.out, settings.decoder).to(device)
    optimizer = torch.optim.Adam([*model.parameters(), *decode.parameters()], lr=settings.lr)
    best = {"val_auc": -1.0}
    best_state = None
    history = []
    for epoch in range(1, settings.epochs + 1):
        model.train()
        decode.train()
        optimizer.zero_grad()
        z = model(train.x, train.edge_index, train.edge_weight)
        negatives = negative_sampling(train.edge_index, num_nodes=train.num_nodes, num_neg_samples=train.edge_label_index.size(1))
        edges = torch.cat([train.edge_label_index, negatives], dim=1)
        labels = torch.cat([torch.ones(train.edge_label_index.size(1)), torch.zeros(negatives.size(1))]).to(device)
        loss = nn.functional.binary_cross_entropy_with_logits(decode(z, edges), labels)
        loss.backward()
        optimizer.step()
        model.eval()
        decode.eval()
        with torch.no_grad():
            z = model(train.x, train.edge_index, train.edge_weight)
            val_auc, val_ap = _scores(val.edge_label, decode(z, val.edge_label_index))
        history.append({"epoch": epoch, "loss": round(float(loss.detach()), 5), "val_auc": round(val_auc, 5), "val_ap": round(val_ap, 5)})
        if on_epoch:
            on_epoch(epoch, settings.epochs, history[-1])
        if val_auc > best["val_auc"]:
            with torch.no_grad():
                test_auc, test_ap = _scores(test.edge_label, decode(z, test.edge_label_index))
            best = {"epoch": epoch, "val_auc": val_auc, "val_ap": val_ap, "test_auc": test_auc, "test_ap": test_ap}
            best_state = copy.deepcopy({**model.state_dict(), **{f"decoder.{k}": v for k, v in decode.state_dict().items()}})
        elif epoch - best["epoch"] >= settings.patience:
            break
    model.load_state_dict({k: v for k, v in best_state.items() if not k.startswith("decoder.")})
    model.eval()
    with torch.no_grad():  # final embeddings: message passing over every edge of the style graph
        full = _with_degrees(data.clone(), settings).to(device)
        embeddings = model(full.x, full.edge_index, full.edge_weight).cpu()
    metrics = {
        "best_epoch": best["epoch"], "epochs_run": len(history),
        "val_auc": round(best["val_auc"], 5), "val_ap": round(best["val_ap"], 5),
        "test_auc": round(best["test_auc"], 5), "test_ap": round(best["test_ap"], 5),
        "train_edges": int(train.edge_label_index.size(1)), "val_edges": int(val.edge_label.sum()),
        "test_edges": int(test.edge_label.sum()), "nodes": int(data.num_nodes), "in_dim": int(train.num_features),
        "settings": asdict(settings),
    }
    return {"state": {k: v.cpu() for k, v in best_state.items()}, "embeddings": embeddings, "metrics": metrics,
            "history": history, "split": (train, val, test)}
