"""Where the benchmarks read and write: the datasets, each benchmark's work folder, the results folder.

``DATASETS`` is ``../shared/datasets`` beside the repository; a benchmark's artifacts (tokens, cached
pre-trained models) go to ``$MUSICTL_BENCH_WORK/<name>`` (default ``~/.cache/musictl-bench/<name>``,
outside the work tree, so cached models outlive a fresh checkout); tables go to ``benchmarks/results``.
:func:`show` writes a path as a reader of a results page can type it.
"""

from __future__ import annotations

import os
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1]
ROOT = BENCHMARKS.parent
DATASETS = ROOT.parent / "shared" / "datasets"
RESULTS = BENCHMARKS / "results"
WORK_ENV = "MUSICTL_BENCH_WORK"
SHOWN_DATASETS = "../shared/datasets"


def work_root() -> Path:
    """``$MUSICTL_BENCH_WORK``, else ``~/.cache/musictl-bench``."""
    return Path(os.environ.get(WORK_ENV, Path.home() / ".cache" / "musictl-bench"))


def work_folder(name: str) -> Path:
    """The work folder of one benchmark (its artifacts and caches): ``work_root() / name``."""
    return work_root() / name


def show(text: str, work: Path | str | None = None) -> str:
    """``text`` with paths as a reader can type them: the datasets as ../shared/datasets, ``work`` (a
    benchmark's work folder) as WORK, the work root as WORK_ROOT, the repository root dropped."""
    text = str(text).replace(str(DATASETS), SHOWN_DATASETS)
    if work is not None:
        text = text.replace(str(work), "WORK")
    return text.replace(str(work_root()), "WORK_ROOT").replace(str(ROOT) + "/", "")


def require_datasets() -> Path:
    """``DATASETS``, or exit with the one-line error that says what is missing."""
    if not DATASETS.is_dir():
        raise SystemExit(f"error: {DATASETS} not found: the benchmark needs the corpora in {SHOWN_DATASETS} "
                         "(its README lists them)")
    return DATASETS


def machine() -> str:
    """CPU cores and GPU of this machine, as the results JSON records it."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores, {gpu}"
