"""MIDI -> Octuple tokens, vectorised: symusic parses, numpy computes every field at once.

No Python loop runs per note; the only loops are over tracks and time-signature changes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from musictl import constants as C
from musictl.errors import TokenizeError
from musictl.midi.vocab import TokenizerConfig


@dataclasses.dataclass
class EncodedPiece:
    """Tokens of one MIDI file and what a corpus index records about it."""

    tokens: np.ndarray  # (n_notes, 8) int16 ids
    notes: int  # notes read from the file
    seconds: float  # duration of the piece


def parse_midi(data: bytes, source: str = "<bytes>"):
    """Parse MIDI bytes with symusic, turning its failures into one readable reason."""
    from symusic import Score

    if len(data) == 0:
        raise TokenizeError(source, "empty file")
    if len(data) > C.MAX_FILE_BYTES:
        raise TokenizeError(source, f"file is {len(data) // 2**20} MiB, over the {C.MAX_FILE_BYTES // 2**20} MiB limit")
    if data[:4] != b"MThd":
        kind = "text" if _looks_like_text(data) else "binary data"
        raise TokenizeError(source, f"not a MIDI file ({kind} without an MThd header)")
    try:
        return Score.from_midi(data)
    except Exception as exc:  # symusic raises RuntimeError with a C++ message
        raise TokenizeError(source, f"unreadable MIDI ({_short(exc)})") from None


def encode_file(path: str | Path, config: TokenizerConfig) -> EncodedPiece:
    """Tokenize one MIDI file (see :func:`encode_score`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenizeError(str(path), f"cannot read file ({exc.strerror})") from None
    return encode_score(parse_midi(data, str(path)), config, str(path))


def encode_score(score, config: TokenizerConfig, source: str = "<score>") -> EncodedPiece:
    """Octuple tokens of a symusic ``Score`` (tick time), sorted by onset, instrument, pitch."""
    tpq = int(score.ticks_per_quarter)
    if not C.MIN_TICKS_PER_BEAT <= tpq <= C.MAX_TICKS_PER_BEAT:
        raise TokenizeError(source, f"absurd ticks per beat ({tpq})")
    time, duration, pitch, velocity, program = _collect_notes(score, source)
    n = len(time)
    if n > C.MAX_NOTES_PER_FILE:
        raise TokenizeError(source, f"{n} notes, over the {C.MAX_NOTES_PER_FILE} limit")

    scale = config.positions_per_beat / tpq
    onset = np.rint(np.maximum(time, 0) * scale).astype(np.int64)
    length = np.maximum(np.rint(duration * scale).astype(np.int64), 1)

    bar, position, ts_value = _bars(score, onset, scale, config)
    if bar.max() > 100_000:
        raise TokenizeError(source, f"absurd length ({int(bar.max())} bars)")
    tempo_value, seconds = _tempi(score, onset, length, scale, config)

    dur_code = np.searchsorted(config.duration_starts, length, side="right") - 1
    vel_bin = np.clip(velocity, 0, 127) * config.velocity_bins // 128

    tokens = np.empty((n, C.N_FIELDS), dtype=np.int16)
    tokens[:, C.BAR] = bar % config.max_bars
    tokens[:, C.POSITION] = position
    tokens[:, C.INSTRUMENT] = program
    tokens[:, C.PITCH] = pitch
    tokens[:, C.DURATION] = dur_code
    tokens[:, C.VELOCITY] = vel_bin
    tokens[:, C.TIME_SIGNATURE] = ts_value
    tokens[:, C.TEMPO] = tempo_value
    tokens += C.N_SPECIAL
    # MusicBERT's order: onset, then instrument, pitch, duration, velocity.
    order = np.lexsort((tokens[:, C.VELOCITY], tokens[:, C.DURATION], pitch, program, onset))
    return EncodedPiece(tokens=tokens[order], notes=n, seconds=seconds)


# --------------------------------------------------------------------------------------------
def _collect_notes(score, source: str):
    times, durations, pitches, velocities, programs = [], [], [], [], []
    for track in score.tracks:
        if track.note_num() == 0:
            continue
        arrays = track.notes.numpy()
        times.append(arrays["time"])
        durations.append(arrays["duration"])
        pitches.append(arrays["pitch"])
        velocities.append(arrays["velocity"])
        program = C.DRUM_PROGRAM if track.is_drum else int(track.program)
        programs.append(np.full(len(arrays["time"]), program, dtype=np.int16))
    if not times:
        raise TokenizeError(source, "no notes")
    time = np.concatenate(times).astype(np.int64)
    duration = np.concatenate(durations).astype(np.int64)
    pitch = np.concatenate(pitches).astype(np.int16)
    velocity = np.concatenate(velocities).astype(np.int16)
    program = np.concatenate(programs)
    keep = (velocity > 0) & (pitch >= 0)  # velocity 0 is a note-off; int8 pitch never exceeds 127
    if not keep.all():
        time, duration, pitch, velocity, program = (a[keep] for a in (time, duration, pitch, velocity, program))
        if len(time) == 0:
            raise TokenizeError(source, "no notes")
    return time, duration, pitch, velocity, program


def reduce_time_signature(numerator: int, denominator: int, config: TokenizerConfig) -> tuple[int, int]:
    """Map a time signature outside the vocabulary to one that is inside it.

    Too-long bars are split (12/4 -> 6/4 -> 3/4, 11/4 -> 1/4): the onsets stay exact, only the
    bar lines get denser. Denominators finer than the grid are coarsened.
    """
    num, den = max(int(numerator), 1), max(int(denominator), 1)
    if den & (den - 1):  # not a power of two: use the nearest one below
        den = 1 << (den.bit_length() - 1)
    while den > 1 and (config.positions_per_beat * 4) % den:
        if num % 2:
            return (1, 4)
        num, den = num // 2, den // 2
    while num * 4 > config.max_bar_beats * den:
        divisor = next((d for d in range(2, num + 1) if num % d == 0), num)
        num //= divisor
    return (max(num, 1), den)


def _bars(score, onset: np.ndarray, scale: float, config: TokenizerConfig):
    """Bar, position and time-signature value of each onset (all in grid positions)."""
    ts = score.time_signatures.numpy()
    index = config.time_signature_index
    starts: list[int] = []
    values: list[int] = []
    units: list[int] = []
    first_bar: list[int] = []
    if len(ts["time"]) == 0 or ts["time"][0] > 0:  # MIDI's default metre
        starts, values, units, first_bar = [0], [index[(4, 4)]], [int(config.time_signature_units[index[(4, 4)]])], [0]
    ts_times = np.rint(ts["time"].astype(np.int64) * scale).astype(np.int64)
    for when, num, den in zip(ts_times.tolist(), ts["numerator"].tolist(), ts["denominator"].tolist()):
        value = index[reduce_time_signature(num, den, config)]
        bar_units = int(config.time_signature_units[value])
        if starts:
            # A change takes effect at the next bar line, so the bar grid stays continuous.
            elapsed = max(when - starts[-1], 0)
            bars = -(-elapsed // units[-1])
            when = starts[-1] + bars * units[-1]
            if value == values[-1]:
                continue
            if bars == 0:  # two changes at one bar line: the later wins
                values[-1], units[-1] = value, bar_units
                continue
            first_bar.append(first_bar[-1] + bars)
        else:
            first_bar.append(0)
        starts.append(when)
        values.append(value)
        units.append(bar_units)
    seg_start, seg_units = np.array(starts, dtype=np.int64), np.array(units, dtype=np.int64)
    seg = np.searchsorted(seg_start, onset, side="right") - 1
    seg = np.maximum(seg, 0)
    offset = onset - seg_start[seg]
    bar = np.array(first_bar, dtype=np.int64)[seg] + offset // seg_units[seg]
    position = offset % seg_units[seg]
    return bar, position, np.array(values, dtype=np.int64)[seg]


def _tempi(score, onset: np.ndarray, length: np.ndarray, scale: float, config: TokenizerConfig):
    """Tempo bin of each onset and the piece's duration in seconds."""
    tempos = score.tempos.numpy()
    times = np.rint(tempos["time"].astype(np.int64) * scale).astype(np.int64)
    mspq = tempos["mspq"].astype(np.float64)
    if len(times) == 0 or times[0] > 0:
        times = np.concatenate([[0], times])
        mspq = np.concatenate([[500_000.0], mspq])
    mspq = np.where(mspq > 0, mspq, 500_000.0)
    bpm = 60e6 / mspq
    bins = np.rint(np.log2(np.clip(bpm, config.tempo_min, config.tempo_max) / config.tempo_min) * config.tempo_bins_per_doubling)
    bins = np.minimum(bins.astype(np.int64), len(config.tempo_values) - 1)
    which = np.searchsorted(times, onset, side="right") - 1
    # Seconds: integrate the tempo map up to the last note's end.
    end = int((onset + length).max())
    edges = np.minimum(np.concatenate([times, [end]]), end)
    seconds = float(np.sum(np.diff(edges) * mspq / 1e6) / config.positions_per_beat)
    return bins[which], seconds


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    return all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.replace("MiniMidi: ", "").replace(": iostream error", "")[:160]
