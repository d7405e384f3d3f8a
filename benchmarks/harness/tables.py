"""The one Markdown writer of the benchmark pages: tables, interval cells, the planned question.

Every page opens (after its title) with :func:`planned`: the primary question, the one comparison that
answers it, and how many other cells were tested, each labelled exploratory: at 95%, about 1 in 20 of
those excludes zero by luck alone.
"""

from __future__ import annotations

from collections.abc import Sequence


def table(header: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> list[str]:
    """A Markdown table: ``align`` one letter per column, ``l`` (left) or ``r`` (right); default: the first
    column left, the others right. Cells are written with ``str``; a row must have one cell per column."""
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(f"align {align!r} for {len(header)} columns: one of l/r per column")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row of {len(row)} cells in a table of {len(header)} columns: {list(row)}")
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return lines


def interval(cell: dict | None, digits: int = 1, signed: bool = False, spread: bool = False) -> str:
    """``mean [low, high]`` of a bootstrap cell (``-`` when missing); ``spread``: `` ±seed_sd`` after it."""
    if not cell:
        return "-"
    f = f"{{:{'+' if signed else ''}.{digits}f}}".format
    text = f"{f(cell['mean'])} [{f(cell['low'])}, {f(cell['high'])}]"
    if spread and cell.get("seed_sd") is not None:
        text += f" ±{cell['seed_sd']:.{digits}f}"
    return text


def planned(question: str, comparison: str, answer: str | None = None, exploratory: int | None = None,
            intervals: bool = True) -> list[str]:
    """The block every results page opens with: the planned question, the one comparison that answers it
    (and, once measured, its answer), and how many other cells the page tests, each exploratory
    (``intervals``: the cells carry intervals, and the page says what luck gives at 95%)."""
    lines = [f"**Planned question:** {question}", "", f"**The comparison that answers it:** {comparison}", ""]
    if answer:
        lines += [f"**Answer:** {answer}", ""]
    if exploratory is not None:
        lines += [f"Everything else on this page is exploratory: {exploratory} other cell{'s' * (exploratory != 1)} "
                  "measured, not planned" + ("; at 95%, about 1 in 20 of such cells excludes zero by luck alone." if intervals
                                             else "."), ""]
    return lines


def verdict(found: dict[str, dict], unit: str = "points") -> str | None:
    """The answer a planned comparison gives: each cell's difference with its interval, and where the interval
    lies above or below 0 (None when nothing was measured)."""
    if not found:
        return None
    above = [k for k, c in found.items() if c["low"] > 0]
    below = [k for k, c in found.items() if c["high"] < 0]
    text = "; ".join(f"{k} {interval(c, signed=True)}" for k, c in found.items())
    said = ([f"above 0 on {', '.join(above)}"] if above else []) + ([f"below 0 on {', '.join(below)}"] if below else [])
    return f"{text} {unit} ({'; '.join(said) if said else 'every interval holds 0: not shown'})."


def commands(entries: Sequence[dict], title: str = "Commands", unit: str = "steps", note: str = "") -> list[str]:
    """The commands a run ran, folded: ``entries`` as the results JSON records them (command, seconds)."""
    total = sum(c["seconds"] for c in entries) / 3600
    return [f"## {title} ({len(entries)} {unit}, {total:.2f} hours in all{note})", "", "<details>", "", "```",
            *[f"{c['command']}   # {c['seconds']:.0f} s" for c in entries], "```", "", "</details>", ""]
