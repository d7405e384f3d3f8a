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
from musictl.midi.settings import QUANTISATION_FIELDS, check_quantisation, quantisation_default


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """Quantisation of the Octuple representation (defaults and ranges: :class:`musictl.midi.settings.TokenizeSettings`)."""

    positions_per_beat: int = quantisation_default("positions_per_beat")
    max_bar_beats: int = quantisation_default("max_bar_beats")
    max_bars: int = quantisation_default("max_bars")
    duration_levels: int = quantisation_default("duration_levels")
    duration_steps: int = quantisation_default("duration_steps")
    velocity_bins: int = quantisation_default("velocity_bins")
    tempo_min: float = quantisation_default("tempo_min")
    tempo_max: float = quantisation_default("tempo_max")
    tempo_bins_per_doubling: int = quantisation_default("tempo_bins_per_doubling")

    def __post_init__(self) -> None:
        check_quantisation({name: getattr(self, name) for name in QUANTISATION_FIELDS})

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
    def duration_ends(self) -> np.ndarray:
        """Largest duration (in positions) of each code; the last code's bucket is as wide as its neighbours'."""
        last_step = 2 ** (self.duration_levels - 1)
        return np.append(self.duration_starts[1:] - 1, self.duration_starts[-1] + last_step - 1)

    @property
    def max_duration(self) -> int:
        """Longest duration (in positions) the codes hold; longer notes are clipped to the last code."""
        return int(self.duration_ends[-1])

    @cached_property
    def duration_centres(self) -> np.ndarray:
        """Centre (in positions, may be a half) of each code's bucket: what a code decodes to."""
        return (self.duration_starts + self.duration_ends) / 2

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
