"""Rendering of the cross-style commands' results (tables, delayed progress bars) — the library returns data only."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

BASELINE_NAMES = {
    "common_neighbours": "common neighbours (heuristic)",
    "adamic_adar": "Adamic-Adar (heuristic)",
    "resource_allocation": "resource allocation (heuristic)",
    "degree_product": "degree product (heuristic)",
    "gcn_random_features": "GCN, random node features",
    "mlp_embeddings": "MLP on the embeddings, no graph",
}


@contextlib.contextmanager
def progress_after(description: str, delay: float = 1.0,
                   describe: Callable[[Mapping[str, Any]], str] | None = None) -> Iterator[Callable]:
    """A progress callback that draws a bar (``musictl.console.track``) only once the work has run
    for ``delay`` seconds, so quick runs stay quiet."""
    from musictl.console import track

    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        drawn: list[Callable] = []

        def on_progress(done: int, total: int | None, row: Mapping[str, Any] | None = None) -> None:
            if not drawn:
                if time.monotonic() - started < delay:
                    return
                drawn.append(stack.enter_context(track(description, total, describe=describe)))
            drawn[0](done, total, row)

        yield on_progress


def gcn_table(result):
    """The test scores of the GCN beside its baselines, best first (a rich Table)."""
    from rich.table import Table

    table = Table(title=f"train-gcn --style {result.style} --model {result.model} ({result.features} + {result.graph}): "
                        "test edges")
    table.add_column("model")
    table.add_column("ROC-AUC", justify="right")
    table.add_column("AP", justify="right")
    rows = [(f"GCN (best validation epoch {result.best_epoch})", result.test_auc, result.test_ap)]
    rows += [(BASELINE_NAMES.get(name, name), s["auc"], s["ap"]) for name, s in result.baselines.items()]
    for name, auc, ap in sorted(rows, key=lambda r: -r[1]):
        table.add_row(f"[bold]{name}[/]" if name.startswith("GCN (") else name, f"{auc:.4f}", f"{ap:.4f}")
    return table


def gcn_verdict(result) -> str:
    """One line: what the GCN adds over its best baseline."""
    best = result.best_baseline
    if best is None:
        return f"test ROC-AUC {result.test_auc:.4f}  AP {result.test_ap:.4f}"
    name, auc = best
    gain = result.test_auc - auc
    word = "beats" if gain > 0 else "does not beat"
    return (f"the GCN {word} its best baseline, {BASELINE_NAMES.get(name, name)}: ROC-AUC {result.test_auc:.4f} vs "
            f"{auc:.4f} ({gain:+.4f})")


def demo_table(result):
    """The demo's summary (a rich Table)."""
    from rich.table import Table

    table = Table(title=f"musictl demo ({result.seconds:.0f} s)")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("MidiBert valid masked accuracy", f"{result.bert_accuracy:.3f} (tiny, {result.steps} steps)")
    table.add_row(f"graph '{result.style}'", f"{result.graph.nodes} nodes, {result.graph.edges} edges")
    gcn = result.gcn
    table.add_row("GCN link prediction (test)", f"ROC-AUC {gcn.test_auc:.3f}, AP {gcn.test_ap:.3f}")
    if gcn.best_baseline:
        name, auc = gcn.best_baseline
        table.add_row("best baseline (test)", f"{BASELINE_NAMES.get(name, name)}: ROC-AUC {auc:.3f}")
    fidelity = result.fidelity
    own, other = fidelity["divergence_own_style"], fidelity.get("divergence_other_styles_mean", {})
    for key in own:
        table.add_row(f"{key} divergence own / others", f"{own[key]:.3f} / {other.get(key, float('nan')):.3f}")
    table.add_row("novelty (4-grams not in the corpus)", f"{fidelity['novelty']:.2f}")
    table.add_row("generated", f"{result.midi_path} ({result.notes} notes in {result.bars} bars), {result.png_path}")
    table.add_row("artifacts", str(result.root))
    return table
