"""Tokenize a corpus into a ``tokens`` artifact, in parallel, with flat memory.

Workers parse and encode files; the parent appends each result in file order to files inside a
staging directory (raw tokens, index and error lines), so memory does not grow with the corpus
and an interrupted run leaves no artifact behind. An existing artifact made from the same MIDI
files with the same settings is left as it is (up to date); one whose MIDI files changed is
refused without ``--overwrite``, saying what changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from musictl import artifacts
from musictl import constants as C
from musictl.errors import ArtifactError, MusictlError, TokenizeError, UsageError
from musictl.midi.corpus import (
    SourceFile,
    assign_group_splits,
    assign_splits,
    bundled_corpus,
    describe_change,
    find_midi_files,
    fingerprint_files,
    group_overlap,
    load_split_file,
)
from musictl.midi.encode import encode_score, parse_midi
from musictl.midi.parallel import ordered_map
from musictl.midi.settings import TokenizeSettings, parse_split_ratios
from musictl.midi.tokens import ERRORS_FILE, INDEX_FILE, TOKENS_FILE, VOCAB_FILE, Piece, write_index
from musictl.midi.vocab import TokenizerConfig
from musictl.progress import Progress

log = logging.getLogger(__name__)
MIN_SPLIT_PIECES = 2  # a valid or test split with fewer pieces of a style is reported as tiny
_PROBLEMS_KEPT = 20  # problems kept in the result for the console (all are in errors.jsonl)


class Encoded(NamedTuple):
    """What a worker returns for one file."""

    status: str  # "ok", "skipped" (readable, nothing to tokenize) or "failed" (unreadable or invalid)
    tokens: np.ndarray | None = None
    notes: int = 0
    seconds: float = 0.0
    hash: str = ""
    clipped: int = 0
    skips: tuple | list = ()  # [row, blocks] pairs, see musictl.midi.encode.bar_skips
    reason: str = ""


@dataclass
class TokenizeResult:
    """What a tokenize run did (its ``to_dict()`` is the artifact's metrics)."""

    out_dir: Path
    files: int = 0
    ok: int = 0
    skipped: int = 0  # readable, but nothing to tokenize (no notes)
    failed: int = 0  # unreadable or invalid
    notes: int = 0
    clipped: int = 0  # notes longer than the longest duration code
    seconds: float = 0.0
    by_split: dict[str, int] = field(default_factory=dict)
    by_style: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[dict] = field(default_factory=list)  # the first few, for the console
    warnings: list[str] = field(default_factory=list)  # empty or tiny splits
    up_to_date: bool = False  # an identical artifact was already there; nothing was written

    def to_dict(self) -> dict:
        return {
            "files": self.files, "ok": self.ok, "skipped": self.skipped, "failed": self.failed, "notes": self.notes,
            "clipped_durations": self.clipped, "pieces_by_split": self.by_split, "pieces_by_style": self.by_style,
            "styles": sorted(self.by_style), "warnings": self.warnings, "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_metrics(cls, out_dir: Path, metrics: dict, up_to_date: bool = False) -> TokenizeResult:
        return cls(out_dir=Path(out_dir), files=metrics.get("files", 0), ok=metrics.get("ok", 0),
                   skipped=metrics.get("skipped", 0), failed=metrics.get("failed", 0), notes=metrics.get("notes", 0),
                   clipped=metrics.get("clipped_durations", 0), seconds=metrics.get("seconds", 0.0),
                   by_split=metrics.get("pieces_by_split", {}), by_style=metrics.get("pieces_by_style", {}),
                   warnings=metrics.get("warnings", []), up_to_date=up_to_date)


class NothingTokenized(MusictlError):
    """No file could be tokenized (nothing was written); ``result.problems`` says why."""

    def __init__(self, result: TokenizeResult):
        super().__init__(f"none of the {result.files} files could be tokenized; nothing was written")
        self.result = result


@dataclass
class TokenizeJob:
    """The files, splits and settings of one run, found and checked before any work starts."""

    files: list[SourceFile]
    splits: dict[Path, str]
    sources: list[Path]
    out_dir: Path
    config: TokenizerConfig
    workers: int
    parameters: dict
    overwrite: bool = False
    current: TokenizeResult | None = None  # set when an up-to-date artifact is already there
    warnings: list[str] = field(default_factory=list)  # found while splitting (--group-by), kept in the manifest

    def run(self, on_progress: Progress | None = None) -> TokenizeResult:
        """The up-to-date result, or tokenize now."""
        if self.current is not None:
            return self.current
        return tokenize_corpus(self.files, self.splits, self.out_dir, self.config, self.workers, self.parameters,
                               self.overwrite, on_progress, self.warnings)


def prepare_tokenize(inputs: list[Path], out_dir: Path, settings: TokenizeSettings, split_file: Path | None = None,
                     overwrite: bool = False) -> TokenizeJob:
    """Find the MIDI files (default: the bundled corpus), split them, and check ``out_dir``."""
    sources = [Path(p) for p in inputs] or [bundled_corpus()]
    files = find_midi_files(sources)
    if not files:
        raise UsageError(f"no MIDI files ({', '.join(C.MIDI_SUFFIXES)}) under {', '.join(map(str, sources))}")
    warnings: list[str] = []
    if split_file is not None:
        splits, unmatched = load_split_file(split_file, files)
        if unmatched:
            log.info("%d entries of %s match no input file", unmatched, split_file)
        if settings.group_by is not None:
            warnings += _split_file_overlap(files, splits, settings.group_by, split_file)
    elif settings.group_by is not None:
        splits, unmatched = assign_group_splits(files, settings.ratios, settings.seed, settings.group_by)
        if unmatched:
            warnings.append(f"--group-by {settings.group_by!r} does not match {unmatched} of {len(files)} file names: "
                            "each of those files is a group of its own")
    else:
        splits = assign_splits(files, settings.ratios, settings.seed)
    for message in warnings:
        log.warning(message)
    workers = settings.workers or os.cpu_count() or 1
    parameters = {
        "inputs": [os.path.abspath(p) for p in sources],  # absolute: the artifact works from any cwd
        "split": settings.split if split_file is None else None,
        "split_file": os.path.abspath(split_file) if split_file else None,
        "split_file_hash": hashlib.blake2b(Path(split_file).read_bytes(), digest_size=10).hexdigest() if split_file else None,
        "seed": settings.seed,
        "workers": workers,
    }
    if settings.group_by is not None:  # only when given: artifacts made without it keep their exact manifest
        parameters["group_by"] = settings.group_by
    config = TokenizerConfig(**settings.quantisation())
    job = TokenizeJob(files, splits, sources, Path(out_dir), config, workers, parameters, overwrite, warnings=warnings)
    if not overwrite:
        job.current = existing_result(job.out_dir, files, {**parameters, "tokenizer": config.describe()})
    return job


def _split_file_overlap(files: list[SourceFile], splits: dict[Path, str], group_by: str, split_file: Path) -> list[str]:
    """--group-by with --split-file: the split file decides; say how many valid/test files share a group
    with training files."""
    overlap = group_overlap([(f.relative, splits[f.path]) for f in files], group_by)
    shared = [f"{o['shared']} of {o['files']} {s}" for s, o in overlap.items() if o["shared"]]
    if not shared:
        return []
    return [f"{Path(split_file).name}: {' and '.join(shared)} files share a --group-by group with training files "
            "(the split file decides the splits; --split with --group-by keeps groups together)"]


def existing_result(out_dir: Path, files: list[SourceFile], parameters: dict) -> TokenizeResult | None:
    """The result of an existing tokens artifact made from ``files`` with ``parameters`` (up to date),
    None when there is none, or an error saying what changed and how to refresh it."""
    out_dir = Path(out_dir)
    if not (out_dir / artifacts.MANIFEST).is_file():
        return None  # nothing there, or not an artifact: staging decides
    manifest = artifacts.read_manifest(out_dir)
    if manifest.kind != artifacts.TOKENS:
        return None
    if manifest.inputs.get("midi", {}).get("fingerprint") != fingerprint_files(files):
        raise ArtifactError(f"{out_dir}: {describe_change(out_dir, files)} since these tokens were made; "
                            "re-run with --overwrite to refresh them")
    changed = sorted(k for k in set(parameters) | set(manifest.parameters)
                     if k != "workers" and _plain(parameters.get(k)) != _plain(manifest.parameters.get(k)))
    if changed:
        raise ArtifactError(f"{out_dir} was made with other settings ({', '.join(changed)}); "
                            "re-run with --overwrite to replace it")
    artifacts.require(out_dir, artifacts.TOKENS)  # and its files still match its manifest
    return TokenizeResult.from_metrics(out_dir, manifest.metrics, up_to_date=True)


def _plain(value):
    return json.loads(json.dumps(value, default=str))


# ----- the work --------------------------------------------------------------------------------
_CONFIG: TokenizerConfig | None = None  # set once per worker process


def _init_worker(config: TokenizerConfig) -> None:
    global _CONFIG
    _CONFIG = config


def _encode_one(job: tuple[str, str]) -> Encoded:
    """Worker: tokenize one file (``job`` = path, problem found before reading it)."""
    path, problem = job
    if problem:
        return Encoded("failed", reason=problem)
    try:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise TokenizeError(path, f"cannot read file ({exc.strerror})") from None
        piece = encode_score(parse_midi(data, path), _CONFIG, path)
        digest = hashlib.blake2b(data, digest_size=12).hexdigest()
        return Encoded("ok", piece.tokens, piece.notes, piece.seconds, digest, piece.clipped, piece.skips)
    except TokenizeError as exc:
        return Encoded("skipped" if exc.reason == "no notes" else "failed", reason=exc.reason)
    except Exception as exc:  # a parser bug must not stop a batch of 100k files
        return Encoded("failed", reason=f"unexpected error: {type(exc).__name__}: {exc}")


def tokenize_corpus(
    files: list[SourceFile],
    splits: dict[Path, str],
    out_dir: Path,
    config: TokenizerConfig,
    workers: int = 1,
    parameters: dict | None = None,
    overwrite: bool = False,
    on_progress: Progress | None = None,
    warnings: list[str] | None = None,
) -> TokenizeResult:
    """Write the tokens artifact for ``files`` to ``out_dir`` and return what happened.

    Without ``overwrite``, an artifact already at ``out_dir`` that was made from the same files with
    the same ``parameters`` is kept and its result returned (``up_to_date``); one made from other
    files or settings is an error that says so.
    """
    out_dir = Path(out_dir)
    parameters = {**(parameters or {}), "tokenizer": config.describe()}
    fingerprint = fingerprint_files(files)
    if not overwrite:
        current = existing_result(out_dir, files, parameters)
        if current is not None:
            return current
    result = TokenizeResult(out_dir=out_dir, files=len(files))
    started = time.perf_counter()
    with artifacts.staging(out_dir, overwrite=overwrite) as tmp:
        rows = _write_pieces(tmp, files, splits, config, workers, result, on_progress)
        _raw_to_npy(tmp / "tokens.raw", tmp / TOKENS_FILE, rows)
        artifacts.atomic_write_json(tmp / VOCAB_FILE, config.describe())
        result.seconds = time.perf_counter() - started
        if not result.ok:
            raise NothingTokenized(result)  # the previous artifact, if any, stays
        tiny = split_warnings(result.by_style, parameters.get("split"))
        for message in tiny:
            log.warning(message)
        result.warnings = [*(warnings or []), *tiny]
        artifacts.write_manifest(tmp, artifacts.Manifest(
            kind=artifacts.TOKENS,
            parameters=parameters,
            inputs={"midi": {"files": str(len(files)), "fingerprint": fingerprint}},
            metrics=result.to_dict(),
        ))
    return result


def _write_pieces(tmp: Path, files: list[SourceFile], splits: dict[Path, str], config: TokenizerConfig, workers: int,
                  result: TokenizeResult, on_progress: Progress | None) -> int:
    """Tokenize every file into ``tmp`` (raw rows, index, errors); returns the number of rows."""
    jobs = [(str(f.path), f.problem) for f in files]
    offset = 0
    with (
        (tmp / "tokens.raw").open("wb") as raw,
        (tmp / INDEX_FILE).open("w") as index,
        (tmp / ERRORS_FILE).open("w") as errors,
        ordered_map(_encode_one, jobs, workers, _init_worker, (config,)) as results,
    ):
        for done, (source, encoded) in enumerate(zip(files, results), 1):
            path = os.path.abspath(source.path)  # absolute: consumers work from any cwd
            if encoded.status != "ok":
                problem = {"path": path, "status": encoded.status, "reason": encoded.reason}
                errors.write(json.dumps(problem) + "\n")
                setattr(result, encoded.status, getattr(result, encoded.status) + 1)
                if len(result.problems) < _PROBLEMS_KEPT:
                    result.problems.append(problem)
            else:
                split = splits.get(source.path, C.UNLISTED_SPLIT)
                length = len(encoded.tokens)
                piece = Piece(result.ok, path, source.style, split, offset, length, encoded.hash, encoded.notes,
                                           round(encoded.seconds, 3), encoded.clipped, list(encoded.skips))
                raw.write(np.ascontiguousarray(encoded.tokens, dtype=np.int16).tobytes())
                write_index(index, [piece])
                offset += length
                result.ok += 1
                result.notes += length
                result.clipped += encoded.clipped
                result.by_split[split] = result.by_split.get(split, 0) + 1
                style = result.by_style.setdefault(source.style, {})
                style[split] = style.get(split, 0) + 1
            if on_progress:
                on_progress(done, len(files), None)
    return offset


def split_warnings(by_style: dict[str, dict[str, int]], split: str | None = None) -> list[str]:
    """One line per style whose valid or test split is empty or tiny (fewer than MIN_SPLIT_PIECES).

    With ``split`` (the ``--split`` fractions) a split given a share of 0 is not reported.
    """
    shares = dict(zip(C.SPLITS, parse_split_ratios(split))) if split else {}
    out = []
    for style, counts in sorted(by_style.items()):
        short = {s: counts.get(s, 0) for s in ("valid", "test") if shares.get(s, 1) > 0 and counts.get(s, 0) < MIN_SPLIT_PIECES}
        if not short:
            continue
        empty = [s for s, n in short.items() if n == 0]
        phrases = [f"no {' or '.join(empty)} split"] if empty else []
        phrases += [f"only {n} {s} piece{'s' * (n != 1)}" for s, n in short.items() if n]
        total = sum(counts.values())
        out.append(f"style {style} has {total} piece{'s' * (total != 1)}: {' and '.join(phrases)}; use --split or add pieces")
    return out


def _raw_to_npy(raw_path: Path, npy_path: Path, rows: int) -> None:
    """Prefix the raw int16 rows with an ``.npy`` header (streamed copy, no array in memory)."""
    header = np.lib.format.header_data_from_array_1_0(np.empty((0, C.N_FIELDS), dtype=np.int16))
    header["shape"] = (rows, C.N_FIELDS)
    with npy_path.open("wb") as out, raw_path.open("rb") as raw:
        np.lib.format.write_array_header_1_0(out, header)
        shutil.copyfileobj(raw, out, 1 << 22)
    raw_path.unlink()
