"""The pre-training objectives behind one interface, and the masked evaluation.

``mlm``: 15% of real notes chosen at random, 80/10/10 corrupted, per-field cross-entropy on them.
``hard-mining``: the masker scores the clean notes and chooses the hardest (with a random share),
the recoverer learns to restore them, and the recoverer's per-note loss, scaled to 0..1 per
sample, is the masker's BCE target; the masker head learns from frozen encoder features.
``adversarial``: Adversarial-MidiBERT as published (mask book, top-k of masker score, MSE
targets, masked + all-notes recovery loss), in :mod:`musictl.bert.adversarial`.

The training loop builds one with :func:`make_objective` and calls, per batch,
``objective.step(model, ids, attention_mask, window_ids, weights, generator)``; at the end of
each epoch ``objective.on_epoch_end(epoch, model, windows)``; at each evaluation
``objective.evaluate_extra(model, valid_batches)``; and it saves ``objective.state_dict()`` with
its checkpoint (:func:`musictl.training.write_state`: numpy arrays + JSON, never a pickle).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Union

import torch
import torch.nn.functional as F

from musictl import constants
from musictl.bert.diagnostics import masker_diagnostics, unwrap
from musictl.bert.masking import adversarial_selection, corrupt, random_selection
from musictl.errors import ArtifactError, UsageError

OBJECTIVES = ("mlm", "adversarial", "hard-mining")
DIAGNOSTIC_SEED_OFFSET = 7919  # the same fixed validation masks as the loop's evaluate()

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
TrainWindows = Union[Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                     Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]]


@dataclass
class StepResult:
    loss: torch.Tensor  # what is back-propagated
    recover_loss: float
    masker_loss: float
    accuracy: float  # share of field values recovered on the masked notes
    masked: int


def field_losses(logits: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every field of every scored note: logits (n, V_f) x 8, targets (n, 8) -> (n, 8)."""
    return torch.stack([F.cross_entropy(lg.float(), targets[:, f], reduction="none") for f, lg in enumerate(logits)], dim=-1)


