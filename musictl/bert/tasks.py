"""The understanding tasks: where each label comes from, per note or per piece.

Token tasks (a label per note) are registered in :data:`TOKEN_TASKS`, each a :class:`TokenTask` (its
classes and the function that labels a piece's notes): ``melody`` (melody / bridge / accompaniment
from track names) and ``velocity`` (6 classes). Sequence tasks (a label per piece): ``composer``
(folder name), ``emotion`` (file-name pattern), ``style`` (the tokens' style) and ``label`` (a mapping
file). How to add a task: docs/architecture.md ("A fine-tuning task").
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musictl import constants as C
from musictl.bert.settings import DEFAULT_EMOTION_PATTERN
from musictl.errors import TokenizeError, UsageError
from musictl.midi.tokens import Piece, TokenCorpus
from musictl.midi.vocab import TokenizerConfig

SEQUENCE_TASKS = ("composer", "emotion", "style", "label")
IGNORE = -100  # label of notes that carry no label (loss and metrics skip them)

VELOCITY_CLASSES = ["0-31", "32-47", "48-63", "64-79", "80-95", "96-127"]
VELOCITY_EDGES = np.array([32, 48, 64, 80, 96])
MELODY_CLASSES = ["melody", "bridge", "accompaniment"]
# POP909's track names; any other name is matched by these words, else accompaniment.
DEFAULT_MELODY_MAP = {"MELODY": "melody", "BRIDGE": "bridge", "PIANO": "accompaniment"}


@dataclass
class TaskSpec:
    name: str
    label_pattern: str = DEFAULT_EMOTION_PATTERN
    labels_file: Path | None = None
    melody_map: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_MELODY_MAP))

    def __post_init__(self) -> None:
        if self.name not in task_names():
            raise UsageError(f"unknown task '{self.name}'; choose one of {', '.join(task_names())}")
        if self.name == "label" and self.labels_file is None:
            raise UsageError("--task label needs --labels FILE (CSV path,label or JSON {path: label})")

    @property
    def per_note(self) -> bool:
        return self.name in TOKEN_TASKS

    @property
    def classes(self) -> list[str] | None:
        """The class names of a token task (None for a sequence task: its classes are the labels found)."""
        return list(TOKEN_TASKS[self.name].classes) if self.per_note else None


def velocity_classes(tokens: np.ndarray, config: TokenizerConfig) -> np.ndarray:
    """Velocity class of each note from its velocity bin (the bin's lowest velocity)."""
    low = np.ceil((tokens[:, C.VELOCITY].astype(np.int64) - C.N_SPECIAL) * 128 / config.velocity_bins)
    return np.searchsorted(VELOCITY_EDGES, low, side="right")


def melody_class(track_name: str, mapping: dict[str, str]) -> int:
    name = track_name.strip()
    if name in mapping:
        return MELODY_CLASSES.index(mapping[name])
    lowered = name.lower()
    for word in ("melody", "bridge"):
        if word in lowered:
            return MELODY_CLASSES.index(word)
    return MELODY_CLASSES.index("accompaniment")


def melody_labels(piece: Piece, tokens: np.ndarray, config: TokenizerConfig, mapping: dict[str, str]) -> np.ndarray | None:
    """Per-note melody labels of a piece, from its source file's track names.

    None when the file has no melody track (nothing to learn from) or no longer matches its tokens.
    """
    from musictl.midi.encode import encode_score, parse_midi

    try:
        score = parse_midi(Path(piece.path).read_bytes(), piece.path)
        encoded = encode_score(score, config, piece.path, keep_tracks=True)
    except (OSError, TokenizeError):
        return None
    if not np.array_equal(encoded.tokens, tokens):
        return None
    by_track = np.array([melody_class(t.name, mapping) for t in score.tracks])
    labels = by_track[encoded.track]
    return labels if (labels == 0).any() else None


def piece_label(spec: TaskSpec, piece: Piece, mapping: dict[str, str] | None) -> str | None:
    path = Path(piece.path)
    if spec.name == "style":
        return piece.style
    if spec.name == "composer":
        return path.parent.name
    if spec.name == "emotion":
        match = re.search(spec.label_pattern, path.name)
        return match.group(1) if match else None
    assert mapping is not None
    for key in (piece.path, path.name, f"{path.parent.name}/{path.name}", path.stem):
        if key in mapping:
            return mapping[key]
    return None


def read_label_file(path: Path) -> dict[str, str]:
    """``path,label`` CSV (header optional) or a JSON object ``{path: label}``."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"--labels {path}: cannot read it ({exc.strerror})") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"--labels {path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise UsageError(f"--labels {path}: expected a JSON object mapping file paths to labels")
        return {str(k): str(v) for k, v in data.items()}
    rows = [r for r in csv.reader(text.splitlines()) if r]
    if rows and [c.lower() for c in rows[0][:2]] in (["path", "label"], ["file", "label"]):
        rows = rows[1:]
    if not rows or any(len(r) < 2 for r in rows):
        raise UsageError(f"--labels {path}: expected CSV rows 'path,label'")
    return {r[0].strip(): r[1].strip() for r in rows}


@dataclass(frozen=True)
class TokenTask:
    """A task with a label per note: its class names, and ``labels(piece, tokens, config, spec)`` -> one class
    id per note of ``tokens`` (an int array), or None when the piece has no usable labels (reported, skipped)."""

    classes: tuple[str, ...]
    labels: Callable[[Piece, np.ndarray, TokenizerConfig, TaskSpec], np.ndarray | None]


# The token tasks by name (add one here, see docs/architecture.md); the order is the documented one.
TOKEN_TASKS: dict[str, TokenTask] = {
    "melody": TokenTask(tuple(MELODY_CLASSES), lambda piece, tokens, config, spec:
                        melody_labels(piece, tokens, config, spec.melody_map)),
    "velocity": TokenTask(tuple(VELOCITY_CLASSES), lambda piece, tokens, config, spec: velocity_classes(tokens, config)),
}


def task_names() -> tuple[str, ...]:
    """Every task: the token tasks registered now, then the sequence tasks."""
    return (*TOKEN_TASKS, *SEQUENCE_TASKS)


@dataclass
class LabelledPiece:
    piece: Piece
    tokens: np.ndarray
    label: np.ndarray | str  # per-note class ids (token tasks) or a label name


def collect(spec: TaskSpec, corpus: TokenCorpus, pieces: list[Piece]) -> tuple[list[LabelledPiece], list[str]]:
    """Labelled pieces and the paths of those without a label (reported, not trained on)."""
    mapping = read_label_file(spec.labels_file) if spec.name == "label" else None
    out, missing = [], []
    for piece in pieces:
        tokens = corpus.piece_tokens(piece)
        if spec.per_note:
            label = TOKEN_TASKS[spec.name].labels(piece, tokens, corpus.config, spec)
        else:
            label = piece_label(spec, piece, mapping)
        if label is None:
            missing.append(piece.path)
        else:
            out.append(LabelledPiece(piece, tokens, label))
    return out, missing
