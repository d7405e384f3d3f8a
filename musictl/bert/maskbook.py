"""The mask book of Adversarial-MidiBERT: which notes of each training window may still be masked.

Every note of every training window starts maskable. Every few epochs the masker scores each
window on clean input, the top-scored ``U(0.1, 0.3)`` share of its still-maskable notes is frozen
(never masked again), and then each frozen note is released again with a probability
``p ~ U(0, 0.1)`` drawn per window (the reference ``update_maskbook``). The book is indexed by the
training window's index, grows as windows are seen, and travels in the objective's
``state_dict()`` (numpy arrays; the loop saves them with ``musictl.artifacts.write_state``, never a
pickle) so ``--resume`` continues it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from musictl import training

MASK_BOOK = "mask-book"  # the random stream of the freezes (indices: the epoch, the window)
FREEZE_SHARE = (0.1, 0.3)  # share of the still-maskable notes frozen per window and freeze
UNFREEZE_PROBABILITY = (0.0, 0.1)  # per window, the chance that each frozen note is released


class MaskBook:
    """Per training window and note position: 1 = may be masked, 0 = frozen.

    ``lengths[w]`` is the number of real notes of window ``w`` (0 for a window not seen yet);
    positions past it are never eligible.
    """

    def __init__(self, max_len: int, windows: int = 0):
        self.book = np.ones((windows, max_len), dtype=np.uint8)
        self.lengths = np.zeros(windows, dtype=np.int64)

    @property
    def max_len(self) -> int:
        return self.book.shape[1]

    def ensure(self, window_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        """Make room for the given windows and record their real lengths."""
        ids = window_ids.detach().cpu().numpy().astype(np.int64)
        if ids.size and ids.min() < 0:
            raise ValueError("window ids must be non-negative training-window indices")
        length = attention_mask.shape[1]
        if length > self.max_len:
            self.book = np.pad(self.book, ((0, 0), (0, length - self.max_len)), constant_values=1)
        needed = int(ids.max()) + 1 if ids.size else 0
        if needed > len(self.book):
            grow = max(needed, 2 * len(self.book)) - len(self.book)
            self.book = np.concatenate([self.book, np.ones((grow, self.max_len), dtype=np.uint8)])
            self.lengths = np.concatenate([self.lengths, np.zeros(grow, dtype=np.int64)])
        self.lengths[ids] = attention_mask.detach().sum(dim=1).cpu().numpy()

    def eligible(self, window_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) bool on the batch's device: real notes of the windows that are not frozen."""
        self.ensure(window_ids, attention_mask)
        rows = self.book[window_ids.detach().cpu().numpy(), : attention_mask.shape[1]]
        return torch.from_numpy(rows.astype(bool)).to(attention_mask.device) & attention_mask.bool()

    def freeze(self, window: int, scores: np.ndarray, rng: np.random.Generator) -> int:
        """One freeze of one window from the masker's scores of its real notes; returns how many froze."""
        n = int(self.lengths[window])
        row = self.book[window, :n]
        maskable = np.flatnonzero(row)
        count = int(rng.uniform(*FREEZE_SHARE) * len(maskable))
        if count:
            order = np.argsort(-scores[:n][maskable], kind="stable")
            row[maskable[order[:count]]] = 0
        release = rng.uniform(*UNFREEZE_PROBABILITY)
        row[(row == 0) & (rng.random(n) < release)] = 1
        return count

    def frozen_share(self) -> float:
        """Share of the real notes of the windows seen so far that are frozen."""
        real = int(self.lengths.sum())
        if real == 0:
            return 0.0
        positions = np.arange(self.max_len)[None, :] < self.lengths[:, None]
        return float(((self.book == 0) & positions).sum() / real)

    def state_dict(self) -> dict[str, Any]:
        seen = int(np.flatnonzero(self.lengths).max()) + 1 if self.lengths.any() else 0
        return {"book": self.book[:seen].copy(), "lengths": self.lengths[:seen].copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.book = np.asarray(state["book"], dtype=np.uint8).copy()
        self.lengths = np.asarray(state["lengths"], dtype=np.int64).copy()
        if self.book.ndim != 2 or len(self.book) != len(self.lengths):
            raise ValueError("mask book state: 'book' must be (windows, max_len) and match 'lengths'")


def window_rng(seed: int, epoch: int, window: int) -> np.random.Generator:
    """The random draws of one window's freeze: fixed by (seed, epoch, window), so every process and
    every resumed run freezes the same notes whatever order the windows come in."""
    return training.rng(seed, MASK_BOOK, epoch, window)
