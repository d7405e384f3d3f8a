"""The ``tokens`` artifact: one memory-mapped ``(n_notes, 8)`` array of every piece plus an index.

Layout of ``<workdir>/tokens/``::

    tokens.npy     int16 ids, all pieces end to end (np.load(..., mmap_mode="r"))
    index.jsonl    one row per piece: id, path, style, split, offset, length, hash, notes, seconds
    vocab.json     the tokenizer parameters (TokenizerConfig.describe())
    errors.jsonl   one row per file that was skipped or failed: path, status, reason
    manifest.json
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musictl import artifacts
from musictl.errors import ArtifactError
from musictl.midi.vocab import TokenizerConfig

KIND = "tokens"
TOKENS_FILE = "tokens.npy"
INDEX_FILE = "index.jsonl"
VOCAB_FILE = "vocab.json"
ERRORS_FILE = "errors.jsonl"


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


class TokenCorpus:
    """Read access to a tokens artifact; the array stays on disk until a piece is sliced."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.manifest = artifacts.require(self.path, KIND)
        self.config = TokenizerConfig.from_dict(json.loads((self.path / VOCAB_FILE).read_text()))
        self.pieces = [Piece(**row) for row in artifacts.read_jsonl(self.path / INDEX_FILE)]
        self.tokens = np.load(self.path / TOKENS_FILE, mmap_mode="r")

    @classmethod
    def open(cls, path: Path | None = None, workdir: Path | None = None) -> TokenCorpus:
        return cls(Path(path) if path else artifacts.artifact_dir(workdir, KIND))

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
        matches = [p for p in self.pieces if p.path == name or p.path.endswith("/" + name) or Path(p.path).name == name]
        if len(matches) == 1:
            return matches[0]
        reason = "matches no piece" if not matches else f"matches {len(matches)} pieces"
        raise ArtifactError(f"'{name}' {reason} in {self.path / INDEX_FILE}; give a piece id or a longer path")


def write_index(handle, rows: Iterable[Piece]) -> None:
    for row in rows:
        handle.write(json.dumps(row.__dict__) + "\n")
