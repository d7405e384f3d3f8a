"""``--objective adversarial``: Adversarial-MidiBERT's pre-training as published (arXiv 2407.08306,
reference code RS2002/Adversarial-MidiBERT ``pretrain.py``), with the reference's faults fixed.

Per step, for each window: the masker scores the clean window (with gradients: its loss trains the
shared encoder too, as in the reference); ``k = min(floor(U(0.1, 0.3) x maskable notes),
floor(0.15 x real notes))`` of the notes the mask book still allows are chosen, the top-k by
score; exactly ``round(0.8 k)`` become MASK, ``round(0.1 k)`` a random note, the rest stay. The
recoverer's loss is, per field and weighted by ``1 / accuracy`` (normalised to sum 1), the mean
cross-entropy on the chosen notes plus the mean over all real notes. Among the really changed
notes, the ``floor(0.3 k)`` with the highest weighted loss get masker target 1 and the
``floor(0.3 k)`` with the lowest target 0, with MSE. Every ``freeze_every`` epochs the mask book
freezes the masker's top-scored notes (:mod:`musictl.bert.maskbook`).

Fixed faults of the reference: padding is neither masked, nor frozen, nor in the all-notes loss;
no sign flip of the loss tensor inside the per-sample loop (it inverted the targets of every
other sample); random replacement notes never use special ids.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from musictl import constants
from musictl.bert.data import pad_batch
from musictl.bert.diagnostics import masker_diagnostics, masker_scores, unwrap
from musictl.bert.losses import field_hits, field_losses
from musictl.bert.maskbook import MaskBook, window_rng
from musictl.bert.masking import corrupt_exact, share_budget, top_k_per_row
from musictl.bert.objective import Batches, Objective, StepResult, TrainWindows
from musictl.errors import UsageError

MASK_SHARE = (0.1, 0.3)  # per window and step: share of the maskable notes to mask (then capped)
TARGET_SHARE = 0.3  # share of the budget given masker target 1 (hardest) and 0 (easiest)
MIN_ACCURACY = 1e-3  # floor of a field's accuracy in 1 / accuracy (a field never recovered)
WEIGHT_SOURCES = ("train", "valid")
FREEZE_BATCH = 16  # windows scored at once by a freeze


def recovery_loss(losses: torch.Tensor, weights: torch.Tensor, selected: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Sum over fields of ``weight_f x (mean CE_f on the selected notes + mean CE_f on all real notes)``.

    The reference's second mean runs over every position, padding included; here padding is left out."""
    real = attention_mask.bool()
    all_notes = losses[real].mean(0) if real.any() else losses.new_zeros(constants.N_FIELDS)
    chosen = losses[selected].mean(0) if selected.any() else losses.new_zeros(constants.N_FIELDS)
    return ((chosen + all_notes) * weights).sum()


def masker_loss(scores: torch.Tensor, note_loss: torch.Tensor, changed: torch.Tensor, budget: torch.Tensor) -> torch.Tensor:
    """MSE of the masker's scores towards 1 on the ``floor(0.3 k)`` changed notes of each window with
    the highest recovery loss and towards 0 on the ``floor(0.3 k)`` with the lowest; summed over a
    window's two groups (each a mean) and divided by the batch size, as in the reference."""
    count = torch.floor(TARGET_SHARE * budget.float()).long()
    hard = top_k_per_row(note_loss, changed, count)
    easy = top_k_per_row(-note_loss, changed & ~hard, count)
    per_group = count.clamp_min(1).float()
    towards_one = ((scores - 1.0).pow(2) * hard).sum(1) / per_group
    towards_zero = (scores.pow(2) * easy).sum(1) / per_group
    return (towards_one + towards_zero).sum() / max(1, scores.shape[0])


def inverse_accuracy_weights(accuracy: torch.Tensor) -> torch.Tensor:
    """Field weights proportional to ``1 / accuracy``, summing to 1 (the reference ``get_weight``)."""
    inverse = 1.0 / accuracy.float().clamp_min(MIN_ACCURACY)
    return inverse / inverse.sum()


def window_batches(windows: TrainWindows, device: torch.device, size: int = FREEZE_BATCH):
    """(ids, attention mask, window ids) batches from what the loop passes to ``on_epoch_end``: the
    list of training windows (numpy (n, 8) arrays, window id = index), or batches, or a callable."""
    windows = windows() if callable(windows) else windows
    if isinstance(windows, (list, tuple)) and windows and isinstance(windows[0], np.ndarray):
        for start in range(0, len(windows), size):
            ids, attention_mask = pad_batch(list(windows[start : start + size]))
            yield ids.to(device), attention_mask.to(device), torch.arange(start, start + len(ids))
        return
    yield from windows


