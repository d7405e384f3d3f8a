"""Fixed-length windows of notes cut from the tokens artifact, padded, as tensors.

The order windows are visited in, epoch by epoch, is :func:`musictl.training.epoch_permutation`.
"""

from __future__ import annotations

import numpy as np
import torch

from musictl import constants as C
from musictl.midi.tokens import Piece, TokenCorpus


def piece_windows(tokens: np.ndarray, max_len: int, max_bars: int) -> list[np.ndarray]:
    """Consecutive windows of at most ``max_len`` notes; bars re-based to start at 0 in each window."""
    out = []
    for start in range(0, len(tokens), max_len):
        window = np.array(tokens[start : start + max_len], dtype=np.int64)
        bars = window[:, C.BAR] - C.N_SPECIAL
        window[:, C.BAR] = (bars - bars[0]) % max_bars + C.N_SPECIAL
        out.append(window)
    return out


def cut_windows(corpus: TokenCorpus, pieces: list[Piece], max_len: int) -> tuple[list[np.ndarray], list[int]]:
    """All windows of ``pieces`` and, for each window, the index of its piece in ``pieces``."""
    windows, owners = [], []
    for i, piece in enumerate(pieces):
        for w in piece_windows(corpus.piece_tokens(piece), max_len, corpus.config.max_bars):
            windows.append(w)
            owners.append(i)
    return windows, owners


def pad_batch(windows: list[np.ndarray], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, L, 8) long, attention mask (B, L) long), padded with PAD to the longest window."""
    length = length or max(len(w) for w in windows)
    ids = np.full((len(windows), length, C.N_FIELDS), C.PAD_ID, dtype=np.int64)
    for i, w in enumerate(windows):
        ids[i, : len(w)] = w[:length]
    ids_t = torch.from_numpy(ids)
    return ids_t, (ids_t[..., 0] != C.PAD_ID).long()
