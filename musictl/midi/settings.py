"""Settings of ``musictl tokenize`` and ``musictl detokenize``: every default and its meaning, once.

:class:`TokenizeSettings` holds the run settings (split, seed, workers) and the quantisation of the
Octuple format; :class:`musictl.midi.vocab.TokenizerConfig` (the format description saved with every
tokens artifact) takes its defaults and ranges from the quantisation fields here. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from musictl.errors import UsageError
from musictl.settings import Settings, setting

DEFAULT_SPLIT = "0.8,0.1,0.1"
Dedup = Literal["group", "drop", "off"]  # --dedup: what to do with near-duplicate pieces (musictl.midi.dedup)

# The fields of TokenizeSettings that are TokenizerConfig's parameters (same names).
QUANTISATION_FIELDS = (
    "positions_per_beat", "max_bar_beats", "max_bars", "duration_levels", "duration_steps", "velocity_bins",
    "tempo_min", "tempo_max", "tempo_bins_per_doubling",
)


@dataclass
class TokenizeSettings(Settings):
    """How ``musictl tokenize`` splits and quantises a corpus (quantisation defaults: MusicBERT's)."""

    split: str = setting(DEFAULT_SPLIT, "train,valid,test fractions, drawn per style and file.")
    seed: int = setting(0, "Random seed of the split: the same seed gives the same split.")
    group_by: Optional[str] = setting(
        None, "Regex on each file name (with its extension): files whose group 1 is the same stay in one split "
              "(clips of one song); names it does not match are groups of their own. With --split-file: only "
              "reports how many valid/test files share a group with training files.")
    dedup: Dedup = setting(
        "group", "Near-duplicate pieces (transposed or re-timed copies: the same run of melody intervals): group keeps "
                 "each group in one split, drop keeps the first of each group (by path), off does neither. With "
                 "--split-file: only reports how many valid/test pieces are near-copies of training pieces.")
    dedup_threshold: float = setting(
        0.8, "Share of the shorter piece's 12-interval melody runs found in the other that makes two pieces "
             "near-duplicates (--dedup).", min=0.05, max=1.0)
    workers: int = setting(0, "Parallel worker processes (0: all cores).", min=0)
    positions_per_beat: int = setting(16, "Onset grid per quarter note (a power of two).", min=1, max=64)
    max_bar_beats: int = setting(8, "Longest bar in quarter notes; longer bars are split.", min=1, max=64)
    max_bars: int = setting(256, "Bar field range; longer pieces continue in re-based chunks.", min=2, max=4096)
    duration_levels: int = setting(8, "Duration scale: number of doublings.", min=1, max=16)
    duration_steps: int = setting(16, "Duration scale: codes per doubling.", min=1, max=64)
    velocity_bins: int = setting(32, "Velocity bins over 0..127.", min=1, max=128)
    tempo_min: float = setting(16.0, "Lowest tempo bin (BPM).", min=1.0, max=1000.0)
    tempo_max: float = setting(256.0, "Highest tempo bin (BPM).", min=1.0, max=1000.0)
    tempo_bins_per_doubling: int = setting(12, "Tempo bins per doubling of BPM.", min=1, max=96, flag="--tempo-bins")

    def validate(self) -> None:
        parse_split_ratios(self.split)
        if self.group_by is not None:
            from musictl.midi.corpus import compile_group_by

            compile_group_by(self.group_by)
        try:
            check_quantisation(self.quantisation())
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    @property
    def ratios(self) -> tuple[float, float, float]:
        """``split`` as (train, valid, test) fractions."""
        return parse_split_ratios(self.split)

    def quantisation(self) -> dict:
        """The quantisation fields: ``TokenizerConfig(**settings.quantisation())`` (:mod:`musictl.midi.vocab`)."""
        return {name: getattr(self, name) for name in QUANTISATION_FIELDS}


@dataclass
class DetokenizeSettings(Settings):
    """How ``musictl detokenize`` writes MIDI."""

    program: Optional[int] = setting(None, "Play every pitched note with this GM program.", min=0, max=127)
    workers: int = setting(0, "Parallel worker processes for --all (0: all cores).", min=0)


def parse_split_ratios(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> (0.8, 0.1, 0.1), validated."""
    try:
        parts = tuple(float(x) for x in str(text).split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1) > 1e-6:
        raise UsageError(f"--split {text!r}: give three non-negative fractions that sum to 1, e.g. {DEFAULT_SPLIT}")
    return parts  # type: ignore[return-value]


def quantisation_default(name: str):
    """Default of one quantisation parameter (for :class:`~musictl.midi.vocab.TokenizerConfig`)."""
    return TokenizeSettings.default_of(name)


def quantisation_range(name: str) -> tuple[float | None, float | None]:
    """Allowed (min, max) of one quantisation parameter."""
    meta = TokenizeSettings.__dataclass_fields__[name].metadata
    return meta.get("min"), meta.get("max")


def check_quantisation(values: dict) -> None:
    """Raise ``ValueError`` unless ``values`` (every quantisation field) describe a valid Octuple format.

    The checks of :class:`~musictl.midi.vocab.TokenizerConfig`, here so that the settings need not import it.
    """
    for name in QUANTISATION_FIELDS:
        low, high = quantisation_range(name)
        if not low <= values[name] <= high:
            raise ValueError(f"invalid tokenizer parameters: {name} must be {low:g}..{high:g}, not {values[name]}")
    if values["positions_per_beat"] & (values["positions_per_beat"] - 1):
        raise ValueError("invalid tokenizer parameters: positions_per_beat must be a power of two from 1 to 64")
    if not values["tempo_min"] < values["tempo_max"]:
        raise ValueError("invalid tokenizer parameters: tempo range must satisfy tempo_min < tempo_max")
