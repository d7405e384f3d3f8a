"""Tokenize a corpus into a ``tokens`` artifact, in parallel, with flat memory.

Workers parse and encode files; the parent appends each result in file order to files inside a
staging directory (raw tokens, index and error lines), so memory does not grow with the corpus
and an interrupted run leaves no artifact behind. An existing artifact made from the same MIDI
files with the same settings is left as it is (up to date); one whose MIDI files changed is
refused without ``--overwrite``, saying what changed.
"""

from __future__ import annotations

import contextlib
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
from musictl.midi.dedup import duplicate_groups, shingles, similar_pairs
from musictl.midi.encode import encode_score, parse_midi
from musictl.midi.parallel import ordered_map
from musictl.midi.settings import TokenizeSettings, parse_split_ratios
from musictl.midi.tokens import DUPLICATES_FILE, ERRORS_FILE, INDEX_FILE, TOKENS_FILE, VOCAB_FILE, Piece, write_index
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
    shingles: np.ndarray | None = None  # its melody's shingle set (musictl.midi.dedup), when --dedup is on


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
    dedup: dict | None = None  # what --dedup found and did (None: --dedup off)
    dropped: list[dict] = field(default_factory=list)  # the first few pieces --dedup drop left out, for the console

    def to_dict(self) -> dict:
        out = {
            "files": self.files, "ok": self.ok, "skipped": self.skipped, "failed": self.failed, "notes": self.notes,
            "clipped_durations": self.clipped, "pieces_by_split": self.by_split, "pieces_by_style": self.by_style,
            "styles": sorted(self.by_style), "warnings": self.warnings, "seconds": round(self.seconds, 3),
        }
        if self.dedup is not None:  # only with --dedup on: artifacts made without it keep their exact metrics
            out["dedup"] = self.dedup
        return out

    @classmethod
    def from_metrics(cls, out_dir: Path, metrics: dict, up_to_date: bool = False) -> TokenizeResult:
        return cls(out_dir=Path(out_dir), files=metrics.get("files", 0), ok=metrics.get("ok", 0),
                   skipped=metrics.get("skipped", 0), failed=metrics.get("failed", 0), notes=metrics.get("notes", 0),
                   clipped=metrics.get("clipped_durations", 0), seconds=metrics.get("seconds", 0.0),
                   by_split=metrics.get("pieces_by_split", {}), by_style=metrics.get("pieces_by_style", {}),
                   warnings=metrics.get("warnings", []), up_to_date=up_to_date, dedup=metrics.get("dedup"))


class NothingTokenized(MusictlError):
    """No file could be tokenized (nothing was written); ``result.problems`` says why."""

    def __init__(self, result: TokenizeResult):
        super().__init__(f"none of the {result.files} files could be tokenized; nothing was written")
        self.result = result


@dataclass(frozen=True)
class DedupPlan:
    """What ``--dedup`` does after encoding (:mod:`musictl.midi.dedup` finds the near-duplicate groups).

    ``mode``: ``group`` (each group gets one split) or ``drop`` (the first piece of each group by path is
    kept). ``ratios`` is None when the splits were given (``--split-file``): then groups only are reported
    (``drop`` still drops); else splits are drawn again with ``ratios``, ``seed`` and ``group_by`` as
    :func:`~musictl.midi.corpus.assign_group_splits` draws them, with each group kept together.
    """

    mode: str
    threshold: float
    ratios: tuple[float, float, float] | None = None
    seed: int = 0
    group_by: str | None = None
    split_file: str | None = None  # its name, for the report

    def parameters(self) -> dict:
        """What the manifest's parameters record (absent with ``--dedup off``)."""
        return {"dedup": self.mode, "dedup_threshold": self.threshold}


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
    dedup: DedupPlan | None = None  # --dedup group|drop (None: off)

    def run(self, on_progress: Progress | None = None) -> TokenizeResult:
        """The up-to-date result, or tokenize now."""
        if self.current is not None:
            return self.current
        return tokenize_corpus(self.files, self.splits, self.out_dir, self.config, self.workers, self.parameters,
                               self.overwrite, on_progress, self.warnings, self.dedup)


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
    dedup = None
    if settings.dedup != "off":  # recorded only when on: artifacts made with --dedup off keep their exact manifest
        dedup = DedupPlan(settings.dedup, settings.dedup_threshold, settings.ratios if split_file is None else None,
                          settings.seed, settings.group_by, Path(split_file).name if split_file else None)
        parameters.update(dedup.parameters())
    config = TokenizerConfig(**settings.quantisation())
    job = TokenizeJob(files, splits, sources, Path(out_dir), config, workers, parameters, overwrite, warnings=warnings,
                      dedup=dedup)
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
_SHINGLES = False  # whether workers also return each piece's shingle set (--dedup)


