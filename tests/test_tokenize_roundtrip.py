"""MIDI -> tokens -> MIDI keeps every note within the quantisation, plus tempo and metre."""

from __future__ import annotations

import numpy as np
import pytest
from symusic import Score

from musictl import constants as C
from musictl.midi.decode import decode_tokens, onsets, tokens_to_midi_bytes
from musictl.midi.encode import encode_score, parse_midi, reduce_time_signature
from musictl.midi.vocab import TokenizerConfig
from tests.midi_factory import STYLES, midi_bytes, style_piece

CFG = TokenizerConfig()


def quantised_notes(score: Score, config: TokenizerConfig = CFG) -> np.ndarray:
    """(onset grid, duration code, pitch, velocity bin, program) of every note, sorted: what a
    round trip must preserve."""
    rows = []
    scale = config.positions_per_beat / score.ticks_per_quarter
    for track in score.tracks:
        a = track.notes.numpy()
        if len(a["time"]) == 0:
            continue
        units = np.maximum(np.rint(a["duration"] * scale), 1)
        code = np.searchsorted(config.duration_starts, units, side="right") - 1
        program = C.DRUM_PROGRAM if track.is_drum else track.program
        rows.append(
            np.stack(
                [
                    np.rint(a["time"] * scale),
                    code,
                    a["pitch"].astype(np.int64),
                    a["velocity"].astype(np.int64) * config.velocity_bins // 128,
                    np.full(len(a["time"]), program),
                ],
                axis=1,
            )
        )
    out = np.concatenate(rows).astype(np.int64)
    return out[np.lexsort(out.T[::-1])]


def one_track_per_instrument(notes: np.ndarray, config: TokenizerConfig = CFG) -> np.ndarray:
    """What MIDI with one track per instrument holds of :func:`quantised_notes` rows.

    The decoder keeps notes of one pitch that overlap on one track, and a reader pairs each note-off
    with the earliest open note-on of that pitch: per (instrument, pitch), the k-th onset gets the k-th
    earliest end (the decoder writes each duration code as its bucket's centre). Onsets, pitches,
    velocities and instruments are untouched; only nested overlaps change their duration codes.
    """
    onset, code, pitch, program = notes[:, 0], notes[:, 1], notes[:, 2], notes[:, 4]
    end = onset + config.duration_centres[code]
    by_onset = np.lexsort((code, onset, pitch, program))  # per (program, pitch): by onset, shorter first
    by_end = np.lexsort((end, pitch, program))  # per (program, pitch): by end
    length = np.empty(len(notes))
    length[by_onset] = end[by_end] - onset[by_onset]
    out = notes.copy()
    out[:, 1] = np.searchsorted(config.duration_starts, np.maximum(np.rint(length), 1), side="right") - 1
    return out[np.lexsort(out.T[::-1])]


def round_trip(data: bytes, config: TokenizerConfig = CFG):
    original = parse_midi(data)
    tokens = encode_score(original, config).tokens
    decoded = Score.from_midi(tokens_to_midi_bytes(tokens, config))
    return original, tokens, decoded


@pytest.mark.parametrize("style", list(STYLES))
def test_round_trip_keeps_every_note(style):
    original, tokens, decoded = round_trip(style_piece(style, seed=3))
    assert len(tokens) == original.note_num()
    np.testing.assert_array_equal(quantised_notes(decoded), quantised_notes(original))
    # tokens of the decoded file are the same tokens: decoding loses nothing the tokens hold
    np.testing.assert_array_equal(encode_score(decoded, CFG).tokens, tokens)


@pytest.mark.parametrize("style", list(STYLES))
def test_round_trip_keeps_tempo_and_time_signature(style):
    _, (num, den), _, tempo, _ = STYLES[style]
    _, _, decoded = round_trip(style_piece(style, seed=1))
    ts = decoded.time_signatures[0]
    assert (ts.numerator, ts.denominator) == (num, den)
    bpm = 60e6 / decoded.tempos[0].mspq
    assert abs(np.log2(bpm / tempo)) <= 0.5 / CFG.tempo_bins_per_doubling + 1e-9


def test_tempo_and_metre_changes_survive():
    tpq = 480
    notes = [(float(b), 0.5, 60 + b % 12, 80) for b in range(0, 40)]
    score = parse_midi(midi_bytes(notes, tpq=tpq))
    from symusic import Tempo, TimeSignature

    score.tempos = Tempo.from_numpy(
        time=np.array([0, 12 * tpq], dtype=np.int32), mspq=np.array([500000, 250000], dtype=np.int32)
    )
    score.time_signatures = TimeSignature.from_numpy(
        time=np.array([0, 8 * tpq], dtype=np.int32),
        numerator=np.array([4, 3], dtype=np.uint8),
        denominator=np.array([4, 4], dtype=np.uint8),
    )
    tokens = encode_score(score, CFG).tokens
    decoded = decode_tokens(tokens, CFG)
    assert [(t.numerator, t.denominator) for t in decoded.time_signatures] == [(4, 4), (3, 4)]
    assert decoded.time_signatures[1].time == 8 * decoded.ticks_per_quarter
    bpm = np.array([t.qpm for t in decoded.tempos])
    assert len(bpm) == 2  # on the log grid: within half a bin of 120 and 240
    assert np.all(np.abs(np.log2(bpm / [120, 240])) <= 0.5 / CFG.tempo_bins_per_doubling + 1e-9)
    assert decoded.tempos[1].time == 12 * decoded.ticks_per_quarter
    np.testing.assert_array_equal(quantised_notes(decoded), quantised_notes(score))