def field_hits(logits: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Whether each field of each scored note was recovered, (n, 8)."""
    return torch.stack([lg.argmax(-1) == targets[:, f] for f, lg in enumerate(logits)], dim=-1)


def mlm_step(model, ids, attention_mask, weights, ratio, generator) -> StepResult:
    """Random masking: ``ratio`` of each window's real notes, 80/10/10, weighted mean field CE on them."""
    selected = random_selection(attention_mask, ratio, generator)
    logits = model(corrupt(ids, selected, unwrap(model).config.vocab_sizes, generator), attention_mask, selected)
    targets = ids[selected]
    loss = (field_losses(logits, targets) * weights).mean()
    accuracy = float(field_hits(logits, targets).float().mean()) if len(targets) else 0.0
    return StepResult(loss, float(loss.detach()), 0.0, accuracy, int(selected.sum()))


def adversarial_step(model, ids, attention_mask, weights, ratio, random_share, generator) -> StepResult:
    """The hard-mining step (``--objective hard-mining``; this was ``adversarial`` before the
    published method was added): the masker (frozen encoder features) picks ``1 - random_share``
    of the budget, the rest is random; the masker learns BCE towards the scaled per-note loss."""
    scores = unwrap(model).masker_logits(ids, attention_mask)
    selected = adversarial_selection(scores, attention_mask, ratio, random_share, generator)
    logits = model(corrupt(ids, selected, unwrap(model).config.vocab_sizes, generator), attention_mask, selected)
    targets = ids[selected]
    losses = field_losses(logits, targets) * weights  # (n_selected, 8)
    recover = losses.mean()
    note_loss = torch.zeros(selected.shape, device=ids.device)
    note_loss[selected] = losses.sum(-1).detach()
    target = masker_targets(note_loss, selected)
    masker = F.binary_cross_entropy_with_logits(scores[selected].float(), target[selected])
    accuracy = float(field_hits(logits, targets).float().mean()) if len(targets) else 0.0
    return StepResult(recover + masker, float(recover.detach()), float(masker.detach()), accuracy, int(selected.sum()))


def masker_targets(note_loss: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Per sample, the recoverer's loss on its masked notes scaled to [0, 1]: hard -> 1, easy -> 0.

    Each sample is scaled on its own, so every sample gets its own targets (the reference code
    shared one target across the batch).
    """
    big = torch.finfo(note_loss.dtype).max
    low = note_loss.masked_fill(~selected, big).min(dim=1, keepdim=True).values
    high = note_loss.masked_fill(~selected, -big).max(dim=1, keepdim=True).values
    scaled = (note_loss - low) / (high - low).clamp_min(1e-6)
    return torch.where(selected, scaled.clamp(0, 1), torch.zeros_like(scaled))


@torch.no_grad()
def evaluate(model, batches, ratio: float, seed: int) -> dict:
    """Masked-note accuracy and loss per field on fixed random masks (the same for every run)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    hits = torch.zeros(constants.N_FIELDS)
    loss_sum = torch.zeros(constants.N_FIELDS)
    count = 0
    for ids, attention_mask in batches:
        selected = random_selection(attention_mask, ratio, generator)
        if not selected.any():
            continue
        logits = model(corrupt(ids, selected, unwrap(model).config.vocab_sizes, generator), attention_mask, selected)
        targets = ids[selected]
        hits += field_hits(logits, targets).float().sum(0).cpu()
        loss_sum += field_losses(logits, targets).sum(0).cpu()
        count += len(targets)
    model.train()
    if count == 0:
        return {"accuracy": 0.0, "loss": 0.0, "masked_notes": 0, "fields": {}}
    acc, loss = hits / count, loss_sum / count
    return {
        "accuracy": round(float(acc.mean()), 5),
        "loss": round(float(loss.mean()), 5),
        "masked_notes": count,
        "fields": {name: {"accuracy": round(float(acc[f]), 5), "loss": round(float(loss[f]), 5)}
                   for f, name in enumerate(constants.FIELDS)},
    }


def field_weights(evaluation: dict | None) -> torch.Tensor:
    """Loss weight per field from the last evaluation: fields recovered worse weigh more (mean 1).

    What the loop passes to ``step`` as ``weights`` (mlm and hard-mining use it; adversarial
    keeps its own 1 / accuracy weights)."""
    if not evaluation or not evaluation.get("fields"):
        return torch.ones(constants.N_FIELDS)
    errors = torch.tensor([1.0 - evaluation["fields"][name]["accuracy"] for name in constants.FIELDS]).clamp_min(0.05)
    return errors / errors.mean()


class Objective:
    """What a pre-training step masks and learns. Subclasses override ``step``; the other hooks
    default to doing nothing, so the loop calls all of them for every objective."""

    name = "objective"

    def step(self, model, ids: torch.Tensor, attention_mask: torch.Tensor, window_ids: torch.Tensor,
             weights: torch.Tensor | None, generator: torch.Generator) -> StepResult:
        """One batch: ``ids`` (B, L, 8), ``attention_mask`` (B, L), ``window_ids`` (B,) training-window
        indices, ``weights`` (8,) per-field loss weights or None (equal), a CPU generator."""
        raise NotImplementedError

    def on_epoch_end(self, epoch: int, model, windows: TrainWindows) -> None:
        """After epoch ``epoch`` (0-based) ended, on every process. ``windows``: ALL training windows
        (not sharded): the list of numpy (n, 8) windows (window id = index), or an iterable of
        (ids, attention_mask, window_ids) batches, or a callable returning either."""

    def evaluate_extra(self, model, valid_batches: Batches) -> dict[str, Any]:
        """Extra numbers for this evaluation's log row and metrics.json (JSON-able)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What ``--resume`` needs: numpy arrays and JSON-able values (``musictl.training.write_state``)."""
        return {"objective": self.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; an empty state (no saved objective state) changes nothing."""
        if not state:
            return
        saved = state.get("objective")
        if saved != self.name:
            raise ArtifactError(f"the checkpoint holds the state of objective {saved!r}, not {self.name!r}; "
                                f"resume with --objective {saved}")


class MlmObjective(Objective):
    """``--objective mlm``: exactly :func:`mlm_step`."""

    name = "mlm"

    def __init__(self, mask_ratio: float):
        self.mask_ratio = mask_ratio

    def step(self, model, ids, attention_mask, window_ids, weights, generator) -> StepResult:
        weights = torch.ones(constants.N_FIELDS, device=ids.device) if weights is None else weights
        return mlm_step(model, ids, attention_mask, weights, self.mask_ratio, generator)


class HardMiningObjective(Objective):
    """``--objective hard-mining``: exactly :func:`adversarial_step`, plus the masker diagnostics."""

    name = "hard-mining"

    def __init__(self, mask_ratio: float, random_share: float, seed: int):
        self.mask_ratio, self.random_share, self.seed = mask_ratio, random_share, seed

    def step(self, model, ids, attention_mask, window_ids, weights, generator) -> StepResult:
        weights = torch.ones(constants.N_FIELDS, device=ids.device) if weights is None else weights
        return adversarial_step(model, ids, attention_mask, weights, self.mask_ratio, self.random_share, generator)

    def evaluate_extra(self, model, valid_batches: Batches) -> dict[str, Any]:
        found = masker_diagnostics(model, valid_batches, self.mask_ratio, self.seed + DIAGNOSTIC_SEED_OFFSET)
        found.pop("valid_field_accuracy", None)
        return found


def make_objective(settings: Any) -> Objective:
    """The objective ``settings.objective`` names, configured from ``settings`` (any object with the
    fields below; missing ones take their defaults)."""
    name = getattr(settings, "objective", "adversarial")
    mask_ratio = float(getattr(settings, "mask_ratio", 0.15))
    seed = int(getattr(settings, "seed", 0))
    if name == "mlm":
        return MlmObjective(mask_ratio)
    if name == "hard-mining":
        return HardMiningObjective(mask_ratio, float(getattr(settings, "random_share", 0.2)), seed)
    if name == "adversarial":
        from musictl.bert.adversarial import AdversarialObjective

        return AdversarialObjective(
            mask_ratio=mask_ratio, seed=seed, max_len=int(getattr(settings, "max_len", 512)),
            freeze_every=int(getattr(settings, "freeze_every", 5)),
            weight_source=str(getattr(settings, "weight_source", "train")),
        )
    raise UsageError(f"--objective {name!r}: choose one of {', '.join(OBJECTIVES)}")
