"""What the cross-style commands return: small typed results with ``to_dict()`` for JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class Result:
    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass
class EmbedResult(Result):
    out: Path
    model: str
    mode: str
    graph_tokens: int
    dim: int
    mapped_tokens: int
    positions: int


@dataclass
class GraphResult(Result):
    out: Path
    style: str
    nodes: int
    edges: int
    density: float
    components: int
    total_weight: float
    loop_weight: float | None
    pieces: int
    notes: int
    keys: dict | None = None  # key=common: the key distribution and shifts (musictl.transfer.keys.StyleKeys.summary)


@dataclass
class GcnResult(Result):
    """Test scores are those of the best validation epoch, computed once; baselines on the same test edges."""

    out: Path
    style: str
    model: int
    features: str
    graph: str
    test_auc: float
    test_ap: float
    val_auc: float
    val_ap: float
    best_epoch: int
    epochs_run: int
    nodes: int
    in_dim: int
    test_auc_same_field: float | None = None  # against negatives of the same field pair as each positive
    test_ap_same_field: float | None = None
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def best_baseline(self) -> tuple[str, float] | None:
        """(name, AUC) of the strongest baseline (uniform negatives), or None without baselines."""
        return self.best_baseline_on("auc")

    def best_baseline_on(self, key: str = "auc") -> tuple[str, float] | None:
        """(name, score) of the strongest baseline on ``key`` (``auc``, ``auc_same_field``, ...), or None."""
        scored = {k: v[key] for k, v in self.baselines.items() if v.get(key) is not None}
        if not scored:
            return None
        name = max(scored, key=scored.get)
        return name, scored[name]
