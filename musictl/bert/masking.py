"""Which notes to hide, and how: random MLM masking and the adversarial masker's choice.

A note is masked as a whole (all 8 fields), as in MidiBERT. Padding is never selected: every
function takes the attention mask and ranks padding last.
"""

from __future__ import annotations

import torch

from musictl import constants as C


def budget(attention_mask: torch.Tensor, ratio: float) -> torch.Tensor:
    """Notes to mask per sample: ``ratio`` of its real notes, at least one when it has any."""
    real = attention_mask.sum(dim=1)
    return torch.where(real > 0, torch.clamp(torch.round(real * ratio), min=1), torch.zeros_like(real)).long()


def top_k_per_row(scores: torch.Tensor, eligible: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the ``k[i]`` highest-scored eligible positions of each row ``i``."""
    scores = scores.masked_fill(~eligible, float("-inf"))
    ranks = torch.argsort(torch.argsort(scores, dim=1, descending=True), dim=1)
    return (ranks < k.unsqueeze(1)) & eligible


def random_selection(attention_mask: torch.Tensor, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """``ratio`` of each sample's real notes, uniformly at random."""
    real = attention_mask.bool()
    noise = torch.rand(real.shape, generator=generator, device="cpu").to(real.device)
    return top_k_per_row(noise, real, budget(attention_mask, ratio))


def adversarial_selection(
    masker_scores: torch.Tensor, attention_mask: torch.Tensor, ratio: float, random_share: float, generator: torch.Generator
) -> torch.Tensor:
    """The masker's choice: per sample, ``random_share`` of the budget at random (exploration),
    the rest the highest-scored remaining notes (the ones it predicts are hardest to recover)."""
    real = attention_mask.bool()
    k = budget(attention_mask, ratio)
    k_random = torch.round(k.float() * random_share).long()
    noise = torch.rand(real.shape, generator=generator, device="cpu").to(real.device)
    chosen = top_k_per_row(noise, real, k_random)
    return chosen | top_k_per_row(masker_scores.detach().float(), real & ~chosen, k - k_random)


def corrupt(
    input_ids: torch.Tensor, selected: torch.Tensor, vocab_sizes: list[int], generator: torch.Generator,
    mask_share: float = 0.8, random_share: float = 0.1,
) -> torch.Tensor:
    """BERT's 80/10/10: selected notes become MASK, a random note, or stay as they are."""
    roll = torch.rand(selected.shape, generator=generator, device="cpu").to(selected.device)
    to_mask = selected & (roll < mask_share)
    to_random = selected & (roll >= mask_share) & (roll < mask_share + random_share)
    out = input_ids.clone()
    out[to_mask] = C.MASK_ID
    if to_random.any():
        n = int(to_random.sum())
        random_notes = torch.stack(
            [torch.randint(C.N_SPECIAL, v, (n,), generator=generator) for v in vocab_sizes], dim=-1
        ).to(out.device)
        out[to_random] = random_notes
    return out


def mask_notes(input_ids: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Every field of the selected notes becomes MASK (fine-tuning's masking)."""
    out = input_ids.clone()
    out[selected] = C.MASK_ID
    return out
