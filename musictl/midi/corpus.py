"""Finding MIDI files, naming their style, and assigning train/valid/test splits."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from musictl import constants as C
from musictl.errors import UsageError


@dataclass(frozen=True)
class SourceFile:
    path: Path
    style: str
    relative: str  # path relative to the input directory it was found in (its name for a file)


def bundled_corpus() -> Path:
    """The small public-domain corpus shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "data" / "corpus"


def is_midi(path: Path) -> bool:
    return path.suffix.lower() in C.MIDI_SUFFIXES


def find_midi_files(inputs: list[Path]) -> list[SourceFile]:
    """MIDI files under ``inputs`` (files or folders, searched recursively), sorted.

    Style = the first-level sub-folder of an input folder (``data/jazz/x.mid`` -> ``jazz``);
    files directly in an input folder, or given by name, take that folder's own name.
    """
    found: dict[Path, SourceFile] = {}
    for given in inputs:
        root = Path(given)
        if root.is_file():
            found.setdefault(root.resolve(), SourceFile(root, _style_name(root.resolve().parent), root.name))
        elif root.is_dir():
            for path in _walk(root):
                if is_midi(path):
                    rel = path.relative_to(root)
                    style = rel.parts[0] if len(rel.parts) > 1 else _style_name(root.resolve())
                    found.setdefault(path.resolve(), SourceFile(path, style, rel.as_posix()))
        else:
            raise UsageError(f"{root}: no such file or directory")
    return sorted(found.values(), key=lambda f: (f.style, f.relative))


def _walk(root: Path) -> list[Path]:
    """Every file under ``root``, following symbolic links to folders (each real folder once)."""
    seen, out = set(), []
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        out += [Path(folder) / n for n in names if os.path.isfile(os.path.join(folder, n))]
    return sorted(out)


def _style_name(folder: Path) -> str:
    return folder.name or "default"


def parse_split_ratios(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> (0.8, 0.1, 0.1), validated."""
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1) > 1e-6:
        raise UsageError(f"--split {text!r}: give three non-negative fractions that sum to 1, e.g. 0.8,0.1,0.1")
    return parts  # type: ignore[return-value]


def assign_splits(files: list[SourceFile], ratios: tuple[float, float, float], seed: int) -> dict[Path, str]:
    """Seeded split by file, stratified by style, with exact proportions per style.

    Each file gets a key from a hash of (seed, style, relative path); files are ordered by key and
    cut by the ratios, so the split of a file does not depend on the order the files were found in.
    """
    by_style: dict[str, list[SourceFile]] = {}
    for f in files:
        by_style.setdefault(f.style, []).append(f)
    out: dict[Path, str] = {}
    for style, group in by_style.items():
        ordered = sorted(group, key=lambda f: hashlib.blake2b(f"{seed}\0{style}\0{f.relative}".encode(), digest_size=8).digest())
        n = len(ordered)
        n_valid = round(ratios[1] * n)
        n_test = round(ratios[2] * n)
        n_train = max(n - n_valid - n_test, 0)
        for i, f in enumerate(ordered):
            out[f.path] = "train" if i < n_train else "valid" if i < n_train + n_valid else "test"
    return out


def load_split_file(path: Path, files: list[SourceFile]) -> tuple[dict[Path, str], int]:
    """Splits from a JSON file ``{"train": [...], "valid": [...], "test": [...]}``.

    Entries are paths relative to an input folder (``Bethel/x.mid``) or bare file names.
    Files that the split file does not list are marked ``unlisted``. Returns the mapping and the
    number of listed entries that matched no file.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--split-file {path}: cannot read it as JSON ({exc})") from None
    if not isinstance(data, dict) or not any(k in data for k in C.SPLITS):
        raise UsageError(f"--split-file {path}: expected a JSON object with 'train', 'valid' and 'test' lists")
    lookup: dict[str, str] = {}
    for split in C.SPLITS:
        for entry in data.get(split, []):
            lookup[str(entry).replace("\\", "/")] = split
    out: dict[Path, str] = {}
    matched: set[str] = set()
    for f in files:
        parts = Path(f.relative).parts
        inner = "/".join(parts[1:]) if len(parts) > 1 else f.relative  # relative to the style folder
        for key in (f.relative, inner, f"{f.style}/{Path(f.relative).name}", Path(f.relative).name):
            if key in lookup:
                out[f.path] = lookup[key]
                matched.add(key)
                break
        else:
            out[f.path] = C.UNLISTED_SPLIT
    return out, len(set(lookup) - matched)