def _init_worker(config: TokenizerConfig, with_shingles: bool = False) -> None:
    global _CONFIG, _SHINGLES
    _CONFIG, _SHINGLES = config, with_shingles


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
        return Encoded("ok", piece.tokens, piece.notes, piece.seconds, digest, piece.clipped, piece.skips,
                       shingles=shingles(piece.tokens) if _SHINGLES else None)
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
    dedup: DedupPlan | None = None,
) -> TokenizeResult:
    """Write the tokens artifact for ``files`` to ``out_dir`` and return what happened.

    Without ``overwrite``, an artifact already at ``out_dir`` that was made from the same files with
    the same ``parameters`` is kept and its result returned (``up_to_date``); one made from other
    files or settings is an error that says so. With ``dedup``, near-duplicate pieces are found after
    encoding and grouped into one split or dropped (:func:`_deduplicate`).
    """
    out_dir = Path(out_dir)
    parameters = {**(parameters or {}), **(dedup.parameters() if dedup else {}), "tokenizer": config.describe()}
    fingerprint = fingerprint_files(files)
    if not overwrite:
        current = existing_result(out_dir, files, parameters)
        if current is not None:
            return current
    result = TokenizeResult(out_dir=out_dir, files=len(files))
    started = time.perf_counter()
    with artifacts.staging(out_dir, overwrite=overwrite) as tmp:
        found: list[tuple[SourceFile, np.ndarray]] | None = [] if dedup else None
        rows = _write_pieces(tmp, files, splits, config, workers, result, on_progress, found)
        if dedup is not None and result.ok:
            rows = _deduplicate(tmp, files, splits, found, dedup, result)
        _raw_to_npy(tmp / "tokens.raw", tmp / TOKENS_FILE, rows)
        artifacts.atomic_write_json(tmp / VOCAB_FILE, config.describe())
        result.seconds = time.perf_counter() - started
        if not result.ok:
            raise NothingTokenized(result)  # the previous artifact, if any, stays
        tiny = split_warnings(result.by_style, parameters.get("split"))
        for message in tiny:
            log.warning(message)
        result.warnings = [*(warnings or []), *result.warnings, *tiny]
        artifacts.write_manifest(tmp, artifacts.Manifest(
            kind=artifacts.TOKENS,
            parameters=parameters,
            inputs={"midi": {"files": str(len(files)), "fingerprint": fingerprint}},
            metrics=result.to_dict(),
        ))
    return result


