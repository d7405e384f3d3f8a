"""MIDI -> Octuple tokens, vectorised: symusic parses, numpy computes every field at once.

No Python loop runs per note; the only loops are over tracks and time-signature changes.
"""

from __future__ import annotations

import dataclasses
import math
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
    track: np.ndarray | None = None  # index in score.tracks of each row's note (with keep_tracks)
    clipped: int = 0  # notes longer than the longest duration code (they get the last code)
    skips: list[list[int]] = dataclasses.field(default_factory=list)  # see bar_skips(); pass to the decoder


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


def encode_file(path: str | Path, config: TokenizerConfig, keep_tracks: bool = False) -> EncodedPiece:
    """Tokenize one MIDI file (see :func:`encode_score`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenizeError(str(path), f"cannot read file ({exc.strerror})") from None
    return encode_score(parse_midi(data, str(path)), config, str(path), keep_tracks)


def encode_score(score, config: TokenizerConfig, source: str = "<score>", keep_tracks: bool = False) -> EncodedPiece:
    """Octuple tokens of a symusic ``Score`` (tick time), sorted by onset, instrument, pitch.

    ``keep_tracks`` also returns which track each row came from (for per-note labels such as
    melody / accompaniment).
    """
    tpq = int(score.ticks_per_quarter)
    if not C.MIN_TICKS_PER_BEAT <= tpq <= C.MAX_TICKS_PER_BEAT:
        raise TokenizeError(source, f"absurd ticks per beat ({tpq})")
    time, duration, pitch, velocity, program, track = _collect_notes(score, source, keep_tracks)
    n = len(time)
    if n > C.MAX_NOTES_PER_FILE:
        raise TokenizeError(source, f"{n} notes, over the {C.MAX_NOTES_PER_FILE} limit")

    scale = config.positions_per_beat / tpq
    onset = np.rint(time * scale).astype(np.int64)
    np.maximum(onset, 0, out=onset)
    length = np.rint(duration * scale).astype(np.int64)
    np.maximum(length, 1, out=length)

    bar, position, ts_value = _bars(score, onset, scale, config)
    if bar.max() > 100_000:
        raise TokenizeError(source, f"absurd length ({int(bar.max())} bars)")
    tempo_value, seconds = _tempi(score, onset, length, scale, config)
    dur_code = np.searchsorted(config.duration_starts, length, side="right") - 1
    vel_bin = velocity.astype(np.int64) * config.velocity_bins // 128

    # MusicBERT's order: onset, then instrument, pitch, duration, velocity (one packed sort key).
    key = (onset << 33) | (program.astype(np.int64) << 25) | (pitch.astype(np.int64) << 18) | (dur_code << 8) | vel_bin
    order = np.argsort(key, kind="stable")
    tokens = np.empty((n, C.N_FIELDS), dtype=np.int16)
    bar = bar[order]
    tokens[:, C.BAR] = bar % config.max_bars
    tokens[:, C.POSITION] = position[order]
    tokens[:, C.INSTRUMENT] = program[order]
    tokens[:, C.PITCH] = pitch[order]
    tokens[:, C.DURATION] = dur_code[order]
    tokens[:, C.VELOCITY] = vel_bin[order]
    tokens[:, C.TIME_SIGNATURE] = ts_value if np.isscalar(ts_value) else ts_value[order]
    tokens[:, C.TEMPO] = tempo_value if np.isscalar(tempo_value) else tempo_value[order]
    tokens += C.N_SPECIAL
    clipped = int(np.count_nonzero(length > config.max_duration))
    return EncodedPiece(tokens=tokens, notes=n, seconds=seconds, track=None if track is None else track[order],
                        clipped=clipped, skips=bar_skips(bar, config.max_bars))


def bar_skips(bar: np.ndarray, max_bars: int) -> list[list[int]]:
    """Whole ``max_bars`` blocks that the wrapped bar field cannot show, as ``[row, blocks]`` pairs.

    The bar field holds ``bar % max_bars`` and a decoder counts a new block wherever it decreases, so
    blocks without a note (a leading silence of 256 bars or more, a gap that long inside a piece) are
    invisible in the tokens. Row ``row`` (of the onset-sorted rows) starts ``blocks`` blocks later than
    the field implies; the list is empty for nearly every piece and is stored in the tokens index.
    """
    if len(bar) == 0 or bar[-1] < max_bars:  # rows are sorted by onset: bar[-1] is the last bar
        return []
    field = bar % max_bars
    decrease = field[1:] < field[:-1]
    if np.count_nonzero(decrease) == bar[-1] // max_bars:  # every block shows as a decrease: nothing hidden
        return []
    seen = np.concatenate([[0], np.cumsum(decrease)])
    hidden = bar // max_bars - seen  # blocks the field does not show, non-decreasing along the rows
    step = np.diff(np.concatenate([[0], hidden]))
    rows = np.flatnonzero(step)
    return [[int(r), int(step[r])] for r in rows]


# --------------------------------------------------------------------------------------------
def _collect_notes(score, source: str, keep_tracks: bool = False):
    """Every note of every track as arrays: time, duration, pitch, velocity, program (and track)."""
    parts = []
    for index, track in enumerate(score.tracks):
        if track.note_num():
            arrays = track.notes.numpy()
            program = C.DRUM_PROGRAM if track.is_drum else int(track.program)
            parts.append((arrays, np.full(len(arrays["time"]), program, dtype=np.int16), index))
    if not parts:
        raise TokenizeError(source, "no notes")
    if len(parts) == 1:
        (arrays, program, _), = parts
        time, duration, pitch, velocity = arrays["time"], arrays["duration"], arrays["pitch"], arrays["velocity"]
    else:
        time = np.concatenate([a["time"] for a, _, _ in parts])
        duration = np.concatenate([a["duration"] for a, _, _ in parts])
        pitch = np.concatenate([a["pitch"] for a, _, _ in parts])
        velocity = np.concatenate([a["velocity"] for a, _, _ in parts])
        program = np.concatenate([p for _, p, _ in parts])
    track = np.concatenate([np.full(len(a["time"]), i) for a, _, i in parts]) if keep_tracks else None
    keep = velocity > 0  # velocity 0 is a note-off; int8 pitch and velocity never exceed 127
    if not keep.all():
        time, duration, pitch, velocity, program = (a[keep] for a in (time, duration, pitch, velocity, program))
        track = None if track is None else track[keep]
        if len(time) == 0:
            raise TokenizeError(source, "no notes")
    return time, duration, pitch, velocity, program, track


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
    """Bar, position and time-signature value of each onset (all in grid positions).

    The bar grid is built from the metres that notes actually sound in: the grid starts at 0 in
    the first note's metre, and a new metre starts at the bar line right after the last note of
    the previous one. Bars without notes therefore always take the metre of the next note (which
    is how the decoder fills them), and every onset survives exactly, whatever the file does
    with metre changes in silent or partial bars.
    """
    ts = score.time_signatures.numpy()
    index = config.time_signature_index
    four_four = index[(4, 4)]
    if len(ts["time"]) == 0 or (len(ts["time"]) == 1 and ts["time"][0] <= 0):  # one metre: the common case
        value = index[reduce_time_signature(ts["numerator"][0], ts["denominator"][0], config)] if len(ts["time"]) else four_four
        bar_units = int(config.time_signature_units[value])
        return onset // bar_units, onset % bar_units, value
    if len(ts["time"]):
        change_at = np.rint(ts["time"].astype(np.int64) * scale).astype(np.int64)
        change_to = np.array(
            [index[reduce_time_signature(n, d, config)] for n, d in zip(ts["numerator"].tolist(), ts["denominator"].tolist())]
        )
        which = np.searchsorted(change_at, onset, side="right") - 1
        in_force = np.where(which >= 0, change_to[np.maximum(which, 0)], four_four)  # MIDI's default metre before any
    else:
        in_force = np.full(len(onset), four_four)
    by_time = np.argsort(onset, kind="stable")
    metre = in_force[by_time]
    run_starts = np.flatnonzero(np.concatenate([[True], metre[1:] != metre[:-1]]))
    run_last = np.append(run_starts[1:] - 1, len(metre) - 1)
    sorted_onset = onset[by_time]
    units = config.time_signature_units
    starts, lengths, first_bar, values = [0], [int(units[metre[0]])], [0], [int(metre[0])]
    last = int(sorted_onset[run_last[0]])
    for start, stop in zip(run_starts[1:].tolist(), run_last[1:].tolist()):
        value, run_end = int(metre[start]), int(sorted_onset[stop])
        if value != values[-1]:
            bar_line = starts[-1] + ((last - starts[-1]) // lengths[-1] + 1) * lengths[-1]
            if run_end >= bar_line:  # else the whole run shares a bar with the previous metre
                first_bar.append(first_bar[-1] + (bar_line - starts[-1]) // lengths[-1])
                starts.append(bar_line)
                lengths.append(int(units[value]))
                values.append(value)
        last = run_end
    seg_start, seg_len = np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int64)
    seg = np.searchsorted(seg_start, onset, side="right") - 1
    offset = onset - seg_start[seg]
    bar = np.array(first_bar, dtype=np.int64)[seg] + offset // seg_len[seg]
    return bar, offset % seg_len[seg], np.array(values, dtype=np.int64)[seg]


def _tempi(score, onset: np.ndarray, length: np.ndarray, scale: float, config: TokenizerConfig):
    """Tempo bin of each onset (a scalar when the tempo never changes) and the duration in seconds."""
    tempos = score.tempos.numpy()
    end = int((onset + length).max())
    if len(tempos["time"]) <= 1:  # the common case, without per-note work
        mspq = float(tempos["mspq"][0]) if len(tempos["time"]) and tempos["mspq"][0] > 0 else 500_000.0
        bpm = min(max(60e6 / mspq, config.tempo_min), config.tempo_max)
        value = min(round(math.log2(bpm / config.tempo_min) * config.tempo_bins_per_doubling), len(config.tempo_values) - 1)
        return value, end * mspq / 1e6 / config.positions_per_beat
    times = np.rint(tempos["time"].astype(np.int64) * scale).astype(np.int64)
    mspq = tempos["mspq"].astype(np.float64)
    if times[0] > 0:
        times = np.concatenate([[0], times])
        mspq = np.concatenate([[500_000.0], mspq])
    mspq = np.where(mspq > 0, mspq, 500_000.0)
    which = np.searchsorted(times, onset, side="right") - 1
    # Seconds: integrate the tempo map up to the last note's end.
    edges = np.minimum(np.concatenate([times, [end]]), end)
    seconds = float(np.sum(np.diff(edges) * mspq / 1e6) / config.positions_per_beat)
    return _tempo_bin(mspq, config)[which], seconds


def _tempo_bin(mspq, config: TokenizerConfig):
    """Nearest bin on the log-BPM scale (clamped to the scale's range)."""
    bpm = np.clip(60e6 / mspq, config.tempo_min, config.tempo_max)
    bins = np.rint(np.log2(bpm / config.tempo_min) * config.tempo_bins_per_doubling).astype(np.int64)
    return np.minimum(bins, len(config.tempo_values) - 1)


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    return all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.replace("MiniMidi: ", "").replace(": iostream error", "")[:160]
