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
    """The test scores of the GCN beside its baselines on both kinds of negatives, best first (a rich Table)."""
    from rich.table import Table

    # result.graph is the graph the GCN learned: the style graph by its edges (transition, cooccurrence) or similarity
    table = Table(title=f"train-gcn --style {result.style} --model {result.model} ({result.features} features + "
                        f"{result.graph} graph): test edges against same-field and uniform negatives")
    for column, justify in (("model", "left"), ("AUC same-field", "right"), ("AP same-field", "right"),
                            ("AUC uniform", "right"), ("AP uniform", "right")):
        table.add_column(column, justify=justify)
    rows = [(f"GCN (best validation epoch {result.best_epoch})", result.test_auc_same_field, result.test_ap_same_field,
             result.test_auc, result.test_ap)]
    rows += [(BASELINE_NAMES.get(name, name), s.get("auc_same_field"), s.get("ap_same_field"), s["auc"], s["ap"])
             for name, s in result.baselines.items()]
    for name, *scores in sorted(rows, key=lambda r: -(r[1] if r[1] is not None else r[3])):
        table.add_row(f"[bold]{name}[/]" if name.startswith("GCN (") else name,
                      *("-" if v is None else f"{v:.4f}" for v in scores))
    return table


def gcn_verdict(result) -> str:
    """One line per kind of negatives: what the GCN adds over its best baseline."""
    lines = []
    for label, key, score in (("same-field negatives", "auc_same_field", result.test_auc_same_field),
                              ("uniform negatives", "auc", result.test_auc)):
        best = result.best_baseline_on(key)
        if score is None:
            continue
        if best is None:
            lines.append(f"{label}: test ROC-AUC {score:.4f}")
            continue
        name, auc = best
        word = "beats" if score > auc else "does not beat"
        lines.append(f"{label}: the GCN {word} its best baseline, {BASELINE_NAMES.get(name, name)}: ROC-AUC {score:.4f} vs "
                     f"{auc:.4f} ({score - auc:+.4f})")
    return "\n".join(lines)


def judge_line(judge: Mapping[str, Any]) -> str:
    """The judge's balanced accuracy with where it falls in its real-vs-real null, the verdict and the pieces
    behind it: ``0.70, null percentile 62 (null 95th pct 0.88 on 4 vs 4 held-out pieces, 100 draws): cannot be
    told apart; 8 vs 8 pieces, fewer than 40 a class``."""
    from musictl.transfer.fidelity import ENOUGH_PIECES

    null, counts = judge.get("null") or {}, f"{judge['generated']} vs {judge['held_out']} pieces"
    if judge.get("percentile") is None:
        text = f"{judge['accuracy']:.2f} (0.50: chance; no real-vs-real null: {null.get('note', 'not run')}); {counts}"
    else:
        a, b = null["sizes"]
        verdict = "told apart" if judge["distinguishable"] else "cannot be told apart"
        text = (f"{judge['accuracy']:.2f}, null percentile {100 * judge['percentile']:.0f} (null 95th pct "
                f"{null['p95']:.2f} on {a} vs {b} held-out pieces, {null['draws']} draws): {verdict}; {counts}")
    return text if judge.get("enough_pieces") else f"{text}, fewer than {ENOUGH_PIECES} a class"


def demo_table(result):
    """The demo's summary (a rich Table)."""
    from rich.table import Table

    table = Table(title=f"musictl demo ({result.seconds:.0f} s)")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("MidiBert valid masked accuracy", f"{result.bert_accuracy:.3f} (tiny, {result.steps} steps)")
    table.add_row(f"graph '{result.style}'", f"{result.graph.nodes} nodes, {result.graph.edges} edges")
    gcn = result.gcn
    same = f"same-field negatives ROC-AUC {gcn.test_auc_same_field:.3f}; " if gcn.test_auc_same_field is not None else ""
    table.add_row("GCN link prediction (test)", f"{same}uniform ROC-AUC {gcn.test_auc:.3f}, AP {gcn.test_ap:.3f}")
    for key, label in (("auc_same_field", "same-field"), ("auc", "uniform")):
        best = gcn.best_baseline_on(key)
        if best:
            table.add_row(f"best baseline (test, {label})", f"{BASELINE_NAMES.get(best[0], best[0])}: ROC-AUC {best[1]:.3f}")
    fidelity = result.fidelity
    own, other = fidelity["divergence_own_style"], fidelity.get("divergence_other_styles_mean", {})
    for key in own:
        table.add_row(f"{key} divergence own / others", f"{own[key]:.3f} / {other.get(key, float('nan')):.3f}")
    table.add_row("novelty (4-grams not in the training pieces)", f"{fidelity['novelty']:.2f}")
    listening = fidelity.get("listening")
    if listening:
        made, real = listening["generated"], listening["held_out"]
        table.add_row("silence share generated / held-out", f"{made['silence_share']:.3f} / {real['silence_share']:.3f}")
        table.add_row("median duration / next onset generated / held-out",
                      f"{made['duration_ratio']:.2f} / {real['duration_ratio']:.2f}")
        if made.get("key_consistency") is not None and real.get("key_consistency") is not None:
            table.add_row("key consistency generated / held-out",
                          f"{made['key_consistency']:.2f} / {real['key_consistency']:.2f}")
    judge = fidelity.get("judge") or {}
    if judge.get("accuracy") is not None:
        table.add_row("judge: real vs generated (balanced accuracy)", judge_line(judge))
    table.add_row("generated", f"{result.midi_path} ({result.notes} notes in {result.bars} bars), {result.png_path}")
    table.add_row("artifacts", str(result.root))
    return table