def _write_pieces(tmp: Path, files: list[SourceFile], splits: dict[Path, str], config: TokenizerConfig, workers: int,
                  result: TokenizeResult, on_progress: Progress | None,
                  found: list[tuple[SourceFile, np.ndarray]] | None = None) -> int:
    """Tokenize every file into ``tmp`` (raw rows, index, errors); returns the number of rows. With
    ``found``, each tokenized piece's source and shingle set are appended to it, in index order."""
    jobs = [(str(f.path), f.problem) for f in files]
    offset = 0
    with (
        (tmp / "tokens.raw").open("wb") as raw,
        (tmp / INDEX_FILE).open("w") as index,
        (tmp / ERRORS_FILE).open("w") as errors,
        ordered_map(_encode_one, jobs, workers, _init_worker, (config, found is not None)) as results,
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
                _count(result, piece)
                if found is not None:
                    found.append((source, encoded.shingles))
            if on_progress:
                on_progress(done, len(files), None)
    return offset


def _count(result: TokenizeResult, piece: Piece) -> None:
    """Add one piece of the artifact to the result's counts."""
    result.ok += 1
    result.notes += piece.length
    result.clipped += piece.clipped
    result.by_split[piece.split] = result.by_split.get(piece.split, 0) + 1
    style = result.by_style.setdefault(piece.style, {})
    style[piece.split] = style.get(piece.split, 0) + 1


# ----- near-duplicates (--dedup) -----------------------------------------------------------------
def _deduplicate(tmp: Path, files: list[SourceFile], splits: dict[Path, str], found: list[tuple[SourceFile, np.ndarray]],
                 plan: DedupPlan, result: TokenizeResult) -> int:
    """Find near-duplicate groups among the pieces written to ``tmp``; keep each group in one split
    (``group``: splits drawn again with the groups kept together) or keep its first piece by path
    (``drop``); rewrite the index (and the raw rows, when pieces are dropped) in a streamed pass, write
    ``duplicates.jsonl`` when there are groups, and record the report in ``result.dedup``. Returns the
    number of rows now in ``tmp / "tokens.raw"``."""
    started = time.perf_counter()
    paths = [source.path for source, _ in found]
    groups = duplicate_groups(len(found), pairs := similar_pairs([s for _, s in found], threshold=plan.threshold))
    dropped: dict[int, int] = {}  # piece id -> the id kept in its group
    if plan.mode == "drop":
        for group in groups:
            first, *rest = sorted(group, key=lambda i: os.path.abspath(paths[i]))
            dropped.update({i: first for i in rest})
    before = [splits.get(p, C.UNLISTED_SPLIT) for p in paths]
    if plan.ratios is not None:
        gone = {paths[i] for i in dropped}
        kept = [f for f in files if f.path not in gone]
        together = [[paths[i] for i in g] for g in groups] if plan.mode == "group" else []
        if plan.group_by is None and not together:
            drawn = assign_splits(kept, plan.ratios, plan.seed)
        else:
            drawn, _ = assign_group_splits(kept, plan.ratios, plan.seed, plan.group_by, together)
        after = [None if i in dropped else drawn[p] for i, p in enumerate(paths)]
    else:
        after = [None if i in dropped else split for i, split in enumerate(before)]
    report = {"mode": plan.mode, "threshold": plan.threshold, "groups": len(groups),
              "pieces_in_groups": sum(len(g) for g in groups),
              "moved": sum(a is not None and a != b for a, b in zip(after, before)), "dropped": len(dropped)}
    if plan.ratios is None:
        report["near_copies"] = _near_copies(groups, before)
        shared = [f"{o['shared']} of {o['files']} {s}" for s, o in report["near_copies"].items() if o["shared"]]
        if shared:
            message = (f"{plan.split_file or 'the given splits'}: {' and '.join(shared)} pieces are near-copies of training "
                       f"pieces (--dedup; the split file decides the splits; --split with --dedup group keeps near-copies "
                       f"in one split)")
            log.warning(message)
            result.warnings.append(message)
    ids = list(range(len(paths)))
    if report["moved"] or dropped:
        ids = _rewrite_pieces(tmp, after, result)
    if groups:
        _write_duplicates(tmp / DUPLICATES_FILE, groups, pairs, found, after, ids, dropped)
    result.dropped = [{"path": os.path.abspath(paths[i]), "kept": os.path.abspath(paths[k])}
                      for i, k in sorted(dropped.items())][:_PROBLEMS_KEPT]
    report["seconds"] = round(time.perf_counter() - started, 3)
    result.dedup = report
    return result.notes


def _near_copies(groups: list[list[int]], splits: list[str]) -> dict[str, dict[str, int]]:
    """How many valid and test pieces share a near-duplicate group with a training piece, in the form of
    :func:`musictl.midi.corpus.group_overlap`."""
    with_train = {i for g in groups if any(splits[j] == "train" for j in g) for i in g}
    return {s: {"shared": sum(1 for i, x in enumerate(splits) if x == s and i in with_train),
                "files": sum(1 for x in splits if x == s)} for s in ("valid", "test")}


def _rewrite_pieces(tmp: Path, splits: list[str | None], result: TokenizeResult) -> list[int | None]:
    """Rewrite ``tmp``'s index with new ``splits`` (one per piece; None: drop it, and its rows from the raw
    tokens), streamed; recount the result. Returns each piece's new id (None when dropped)."""
    index, raw = tmp / INDEX_FILE, tmp / "tokens.raw"
    dropping = any(s is None for s in splits)
    source = np.memmap(raw, dtype=np.int16, mode="r").reshape(-1, C.N_FIELDS) if dropping else None
    result.ok = result.notes = result.clipped = 0
    result.by_split, result.by_style = {}, {}
    ids: list[int | None] = []
    with contextlib.ExitStack() as stack:
        old, new = stack.enter_context(index.open()), stack.enter_context((tmp / "index.new").open("w"))
        rows = stack.enter_context((tmp / "tokens.new").open("wb")) if dropping else None
        for line in old:
            piece = Piece(**json.loads(line))
            split = splits[piece.id]
            if split is None:
                ids.append(None)
                continue
            if dropping:
                rows.write(np.ascontiguousarray(source[piece.offset : piece.offset + piece.length]).tobytes())
                piece.offset = result.notes
            ids.append(result.ok)
            piece.id, piece.split = result.ok, split
            write_index(new, [piece])
            _count(result, piece)
    del source
    os.replace(tmp / "index.new", index)
    if dropping:
        os.replace(tmp / "tokens.new", raw)
    return ids


def _write_duplicates(path: Path, groups: list[list[int]], pairs, found: list[tuple[SourceFile, np.ndarray]],
                      splits: list[str | None], ids: list[int | None], dropped: dict[int, int]) -> None:
    """``duplicates.jsonl``: one row per group: its members (sorted by path; path, style, split, id in the
    artifact, whether dropped) and its pairs (member positions and the share)."""
    where: dict[int, tuple[int, int]] = {}
    ordered = []
    for number, group in enumerate(groups):
        members = sorted(group, key=lambda i: os.path.abspath(found[i][0].path))
        where.update({i: (number, k) for k, i in enumerate(members)})
        ordered.append(members)
    links: list[list] = [[] for _ in groups]
    for a, b, share in pairs:
        (number, x), (_, y) = where[a], where[b]
        links[number].append([min(x, y), max(x, y), share])
    with path.open("w") as out:
        for number, members in enumerate(ordered):
            row = {"group": number, "members": [
                {"path": os.path.abspath(found[i][0].path), "style": found[i][0].style, "split": splits[i], "id": ids[i],
                 "dropped": i in dropped} for i in members], "pairs": sorted(links[number])}
            out.write(json.dumps(row) + "\n")


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
