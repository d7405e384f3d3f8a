"""Does the masker learn? Diagnostics on validation windows, logged at every evaluation.

``masker_spearman``: Spearman correlation between the masker's score of a note (on the clean
window) and the recoverer's loss on that note when it is hidden at random. The random notes are the
validation masks of :func:`musictl.bert.masking.validation_masks`, the very notes pre-training's
evaluation scores in the same window (``mask_ratio`` of its real notes, those made MASK or a random
note; drawn from the window's index, the same for every run and batch). ``adversarial_loss_ratio``:
the mean recovery loss on the notes the masker would choose (its top-scored notes, as many per window)
over the mean loss on the random notes. A masker that has learned which notes are hard shows a
positive correlation and a ratio above 1.

A note's loss is the mean cross-entropy over its 8 fields (unweighted, so runs with different
field weights compare), with every field of the hidden note replaced by MASK (evaluation instead
corrupts them 80/10/10 as in training, so the two losses differ on the same notes).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from musictl import constants
from musictl.bert.losses import field_hits, field_losses
from musictl.bert.masking import mask_notes, top_k_per_row, validation_masks

DIAGNOSTIC_BATCHES = 32  # validation batches scored (the first ones: fixed, the same for every run)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model under DDP / accelerate / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


def masker_scores(model: torch.nn.Module, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The masker's score of every note of the clean windows, in (0, 1), (B, L); runs the encoder
    with whatever gradient mode the caller is in."""
    core = unwrap(model)
    hidden = core.bert(ids, attention_mask).last_hidden_state
    return torch.sigmoid(core.masker(hidden).squeeze(-1).float())


def hidden_note_losses(model: torch.nn.Module, ids: torch.Tensor, attention_mask: torch.Tensor,
                       selected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hide the selected notes (all fields MASK): per hidden note its mean field loss (n,) and
    whether each field was recovered (n, 8)."""
    logits = unwrap(model)(mask_notes(ids, selected), attention_mask, selected)
    targets = ids[selected]
    return field_losses(logits, targets).mean(-1), field_hits(logits, targets)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho, 0.0 where it is undefined (fewer than 3 points or a constant input)."""
    from scipy.stats import spearmanr

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(spearmanr(x, y).statistic)


@torch.no_grad()
def masker_diagnostics(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, ...]], ratio: float,
                       max_batches: int = DIAGNOSTIC_BATCHES) -> dict:
    """``masker_spearman``, ``adversarial_loss_ratio`` and, per field, the accuracy on the random
    hidden notes (``valid_field_accuracy``) over the first ``max_batches`` validation batches.

    A batch is ``(ids, attention_mask)`` or ``(ids, attention_mask, window_ids)``; without window ids the
    windows are numbered in order from 0 (the validation windows in their order, as ``valid_batches`` makes
    them). The random notes of window ``w`` are its validation masks (:func:`validation_masks`)."""
    core = unwrap(model)
    was_training = core.training
    core.eval()
    scores, losses, chosen_losses, hits = [], [], [], []
    seen = 0
    for n, batch in enumerate(batches):
        if n >= max_batches:
            break
        ids, attention_mask = batch[0], batch[1]
        window_ids = batch[2] if len(batch) > 2 else torch.arange(seen, seen + len(ids))
        seen += len(ids)
        score = masker_scores(core, ids, attention_mask)
        random_notes = validation_masks(ids, attention_mask, window_ids, ratio).hidden
        if not random_notes.any():
            continue
        loss, hit = hidden_note_losses(core, ids, attention_mask, random_notes)
        scores.append(score[random_notes].cpu())
        losses.append(loss.cpu())
        hits.append(hit.float().cpu())
        chosen = top_k_per_row(score, attention_mask.bool(), random_notes.sum(dim=1))
        chosen_losses.append(hidden_note_losses(core, ids, attention_mask, chosen)[0].cpu())
    core.train(was_training)
    if not losses:
        return {"masker_spearman": 0.0, "adversarial_loss_ratio": 1.0, "diagnostic_notes": 0}
    loss, chosen_loss = torch.cat(losses), torch.cat(chosen_losses)
    accuracy = torch.cat(hits).mean(0)
    return {
        "masker_spearman": round(spearman(torch.cat(scores).numpy(), loss.numpy()), 5),
        "adversarial_loss_ratio": round(float(chosen_loss.mean() / loss.mean().clamp_min(1e-12)), 5),
        "diagnostic_notes": int(len(loss)),
        "valid_field_accuracy": {name: round(float(accuracy[f]), 5) for f, name in enumerate(constants.FIELDS)},
    }
