"""Resumable cells and the one results JSON format of the benchmarks (benchmarks/results/*.json).

A *cell* is one measurement (a fine-tuning run, a probe, a pre-training) identified by its settings, a
flat dict such as ``{"column": "melody", "amount": 10, "row": "mlm", "seed": 0}``; :func:`cell_key` makes
the canonical key (settings sorted by name). :class:`Results` holds a run's JSON: each cell is written the
moment it finishes (atomic replace under a file lock, merged with what another process of the same run
wrote meanwhile), a rerun skips the cells that are done, and a run with other settings is refused rather
than mixed into the same table. Every benchmark writes the same format::

    {
     "format": 1,
     "script": "benchmarks/label_efficiency.py",
     "command": "python benchmarks/label_efficiency.py --seeds 5",
     "machine": "2 CPU cores, no GPU",
     "config": {...},                     # the settings every cell shares (checked on resume)
     "cells": {
      "amount=10|column=melody|row=mlm|seed=0": {"settings": {...}, "pieces": [[3, 4], ...], "seconds": 28.6},
      ...
     },
     "commands": [{"command": "musictl tokenize ...", "seconds": 2.6}, ...],
     ...                                  # the script's own sections (its summary, data checks)
    }

:func:`dumps` writes one record per line: a container that holds no object, or whose members are all
plain values, on one line; a larger one opens with one member per line. So a file grows by a line per
cell and diffs show which cells changed; ``json.loads`` reads it back unchanged.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path
from typing import Any

FORMAT = 1
STANDARD = ("format", "script", "command", "machine", "config", "cells", "commands")


# ----- the one writer ----------------------------------------------------------------------------
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
    """Write ``data`` to ``path`` (its folder made if needed) with :func:`dumps`, atomically (a temporary
    file beside it, then a rename), ending with a newline."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(dumps(data) + "\n")
    os.replace(tmp, path)
    return path


def write_plain(path: Path, data: Any) -> Path:
    """A helper file a command reads (a split file): plain JSON, its folder made if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    return path


def publish(data: dict, summarise, render, json_path: Path, md_path: Path) -> str:
    """Summarise a run's results into its ``table`` section, render its page from the JSON alone, and write
    both (the JSON with :func:`write`); the page's text."""
    data["table"] = summarise(data)
    text = render(data)
    write(json_path, data)
    Path(md_path).write_text(text)
    print(f"wrote {md_path} and {json_path}", file=sys.stderr)
    return text


def republish(results: Path, summarise, render) -> dict:
    """``--render``: the page rebuilt from ``<results>.json`` alone (:func:`publish` into ``<results>.json`` and
    ``<results>.md``), its text printed; the data."""
    results = Path(results)
    data = load(results.with_suffix(".json"))
    print(publish(data, summarise, render, results.with_suffix(".json"), results.with_suffix(".md")))
    return data


# ----- cells -------------------------------------------------------------------------------------
def canonical(value: Any) -> Any:
    """``value`` as the JSON stores it (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value))


def cell_key(settings: dict) -> str:
    """The canonical key of a cell: ``name=value`` for each setting, sorted by name, joined by ``|``
    (strings as they are, other values as JSON)."""
    if not settings:
        raise ValueError("a cell needs at least one setting")
    text = lambda v: v if isinstance(v, str) else json.dumps(v, sort_keys=True)  # noqa: E731
    return "|".join(f"{name}={text(value)}" for name, value in sorted(settings.items()))


def select(cells: dict, **where) -> list[dict]:
    """The cells (each with its ``settings``) whose settings hold every ``name=value`` of ``where``, in key order."""
    return [cells[k] for k in sorted(cells) if all(cells[k]["settings"].get(n, _MISSING) == v for n, v in where.items())]


_MISSING = object()


def load(path: Path) -> dict:
    """A results JSON, checked to be in this format (an older file: the one-line error says what to do)."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"error: {path} not found: run the benchmark first (its docstring gives the command)")
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise SystemExit(f"error: {path} is not in results format {FORMAT}; re-run its benchmark with --fresh")
    return data


class Results:
    """One benchmark run's results JSON: its config, its cells (each written as it finishes), the commands it
    ran, and the script's own sections.

    ``config`` is compared with the saved one: a different value refuses (``--fresh`` starts again), except
    the keys in ``changeable``, which may change while no cell is saved (``drop_cells=True``: the saved
    cells are dropped instead, :attr:`dropped` says how many). ``merged`` names the script's sections
    (dicts) that processes of the same run share and merge on save, as they merge cells and commands.
    ``write=False`` keeps everything in memory (a dry run)."""

    def __init__(self, path: Path, script: str, config: dict, *, command: str, machine: str | None = None,
                 fresh: bool = False, changeable: tuple[str, ...] = (), drop_cells: bool = False,
                 merged: tuple[str, ...] = (), write: bool = True):
        self.path, self.write, self.merged = Path(path), write, tuple(merged)
        self.dropped = 0
        config = canonical(config)
        data = load(self.path) if self.path.is_file() and not fresh else {}
        saved = data.get("config")
        if saved is not None and saved != config:
            fixed = sorted(k for k in set(saved) | set(config) if k not in changeable and saved.get(k) != config.get(k))
            if fixed or (data.get("cells") and not drop_cells):
                changed = fixed or sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
                raise SystemExit(f"error: {self.path} holds a run with other settings ({', '.join(changed)}: "
                                 f"{[saved.get(k) for k in changed]} here {[config.get(k) for k in changed]}); "
                                 "pass --fresh to start again (cached models with the same settings are reused)")
            self.dropped = len(data.get("cells", {}))
            data["cells"] = {}
        self.data = {"format": FORMAT, "script": script, "command": command, "machine": machine or data.get("machine"),
                     "config": config, "cells": data.get("cells", {}), "commands": data.get("commands", []),
                     **{k: v for k, v in data.items() if k not in STANDARD}}
        for name in self.merged:
            self.data.setdefault(name, {})

    @property
    def cells(self) -> dict:
        return self.data["cells"]

    def get(self, settings: dict) -> dict | None:
        """The saved cell of these settings, or None."""
        return self.cells.get(cell_key(canonical(settings)))

    def put(self, settings: dict, value: dict) -> dict:
        """Save a finished cell (its settings kept in it) and write the JSON at once."""
        cell = {"settings": canonical(settings), **canonical(value)}
        self.cells[cell_key(cell["settings"])] = cell
        self.save()
        return cell

    def select(self, **where) -> list[dict]:
        return select(self.cells, **where)

    def record(self, command: str, seconds: float) -> None:
        """A command the run ran (paths as :func:`harness.paths.show` writes them) and its wall seconds."""
        self.data["commands"].append({"command": command, "seconds": round(float(seconds), 1)})
        self.save()

    def save(self) -> None:
        """Write the JSON (atomic, under a lock), merged with what another process of the same run wrote
        meanwhile: its cells, commands and ``merged`` sections that this process does not hold."""
        if not self.write:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(f".{self.path.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.path.is_file():
                disk = json.loads(self.path.read_text())
                if disk.get("format") == FORMAT and disk.get("config") == self.data["config"]:
                    for name in ("cells", *self.merged):
                        self.data[name] = {**disk.get(name, {}), **self.data[name]}
                    seen = {c["command"] for c in self.data["commands"]}
                    self.data["commands"] = [c for c in disk.get("commands", []) if c["command"] not in seen] + \
                        self.data["commands"]
            write(self.path, self.data)
