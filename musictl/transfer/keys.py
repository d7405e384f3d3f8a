"""Counting in a common key: each piece's key, the shift that moves it to C major / A minor, and back.

A style's pieces are in many keys; counted as they are, its transitions mix every key, so no first-order walk
over absolute pitches keeps one. The classic fix for count models: before counting, transpose each piece so that
its key lands on a common reference, and place each generated piece in one of the style's keys afterwards.

- **Key** (:func:`piece_key`): Krumhansl-Schmuckler (:func:`musictl.violin.keys.estimate_key`) on the piece's
  pitch-class profile, each pitched (non-drum) note weighted by its duration.
- **Shift** (:func:`common_key_shift`): the semitones that move the key's *relative major* tonic to C (a minor key
  maps to A minor: A minor stays, E minor moves like G major), by the smaller of the up and down shifts (-6..5; a
  tritone goes down). What a first-order walk over pitches needs is the piece's *scale* on the white keys, so when
  another diatonic scale holds more than :data:`SCALE_MARGIN` more of the piece's note time than the key's own
  (Krumhansl-Schmuckler reading a modal tune, G Mixolydian as G major, or a tune that leans on its dominant), the
  shift aligns that scale instead (``scale`` in ``key.json`` says which scale was aligned).
- **Range**: a piece whose pitched notes would leave 0..127 moves by the octave the other way (a shift of s
  becomes s - 12 or s + 12) when that fits, else stays as it is (shift 0, marked ``out_of_range``): rare, a piece
  spanning nearly the whole MIDI range. Drums never move.
- **Placing** (:func:`place`): a piece walked in the common key is moved back by a piece's shift, under
  the same range rule.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musictl import constants as C
from musictl.midi.vocab import TokenizerConfig
from musictl.violin.keys import NAMES, estimate_key, key_name

KEY_FILE = "key.json"  # beside a common-key graph: each piece's key and shift, the style's key distribution
REFERENCE = "C major / A minor"
KEY_MODES = ("common", "as-is")
PITCHES = 128
SCALE_MARGIN = 0.02  # a diatonic scale must hold this much more note time than the key's own to be aligned instead
# The 12 diatonic pitch-class sets: the major scale on each tonic. A natural minor scale is the same set as its
# relative major's (A minor = C major), and the church modes too, so these 12 sets are every diatonic scale.
DIATONIC = np.array([np.isin(np.arange(12), (np.array([0, 2, 4, 5, 7, 9, 11]) + tonic) % 12) for tonic in range(12)])


def _values(tokens: np.ndarray) -> np.ndarray:
    return tokens.astype(np.int64) - C.N_SPECIAL


def pitched(values: np.ndarray) -> np.ndarray:
    """Rows of note values that have a pitch (not drums)."""
    return values[:, C.INSTRUMENT] != C.DRUM_PROGRAM


def pitch_class_profile(tokens: np.ndarray, config: TokenizerConfig) -> np.ndarray:
    """12 bins: the time (in positions) each pitch class sounds in a piece's pitched notes."""
    values = _values(tokens)
    notes = values[pitched(values)]
    return np.bincount(notes[:, C.PITCH] % 12, weights=config.duration_centres[notes[:, C.DURATION]], minlength=12)


def piece_key(tokens: np.ndarray, config: TokenizerConfig) -> tuple[int, str] | None:
    """(tonic pitch class, 'major'|'minor') of a piece; None when it has no pitched notes."""
    profile = pitch_class_profile(tokens, config)
    return estimate_key(profile) if profile.sum() > 0 else None


def relative_major(tonic: int, mode: str) -> int:
    """The tonic pitch class of a key's relative major (its own for a major key): A minor -> 0 (C)."""
    return (tonic + (3 if mode == "minor" else 0)) % 12


def scale_shift(major: int) -> int:
    """Semitones (-6..5, a tritone down) that move the major scale on ``major`` to C major."""
    shift = -major % 12
    return shift - 12 if shift >= 6 else shift


def key_shift(tonic: int, mode: str) -> int:
    """Semitones (-6..5) that move the key's relative-major tonic to C: D major -2, A minor 0, E minor -7 + 12 = 5."""
    return scale_shift(relative_major(tonic, mode))


def scale_shares(profile: np.ndarray) -> np.ndarray:
    """Per major-scale tonic (12), the share of a pitch-class profile inside that diatonic scale."""
    total = float(np.sum(profile))
    return DIATONIC @ profile / total if total > 0 else np.zeros(12)


def fitting_shift(tokens: np.ndarray, shift: int) -> tuple[int, bool]:
    """(the shift to apply, whether ``shift`` itself fitted): ``shift`` when the pitched notes stay in 0..127, else
    the octave the other way when that fits, else 0."""
    values = _values(tokens)
    notes = values[pitched(values), C.PITCH]
    if len(notes) == 0 or shift == 0:
        return 0, True
    low, high = int(notes.min()), int(notes.max())
    for candidate in (shift, shift - 12 if shift > 0 else shift + 12):
        if low + candidate >= 0 and high + candidate < PITCHES:
            return candidate, candidate == shift
    return 0, False


