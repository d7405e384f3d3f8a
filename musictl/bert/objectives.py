"""The two pre-training objectives and the masked evaluation, as functions of one batch.

``mlm``: 15% of real notes chosen at random, 80/10/10 corrupted, per-field cross-entropy on them.
``adversarial``: the masker scores the clean notes and chooses the hardest (with a random share),
the recoverer learns to restore them, and the recoverer's per-note loss is the masker's target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from musictl import constants as C
from musictl.bert.masking import adversarial_selection, corrupt, random_selection


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
    selected = random_selection(attention_mask, ratio, generator)
    logits = model(corrupt(ids, selected, model.config.vocab_sizes, generator), attention_mask, selected)
    targets = ids[selected]
    loss = (field_losses(logits, targets) * weights).mean()
    accuracy = float(field_hits(logits, targets).float().mean()) if len(targets) else 0.0
    return StepResult(loss, float(loss.detach()), 0.0, accuracy, int(selected.sum()))


def adversarial_step(model, ids, attention_mask, weights, ratio, random_share, generator) -> StepResult:
    scores = model.masker_logits(ids, attention_mask)
    selected = adversarial_selection(scores, attention_mask, ratio, random_share, generator)
    logits = model(corrupt(ids, selected, model.config.vocab_sizes, generator), attention_mask, selected)
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
    hits = torch.zeros(C.N_FIELDS)
    loss_sum = torch.zeros(C.N_FIELDS)
    count = 0
    for ids, attention_mask in batches:
        selected = random_selection(attention_mask, ratio, generator)
        if not selected.any():
            continue
        logits = model(corrupt(ids, selected, model.config.vocab_sizes, generator), attention_mask, selected)
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
        "fields": {name: {"accuracy": round(float(acc[f]), 5), "loss": round(float(loss[f]), 5)} for f, name in enumerate(C.FIELDS)},
    }


def field_weights(evaluation: dict | None) -> torch.Tensor:
    """Loss weight per field from the last evaluation: fields recovered worse weigh more (mean 1)."""
    if not evaluation or not evaluation.get("fields"):
        return torch.ones(C.N_FIELDS)
    errors = torch.tensor([1.0 - evaluation["fields"][name]["accuracy"] for name in C.FIELDS]).clamp_min(0.05)
    return errors / errors.mean()
