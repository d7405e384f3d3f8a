"""Decode every piece of a tokens artifact into a folder of MIDI files, in parallel.

File names come from the index (``<style>/<source file stem>.mid``) but are made safe first: every
name is one plain path component, and every file lands inside the output folder.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from musictl import artifacts
from musictl.errors import ArtifactError, UsageError
from musictl.midi.decode import tokens_to_midi_bytes
from musictl.midi.parallel import ordered_map
from musictl.midi.tokens import Piece, TokenCorpus
from musictl.progress import Progress

_NAME_CHARS = set("-_.+=,()[] ")
_MAX_STEM = 100


@dataclass
class DecodeResult:
    """What ``decode_corpus`` wrote."""

    out_dir: Path
    pieces: int = 0
    notes: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "pieces": self.pieces, "notes": self.notes, "bytes": self.bytes,
                "seconds": round(self.seconds, 3)}


def safe_stem(text: str) -> str:
    """A file-name stem made of letters, digits and ``-_.+=,()[]`` and spaces (anything else -> ``_``),
    without leading dots: never a path separator, ``..`` or a control character."""
    kept = "".join(ch if ch.isalnum() or ch in _NAME_CHARS else "_" for ch in str(text))
    return kept.strip(" .")[:_MAX_STEM].strip(" .") or "piece"


def piece_file_names(pieces: list[Piece]) -> list[str]:
    """``<style>/<stem>.mid`` of each piece; a name that two pieces would share gets ``-<id>``."""
    names = [f"{artifacts.safe_name(p.style, 'style')}/{safe_stem(Path(p.path).stem)}" for p in pieces]
    counts: dict[str, int] = {}
    for name in names:
        counts[name.casefold()] = counts.get(name.casefold(), 0) + 1
    return [f"{name}-{p.id}.mid" if counts[name.casefold()] > 1 else f"{name}.mid" for name, p in zip(names, pieces)]


def decode_corpus(tokens_dir: Path, out_dir: Path, workers: int = 1, program: int | None = None, overwrite: bool = False,
                  on_progress: Progress | None = None) -> DecodeResult:
    """Write every piece of the tokens artifact ``tokens_dir`` as a MIDI file under ``out_dir``.

    Existing files are replaced only with ``overwrite`` (checked for all files before any is written);
    other files in ``out_dir`` are left alone. Each file is written atomically.
    """
    started = time.perf_counter()
    corpus = TokenCorpus.open(tokens_dir)
    out_dir = Path(out_dir)
    root = out_dir.resolve()
    if root == corpus.path.resolve() or corpus.path.resolve() in root.parents:
        raise UsageError(f"-o {out_dir} is inside the tokens artifact {corpus.path}; write the MIDI files somewhere else")
    targets = [out_dir / name for name in piece_file_names(corpus.pieces)]
    for target in targets:  # belt and braces: names are single components, and stay inside out_dir
        if root not in Path(os.path.abspath(target)).parents:
            raise ArtifactError(f"{corpus.path}: piece file name {target} would leave {out_dir}; {corpus.path} was edited")
    existing = [t for t in targets if os.path.lexists(t)]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ArtifactError(f"{existing[0]} already exists{more}; pass --overwrite to replace the decoded files, or choose another -o")
    artifacts.check_writable(out_dir / "_")
    result = DecodeResult(out_dir=out_dir)
    jobs = [(i, str(t)) for i, t in enumerate(targets)]
    with ordered_map(_decode_one, jobs, workers, _init_worker, (corpus, program, overwrite)) as results:
        for done, (notes, size) in enumerate(results, 1):
            result.pieces += 1
            result.notes += notes
            result.bytes += size
            if on_progress:
                on_progress(done, len(jobs), None)
    result.seconds = time.perf_counter() - started
    return result


_STATE: tuple[TokenCorpus, int | None, bool] | None = None  # set once per worker process


def _init_worker(corpus: TokenCorpus, program: int | None, overwrite: bool) -> None:
    global _STATE
    _STATE = (corpus, program, overwrite)


def _decode_one(job: tuple[int, str]) -> tuple[int, int]:
    """Worker: decode one piece and write its file; returns (notes, bytes)."""
    corpus, program, overwrite = _STATE
    piece = corpus.pieces[job[0]]
    data = tokens_to_midi_bytes(corpus.piece_tokens(piece), corpus.config, program=program, skips=piece.skips)
    artifacts.write_output(Path(job[1]), data, overwrite=overwrite)
    return piece.length, len(data)
