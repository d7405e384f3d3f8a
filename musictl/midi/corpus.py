"""Finding MIDI files, naming their style, assigning train/valid/test splits, and telling whether
the MIDI files a tokens artifact was made from have changed since."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from musictl import artifacts
from musictl import constants as C
from musictl.errors import MusictlError, UsageError


@dataclass(frozen=True)
class SourceFile:
    path: Path
    style: str
    relative: str  # path relative to the input directory it was found in (its name for a file)
    problem: str = ""  # why the file cannot be tokenized before reading it (a style name that is not a safe name)


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
            found.setdefault(root.resolve(), _source(root, _style_name(root.resolve().parent), root.name))
        elif root.is_dir():
            for path in _walk(root):
                if is_midi(path):
                    rel = path.relative_to(root)
                    style = rel.parts[0] if len(rel.parts) > 1 else _style_name(root.resolve())
                    found.setdefault(path.resolve(), _source(path, style, rel.as_posix()))
        else:
            raise UsageError(f"{root}: no such file or directory")
    return sorted(found.values(), key=lambda f: (f.style, f.relative))


def _source(path: Path, style: str, relative: str) -> SourceFile:
    """A found file; a folder name that cannot be a style name (``artifacts.safe_name``) is its problem."""
    try:
        artifacts.safe_name(style, "style")
    except UsageError as exc:
        return SourceFile(path, style, relative, f"its folder name cannot be a style: {exc}")
    return SourceFile(path, style, relative)


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


# ----- grouped splits: files that share a group (clips of one song) stay in one split -------------
def compile_group_by(regex: str) -> re.Pattern:
    """The ``--group-by`` regex, compiled; it must have a capturing group (group 1 names the group)."""
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise UsageError(f"--group-by {regex!r}: not a regular expression ({exc})") from None
    if pattern.groups < 1:
        raise UsageError(f"--group-by {regex!r}: needs a capturing group, e.g. '^Q[1-4]_(.+)_[0-9]+\\.mid$'")
    return pattern


def group_of(name: str, pattern: re.Pattern) -> str | None:
    """Group 1 of ``pattern`` searched in a file name (the last path component, extension included)."""
    found = pattern.search(Path(name).name)
    return None if found is None or found.group(1) is None else found.group(1)


def assign_group_splits(files: list[SourceFile], ratios: tuple[float, float, float], seed: int,
                        group_by: str | None, together: Iterable[Iterable[Path]] = ()) -> tuple[dict[Path, str], int]:
    """Seeded split by group: files whose names share group 1 of ``group_by`` get one split, and so do
    the files of each set in ``together`` (paths: near-duplicate pieces, :mod:`musictl.midi.dedup`).

    A file whose name the regex does not match (every file, when ``group_by`` is None) is a group of
    its own; groups that share a file through ``together`` are one group, named by the smallest of
    their names. A group belongs to the style most of its files have (ties: the first name); within
    each style, groups are ordered by a hash of (seed, style, group) and each goes to the split in which
    the middle of its files falls when the style's files are cut by the ratios, so each split is within
    half a group of its exact size. Files that match nothing are keyed by their relative path, as
    :func:`assign_splits` keys every file: a regex that matches no name (and nothing ``together``) gives
    the ungrouped split. Returns the splits and the number of files the regex did not match.
    """
    pattern = compile_group_by(group_by) if group_by is not None else None
    key_of: dict[Path, tuple[str, ...]] = {}
    unmatched = 0
    for f in files:
        key = group_of(f.relative, pattern) if pattern is not None else None
        unmatched += pattern is not None and key is None
        key_of[f.path] = ("group", key) if key is not None else ("file", f.style, f.relative)
    parent: dict[tuple[str, ...], tuple[str, ...]] = {}  # union-find over group keys

    def root(key: tuple[str, ...]) -> tuple[str, ...]:
        while parent.get(key, key) != key:
            parent[key] = key = parent.get(parent[key], parent[key])
        return key

    for paths in together:
        keys = [key_of[Path(p)] for p in paths if Path(p) in key_of]
        for key in keys[1:]:
            a, b = root(keys[0]), root(key)
            if a != b:
                parent[max(a, b)] = min(a, b)
    members: dict[tuple[str, ...], list[SourceFile]] = {}
    names: dict[tuple[str, ...], str] = {}
    for f in files:
        unit = root(key_of[f.path])
        members.setdefault(unit, []).append(f)
        names[unit] = min(names.get(unit, key_of[f.path][-1]), key_of[f.path][-1])
    by_style: dict[str, list[tuple[str, list[SourceFile]]]] = {}
    for unit, group in members.items():
        counts = Counter(f.style for f in group)
        style = min(counts, key=lambda s: (-counts[s], s))
        by_style.setdefault(style, []).append((names[unit], group))
    out: dict[Path, str] = {}
    for style, groups in by_style.items():
        groups.sort(key=lambda g: (hashlib.blake2b(f"{seed}\0{style}\0{g[0]}".encode(), digest_size=8).digest(), g[0],
                                   min(f.relative for f in g[1])))
        n = sum(len(g) for _, g in groups)
        n_valid, n_test = round(ratios[1] * n), round(ratios[2] * n)
        n_train = max(n - n_valid - n_test, 0)
        done = 0
        for _, group in groups:
            middle = done + len(group) / 2
            split = "train" if middle < n_train else "valid" if middle < n_train + n_valid else "test"
            for f in group:
                out[f.path] = split
            done += len(group)
    return out, unmatched


def split_entries(source: Path) -> list[tuple[str, str]]:
    """(file name, split) of every piece of a tokens artifact (a directory with ``index.jsonl``) or of
    every entry of a split file (``{"train": [...], "valid": [...], "test": [...]}``)."""
    source = Path(source)
    if source.is_dir():
        index = source / "index.jsonl"
        if not index.is_file():
            raise UsageError(f"{source}: no index.jsonl (not a tokens artifact); run: musictl tokenize")
        return [(Path(row["path"]).name, row["split"]) for row in artifacts.read_jsonl(index)]
    try:
        data = json.loads(source.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{source}: cannot read it as a split file ({exc})") from None
    return [(Path(str(e)).name, split) for split in C.SPLITS for e in data.get(split, [])]


def group_overlap(entries: list[tuple[str, str]], group_by: str) -> dict[str, dict[str, int]]:
    """How many valid and test files share a group (group 1 of ``group_by`` on the file name) with a
    training file: ``{"valid": {"shared": k, "files": n}, "test": {...}}``. Names the regex does not
    match are groups of their own (they never share)."""
    pattern = compile_group_by(group_by)
    train = {g for name, split in entries if split == "train" and (g := group_of(name, pattern)) is not None}
    out = {}
    for split in ("valid", "test"):
        names = [name for name, s in entries if s == split]
        out[split] = {"shared": sum(group_of(n, pattern) in train for n in names), "files": len(names)}
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


# ----- are a tokens artifact's MIDI inputs still the same? --------------------------------------
def fingerprint_files(files: list[SourceFile]) -> str:
    """Hash of the file list, styles, sizes and modification times (cheap: no file is read)."""
    digest = hashlib.blake2b(digest_size=10)
    for f in files:
        stat = f.path.stat() if f.path.exists() else None
        digest.update(f"{f.relative}\0{f.style}\0{stat.st_size if stat else -1}\0{stat.st_mtime_ns if stat else -1}\n".encode())
    return digest.hexdigest()


def describe_change(tokens_dir: Path, files: list[SourceFile]) -> str:
    """What changed between the files a tokens artifact records and ``files``: added, removed, edited."""
    recorded = set()
    for name in ("index.jsonl", "errors.jsonl"):
        if (Path(tokens_dir) / name).is_file():
            recorded |= {os.path.abspath(row["path"]) for row in artifacts.read_jsonl(Path(tokens_dir) / name) if "path" in row}
    current = {os.path.abspath(f.path) for f in files}
    added, removed = len(current - recorded), len(recorded - current)
    parts = [f"{added} MIDI file{'s' * (added != 1)} added"] if added else []
    parts += [f"{removed} removed"] if removed else []
    return ", ".join(parts) or "MIDI files edited (size or modification time changed)"


def midi_inputs_changed(tokens_dir: Path) -> str | None:
    """Why the MIDI inputs of a tokens artifact differ from what it was made from, or None.

    None also when the artifact records no inputs to compare with (made from Python without them).
    Reads only the manifest, the index and the inputs' file listing (no MIDI is parsed); torch-free,
    for ``musictl status`` and ``musictl tokenize``.
    """
    manifest = artifacts.read_manifest(Path(tokens_dir))
    recorded = manifest.inputs.get("midi", {}).get("fingerprint")
    roots = manifest.parameters.get("inputs")
    if not recorded or not roots:
        return None
    missing = [r for r in roots if not Path(r).exists()]
    if missing:
        return f"input {missing[0]} no longer exists"
    try:
        files = find_midi_files([Path(r) for r in roots])
    except MusictlError as exc:
        return str(exc)
    return None if fingerprint_files(files) == recorded else describe_change(tokens_dir, files)
