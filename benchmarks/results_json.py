"""The results JSON writer now lives in the harness (benchmarks/harness/cells.py: ``dumps``, ``write``); this
name re-exports it for the scripts not yet on the harness (timings.py, transfer.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.cells import dumps, write

__all__ = ["dumps", "write"]
