"""Octuple tokens -> MIDI: the inverse of :mod:`musictl.midi.encode`, within the quantisation.

Used to listen to a corpus, to write predictions, and to make generated walks playable.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from musictl import constants as C
from musictl.errors import MusictlError
from musictl.midi.vocab import TokenizerConfig


def note_rows(tokens: np.ndarray) -> np.ndarray:
    """Rows that are real notes (no special id in any field), as ids."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[1] != C.N_FIELDS:
        raise MusictlError(f"tokens must have shape (n, {C.N_FIELDS}), got {tokens.shape}")
    return tokens[(tokens >= C.N_SPECIAL).all(axis=1)]


def validate_tokens(tokens: np.ndarray, config: TokenizerConfig, source: str = "tokens") -> None:
    """Fail with the first offending row if an id lies outside its field's vocabulary."""
    sizes = np.array(config.vocab_sizes)
    bad = (tokens < 0) | (tokens >= sizes)
    if bad.any():
        row, field = (int(i) for i in np.argwhere(bad)[0])
        raise MusictlError(
            f"{source}: row {row} has {C.FIELDS[field]} id {int(tokens[row, field])}, outside 0..{sizes[field] - 1}; "
            "were these tokens made with other tokenizer parameters?"
        )


def decode_ticks_per_beat(config: TokenizerConfig) -> int:
    """Ticks per beat of decoded MIDI: a multiple of 480 that holds half grid steps (bucket centres)."""
    return math.lcm(C.DECODE_TICKS_PER_BEAT, 2 * config.positions_per_beat)