def all_processes_sum(values: torch.Tensor) -> torch.Tensor:
    """The sum over every process of a distributed run (the values themselves in a single process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    total = values.to(torch.float64).clone()
    if dist.get_backend() == "nccl":
        total = total.cuda()
    dist.all_reduce(total)
    return total.cpu().to(values.dtype)


class AdversarialObjective(Objective):
    """The published method; its state (mask book, field weights, accuracy so far this epoch)
    travels in :meth:`state_dict`."""

    name = "adversarial"
    uses_loop_weights = False

    def __init__(self, mask_ratio: float = 0.15, seed: int = 0, max_len: int = 512, freeze_every: int = 5,
                 weight_source: str = "train"):
        if weight_source not in WEIGHT_SOURCES:
            raise UsageError(f"--weight-source {weight_source!r}: choose one of {', '.join(WEIGHT_SOURCES)}")
        self.mask_ratio, self.seed, self.freeze_every, self.weight_source = mask_ratio, seed, freeze_every, weight_source
        self.book = MaskBook(max_len)
        self.weights = torch.full((constants.N_FIELDS,), 1.0 / constants.N_FIELDS)
        self.train_hits = torch.zeros(constants.N_FIELDS)
        self.train_notes = 0
        self.valid_accuracy: list[float] | None = None
        self.freezes: list[dict[str, float]] = []

    @classmethod
    def from_settings(cls, settings: Any) -> AdversarialObjective:
        return cls(mask_ratio=settings.mask_ratio, seed=settings.seed, max_len=settings.max_len,
                   freeze_every=settings.freeze_every, weight_source=settings.weight_source)

    def step(self, model, ids, attention_mask, window_ids, weights, generator) -> StepResult:
        """One batch of the published method (``weights`` from the loop are not used: the method
        keeps its own 1 / accuracy weights, updated at each epoch end)."""
        eligible = self.book.eligible(window_ids, attention_mask)
        scores = masker_scores(model, ids, attention_mask)  # with gradients: the masker trains the encoder too
        budget = share_budget(eligible, attention_mask, MASK_SHARE, self.mask_ratio, generator)
        selected = top_k_per_row(scores.detach(), eligible, budget)
        corrupted, changed = corrupt_exact(ids, selected, unwrap(model).config.vocab_sizes, generator)
        logits = model(corrupted, attention_mask)
        losses = field_losses(logits, ids)  # every field at every position, (B, L, 8)
        field_weight = self.weights.to(losses.device)
        recover = recovery_loss(losses, field_weight, selected, attention_mask)
        masker = masker_loss(scores, (losses.detach() * field_weight).sum(-1), changed, budget)
        with torch.no_grad():
            hits = field_hits(logits, ids)[selected].float()
        self.train_hits += hits.sum(0).cpu()
        self.train_notes += len(hits)
        accuracy = float(hits.mean()) if len(hits) else 0.0
        return StepResult(recover + masker, float(recover.detach()), float(masker.detach()), accuracy, int(selected.sum()))

    def on_epoch_end(self, epoch: int, model, windows: TrainWindows) -> None:
        """New field weights from this epoch's accuracy; every ``freeze_every`` epochs, a freeze.

        Call it on every process with all training windows: the accuracy is summed over processes
        and the freeze is deterministic, so every process keeps the same book and weights."""
        self.weights = self.next_weights()
        self.train_hits, self.train_notes = torch.zeros(constants.N_FIELDS), 0
        if self.freeze_every and (epoch + 1) % self.freeze_every == 0:
            self.freeze(epoch, model, windows)

    def next_weights(self) -> torch.Tensor:
        """``1 / accuracy`` weights from this epoch's training accuracy (or the last validation's)."""
        if self.weight_source == "valid":
            known = torch.tensor([1.0, *self.valid_accuracy]) if self.valid_accuracy else torch.zeros(constants.N_FIELDS + 1)
            found = all_processes_sum(known)  # only the main process evaluates
            return inverse_accuracy_weights(found[1:] / found[0]) if found[0] > 0 else self.weights
        found = all_processes_sum(torch.tensor([float(self.train_notes), *self.train_hits.tolist()]))
        return inverse_accuracy_weights(found[1:] / found[0]) if found[0] > 0 else self.weights

    @torch.no_grad()
    def freeze(self, epoch: int, model, windows: TrainWindows) -> None:
        """Score every training window on clean input (eval mode) and freeze its top-scored notes."""
        core = unwrap(model)
        was_training = core.training
        core.eval()
        frozen = 0
        for ids, attention_mask, window_ids in window_batches(windows, next(core.parameters()).device):
            self.book.ensure(window_ids, attention_mask)
            scores = masker_scores(core, ids, attention_mask).cpu().numpy()
            for row, window in enumerate(window_ids.tolist()):
                frozen += self.book.freeze(window, scores[row], window_rng(self.seed, epoch, window))
        core.train(was_training)
        self.freezes.append({"epoch": epoch, "frozen_now": frozen, "frozen_share": round(self.book.frozen_share(), 5)})

    def evaluate_extra(self, model, valid_batches: Batches) -> dict[str, Any]:
        found = masker_diagnostics(model, valid_batches, self.mask_ratio)  # on the fixed validation masks
        accuracy = found.pop("valid_field_accuracy", None)
        if accuracy:
            self.valid_accuracy = [accuracy[name] for name in constants.FIELDS]
        return {**found, "frozen_share": round(self.book.frozen_share(), 5),
                "field_weights": [round(float(w), 5) for w in self.weights]}

    def state_dict(self) -> dict[str, Any]:
        book = self.book.state_dict()
        return {
            "objective": self.name, "book": book["book"], "lengths": book["lengths"],
            "weights": self.weights.tolist(), "train_hits": self.train_hits.tolist(), "train_notes": self.train_notes,
            "valid_accuracy": self.valid_accuracy, "freezes": list(self.freezes),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return  # a checkpoint from before the objective kept state: start a fresh book
        super().load_state_dict(state)
        self.book.load_state_dict({"book": np.asarray(state["book"]), "lengths": np.asarray(state["lengths"])})
        self.weights = torch.tensor(state["weights"], dtype=torch.float)
        self.train_hits = torch.tensor(state["train_hits"], dtype=torch.float)
        self.train_notes = int(state["train_notes"])
        self.valid_accuracy = state.get("valid_accuracy")
        self.freezes = list(state.get("freezes", []))
