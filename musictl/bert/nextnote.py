"""MidiBert's own next-note distribution: a causal encoder and one head per field.

The input of a window of notes ``n_1 .. n_L`` is ``[START, n_1, ..., n_{L-1}]`` (``START``: BOS in every field).
Under a causal attention mask (:class:`musictl.bert.model.MidiBertModel` with ``causal``) the hidden state at
position t has seen START and the notes before ``n_{t+1}`` only, and the head of field f turns it into the
distribution of ``n_{t+1}``'s value of f, normalised over the field's values (the specials PAD, MASK, BOS and EOS
get no mass). So every note of a window gets, for each of its eight fields, a normalised distribution given only
the notes before it (the first note: given nothing but the window's start): the negative log-probability of the
note's actual value is its next-note NLL, in nats, the unit of the count models' next-note NLL
(:mod:`musictl.transfer.fewshot`). The fields are predicted independently given the context (a note's pitch does
not see its own duration).

A piece longer than one window is scored in windows that overlap by :data:`SCORE_CONTEXT` of their length: each
note is scored once, in the first window where it has that much context before it (the first window's notes
with what precedes them). Bars are counted from each window's first bar, as everywhere in MidiBert.

:func:`score_pieces` gives per-piece sums (what a bootstrap over pieces resamples), :func:`piece_log_probs` the
per-note log-probabilities, :func:`distribution_after` the distribution of the note after a given prefix, and
:class:`Continuation` the same for a piece written note by note (``generate-rwr --notes-by transformer``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musictl import constants as C
from musictl.bert.model import MidiBertModel, MidiBertPreTrainedModel, _mlm_head

SCORE_CONTEXT = 0.5  # share of a scoring window that is context only, when a piece needs several windows


class NextNoteHeads(nn.Module):
    """One classifier per field over a hidden state (the MLM heads' shape: dense, GELU, LayerNorm, output)."""

    def __init__(self, hidden: int, vocab_sizes: Sequence[int]):
        super().__init__()
        self.heads = nn.ModuleList(_mlm_head(hidden, v) for v in vocab_sizes)

    def forward(self, hidden: torch.Tensor) -> list[torch.Tensor]:
        return [head(hidden) for head in self.heads]


class MidiBertForNextNote(MidiBertPreTrainedModel):
    """A causal MidiBert encoder + :class:`NextNoteHeads`: position t's logits are note t+1's (see the module docstring)."""

    def __init__(self, config):
        super().__init__(config)
        self.bert = MidiBertModel(config)
        self.next_heads = NextNoteHeads(config.hidden_size, config.vocab_sizes)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> list[torch.Tensor]:
        """Per-field logits (B, L, vocab_f) of the note after each position, from the positions up to it only."""
        return self.next_heads(self.bert(input_ids, attention_mask, causal=True).last_hidden_state)

    @classmethod
    def from_encoder(cls, source: MidiBertPreTrainedModel) -> MidiBertForNextNote:
        """A next-note model with ``source``'s encoder (any MidiBert class); its heads start as ``source``'s MLM heads
        where it has them (a pre-trained model), else from the initialiser."""
        config = copy.deepcopy(source.config)
        config.causal = True
        config.architectures = [cls.__name__]
        model = cls(config)
        encoder = source if isinstance(source, MidiBertModel) else source.bert
        model.bert.load_state_dict(encoder.state_dict())
        mlm = getattr(source, "mlm_heads", None)
        if mlm is not None:
            for head, trained in zip(model.next_heads.heads, mlm):
                head.load_state_dict(trained.state_dict())
        return model


# ----- windows and batches --------------------------------------------------------------------------------------
def window_at(tokens: np.ndarray, start: int, length: int, max_bars: int) -> np.ndarray:
    """Notes ``start .. start + length - 1`` of a piece, bars counted from the window's first bar (as
    :func:`musictl.bert.data.piece_windows`)."""
    window = np.array(tokens[start : start + length], dtype=np.int64)
    bars = window[:, C.BAR] - C.N_SPECIAL
    window[:, C.BAR] = (bars - bars[0]) % max_bars + C.N_SPECIAL
    return window


def batch(windows: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs (B, L, 8): START then each window but its last note; attention mask (B, L); targets (B, L, 8): the
    windows, PAD where there is no note), padded to the longest window."""
    length = max(len(w) for w in windows)
    targets = np.full((len(windows), length, C.N_FIELDS), C.PAD_ID, dtype=np.int64)
    inputs = np.full_like(targets, C.PAD_ID)
    for i, w in enumerate(windows):
        targets[i, : len(w)] = w
        inputs[i, 0] = C.BOS_ID
        inputs[i, 1 : len(w)] = w[:-1]
    inputs_t = torch.from_numpy(inputs)
    return inputs_t, (inputs_t[..., 0] != C.PAD_ID).long(), torch.from_numpy(targets)


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over a field's values (the specials get none), in float32."""
    masked = logits.float().clone()
    masked[..., : C.N_SPECIAL] = float("-inf")
    return torch.log_softmax(masked, dim=-1)


def loss(logits: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """The training loss: the mean over the fields of the mean next-note NLL over the real target notes (nats)."""
    per_field = [F.nll_loss(log_probs(field_logits).reshape(-1, field_logits.shape[-1]), targets[..., f].reshape(-1),
                            ignore_index=C.PAD_ID) for f, field_logits in enumerate(logits)]
    return torch.stack(per_field).mean()


# ----- scoring --------------------------------------------------------------------------------------------------
@torch.no_grad()
def window_log_probs(model: Any, windows: Sequence[np.ndarray], batch_size: int = 8, device: Any = "cpu") -> list[np.ndarray]:
    """For each window, (len, 8): the log-probability of each note's value of each field given the notes before it in
    the window. ``model`` is a :class:`MidiBertForNextNote` (or a wrapper that calls it: peft, DDP), put in eval mode."""
    model.eval()
    out = []
    for i in range(0, len(windows), batch_size):
        chunk = windows[i : i + batch_size]
        inputs, attention, targets = batch(chunk)
        logits = model(inputs.to(device), attention.to(device))
        targets = targets.to(device)
        fields = [log_probs(field_logits).gather(-1, targets[..., f : f + 1].clamp_min(0)).squeeze(-1)
                  for f, field_logits in enumerate(logits)]
        scored = torch.stack(fields, dim=-1).cpu().numpy()  # (B, L, 8)
        out += [scored[row, : len(w)] for row, w in enumerate(chunk)]
    return out


def scoring_windows(n: int, max_len: int, context: float = SCORE_CONTEXT) -> list[tuple[int, int]]:
    """(start, first scored note) of each window that scores a piece of ``n`` notes: windows of ``max_len`` notes, each
    after the first keeping ``int(context * max_len)`` notes of context before the notes it scores."""
    keep = min(int(context * max_len), max_len - 1)
    spans, scored = [(0, 0)], max_len
    while scored < n:
        start = scored - keep
        spans.append((start, scored))
        scored = start + max_len
    return spans


def piece_log_probs(model: Any, pieces: Sequence[np.ndarray], max_len: int, max_bars: int, batch_size: int = 8,
                    device: Any = "cpu", context: float = SCORE_CONTEXT) -> list[np.ndarray]:
    """For each piece (its token rows), (notes, 8): every note's log-probability of each field's value given the notes
    before it (up to a window of them, at most the model's positions; see the module docstring). All pieces' windows
    are batched together."""
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    max_len = min(max_len, positions) if positions else max_len
    windows, owners = [], []
    for p, tokens in enumerate(pieces):
        if not len(tokens):
            continue
        for start, first in scoring_windows(len(tokens), max_len, context):
            windows.append(window_at(tokens, start, max_len, max_bars))
            owners.append((p, start, first))
    out = [np.zeros((len(tokens), C.N_FIELDS), dtype=np.float64) for tokens in pieces]
    for scored, (p, start, first) in zip(window_log_probs(model, windows, batch_size, device), owners):
        out[p][first : start + len(scored)] = scored[first - start :]
    return out


@dataclasses.dataclass
class NextNoteScores:
    """Next-note NLL of a set of pieces: per piece and field the summed NLL (nats) and the number of notes."""

    pieces: list[str]
    notes: np.ndarray  # (pieces,)
    nll: np.ndarray  # (pieces, 8) summed over each piece's notes

    def per_note(self) -> dict[str, float]:
        """Mean NLL per note (nats) of each field, over all the pieces' notes."""
        total = max(int(self.notes.sum()), 1)
        return {name: float(self.nll[:, f].sum() / total) for f, name in enumerate(C.FIELDS)}

    def mean(self) -> float:
        """The mean over the fields of :meth:`per_note` (the training loss's scale)."""
        return float(np.mean(list(self.per_note().values())))

    def to_dict(self) -> dict[str, Any]:
        return {"per_note": self.per_note(), "mean": self.mean(),
                "pieces": [{"path": path, "notes": int(n), "nll": {name: float(row[f]) for f, name in enumerate(C.FIELDS)}}
                           for path, n, row in zip(self.pieces, self.notes, self.nll)]}


def score_pieces(model: Any, pieces: Sequence[np.ndarray], max_len: int, max_bars: int, names: Sequence[str] | None = None,
                 batch_size: int = 8, device: Any = "cpu", context: float = SCORE_CONTEXT) -> NextNoteScores:
    """Per-piece, per-field next-note NLL sums of ``pieces`` (token rows; ``names`` label them, default their index)."""
    log_p = piece_log_probs(model, pieces, max_len, max_bars, batch_size, device, context)
    return NextNoteScores(pieces=[str(n) for n in (names if names is not None else range(len(pieces)))],
                          notes=np.array([len(x) for x in log_p], dtype=np.int64),
                          nll=np.array([-x.sum(0) for x in log_p]).reshape(len(log_p), C.N_FIELDS))


@torch.no_grad()
def distribution_after(model: Any, notes: np.ndarray, max_len: int, max_bars: int, device: Any = "cpu") -> list[np.ndarray]:
    """The distribution of the note after ``notes`` (token rows; the last ``max_len - 1`` are its context): for each
    field, the log-probabilities of every id of the field's vocabulary (the specials: -inf)."""
    model.eval()
    context = window_at(notes, max(0, len(notes) - (max_len - 1)), max_len - 1, max_bars) if len(notes) else \
        np.zeros((0, C.N_FIELDS), dtype=np.int64)
    inputs = np.concatenate([np.full((1, C.N_FIELDS), C.BOS_ID, dtype=np.int64), context])[None]
    ids = torch.from_numpy(inputs).to(device)
    logits = model(ids, torch.ones(ids.shape[:2], dtype=torch.long, device=device))
    return [log_probs(field_logits[0, -1]).cpu().numpy() for field_logits in logits]


class Continuation:
    """The next-note distributions of a piece written note by note (for writing with the model).

    :meth:`append` each note as it is written (token rows, in the order the encoder would store them);
    :meth:`distribution` is the distribution of the note after them (:func:`distribution_after`: given the last
    ``max_len - 1`` notes, bars counted from the window's first), computed once per written note however many
    fields read it. Recomputed over the window each time, with no cache of keys and values across notes: a window
    slides and renumbers its bars, so the cost is one forward pass of at most ``max_len`` notes per written note.
    Its matrices are small: run a piece under :func:`one_thread`.
    """

    def __init__(self, model: Any, max_len: int, max_bars: int, device: Any = "cpu"):
        positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        self.model = model
        self.max_len = max(2, min(max_len, positions) if positions else max_len)
        self.max_bars = max_bars
        self.device = device
        self.notes: list[np.ndarray] = []
        self._next: list[np.ndarray] | None = None

    def prime(self, tokens: np.ndarray) -> None:
        """Notes before the piece (a prompt's token rows) as context: its last ``max_len - 1`` notes, their bars
        renumbered so that the prompt's last bar is the one just before the written piece's first (bar 0)."""
        rows = np.array(np.asarray(tokens, dtype=np.int64).reshape(-1, C.N_FIELDS)[-(self.max_len - 1):])
        if not len(rows):
            return
        bars = rows[:, C.BAR] - C.N_SPECIAL
        rows[:, C.BAR] = (bars - bars[-1] - 1) % self.max_bars + C.N_SPECIAL
        self.notes.extend(rows)
        self._next = None

    def append(self, row: Sequence[int]) -> None:
        """One more written note (its 8 token ids)."""
        self.notes.append(np.asarray(row, dtype=np.int64).reshape(C.N_FIELDS))
        self._next = None

    def distribution(self) -> list[np.ndarray]:
        """Per field, the log-probabilities of every id of its vocabulary for the next note (the specials: -inf)."""
        if self._next is None:
            recent = self.notes[-(self.max_len - 1):]
            notes = np.stack(recent) if recent else np.zeros((0, C.N_FIELDS), dtype=np.int64)
            self._next = distribution_after(self.model, notes, self.max_len, self.max_bars, self.device)
        return self._next


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread inside the block (the previous count restored after). A piece written note by
    note makes one small forward pass per note: waking other threads for each cost far more than it saved on a busy
    2-core machine (16 bars of the tiny model: about 1 s on one thread, 26-79 s on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
