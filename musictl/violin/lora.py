"""LoRA on MusicGen's decoder (peft), the training batch, and per-codebook losses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musictl.violin.model import delay_pattern, freeze_encoders

DEFAULT_TARGETS = ("q_proj", "v_proj")
ALLOWED_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def add_lora(model, targets, rank: int, alpha: float, dropout: float):
    """Wrap ``model`` in a PeftModel whose only trainable weights are LoRA matrices in the decoder."""
    from peft import LoraConfig, get_peft_model

    freeze_encoders(model)
    names = "|".join(targets)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        # only the MusicGen decoder's attention/MLP layers; never the T5 or EnCodec modules
        target_modules=rf"^decoder\..*\.layers\.\d+\.(self_attn|encoder_attn)?\.?({names})$",
    )
    return get_peft_model(model, config)


def parameter_share(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


@dataclass
class Batch:
    encoder_hidden: object  # (B, L, H) text encoder states, zeroed where the condition is dropped
    attention_mask: object
    labels: object  # (B, T + K - 1, K) delayed codes, pad where no target


def make_batch(model, tokenizer, captions: list[str], codes, drop_rate: float, rng: np.random.Generator) -> Batch:
    """Text states (frozen T5) + delay-pattern labels; ``drop_rate`` of samples lose the text (null condition).

    The null condition is all-zero encoder states, exactly what generation uses for the
    unconditional half of classifier-free guidance.
    """
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    enc = tokenizer(captions, padding=True, truncation=True, max_length=64, return_tensors="pt").to(base.device)
    with torch.no_grad():
        hidden = base.text_encoder(input_ids=enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state
    drop = torch.as_tensor(rng.random(len(captions)) < drop_rate, device=hidden.device)
    hidden = hidden.masked_fill(drop[:, None, None], 0.0)
    pad = base.config.decoder.pad_token_id
    labels = delay_pattern(codes.to(base.device), pad).transpose(1, 2).contiguous()
    return Batch(hidden, enc.attention_mask, labels)


def forward(model, batch: Batch):
    return model(encoder_outputs=(batch.encoder_hidden,), attention_mask=batch.attention_mask, labels=batch.labels)


def codebook_losses(model, batch: Batch) -> list[float]:
    """Cross-entropy of each codebook on this batch (pad positions ignored)."""
    import torch
    import torch.nn.functional as F

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    with torch.no_grad():
        logits = forward(model, batch).logits.float()
    n_books = base.config.decoder.num_codebooks
    logits = logits.reshape(-1, n_books, *logits.shape[1:])[:, :, -batch.labels.shape[1] :]
    labels = batch.labels.masked_fill(batch.labels == base.config.decoder.pad_token_id, -100)
    return [
        float(F.cross_entropy(logits[:, k].reshape(-1, logits.shape[-1]), labels[..., k].reshape(-1))) for k in range(n_books)
    ]