def onsets(values: np.ndarray, config: TokenizerConfig, skips=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Absolute onsets (grid positions) of note values, plus the bar start grid and each bar's
    time-signature value. A decrease of the bar field starts a new block of ``max_bars``; ``skips``
    (``[row, blocks]`` pairs from the encoder, see :func:`musictl.midi.encode.bar_skips`) adds the
    blocks without notes that the field cannot show, such as a leading silence of 256 bars or more."""
    bar = values[:, C.BAR].astype(np.int64)
    blocks = np.concatenate([[0], np.cumsum(np.diff(bar) < 0)]) if len(bar) else np.zeros(0, dtype=np.int64)
    if skips:
        hidden = np.zeros(len(bar), dtype=np.int64)
        for row, count in skips:
            if not 0 <= int(row) < len(bar) or int(count) < 0:
                raise MusictlError(f"bar skip {[row, count]} does not fit {len(bar)} notes; were the tokens edited?")
            hidden[int(row)] += int(count)
        blocks = blocks + np.cumsum(hidden)
    bar_abs = bar + blocks * config.max_bars
    n_bars = int(bar_abs.max()) + 1 if len(bar_abs) else 0
    ts_of_bar = np.full(n_bars, -1, dtype=np.int64)
    ts_of_bar[bar_abs] = values[:, C.TIME_SIGNATURE]
    # Bars without notes take the metre of the next bar with notes (as the encoder builds them).
    has_notes = np.where(ts_of_bar >= 0, np.arange(n_bars), n_bars)
    next_with_notes = np.minimum.accumulate(has_notes[::-1])[::-1]
    ts_of_bar = ts_of_bar[next_with_notes]
    bar_units = config.time_signature_units[ts_of_bar]
    bar_start = np.concatenate([[0], np.cumsum(bar_units)[:-1]])
    onset = bar_start[bar_abs] + values[:, C.POSITION]
    return onset, bar_start, ts_of_bar


def decode_tokens(tokens: np.ndarray, config: TokenizerConfig, program: int | None = None,
                  groups: np.ndarray | None = None, group_names: list[str] | None = None, skips=None):
    """A symusic ``Score`` with one named track per instrument, tempo and time signatures.

    ``program`` overrides every pitched instrument (drums stay drums). ``groups`` (one int per
    row of ``tokens``, which must then be all notes) splits the notes further into tracks named
    ``group_names[g]`` (e.g. melody / accompaniment). ``skips`` are the piece's bar skips (the
    ``skips`` of its index row or of :class:`~musictl.midi.encode.EncodedPiece`); without them a
    silence of ``max_bars`` bars or more is shortened by whole blocks.

    Each duration code becomes the centre of its bucket. Notes of one pitch that overlap stay in
    their instrument's track (MIDI allows it; readers pair each note-off with the earliest open
    note-on), so there are never more tracks than instruments (times groups).
    """
    import pretty_midi
    from symusic import Note, Score, Tempo, TimeSignature, Track

    if groups is not None and len(note_rows(tokens)) != len(tokens):
        raise MusictlError("groups need token rows that are all notes (no PAD/MASK/BOS/EOS rows)")
    tokens = note_rows(tokens)
    validate_tokens(tokens, config)
    values = tokens.astype(np.int64) - C.N_SPECIAL
    tpq = decode_ticks_per_beat(config)
    ticks = tpq // config.positions_per_beat
    score = Score(tpq)
    if len(values) == 0:
        return score
    onset, bar_start, ts_of_bar = onsets(values, config, skips)
    duration = config.duration_centres[values[:, C.DURATION]]
    step = 128 / config.velocity_bins
    vel_bin = values[:, C.VELOCITY]
    low, high = np.ceil(vel_bin * step), np.ceil((vel_bin + 1) * step) - 1
    velocity = np.clip((low + high) // 2, 1, 127)

    instrument = values[:, C.INSTRUMENT]
    if program is not None:
        instrument = np.where(instrument == C.DRUM_PROGRAM, instrument, program)
    group = np.zeros(len(values), dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    order = np.lexsort((values[:, C.PITCH], onset))  # stable: equal notes keep the rows' duration order
    for g, inst in sorted(set(zip(group.tolist(), instrument.tolist()))):
        rows = order[(instrument[order] == inst) & (group[order] == g)]
        is_drum = inst == C.DRUM_PROGRAM
        name = "Drums" if is_drum else pretty_midi.program_to_instrument_name(int(inst))
        if group_names is not None:
            name = f"{group_names[g]} ({name})"
        track = Track(name=name, program=0 if is_drum else int(inst), is_drum=bool(is_drum))
        track.notes = Note.from_numpy(
            time=(onset[rows] * ticks).astype(np.int32),
            duration=np.rint(duration[rows] * ticks).astype(np.int32),
            pitch=values[rows, C.PITCH].astype(np.int8),
            velocity=velocity[rows].astype(np.int8),
        )
        score.tracks.append(track)

    # Tempo: an event wherever the tempo value changes, at the onset of the note carrying it.
    by_time = np.argsort(onset, kind="stable")
    tempo = values[by_time, C.TEMPO]
    change = np.concatenate([[True], tempo[1:] != tempo[:-1]])
    tempo_time = onset[by_time][change] * ticks
    tempo_time[0] = 0
    bpm = config.tempo_values[tempo[change]]
    score.tempos = Tempo.from_numpy(time=tempo_time.astype(np.int32), mspq=np.rint(60e6 / bpm).astype(np.int32))

    # Time signatures: an event at every bar line where the metre changes.
    ts_change = np.concatenate([[True], ts_of_bar[1:] != ts_of_bar[:-1]])
    ts_pairs = np.array(config.time_signatures, dtype=np.int64)[ts_of_bar[ts_change]]
    score.time_signatures = TimeSignature.from_numpy(
        time=(bar_start[ts_change] * ticks).astype(np.int32),
        numerator=ts_pairs[:, 0].astype(np.uint8),
        denominator=ts_pairs[:, 1].astype(np.uint8),
    )
    return score


def tokens_to_midi_bytes(tokens: np.ndarray, config: TokenizerConfig, program: int | None = None, skips=None) -> bytes:
    """Standard MIDI file bytes of a token array (``skips``: see :func:`decode_tokens`)."""
    return decode_tokens(tokens, config, program=program, skips=skips).dumps_midi()


def load_token_file(path: str | Path) -> np.ndarray:
    """An ``(n, 8)`` token array from ``.npy`` or whitespace/comma-separated text."""
    path = Path(path)
    if not path.is_file():
        raise MusictlError(f"{path}: no such token file")
    try:
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            array = np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, dtype=np.int64, ndmin=2)
    except (ValueError, OSError) as exc:
        raise MusictlError(f"{path}: not a token file ({exc}); expected an (n, 8) .npy, .csv or .txt array") from None
    if array.ndim != 2 or array.shape[1] != C.N_FIELDS or not np.issubdtype(array.dtype, np.integer):
        raise MusictlError(f"{path}: expected an integer array of shape (n, 8), got {array.dtype} {array.shape}")
    return array
