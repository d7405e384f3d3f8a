"""``musictl demo``: the whole cross-style chain on the bundled corpus with tiny settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from musictl.commands._common import Workdir, option, reports_errors
from musictl.transfer.settings import DemoSettings

# The settings classes each command reads (for the defaults test).
SETTINGS = {"demo": (DemoSettings,)}


@reports_errors
def demo(
    style: str = option(DemoSettings, "style"),
    bars: int = option(DemoSettings, "bars", "-n", "--bars"),
    steps: int = option(DemoSettings, "steps"),
    gcn_epochs: int = option(DemoSettings, "gcn_epochs"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write demo.mid and demo.png.")] = Path("."),
    seed: int = option(DemoSettings, "seed"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a workspace made by other commands.", metavar="")] = False,
    workdir: Workdir = None,
) -> None:
    """Run the whole cross-style chain on the bundled corpus with tiny settings (about 80 s on 2 idle CPU cores).

    tokenize -> pretrain-bert -> embed -> adjacency -> train-gcn -> generate-rwr; leaves demo.mid and a
    piano-roll demo.png, and prints a summary (the time: benchmarks/results/timings.md). Re-running replaces the
    demo's own artifacts; a workspace made by other commands is kept unless --overwrite.

    Example: musictl demo --style fiddle-tunes -n 16
    """
    from rich.console import Console

    from musictl.commands._tables import demo_table
    from musictl.console import PlainProgress, info
    from musictl.transfer.demo import run_demo

    settings = DemoSettings.from_values(locals())
    inner: dict[str, PlainProgress] = {}

    def report(done: int, total: int | None, row) -> None:
        if row["status"] == "start":
            info(f"{done + 1}/{total} {row['what']}")
        elif row["status"] == "progress":  # the stage's own steps: a line every few seconds, on a terminal or in a log
            inner.setdefault(row["stage"], PlainProgress(f"  {row['stage']}"))(row["done"], row["total"])
        else:
            info(f"[green]done[/] {row['stage']} ({row['seconds']} s)")

    result = run_demo(workdir, settings, out, overwrite, on_progress=report)
    Console().print(demo_table(result))
