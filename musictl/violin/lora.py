"""LoRA on MusicGen's decoder (peft), the training batch, and per-codebook losses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musictl.violin.model import delay_pattern, freeze_encoders
from musictl.violin.settings import ALLOWED_TARGETS, TARGET_PRESETS

DEFAULT_TARGETS = TARGET_PRESETS["attention"]
__all__ = ["ALLOWED_TARGETS", "DEFAULT_TARGETS", "add_lora", "base_model", "codebook_losses", "forward", "make_batch",
           "null_condition", "parameter_share", "text_batch"]


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


def base_model(model):
    """The ``MusicgenForConditionalGeneration`` inside DDP (``.module``) and peft wrappers.

    The frozen parts (T5, EnCodec) and the config are read from it; the forward pass still goes
    through the wrapper, so DDP synchronises gradients.
    """
    while not hasattr(model, "text_encoder") and hasattr(model, "module"):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@dataclass
class Batch:
    encoder_hidden: object  # (B, L, H) text encoder states, zero where the condition is dropped
    attention_mask: object  # (B, L) text mask, zero where the condition is dropped
    labels: object  # (B, T + K - 1, K) delayed codes, pad where no target


def null_condition(hidden, attention_mask, drop):
    """Replace the text condition of the samples ``drop`` (a (B,) bool tensor) by MusicGen's null.

    ``MusicgenForConditionalGeneration.generate`` builds the unconditional half of classifier-free
    guidance as ``zeros_like`` of both the T5 states and the attention mask
    (``_prepare_text_encoder_kwargs_for_generation``); its forward then projects the states
    (``enc_to_dec_proj``, whose bias alone would make zero states non-zero) and multiplies them by
    the mask. So the decoder sees zero states and an all-zero cross-attention mask, and a dropped
    training sample gets exactly that.
    """
    hidden = hidden.masked_fill(drop[:, None, None], 0.0)
    return hidden, attention_mask.masked_fill(drop[:, None], 0)


def text_batch(model, tokenizer, captions: list[str], codes, drop) -> Batch:
    """Frozen T5 states + delay-pattern labels; the samples flagged in ``drop`` get the null condition."""
    import torch

    base = base_model(model)
    enc = tokenizer(captions, padding=True, truncation=True, max_length=64, return_tensors="pt").to(base.device)
    encoder, mode = base.text_encoder, base.text_encoder.training
    encoder.eval()  # frozen, so without dropout: its states would otherwise depend on each rank's RNG
    with torch.no_grad():
        hidden = encoder(input_ids=enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state
    encoder.train(mode)
    hidden, mask = null_condition(hidden, enc.attention_mask, torch.as_tensor(drop, device=hidden.device))
    labels = delay_pattern(codes.to(base.device), base.config.decoder.pad_token_id).transpose(1, 2).contiguous()
    return Batch(hidden, mask, labels)


def make_batch(model, tokenizer, captions: list[str], codes, drop_rate: float, rng: np.random.Generator) -> Batch:
    """:func:`text_batch` where each sample loses its text with probability ``drop_rate``."""
    return text_batch(model, tokenizer, captions, codes, rng.random(len(captions)) < drop_rate)


def forward(model, batch: Batch):
    return model(encoder_outputs=(batch.encoder_hidden,), attention_mask=batch.attention_mask, labels=batch.labels)


def codebook_losses(model, batch: Batch, per_sample: bool = False) -> list:
    """Cross-entropy of each codebook on this batch (pad positions ignored): K floats, or with
    ``per_sample`` one row of K floats per sample."""
    import torch
    from torch.nn import functional

    base = base_model(model)
    with torch.no_grad():
        logits = forward(model, batch).logits.float()
    n_books, pad = base.config.decoder.num_codebooks, base.config.decoder.pad_token_id
    logits = logits.reshape(-1, n_books, *logits.shape[1:])[:, :, -batch.labels.shape[1] :]  # (B, K, T, V)
    labels = batch.labels.masked_fill(batch.labels == pad, -100).transpose(1, 2)  # (B, K, T)
    if not per_sample:
        return [float(functional.cross_entropy(logits[:, k].reshape(-1, logits.shape[-1]), labels[:, k].reshape(-1)))
                for k in range(n_books)]
    losses = functional.cross_entropy(logits.permute(0, 3, 1, 2), labels, reduction="none")  # (B, K, T)
    counted = (labels != -100).sum(-1).clamp(min=1)
    return (losses.sum(-1) / counted).tolist()
