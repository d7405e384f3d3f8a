"""The fine-tuning tasks: one registry entry each (:data:`TASKS`), and everything a task is.

An entry (:class:`Task`) holds a task's name, its help, whether it labels each note or the whole piece, its
classes, the function that labels a piece, the input field it hides (when the label is computed from that
field) and how a per-note prediction becomes MIDI. Everything that names a task reads it: ``--task``'s
choices and help and the settings' validation (:mod:`musictl.bert.settings`), fine-tuning
(:mod:`musictl.bert.finetune`: the hidden field, the classes, the labels), prediction
(:mod:`musictl.bert.predict`: the decoding) and ``musictl status`` (:mod:`musictl.workspace`). Adding a
task is adding one entry: docs/architecture.md ("A fine-tuning task").

Per note: ``melody`` (melody / bridge / accompaniment from track names) and ``velocity`` (6 classes, the
velocity field hidden). Per piece: ``composer`` (folder name), ``emotion`` (file-name pattern), ``style``
(the tokens' style) and ``label`` (a mapping file).

This module imports nothing heavy at the top (numpy and the MIDI code are imported where a label or a
prediction is computed): the command line reads the registry to build ``musictl --help``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musictl import constants as C
from musictl.errors import TokenizeError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from musictl.midi.tokens import Piece, TokenCorpus
    from musictl.midi.vocab import TokenizerConfig

IGNORE = -100  # label of notes that carry no label (loss and metrics skip them)
DEFAULT_EMOTION_PATTERN = r"^(Q[1-4])_"  # EMOPIA file names: Q1_..., Q2_...

# The velocity classes: [0, 32), [32, 48), ... [96, 128). Their names, the labels and the velocity a
# prediction writes back (each class's centre) all come from these bounds.
VELOCITY_BOUNDS = (0, 32, 48, 64, 80, 96, 128)
VELOCITY_CLASSES = [f"{low}-{high - 1}" for low, high in pairwise(VELOCITY_BOUNDS)]
VELOCITY_CENTRES = [(low + high) // 2 for low, high in pairwise(VELOCITY_BOUNDS)]
MELODY_CLASSES = ["melody", "bridge", "accompaniment"]
# POP909's track names; any other name is matched by these words, else accompaniment.
DEFAULT_MELODY_MAP = {"MELODY": "melody", "BRIDGE": "bridge", "PIANO": "accompaniment"}


# ----- one task's run: the task and its options ------------------------------------------------------------
@dataclass
class TaskSpec:
    """A registered task with the options its labels read (``--label-pattern``, ``--labels``, the melody map)."""

    name: str
    label_pattern: str = DEFAULT_EMOTION_PATTERN
    labels_file: Path | None = None
    melody_map: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_MELODY_MAP))

    def __post_init__(self) -> None:
        for option, what in lookup(self.name).needs.items():
            if getattr(self, option) is None:
                raise UsageError(f"--task {self.name} needs {what}")

    @property
    def task(self) -> Task:
        return lookup(self.name)

    @property
    def per_note(self) -> bool:
        return self.task.per_note

    @property
    def classes(self) -> list[str] | None:
        """The class names of a per-note task (None for a per-piece task: its classes are the labels found)."""
        return list(self.task.classes) if self.task.classes is not None else None

    @cached_property
    def mapping(self) -> dict[str, str]:
        """``--labels``: file -> label, read once (empty without a file)."""
        return read_label_file(self.labels_file) if self.labels_file is not None else {}


# ----- labels: per note ------------------------------------------------------------------------------------
def velocity_classes(tokens: np.ndarray, config: TokenizerConfig) -> np.ndarray:
    """Velocity class of each note from its velocity bin (the bin's lowest velocity)."""
    import numpy as np

    low = np.ceil((tokens[:, C.VELOCITY].astype(np.int64) - C.N_SPECIAL) * 128 / config.velocity_bins)
    return np.searchsorted(np.array(VELOCITY_BOUNDS[1:-1]), low, side="right")


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
    import numpy as np

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


# ----- labels: per piece -----------------------------------------------------------------------------------
def emotion_label(piece: Piece, pattern: str) -> str | None:
    """Group 1 of ``pattern`` on the file name."""
    match = re.search(pattern, Path(piece.path).name)
    return match.group(1) if match else None


def mapped_label(piece: Piece, mapping: dict[str, str]) -> str | None:
    """The label ``mapping`` gives the full path, ``folder/file.mid``, the file name or its stem."""
    path = Path(piece.path)
    for key in (piece.path, path.name, f"{path.parent.name}/{path.name}", path.stem):
        if key in mapping:
            return mapping[key]
    return None


def piece_label(spec: TaskSpec, piece: Piece, mapping: dict[str, str] | None = None) -> str | None:
    """The label of ``piece`` for a per-piece task (``mapping``: a ``--labels`` file already read, else ``spec``'s)."""
    if mapping is not None:
        spec = TaskSpec(spec.name, spec.label_pattern, spec.labels_file, spec.melody_map)
        spec.mapping = mapping  # the cached property, given
    return spec.task.label(piece, None, None, spec)


def read_label_file(path: Path) -> dict[str, str]:
    """``path,label`` CSV (header optional) or a JSON object ``{path: label}``."""
    path = Path(path)
    try:
        text = path.read_text()
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


# ----- predictions as MIDI (per-note tasks) ----------------------------------------------------------------
def tracks_midi(tokens: np.ndarray, config: TokenizerConfig, note_class: np.ndarray, classes: list[str]) -> bytes:
    """The notes split into one track per predicted class (named after it)."""
    from musictl.midi.decode import decode_tokens

    return decode_tokens(tokens, config, groups=note_class, group_names=classes).dumps_midi()


def velocity_midi(tokens: np.ndarray, config: TokenizerConfig, note_class: np.ndarray, classes: list[str]) -> bytes:
    """The notes with their velocity set to the centre of their predicted class (:data:`VELOCITY_CENTRES`)."""
    import numpy as np

    from musictl.midi.decode import tokens_to_midi_bytes

    tokens = tokens.copy()
    tokens[:, C.VELOCITY] = np.array(VELOCITY_CENTRES)[note_class] * config.velocity_bins // 128 + C.N_SPECIAL
    return tokens_to_midi_bytes(tokens, config)


# ----- the registry ----------------------------------------------------------------------------------------
Labels = Callable[["Piece", Any, Any, TaskSpec], Any]
ToMidi = Callable[[Any, Any, Any, list[str]], bytes]


@dataclass(frozen=True)
class Task:
    """One fine-tuning task: everything the code needs to know about it.

    ``label(piece, tokens, config, spec)``: per note, one class id per row of ``tokens`` (an int array); per piece,
    the piece's class name; None when the piece has no usable label (it is reported and left out).
    """

    name: str
    help: str  # where its labels come from, in a few words (--help, status)
    per_note: bool  # a label per note (MidiBertForTokenClassification) or one per piece (...ForSequenceClassification)
    label: Labels
    classes: tuple[str, ...] | None = None  # fixed class names (every per-note task); None: the labels of the training split
    hides: int | None = None  # the input field masked in every batch (the label is computed from it: it must not show)
    to_midi: ToMidi = tracks_midi  # per note: a prediction as MIDI (tokens, config, note classes, class names)
    needs: dict[str, str] = field(default_factory=dict)  # TaskSpec options it cannot do without -> how to give them

    def __post_init__(self) -> None:
        if self.per_note and not self.classes:
            raise ValueError(f"task {self.name!r}: a per-note task declares its classes")

    @property
    def unit(self) -> str:
        return "per note" if self.per_note else "per piece"

    def describe(self) -> str:
        """``melody (per note: ...)``: the task in --help and ``musictl status``."""
        return f"{self.name} ({self.unit}: {self.help})"


# The tasks by name, in the order of --help. Add a task here (one entry); see docs/architecture.md.
TASKS: dict[str, Task] = {task.name: task for task in (
    Task("melody", "melody, bridge or accompaniment, from track names", per_note=True, classes=tuple(MELODY_CLASSES),
         label=lambda piece, tokens, config, spec: melody_labels(piece, tokens, config, spec.melody_map)),
    Task("velocity", "6 velocity classes; the input's velocities hidden", per_note=True, classes=tuple(VELOCITY_CLASSES),
         label=lambda piece, tokens, config, spec: velocity_classes(tokens, config), hides=C.VELOCITY, to_midi=velocity_midi),
    Task("composer", "the file's folder name", per_note=False,
         label=lambda piece, tokens, config, spec: Path(piece.path).parent.name),
    Task("emotion", "--label-pattern on the file name", per_note=False,
         label=lambda piece, tokens, config, spec: emotion_label(piece, spec.label_pattern)),
    Task("style", "the tokens' style", per_note=False,
         label=lambda piece, tokens, config, spec: piece.style),
    Task("label", "from --labels FILE", per_note=False,
         label=lambda piece, tokens, config, spec: mapped_label(piece, spec.mapping),
         needs={"labels_file": "--labels FILE (CSV path,label or JSON {path: label})"}),
)}


def names() -> tuple[str, ...]:
    """The registered tasks, in order."""
    return tuple(TASKS)


def summary() -> str:
    """The registered tasks in one line (error messages): ``melody, velocity (per note); composer, ... (per piece)``."""
    groups = [(unit, [t.name for t in TASKS.values() if t.unit == unit]) for unit in ("per note", "per piece")]
    return "; ".join(f"{', '.join(group)} ({unit})" for unit, group in groups if group)


def help_text() -> str:
    """Every registered task with its help (``--task``'s help)."""
    return "; ".join(task.describe() for task in TASKS.values()) + "."


def lookup(name: str) -> Task:
    """The registered task ``name``, or a usage error that lists them."""
    if name not in TASKS:
        raise UsageError(f"--task {name!r}: choose one of {summary()}")
    return TASKS[name]


def hidden_field(name: str) -> int | None:
    """The input field a task hides (None for a task that hides nothing, or one this version does not know)."""
    task = TASKS.get(name)
    return task.hides if task is not None else None


# ----- a task's labelled pieces ----------------------------------------------------------------------------
@dataclass
class LabelledPiece:
    piece: Piece
    tokens: np.ndarray
    label: np.ndarray | str  # per-note class ids (per-note tasks) or a label name


def collect(spec: TaskSpec, corpus: TokenCorpus, pieces: list[Piece]) -> tuple[list[LabelledPiece], list[str]]:
    """Labelled pieces and the paths of those without a label (reported, not trained on)."""
    out, missing = [], []
    for piece in pieces:
        tokens = corpus.piece_tokens(piece)
        label = spec.task.label(piece, tokens, corpus.config, spec)
        if label is None:
            missing.append(piece.path)
        else:
            out.append(LabelledPiece(piece, tokens, label))
    return out, missing
