"""Pieces every training loop shares (pre-training, fine-tuning, violin LoRA)."""

from __future__ import annotations

from typing import Any


def no_decay(name: str, param: Any) -> bool:
    """Biases, norms and embedding tables are not decayed (BERT's and nanoGPT's convention)."""
    lowered = name.lower()
    return param.ndim < 2 or "layernorm" in lowered or "norm." in lowered or "embed" in lowered


def param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay on matrices, none on biases, norms and embeddings.

    Only trainable parameters are listed (frozen LoRA bases add nothing to the optimizer).
    """
    decay, plain = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (plain if no_decay(name, param) else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
