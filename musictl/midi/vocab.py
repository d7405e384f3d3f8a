"""The Octuple vocabulary: quantisation parameters and the value tables they imply.

A token row holds 8 ids, one per field. Id ``k < N_SPECIAL`` is a special (PAD, MASK, BOS,
EOS); id ``N_SPECIAL + v`` is the field's value ``v``. The parameters travel with every
artifact made from tokens, and :attr:`TokenizerConfig.vocab_id` lets readers refuse tokens
made with other parameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import cached_property

import numpy as np

from musictl import constants as C


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """Quantisation of the Octuple representation (defaults: MusicBERT's)."""

    positions_per_beat: int = C.POSITIONS_PER_BEAT
    max_bar_beats: int = C.MAX_BAR_BEATS
    max_bars: int = C.MAX_BARS
    duration_levels: int = C.DURATION_LEVELS
    duration_steps: int = C.DURATION_STEPS
    velocity_bins: int = C.VELOCITY_BINS
    tempo_min: float = C.TEMPO_MIN
    tempo_max: float = C.TEMPO_MAX
    tempo_bins_per_doubling: int = C.TEMPO_BINS_PER_DOUBLING

    def __post_init__(self) -> None:
        checks = {
            "positions_per_beat must be a power of two from 1 to 64": self.positions_per_beat in (1, 2, 4, 8, 16, 32, 64),
            "max_bar_beats must be 1..64": 1 <= self.max_bar_beats <= 64,
            "max_bars must be 2..4096": 2 <= self.max_bars <= 4096,
            "duration_levels must be 1..16": 1 <= self.duration_levels <= 16,
            "duration_steps must be 1..64": 1 <= self.duration_steps <= 64,
            "velocity_bins must be 1..128": 1 <= self.velocity_bins <= 128,
            "tempo range must satisfy 0 < tempo_min < tempo_max": 0 < self.tempo_min < self.tempo_max,
            "tempo_bins_per_doubling must be 1..96": 1 <= self.tempo_bins_per_doubling <= 96,
        }
        for message, ok in checks.items():
            if not ok:
                raise ValueError(f"invalid tokenizer parameters: {message}")

    # ----- value tables -------------------------------------------------------------------
    @cached_property
    def time_signatures(self) -> list[tuple[int, int]]:
        """Every (numerator, denominator) whose bar fits in ``max_bar_beats`` quarters."""
        out = []
        for exponent in range(7):  # denominators 1..64
            den = 2**exponent
            if self.positions_per_beat * 4 % den:
                continue  # a beat of this denominator is not a whole number of positions
            out += [(num, den) for num in range(1, self.max_bar_beats * den // 4 + 1)]
        return out

    @cached_property
    def time_signature_index(self) -> dict[tuple[int, int], int]:
        return {ts: i for i, ts in enumerate(self.time_signatures)}

    @cached_property
    def time_signature_units(self) -> np.ndarray:
        """Bar length in positions of each time-signature value."""
        return np.array([n * 4 * self.positions_per_beat // d for n, d in self.time_signatures], dtype=np.int64)

    @cached_property
    def duration_starts(self) -> np.ndarray:
        """Smallest duration (in positions) of each duration code: exact below one beat, then
        step sizes doubling every ``duration_steps`` codes."""
        starts = [
            self.duration_steps * (2**level - 1) + step * 2**level + 1
            for level in range(self.duration_levels)
            for step in range(self.duration_steps)
        ]
        return np.array(starts, dtype=np.int64)

    @cached_property
    def tempo_values(self) -> np.ndarray:
        """BPM of each tempo bin, on a log scale."""
        n = int(round(np.log2(self.tempo_max / self.tempo_min) * self.tempo_bins_per_doubling)) + 1
        return self.tempo_min * 2.0 ** (np.arange(n) / self.tempo_bins_per_doubling)

    @property
    def positions_per_bar_max(self) -> int:
        return self.max_bar_beats * self.positions_per_beat

    @cached_property
    def field_sizes(self) -> tuple[int, ...]:
        """Number of real values per field (specials not included)."""
        return (
            self.max_bars,
            self.positions_per_bar_max,
            C.DRUM_PROGRAM + 1,
            128,
            len(self.duration_starts),
            self.velocity_bins,
            len(self.time_signatures),
            len(self.tempo_values),
        )

    @cached_property
    def vocab_sizes(self) -> tuple[int, ...]:
        """Per-field vocabulary sizes including the special ids."""
        return tuple(C.N_SPECIAL + n for n in self.field_sizes)

    @cached_property
    def field_offsets(self) -> np.ndarray:
        """Offset of each field in the flat graph-token id space (``offset[field] + value``)."""
        return np.concatenate([[0], np.cumsum(self.field_sizes)[:-1]]).astype(np.int64)

    @property
    def n_graph_tokens(self) -> int:
        return int(sum(self.field_sizes))

    # ----- identity ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TokenizerConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names - {"vocab_id", "fields", "vocab_sizes", "specials"}
        if unknown:
            raise ValueError(f"unknown tokenizer parameters: {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in names})

    @cached_property
    def vocab_id(self) -> str:
        """Short stable hash of the parameters: equal ids mean interchangeable tokens."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.blake2b(blob, digest_size=6).hexdigest()

    def describe(self) -> dict:
        """The parameters plus what they imply, as saved in ``vocab.json``."""
        return {
            **self.to_dict(),
            "vocab_id": self.vocab_id,
            "fields": list(C.FIELDS),
            "specials": list(C.SPECIALS),
            "vocab_sizes": list(self.vocab_sizes),
        }

    # ----- value <-> human ----------------------------------------------------------------
    def graph_token_name(self, flat_id: int) -> str:
        """Readable name of a flat graph token, e.g. ``pitch=60``."""
        field = int(np.searchsorted(self.field_offsets, flat_id, side="right") - 1)
        value = int(flat_id - self.field_offsets[field])
        return f"{C.FIELDS[field]}={value}"
