"""Tokenize a corpus into a ``tokens`` artifact, in parallel, with flat memory.

Workers parse and encode files; the parent appends each result in file order to files inside a
staging directory (raw tokens, index and error lines), so memory does not grow with the corpus
and an interrupted run leaves no artifact behind.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musictl import artifacts
from musictl import constants as C
from musictl.errors import TokenizeError
from musictl.midi import tokens as T
from musictl.midi.corpus import SourceFile
from musictl.midi.encode import encode_score, parse_midi
from musictl.midi.vocab import TokenizerConfig


@dataclass
class TokenizeSummary:
    files: int = 0
    ok: int = 0
    skipped: int = 0  # readable, but nothing to tokenize (no notes)
    failed: int = 0  # unreadable or invalid
    notes: int = 0
    seconds: float = 0.0
    by_split: dict[str, int] = field(default_factory=dict)
    problems: list[dict] = field(default_factory=list)  # first few, for the console


_CONFIG: TokenizerConfig | None = None  # set once per worker process


def _init_worker(config: TokenizerConfig) -> None:
    global _CONFIG
    _CONFIG = config


def _encode_one(path: str):
    """Worker: (tokens, notes, seconds, hash) or (None, status, reason, None)."""
    config = _CONFIG
    try:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise TokenizeError(path, f"cannot read file ({exc.strerror})") from None
        piece = encode_score(parse_midi(data, path), config, path)
        return piece.tokens, piece.notes, piece.seconds, hashlib.blake2b(data, digest_size=12).hexdigest()
    except TokenizeError as exc:
        status = "skipped" if exc.reason == "no notes" else "failed"
        return None, status, exc.reason, None
    except Exception as exc:  # a parser bug must not stop a batch of 100k files
        return None, "failed", f"unexpected error: {type(exc).__name__}: {exc}", None


def tokenize_corpus(
    files: list[SourceFile],
    splits: dict[Path, str],
    out_dir: Path,
    config: TokenizerConfig,
    workers: int = 1,
    parameters: dict | None = None,
    overwrite: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> TokenizeSummary:
    """Write the tokens artifact for ``files`` to ``out_dir`` and return what happened."""
    summary = TokenizeSummary(files=len(files))
    started = time.perf_counter()
    jobs = [str(f.path) for f in files]
    with artifacts.staging(out_dir, overwrite=overwrite) as tmp:
        raw_path = tmp / "tokens.raw"
        with (
            raw_path.open("wb") as raw,
            (tmp / T.INDEX_FILE).open("w") as index,
            (tmp / T.ERRORS_FILE).open("w") as errors,
            _results(jobs, workers, config) as results,
        ):
            offset = 0
            for source, result in zip(files, results):
                tokens, a, b, digest = result
                if tokens is None:
                    problem = {"path": str(source.path), "status": a, "reason": b}
                    errors.write(json.dumps(problem) + "\n")
                    setattr(summary, a, getattr(summary, a) + 1)
                    if len(summary.problems) < 20:
                        summary.problems.append(problem)
                else:
                    split = splits.get(source.path, C.UNLISTED_SPLIT)
                    piece = T.Piece(summary.ok, str(source.path), source.style, split, offset, len(tokens), digest, a, round(b, 3))
                    raw.write(np.ascontiguousarray(tokens, dtype=np.int16).tobytes())
                    T.write_index(index, [piece])
                    offset += len(tokens)
                    summary.ok += 1
                    summary.notes += len(tokens)
                    summary.by_split[split] = summary.by_split.get(split, 0) + 1
                if on_progress:
                    on_progress(1)
        _raw_to_npy(raw_path, tmp / T.TOKENS_FILE, offset)
        artifacts.atomic_write_json(tmp / T.VOCAB_FILE, config.describe())
        summary.seconds = time.perf_counter() - started
        manifest = artifacts.Manifest(
            kind=T.KIND,
            parameters={**(parameters or {}), "tokenizer": config.describe()},
            inputs={"midi": {"files": str(len(files)), "fingerprint": _files_fingerprint(files)}},
            metrics={
                "files": summary.files,
                "ok": summary.ok,
                "skipped": summary.skipped,
                "failed": summary.failed,
                "notes": summary.notes,
                "pieces_by_split": summary.by_split,
                "styles": sorted({f.style for f in files}),
                "seconds": round(summary.seconds, 3),
            },
        )
        if summary.ok:
            artifacts.write_manifest(tmp, manifest)
        else:
            # Nothing tokenized: keep whatever was there before, report the failure.
            raise NothingTokenized(summary)
    return summary


class NothingTokenized(Exception):
    def __init__(self, summary: TokenizeSummary):
        super().__init__("no file could be tokenized")
        self.summary = summary


class _results:
    """Ordered results of ``_encode_one`` in-process or from a pool that is always cleaned up."""

    def __init__(self, jobs: list[str], workers: int, config: TokenizerConfig):
        self.jobs, self.workers, self.config, self.pool = jobs, max(1, workers), config, None

    def __enter__(self):
        if self.workers == 1 or len(self.jobs) < 2:
            _init_worker(self.config)
            return map(_encode_one, self.jobs)
        context = multiprocessing.get_context("fork")
        self.pool = context.Pool(min(self.workers, len(self.jobs)), initializer=_init_worker, initargs=(self.config,))
        chunk = max(1, min(64, len(self.jobs) // (self.workers * 8)))
        return self.pool.imap(_encode_one, self.jobs, chunksize=chunk)

    def __exit__(self, exc_type, *_):
        if self.pool is not None:
            if exc_type is None:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()


def _raw_to_npy(raw_path: Path, npy_path: Path, rows: int) -> None:
    """Prefix the raw int16 rows with an ``.npy`` header (streamed copy, no array in memory)."""
    header = np.lib.format.header_data_from_array_1_0(np.empty((0, C.N_FIELDS), dtype=np.int16))
    header["shape"] = (rows, C.N_FIELDS)
    with npy_path.open("wb") as out, raw_path.open("rb") as raw:
        np.lib.format.write_array_header_1_0(out, header)
        shutil.copyfileobj(raw, out, 1 << 22)
    raw_path.unlink()


def _files_fingerprint(files: list[SourceFile]) -> str:
    digest = hashlib.blake2b(digest_size=10)
    for f in files:
        stat = f.path.stat() if f.path.exists() else None
        digest.update(f"{f.relative}\0{f.style}\0{stat.st_size if stat else -1}\0{stat.st_mtime_ns if stat else -1}\n".encode())
    return digest.hexdigest()
