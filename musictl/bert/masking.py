"""Which notes to hide, and how: random MLM masking and the adversarial masker's choice.

A note is masked as a whole (all 8 fields), as in MidiBERT. Padding is never selected: every
function takes the attention mask and ranks padding last.

The validation masks are fixed (:func:`validation_masks`): drawn per validation window from the
``valid-mask`` stream at the window's index, on its real notes alone, so pre-training's evaluation and
the masker diagnostics hide the same notes of a window whatever batch, padding or process it is in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from musictl import constants, training

VALID_MASK = "valid-mask"  # the random stream of the validation masks (index: the validation window)
VALID_SEED = 0  # the validation masks do not depend on --seed: every run and objective is scored on the same notes


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


def hard_mining_selection(
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
    to_mask, to_random = corruption_plan(selected, generator, mask_share, random_share)
    return apply_corruption(input_ids, to_mask, to_random, vocab_sizes, generator)


def corruption_plan(selected: torch.Tensor, generator: torch.Generator, mask_share: float = 0.8,
                    random_share: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Which selected notes :func:`corrupt` makes MASK and which a random note (the rest stay as they are,
    their answer in the input: evaluation scores only ``to_mask | to_random``). The same draws as ``corrupt``."""
    roll = torch.rand(selected.shape, generator=generator, device="cpu").to(selected.device)
    to_mask = selected & (roll < mask_share)
    to_random = selected & (roll >= mask_share) & (roll < mask_share + random_share)
    return to_mask, to_random


def apply_corruption(input_ids: torch.Tensor, to_mask: torch.Tensor, to_random: torch.Tensor, vocab_sizes: list[int],
                     generator: torch.Generator) -> torch.Tensor:
    """A copy of ``input_ids`` with ``to_mask`` notes set to MASK in every field and ``to_random`` notes
    replaced by random real values (never PAD, MASK, BOS or EOS)."""
    out = input_ids.clone()
    out[to_mask] = constants.MASK_ID
    if to_random.any():
        n = int(to_random.sum())
        random_notes = torch.stack(
            [torch.randint(constants.N_SPECIAL, v, (n,), generator=generator) for v in vocab_sizes], dim=-1
        ).to(out.device)
        out[to_random] = random_notes
    return out


@dataclass(frozen=True)
class ValidationMasks:
    """The fixed masks of a batch of validation windows, (B, L) each on the batch's device."""

    selected: torch.Tensor  # ratio of each window's real notes
    to_mask: torch.Tensor  # selected notes made MASK
    to_random: torch.Tensor  # selected notes made a random note
    corrupted: torch.Tensor | None  # the ids with both applied (None when no vocabulary was given)

    @property
    def hidden(self) -> torch.Tensor:
        """The notes whose answer the input does not show: what evaluation scores and the diagnostics hide."""
        return self.to_mask | self.to_random


def validation_masks(ids: torch.Tensor, attention_mask: torch.Tensor, window_ids: torch.Tensor, ratio: float,
                     vocab_sizes: list[int] | None = None) -> ValidationMasks:
    """The validation masks of windows ``window_ids``: per window, ``ratio`` of its real notes selected and
    corrupted 80/10/10 (:func:`random_selection`, :func:`corruption_plan`, :func:`apply_corruption`), drawn
    on the real notes alone from ``training.generator(VALID_SEED, VALID_MASK, window)``. With ``vocab_sizes``
    the corrupted ids come too (their random notes are drawn after the masks, so the masks never change)."""
    chosen = torch.zeros(attention_mask.shape, dtype=torch.bool)
    to_mask, to_random = torch.zeros_like(chosen), torch.zeros_like(chosen)
    corrupted = ids.detach().cpu().clone() if vocab_sizes is not None else None
    real_notes = attention_mask.detach().cpu().bool()
    for row, window in enumerate(window_ids.tolist()):
        positions = real_notes[row].nonzero()[:, 0]
        if not len(positions):
            continue
        generator = training.generator(VALID_SEED, VALID_MASK, window)
        selected = random_selection(torch.ones(1, len(positions), dtype=torch.long), ratio, generator)
        masked, replaced = corruption_plan(selected, generator)
        chosen[row, positions], to_mask[row, positions], to_random[row, positions] = selected[0], masked[0], replaced[0]
        if corrupted is not None:
            corrupted[row, positions] = apply_corruption(corrupted[row, positions][None], masked, replaced, vocab_sizes,
                                                         generator)[0]
    device = attention_mask.device
    return ValidationMasks(chosen.to(device), to_mask.to(device), to_random.to(device),
                           None if corrupted is None else corrupted.to(device))


def mask_notes(input_ids: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """Every field of the selected notes becomes MASK (fine-tuning's masking)."""
    out = input_ids.clone()
    out[selected] = constants.MASK_ID
    return out


# --- Adversarial-MidiBERT (the published method): budgets drawn per sequence, exact 80/10/10 counts ---


def share_budget(
    eligible: torch.Tensor, attention_mask: torch.Tensor, share_range: tuple[float, float], cap: float, generator: torch.Generator
) -> torch.Tensor:
    """Notes to mask per sequence: ``min(floor(U(low, high) x eligible notes), floor(cap x real notes))``.

    ``eligible`` are the real notes the mask book has not frozen. The share is drawn per sequence
    from ``generator`` (the reference draws ``random.uniform(0.1, 0.3)`` per sequence and step).
    """
    low, high = share_range
    share = low + (high - low) * torch.rand(eligible.shape[0], generator=generator, device="cpu").to(eligible.device)
    by_share = torch.floor(share * eligible.sum(dim=1).float())
    by_cap = torch.floor(cap * attention_mask.sum(dim=1).float())
    return torch.minimum(by_share, by_cap).long()


def rank_within(selected: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random order of each row's selected positions: 0, 1, ... on them, large elsewhere."""
    noise = torch.rand(selected.shape, generator=generator, device="cpu").to(selected.device)
    noise = noise.masked_fill(~selected, float("inf"))
    return torch.argsort(torch.argsort(noise, dim=1), dim=1)


def corrupt_exact(
    input_ids: torch.Tensor, selected: torch.Tensor, vocab_sizes: list[int], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's 80/10/10 with exact counts per sequence: of its ``k`` selected notes,
    ``round(0.8 k)`` become MASK, ``round(0.1 k)`` a random note, the rest stay as they are.

    Returns the corrupted ids and the notes really changed (MASK or random), which the masker's
    targets are drawn from. Random notes use real values only (never PAD, MASK, BOS or EOS).
    """
    k = selected.sum(dim=1, keepdim=True).float()
    n_mask, n_random = torch.round(0.8 * k), torch.round(0.1 * k)
    rank = rank_within(selected, generator).float()
    to_mask = selected & (rank < n_mask)
    to_random = selected & (rank >= n_mask) & (rank < n_mask + n_random)
    return apply_corruption(input_ids, to_mask, to_random, vocab_sizes, generator), to_mask | to_random
