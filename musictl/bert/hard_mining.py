"""``--objective hard-mining``: a variant of our own, kept under its own name (it is not the published method).

Each step the masker (a head on frozen encoder features) scores the clean notes and chooses the
hardest share of the mask budget (the rest is random, for exploration); the recoverer learns to
restore them, and the recoverer's per-note loss, scaled to 0..1 per sample, is the masker's BCE
target. This was the ``adversarial`` objective before the published one was implemented
(:mod:`musictl.bert.adversarial`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from musictl import constants
from musictl.bert.diagnostics import masker_diagnostics, unwrap
from musictl.bert.losses import field_hits, field_losses
from musictl.bert.masking import corrupt, hard_mining_selection
from musictl.bert.objective import Batches, Objective, StepResult

if TYPE_CHECKING:
    from musictl.bert.settings import PretrainSettings


def hard_mining_step(model, ids, attention_mask, weights, ratio, random_share, generator) -> StepResult:
    """One hard-mining step: the masker (frozen encoder features) picks ``1 - random_share``
    of the budget, the rest is random; the masker learns BCE towards the scaled per-note loss."""
    scores = unwrap(model).masker_logits(ids, attention_mask)
    selected = hard_mining_selection(scores, attention_mask, ratio, random_share, generator)
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


class HardMiningObjective(Objective):
    """``--objective hard-mining``: exactly :func:`hard_mining_step`, plus the masker diagnostics."""

    name = "hard-mining"

    def __init__(self, mask_ratio: float, random_share: float):
        self.mask_ratio, self.random_share = mask_ratio, random_share

    @classmethod
    def from_settings(cls, settings: PretrainSettings) -> HardMiningObjective:
        return cls(settings.mask_ratio, settings.random_share)

    def step(self, model, ids, attention_mask, window_ids, weights, generator) -> StepResult:
        weights = torch.ones(constants.N_FIELDS, device=ids.device) if weights is None else weights
        return hard_mining_step(model, ids, attention_mask, weights, self.mask_ratio, self.random_share, generator)

    def evaluate_extra(self, model, valid_batches: Batches) -> dict[str, Any]:
        found = masker_diagnostics(model, valid_batches, self.mask_ratio)  # on the fixed validation masks
        found.pop("valid_field_accuracy", None)
        return found
