"""Running ``python -m musictl`` as a user would, and recording the command in the results JSON."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

from harness.cells import Results
from harness.paths import ROOT, show


def musictl(results: Results | None, *args: str, work: Path | None = None, quiet: bool = False) -> float:
    """Run ``python -m musictl ARGS`` from the repository root (``quiet``: its output kept and shown only
    when it fails), record the command (paths as :func:`harness.paths.show` writes them, ``work`` as WORK)
    with its wall seconds in ``results``; the seconds. A failure exits with the command that failed."""
    shown = "musictl " + show(shlex.join(args), work)
    print(f"$ {shown}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "musictl", *args], cwd=ROOT, text=True, capture_output=quiet)
    if done.returncode:
        if quiet:
            print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"error: failed (exit {done.returncode}): {shown}")
    seconds = round(time.perf_counter() - started, 1)
    if results is not None:
        results.record(shown, seconds)
    return seconds
