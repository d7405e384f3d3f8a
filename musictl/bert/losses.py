"""Per-field cross-entropy and hits of MidiBert's eight heads: the one definition that the objectives'
losses, pre-training's evaluation and the masker diagnostics share."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def field_losses(logits: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (float32) of every field: logits ``(..., V_f)`` x 8, targets ``(..., 8)`` -> ``(..., 8)``.

    The leading shape is anything: ``(n,)`` for the scored notes only, ``(B, L)`` for every position."""
    return torch.stack([F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), targets[..., f].reshape(-1), reduction="none")
                        .view(targets.shape[:-1]) for f, lg in enumerate(logits)], dim=-1)


def field_hits(logits: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Whether each field was recovered (its arg-max is the target): the shape of :func:`field_losses`, bool."""
    return torch.stack([lg.argmax(-1) == targets[..., f] for f, lg in enumerate(logits)], dim=-1)
