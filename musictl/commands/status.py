"""``musictl status``: what the workspace holds, whether each artifact is fresh, what to run next."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from musictl.commands._common import FLAG, Workdir, reports_errors


@reports_errors
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON on stdout.", metavar=FLAG)] = False,
    clean: Annotated[bool, typer.Option("--clean", help="Remove temporary leftovers of killed runs.", metavar=FLAG)] = False,
    workdir: Workdir = None,
) -> None:
    """List the workspace's artifacts: kind, name, made by, when, size, inputs, fresh or stale.

    Stale means an input was remade after the artifact (remake it with the command shown); an
    interrupted training run with a checkpoint is listed with its step and the command that resumes
    it; the last line says which command to run next. A pre-trained model shows what it learned beyond its
    count baselines (a warning when nothing), an adapted model its validation next-note NLL before and after
    adaptation. --clean removes hidden temporary files of killed runs.

    Example: musictl status --workdir musictl-work   |   musictl status --json | jq .next_step
    """
    import json

    from rich.table import Table

    from musictl import artifacts, workspace
    from musictl.console import err, info, plural, warn

    if clean:
        removed = workspace.clean(workdir)
        info(f"removed {plural(len(removed), 'leftover')}" + "".join(f"\n  {p}" for p in removed))
    report = workspace.scan(workdir)
    for a in report.artifacts:
        if a.kind == artifacts.ADAPTED and a.state in ("fresh", "stale") and not a.verdict:
            a.verdict = adapted_verdict(artifacts.read_manifest(Path(a.path)).metrics)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    table = Table(title=f"workspace {report.root}")
    for column in ("kind", "name", "made by", "when", "size", "inputs", "state"):
        table.add_column(column, overflow="fold")
    colours = {"fresh": "green", "stale": "yellow", "in use": "cyan"}
    for a in report.artifacts:
        inputs = ", ".join(f"{role} {state}" for role, state in a.inputs.items())
        colour = colours.get(a.state, "red")
        verdict = f"\n[{'yellow' if a.warning else 'dim'}]{a.verdict}[/]" if a.verdict else ""
        table.add_row(a.kind, a.name or "", a.made_by, workspace.age(a.created), _size(a.size_bytes), inputs,
                      f"[{colour}]{a.state}[/]{verdict}")
    if report.artifacts:
        err.print(table)
    else:
        info(f"no artifacts in {report.root}")
    for a in report.artifacts:
        if a.detail and a.state != "fresh":
            info(f"{a.kind} {a.name or ''}: {a.detail}".replace("  ", " "))
        if a.warning:
            warn(a.warning)
    for run in report.resumable:
        which = f"{run.kind} run{f' ({run.name})' if run.name else ''}"
        if run.damaged:
            info(f"[red]damaged[/]: the checkpoint of an interrupted {which} in {run.path}: {run.damaged}; start afresh with: "
                 f"{run.command}, or restore its files")
        else:
            info(f"[cyan]resumable[/]: an interrupted {which} at step {run.step} in {run.path}; continue it with: {run.command}")
    if report.leftovers:
        info(f"{plural(len(report.leftovers), 'leftover')} of killed runs; remove with: musictl status --clean")
    info(f"next: {report.next_step}")


def adapted_verdict(metrics: dict) -> str:
    """An adapted model's headline from its manifest: ``lora, 4 pieces: valid NLL pitch 3.10 -> 2.71, duration ...``."""
    before, after = metrics.get("valid_nll_before", {}), metrics.get("valid_nll_after", {})
    change = ", ".join(f"{field} {before[field]:.3f} -> {after[field]:.3f}" for field in ("pitch", "duration")
                       if isinstance(before.get(field), (int, float)) and isinstance(after.get(field), (int, float)))
    return f"{metrics.get('mode', '?')}, {metrics.get('train_pieces', '?')} pieces: valid next-note NLL {change}"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
