"""``curves.png`` of every training artifact: the numbers of ``metrics.jsonl`` over steps (or epochs), one panel per
unit, so an accuracy never shares an axis with a count (:func:`curve_panels` is the figure's data, tested without
pixels; :func:`plot_curves` draws it). :func:`scalars` flattens a metrics row, for the curves and the trackers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

CURVES_FILE = "curves.png"


def scalars(row: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a (nested) metrics row, flattened to ``valid/fields/pitch/accuracy`` names."""
    out: dict[str, float] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(scalars(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and (prefix or key not in ("step", "epoch")):
            out[name] = float(value)
    return out


# ----- curves.png: one panel per unit --------------------------------------------------------------------
Points = list[tuple[float, float]]
CURVE_LEFT_OUT = ("lr", "notes_per_s", "masked_notes", "diagnostic_notes")  # a setting, a speed, counts: no curve
PRETRAIN_OBJECTIVE = ("loss", "recover_loss", "masker_loss")  # pre-training's logged training loss and its terms
UNIT_WORDS = (("correlation", ("spearman",)), ("ratio", ("ratio",)), ("loss", ("loss",)),
              ("share", ("accuracy", "f1", "share", "auc", "_ap")))  # auc, _ap: the GCN's ROC-AUC and AP
UNITS = {  # unit: title, y-axis label, y range (panels in this order; any other number gets a panel of its own)
    "loss": ("loss", "cross-entropy (nats)", None),
    "objective": ("training objective: not on the validation loss's scale", "objective (weighted per field)", None),
    "share": ("accuracies, shares, ROC-AUC and AP", "share (0 to 1)", (0.0, 1.0)),
    "correlation": ("correlations", "Spearman rho (-1 to 1)", (-1.0, 1.0)),
    "ratio": ("ratios", "ratio (1: no difference)", None),
}
OBJECTIVE_NOTES = {  # what pre-training's logged training loss is, by objective
    "adversarial": "\u03a3 over fields of weight \u00d7 (masked-note CE + all-notes CE) + masker MSE;\n"
                   "weights \u221d 1 / training accuracy, renewed each epoch (dotted): it jumps there",
    "loop": "masked-note CE, fields weighted by the last validation's errors (+ masker loss);\n"
            "weights renewed at each evaluation (dotted): it can jump there",
}


@dataclasses.dataclass(frozen=True)
class CurvePanel:
    """One panel of ``curves.png``: the series of one unit, ``{metrics name: [(x, y), ...]}``."""

    title: str
    unit: str  # the y-axis label
    series: dict[str, Points]
    x: str = "step"
    limits: tuple[float, float] | None = None  # the unit's range, where it has one
    marks: tuple[float, ...] = ()  # x of dotted lines (the title says what they are)


def curve_unit(name: str, pretraining: bool) -> str | None:
    """The panel of a flattened metrics name, or None for a number not drawn: per-field numbers (they
    are in metrics.json and the trackers), the learning rate, the speed and counts."""
    last = name.rsplit("/", 1)[-1]
    if name.startswith("valid/fields/") or last in CURVE_LEFT_OUT:
        return None
    if pretraining and name in PRETRAIN_OBJECTIVE:
        return "objective"
    return next((unit for unit, words in UNIT_WORDS if any(word in last for word in words)), f"other: {name}")


def curve_panels(rows: list[dict[str, Any]]) -> list[CurvePanel]:
    """The panels of ``curves.png`` from metrics.jsonl rows: one per unit, so a count never shares an axis
    with an accuracy. Fine-tuning's and LoRA's training and validation losses are both the mean
    cross-entropy of what is predicted and share a panel; pre-training's training loss is its objective
    (fields weighted, weights renewed during the run) and gets a panel of its own that says so."""
    if not rows:
        return []
    x = "step" if "step" in rows[0] else "epoch"
    pretraining = any("recover_loss" in row for row in rows)
    by_unit: dict[str, dict[str, Points]] = {}
    for row in rows:
        for name, value in scalars(row).items():
            unit = curve_unit(name, pretraining)
            if unit is not None:
                by_unit.setdefault(unit, {}).setdefault(name, []).append((float(row.get(x, 0)), value))
    order = [*UNITS, *sorted(u for u in by_unit if u not in UNITS)]
    panels = []
    for unit in (u for u in order if u in by_unit):
        title, label, limits = UNITS.get(unit, (unit.removeprefix("other: "), "value", None))
        if unit == "loss" and pretraining:
            title = "validation loss: masked-note cross-entropy, mean over fields"
        marks: tuple[float, ...] = ()
        if unit == "objective":
            adversarial = any("frozen_share" in row.get("valid", {}) for row in rows)
            title = f"{title}\nloss = {OBJECTIVE_NOTES['adversarial' if adversarial else 'loop']}"
            marks = weight_renewals(rows, x, adversarial)
        panels.append(CurvePanel(title, label, by_unit[unit], x, limits, marks))
    return panels


def weight_renewals(rows: list[dict[str, Any]], x: str, adversarial: bool) -> tuple[float, ...]:
    """Where pre-training's field weights were renewed: at each epoch end (the adversarial objective's
    1 / accuracy weights; the first logged row of each new epoch), else at each evaluation."""
    from itertools import pairwise

    if adversarial:
        return tuple(float(b.get(x, 0)) for a, b in pairwise(rows) if b.get("epoch", 0) > a.get("epoch", 0))
    return tuple(float(row.get(x, 0)) for row in rows if "valid" in row)


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    """``curves.png``: the panels of :func:`curve_panels` (two columns when there are more than two)."""
    panels = curve_panels(rows)
    if not panels:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 1 if len(panels) <= 2 else 2
    n_rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(n_rows, columns, figsize=(6.5 * columns, 3.3 * n_rows), dpi=100, squeeze=False)
    xs = [x for panel in panels for points in panel.series.values() for x, _ in points]
    pad = 0.02 * ((max(xs) - min(xs)) or 1)
    for ax, panel in zip(axes.ravel(), panels):
        _draw_panel(ax, panel)
        ax.set_xlim(min(xs) - pad, max(xs) + pad)  # one x range for every panel
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _draw_panel(ax: Any, panel: CurvePanel) -> None:
    for name, points in sorted(panel.series.items()):
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="." if len(points) < 30 else None, label=name)
    for x in panel.marks:
        ax.axvline(x, color="grey", linestyle=":", linewidth=0.9)
    if panel.limits:
        low, high = panel.limits
        ax.set_ylim(low - 0.02 * (high - low), high + 0.02 * (high - low))
    ax.set_title(panel.title, fontsize=9)
    ax.set_xlabel(panel.x)
    ax.set_ylabel(panel.unit)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
