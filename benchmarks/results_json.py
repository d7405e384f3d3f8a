"""The one writer of the benchmarks' result JSON files (benchmarks/results/*.json): valid JSON, one record per line.

A container that holds no object (a list of scores, a row of numbers) or whose members are all plain values
(a run, a command, a curve point) is written on one line; a larger one opens with one member per line. So a
file grows by a line per run, diffs show which runs changed, and ``json.loads`` reads it back unchanged::

    {
     "commands": [
      {"command": "musictl tokenize ...", "seconds": 2.6},
      ...
     ],
     "runs": {
      "composer|none|0.15|0": {"segments": [[0, 1], [1, 1], ...], "pieces": [...], "seconds": 28.6},
      ...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _holds_object(value: Any) -> bool:
    if isinstance(value, dict):
        return True
    return isinstance(value, list) and any(_holds_object(v) for v in value)


def _one_line(value: Any) -> bool:
    members = value.values() if isinstance(value, dict) else value
    return not any(_holds_object(v) for v in members)


def dumps(data: Any, indent: str = " ", _depth: int = 0) -> str:
    """``data`` as JSON text with one record per line (see the module docstring)."""
    if not isinstance(data, (dict, list)) or not data or _one_line(data):
        return json.dumps(data)
    inner = indent * (_depth + 1)
    if isinstance(data, dict):
        rows = [f"{inner}{json.dumps(str(k))}: {dumps(v, indent, _depth + 1)}" for k, v in data.items()]
        opening, closing = "{", "}"
    else:
        rows = [f"{inner}{dumps(v, indent, _depth + 1)}" for v in data]
        opening, closing = "[", "]"
    return opening + "\n" + ",\n".join(rows) + "\n" + indent * _depth + closing


def write(path: Path, data: Any) -> Path:
    """Write ``data`` to ``path`` (its folder made if needed) with :func:`dumps`, ending with a newline."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(data) + "\n")
    return path