def transpose(tokens: np.ndarray, shift: int) -> np.ndarray:
    """A copy of a piece's token rows with every pitched note moved by ``shift`` semitones (drums stay). The caller
    keeps the range (:func:`fitting_shift`)."""
    if shift == 0:
        return tokens
    out = np.array(tokens, copy=True)
    rows = pitched(_values(tokens))
    out[rows, C.PITCH] = out[rows, C.PITCH] + shift
    return out


@dataclass
class PieceKey:
    """One piece's estimated key and the shift that counted it in the common key."""

    key: str | None  # "D major" (Krumhansl-Schmuckler); None: no pitched notes
    shift: int
    out_of_range: bool = False  # the octave the other way was taken, or (shift 0) no shift fitted
    scale: str | None = None  # the diatonic scale moved onto C major, by its major tonic ("D"): the key's, or a better fit

    def to_dict(self) -> dict:
        return {"key": self.key, "scale": self.scale, "shift": self.shift, "out_of_range": self.out_of_range}


def common_key(tokens: np.ndarray, config: TokenizerConfig) -> PieceKey:
    """A piece's key and the shift that moves it to C major / A minor: its key's relative major onto C, or the
    diatonic scale that holds more than :data:`SCALE_MARGIN` more of its note time (see the module docstring)."""
    profile = pitch_class_profile(tokens, config)
    if profile.sum() <= 0:
        return PieceKey(None, 0)
    tonic, mode = estimate_key(profile)
    major, shares = relative_major(tonic, mode), scale_shares(profile)
    if shares[major] < shares.max() - SCALE_MARGIN:
        major = int(np.argmax(shares))
    shift, fitted = fitting_shift(tokens, scale_shift(major))
    return PieceKey(key_name(tonic, mode), shift, not fitted, NAMES[major])


def common_key_shift(tokens: np.ndarray, config: TokenizerConfig) -> int:
    """The semitones that move a piece to the common key (C major / A minor), keeping its pitches in 0..127."""
    return common_key(tokens, config).shift


def to_common_key(pieces: list[np.ndarray], config: TokenizerConfig) -> tuple[list[np.ndarray], list[PieceKey]]:
    """(the pieces transposed to the common key, each one's key and shift)."""
    keys = [common_key(t, config) for t in pieces]
    return [transpose(t, k.shift) for t, k in zip(pieces, keys)], keys


@dataclass
class StyleKeys:
    """The keys of a style's training pieces, as counted in its common-key graph (``key.json``)."""

    pieces: dict[int, PieceKey] = field(default_factory=dict)  # piece id -> its key and shift
    names: dict[int, str] = field(default_factory=dict)  # piece id -> file name (for the reader)

    @classmethod
    def of(cls, ids: list[int], names: list[str], keys: list[PieceKey]) -> StyleKeys:
        return cls(dict(zip(ids, keys)), dict(zip(ids, names)))

    def distribution(self) -> dict[str, int]:
        """Key name -> how many of the style's pieces are in it, most common first."""
        return dict(Counter(k.key for k in self.pieces.values() if k.key).most_common())

    def shifts(self) -> dict[str, int]:
        """Shift (semitones, as text) -> how many pieces were moved by it."""
        return {str(s): n for s, n in sorted(Counter(k.shift for k in self.pieces.values()).items())}

    def summary(self) -> dict:
        """The manifest's metrics: the key distribution, the shifts and the pieces counted untransposed."""
        out = [i for i, k in self.pieces.items() if k.out_of_range]
        return {"key_reference": REFERENCE, "keys": self.distribution(), "key_shifts": self.shifts(),
                "key_out_of_range": len(out)}

    def save(self, folder: Path) -> None:
        rows = [{"id": i, "name": self.names.get(i, ""), **k.to_dict()} for i, k in self.pieces.items()]
        (Path(folder) / KEY_FILE).write_text(json.dumps({**self.summary(), "pieces": rows}, indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path) -> StyleKeys:
        data = json.loads((Path(folder) / KEY_FILE).read_text())
        keys = cls()
        for row in data["pieces"]:
            keys.pieces[int(row["id"])] = PieceKey(row["key"], int(row["shift"]), bool(row.get("out_of_range", False)),
                                                   row.get("scale"))
            keys.names[int(row["id"])] = str(row.get("name", ""))
        return keys

    def shift_of(self, piece_id: int) -> int | None:
        found = self.pieces.get(int(piece_id))
        return None if found is None else found.shift


def place(tokens: np.ndarray, shift: int) -> np.ndarray:
    """A piece walked in the common key, moved into the key that ``shift`` moved to the common key (by ``-shift``,
    the octave the other way when the range needs it, else left where it is)."""
    return transpose(tokens, fitting_shift(tokens, -int(shift))[0])
