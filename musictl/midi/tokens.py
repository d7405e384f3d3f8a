"""The ``tokens`` artifact: one memory-mapped ``(n_notes, 8)`` array of every piece plus an index.

Layout of ``<workdir>/tokens/``::

    tokens.npy     int16 ids, all pieces end to end (np.load(..., mmap_mode="r"))
    index.jsonl    one row per piece: id, path (absolute), style, split, offset, length, hash, notes, seconds,
                   clipped (notes longer than the longest duration code), skips (bar blocks the bar field cannot show)
    vocab.json     the tokenizer parameters (TokenizerConfig.describe())
    errors.jsonl   one row per file that was skipped or failed: path, status, reason
    duplicates.jsonl  only when --dedup found near-duplicate groups: one row per group (members, pairs)
    manifest.json
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from musictl import artifacts
from musictl import constants as C
from musictl.errors import ArtifactError, UsageError
from musictl.midi.vocab import TokenizerConfig

TOKENS_FILE = "tokens.npy"
INDEX_FILE = "index.jsonl"
VOCAB_FILE = "vocab.json"
ERRORS_FILE = "errors.jsonl"
DUPLICATES_FILE = "duplicates.jsonl"  # near-duplicate groups (musictl.midi.dedup), written by tokenize --dedup


@dataclass
class Piece:
    """One row of the index."""

    id: int
    path: str
    style: str
    split: str
    offset: int
    length: int
    hash: str
    notes: int
    seconds: float
    clipped: int = 0  # notes longer than the longest duration code
    skips: list = field(default_factory=list)  # [row, blocks] pairs for the decoder (decode_tokens(skips=...))


_REMAKE = "remake it: musictl tokenize --overwrite"


class TokenCorpus:
    """Read access to a tokens artifact; the array stays on disk until a piece is sliced.

    Opening checks the artifact (manifest, fingerprint of its files, vocabulary, index and array
    shape): a truncated, edited or malformed artifact is a one-line :class:`ArtifactError`.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.manifest = artifacts.require(self.path, artifacts.TOKENS)
        self.config = read_vocab(self.path / VOCAB_FILE)
        self.pieces = read_index(self.path / INDEX_FILE)
        self.tokens = _open_tokens(self.path / TOKENS_FILE)
        end = max((p.offset + p.length for p in self.pieces), default=0)
        if end > len(self.tokens):
            raise ArtifactError(f"{self.path / INDEX_FILE}: pieces reach row {end}, but {TOKENS_FILE} has {len(self.tokens)}; "
                                f"{_REMAKE}")

    @classmethod
    def open(cls, path: Path | None = None, workdir: Path | None = None) -> TokenCorpus:
        return cls(Path(path) if path else artifacts.artifact_dir(workdir, artifacts.TOKENS))

    def __len__(self) -> int:
        return len(self.pieces)

    def piece_tokens(self, piece: Piece | int) -> np.ndarray:
        """The ``(length, 8)`` ids of one piece (a copy, safe to modify)."""
        p = self.pieces[piece] if isinstance(piece, int) else piece
        return np.array(self.tokens[p.offset : p.offset + p.length])

    def select(self, split: str | None = None, style: str | None = None) -> list[Piece]:
        return [p for p in self.pieces if (split is None or p.split == split) and (style is None or p.style == style)]

    @property
    def styles(self) -> list[str]:
        return sorted({p.style for p in self.pieces})

    def require_style(self, style: str) -> list[Piece]:
        """Pieces of a style, or an error listing the known styles."""
        chosen = self.select(style=style)
        if not chosen:
            raise ArtifactError(f"unknown style '{style}' in {self.path}; known styles: {', '.join(self.styles)}")
        return chosen

    def find(self, name: str) -> Piece:
        """A piece by id, by its source path, or by a unique suffix of it (e.g. a file name)."""
        if name.isdigit() and int(name) < len(self.pieces):
            return self.pieces[int(name)]
        absolute = os.path.abspath(name)
        matches = [p for p in self.pieces
                   if p.path in (name, absolute) or p.path.endswith("/" + name) or Path(p.path).name == name]
        if len(matches) == 1:
            return matches[0]
        reason = "matches no piece" if not matches else f"matches {len(matches)} pieces"
        raise ArtifactError(f"'{name}' {reason} in {self.path / INDEX_FILE}; give a piece id or a longer path")


def read_vocab(path: Path) -> TokenizerConfig:
    """The tokenizer parameters of ``vocab.json``, or a one-line error."""
    try:
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return TokenizerConfig.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise ArtifactError(f"{path}: not a valid vocabulary ({exc}); {_REMAKE}") from None


def read_index(path: Path) -> list[Piece]:
    """The rows of ``index.jsonl``; a malformed row or an unsafe style name is a one-line error."""
    names = {f.name for f in fields(Piece)}
    required = {f.name for f in fields(Piece) if f.name not in ("clipped", "skips")}
    pieces = []
    for number, row in enumerate(artifacts.read_jsonl(path), 1):
        where = f"{path}: row {number}"
        if not isinstance(row, dict) or not required <= set(row) or not set(row) <= names:
            raise ArtifactError(f"{where} is not an index row (expected the fields {', '.join(sorted(required))}); {_REMAKE}")
        piece = Piece(**row)
        if not all(isinstance(v, int) and v >= 0 for v in (piece.offset, piece.length)):
            raise ArtifactError(f"{where} has an invalid offset or length; {_REMAKE}")
        try:
            artifacts.safe_name(piece.style, "style")
        except UsageError as exc:
            raise ArtifactError(f"{where}: {exc}; {_REMAKE}") from None
        pieces.append(piece)
    return pieces


def _open_tokens(path: Path) -> np.ndarray:
    try:
        tokens = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ArtifactError(f"{path}: unreadable token array ({exc}); {_REMAKE}") from None
    if tokens.ndim != 2 or tokens.shape[1] != C.N_FIELDS or not np.issubdtype(tokens.dtype, np.integer):
        raise ArtifactError(f"{path}: expected an integer array of shape (n, {C.N_FIELDS}), got {tokens.dtype} {tokens.shape}; "
                            f"{_REMAKE}")
    return tokens


def write_index(handle, rows: Iterable[Piece]) -> None:
    for row in rows:
        handle.write(json.dumps(row.__dict__) + "\n")