def test_long_piece_is_chunked_not_clipped():
    bars = CFG.max_bars * 2 + 17
    notes = [(4.0 * b, 1.0, 60 + b % 7, 90) for b in range(bars)]
    original, tokens, decoded = round_trip(midi_bytes(notes))
    assert len(tokens) == bars
    values = tokens[:, C.BAR] - C.N_SPECIAL
    assert values.max() == CFG.max_bars - 1
    np.testing.assert_array_equal(quantised_notes(decoded), quantised_notes(original))


def test_drums_keep_their_own_instrument():
    notes = [(i * 0.5, 0.25, 36 + (i % 3) * 2, 100) for i in range(16)]
    original, tokens, decoded = round_trip(midi_bytes(notes, is_drum=True))
    assert set(tokens[:, C.INSTRUMENT] - C.N_SPECIAL) == {C.DRUM_PROGRAM}
    assert decoded.tracks[0].is_drum
    np.testing.assert_array_equal(quantised_notes(decoded), quantised_notes(original))


@pytest.mark.parametrize("tpq", [24, 96, 384, 960, 9600])
def test_any_ticks_per_beat(tpq):
    notes = [(i * 0.25, 0.25, 60 + i % 12, 64) for i in range(32)]
    original, _, decoded = round_trip(midi_bytes(notes, tpq=tpq))
    np.testing.assert_array_equal(quantised_notes(decoded), quantised_notes(original))


@pytest.mark.parametrize("seed", range(12))
def test_random_pieces_round_trip(seed):
    """Random notes on a random metre/tempo: idempotent and onset-exact on the grid."""
    rng = np.random.default_rng(seed)
    ts = [(2, 4), (3, 4), (4, 4), (6, 8), (5, 8), (7, 8), (12, 8), (2, 2)][seed % 8]
    n = int(rng.integers(1, 300))
    onset = np.sort(rng.integers(0, 64 * 16, n)) / 16
    notes = [(float(o), float(rng.integers(1, 64)) / 16, int(rng.integers(0, 128)), int(rng.integers(1, 128))) for o in onset]
    tpq, tempo, program = int(rng.choice([96, 480, 1024])), float(rng.uniform(40, 220)), int(rng.integers(0, 128))
    data = midi_bytes(notes, tpq=tpq, tempo=tempo, time_signature=ts, program=program)
    original, tokens, decoded = round_trip(data)
    np.testing.assert_array_equal(quantised_notes(decoded), quantised_notes(original))
    np.testing.assert_array_equal(encode_score(decoded, CFG).tokens, tokens)


def test_bars_and_positions_match_the_metre():
    notes = [(i * 1.0, 1.0, 60, 80) for i in range(12)]  # 3/4: 4 bars of 3 beats
    tokens = encode_score(parse_midi(midi_bytes(notes, time_signature=(3, 4))), CFG).tokens
    values = tokens.astype(np.int64) - C.N_SPECIAL
    assert list(values[:, C.BAR]) == [b for b in range(4) for _ in range(3)]
    assert list(values[:, C.POSITION]) == [0, 16, 32] * 4
    onset, _, _ = onsets(values, CFG)
    assert list(onset) == [16 * i for i in range(12)]


@pytest.mark.parametrize(
    ("ts", "expected"), [((4, 4), (4, 4)), ((12, 4), (6, 4)), ((9, 4), (3, 4)), ((11, 4), (1, 4)), ((17, 8), (1, 8)), ((4, 128), (2, 64))]
)
def test_reduce_time_signature(ts, expected):
    assert reduce_time_signature(*ts, CFG) == expected
    assert expected in CFG.time_signature_index


def test_custom_quantisation_round_trips():
    config = TokenizerConfig(positions_per_beat=4, velocity_bins=8, duration_levels=4, duration_steps=4, tempo_bins_per_doubling=6)
    notes = [(i * 0.25, 0.5, 50 + i, 10 + i * 3) for i in range(30)]
    original, tokens, decoded = round_trip(midi_bytes(notes), config)
    np.testing.assert_array_equal(quantised_notes(decoded, config), quantised_notes(original, config))
    assert (tokens < np.array(config.vocab_sizes)).all()


def test_vocab_id_changes_with_parameters():
    assert TokenizerConfig().vocab_id == TokenizerConfig().vocab_id
    assert TokenizerConfig(velocity_bins=16).vocab_id != TokenizerConfig().vocab_id
    assert TokenizerConfig.from_dict(TokenizerConfig().describe()) == TokenizerConfig()
    with pytest.raises(ValueError):
        TokenizerConfig(positions_per_beat=3)


def test_graph_token_ids_are_flat_and_named():
    offsets = CFG.field_offsets
    assert offsets[0] == 0 and CFG.n_graph_tokens == sum(CFG.field_sizes)
    assert CFG.graph_token_name(int(offsets[C.PITCH]) + 60) == "pitch=60"
