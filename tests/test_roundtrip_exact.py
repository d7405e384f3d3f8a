"""Exact round trips: every note comes back where it was (onset within half a grid step, pitch,
instrument), and decoding never makes more tracks than the input had.

The bundled case (made by tests/midi_factory.py) has a 300-bar leading silence, a 260-bar rest,
same-pitch overlaps on one track and a note beyond the longest duration code, so it runs
everywhere; the real-data case reads ../shared/datasets when it is there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from symusic import Score

from musictl import constants as C
from musictl.errors import TokenizeError
from musictl.midi.decode import decode_tokens, onsets, tokens_to_midi_bytes
from musictl.midi.encode import bar_skips, encode_score, parse_midi
from musictl.midi.tokens import TokenCorpus
from musictl.midi.vocab import TokenizerConfig
from tests.midi_factory import SILENT_BARS, midi_bytes, silence_and_overlaps_piece, style_piece

CFG = TokenizerConfig()


def placed_notes(score: Score) -> np.ndarray:
    """(instrument, pitch, onset in beats) of every sounding note, sorted."""
    rows = []
    for track in score.tracks:
        notes = track.notes.numpy()
        keep = notes["velocity"] > 0
        program = C.DRUM_PROGRAM if track.is_drum else int(track.program)
        rows += [np.stack([np.full(int(keep.sum()), program), notes["pitch"][keep].astype(np.int64),
                           notes["time"][keep] / score.ticks_per_quarter], axis=1)]
    out = np.concatenate(rows) if rows else np.zeros((0, 3))
    return out[np.lexsort((out[:, 2], out[:, 1], out[:, 0]))]


def tracks_with_notes(score: Score) -> int:
    return sum(1 for t in score.tracks if t.note_num())


def assert_every_note_placed(original: Score, decoded: Score, config: TokenizerConfig = CFG) -> None:
    before, after = placed_notes(original), placed_notes(decoded)
    assert before.shape == after.shape, f"{len(before)} notes in, {len(after)} out"
    np.testing.assert_array_equal(after[:, :2], before[:, :2])  # instrument and pitch of every note
    assert np.abs(after[:, 2] - before[:, 2]).max() <= 0.5 / config.positions_per_beat + 1e-9  # onset
    assert tracks_with_notes(decoded) <= tracks_with_notes(original)


def test_leading_silence_rests_and_overlaps_survive():
    original = parse_midi(silence_and_overlaps_piece())
    piece = encode_score(original, CFG)
    assert piece.skips == [[0, 1], [11, 1]]  # the 300-bar silence and the 260-bar rest hide one block each
    decoded = Score.from_midi(tokens_to_midi_bytes(piece.tokens, CFG, skips=piece.skips))
    assert_every_note_placed(original, decoded)
    first = min(t.notes[0].time for t in decoded.tracks) / decoded.ticks_per_quarter
    assert first == SILENT_BARS * 4
    assert len(decoded.tracks) == 2  # one per instrument: the two piano tracks share program 0, no "overlaps" tracks
    assert not any("overlap" in t.name for t in decoded.tracks)


def test_without_skips_whole_blocks_are_lost():
    """What the skips are for: the bar field alone cannot show a silence of 256 bars or more."""
    piece = encode_score(parse_midi(silence_and_overlaps_piece()), CFG)
    values = piece.tokens.astype(np.int64) - C.N_SPECIAL
    with_skips, _, _ = onsets(values, CFG, piece.skips)
    without, _, _ = onsets(values, CFG)
    assert with_skips[0] - without[0] == CFG.max_bars * 4 * CFG.positions_per_beat


@pytest.mark.parametrize(("bars", "expected"), [
    ([0, 1, 2], []), ([0, 255, 256, 300], []), ([300], [[0, 1]]), ([10, 266], [[1, 1]]), ([0, 600, 601, 1200], [[1, 2], [3, 2]]),
])
def test_bar_skips_restore_any_bar_sequence(bars, expected):
    bar = np.array(bars)
    skips = bar_skips(bar, 256)
    assert skips == expected
    values = np.zeros((len(bar), C.N_FIELDS), dtype=np.int64)
    values[:, C.BAR] = bar % 256
    values[:, C.TIME_SIGNATURE] = CFG.time_signature_index[(4, 4)]
    onset, _, _ = onsets(values, CFG, skips)
    np.testing.assert_array_equal(onset, bar * 64)


def test_overlapping_notes_of_one_pitch_share_their_track():
    notes = [(0.0, 4.0, 60, 80), (1.0, 1.0, 60, 80), (1.0, 2.0, 60, 70), (2.0, 4.0, 60, 90), (2.5, 0.5, 64, 60)]
    original = parse_midi(midi_bytes(notes))
    decoded = Score.from_midi(tokens_to_midi_bytes(encode_score(original, CFG).tokens, CFG))
    assert len(decoded.tracks) == 1 and decoded.tracks[0].note_num() == len(notes)
    assert_every_note_placed(original, decoded)


def test_a_duration_code_decodes_to_its_bucket_centre():
    # 17 and 18 grid steps share one code (steps of 2 above one beat): the decoder writes 17.5
    code = int(np.searchsorted(CFG.duration_starts, 18, side="right") - 1)
    assert (CFG.duration_starts[code], CFG.duration_ends[code]) == (17, 18)
    tokens = encode_score(parse_midi(midi_bytes([(0.0, 17 / 16, 60, 80)])), CFG).tokens
    assert tokens[0, C.DURATION] - C.N_SPECIAL == code
    decoded = decode_tokens(tokens, CFG)
    assert decoded.tracks[0].notes[0].duration / decoded.ticks_per_quarter * CFG.positions_per_beat == 17.5
    assert CFG.duration_centres[0] >= 1 and CFG.duration_centres[-1] < CFG.max_duration


def test_clipped_durations_are_counted():
    assert encode_score(parse_midi(silence_and_overlaps_piece()), CFG).clipped == 1
    assert encode_score(parse_midi(style_piece("waltz", seed=1)), CFG).clipped == 0


@pytest.mark.slow
def test_detokenize_all_round_trips_a_corpus(tmp_path):
    from typer.testing import CliRunner

    from musictl.cli import app

    runner = CliRunner()
    folder = tmp_path / "midi" / "odd"
    folder.mkdir(parents=True)
    (folder / "silence.mid").write_bytes(silence_and_overlaps_piece())
    (folder / "waltz.mid").write_bytes(style_piece("waltz", seed=2))
    tokens = tmp_path / "tokens"
    result = runner.invoke(app, ["tokenize", str(tmp_path / "midi"), "-o", str(tokens), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "clipped 1" in result.output and TokenCorpus.open(tokens).manifest.metrics["clipped_durations"] == 1
    out = tmp_path / "decoded"
    result = runner.invoke(app, ["detokenize", "--all", "--tokens", str(tokens), "-o", str(out), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mid")) == ["odd/silence.mid", "odd/waltz.mid"]
    for name in ("silence", "waltz"):
        assert_every_note_placed(parse_midi((folder / f"{name}.mid").read_bytes()), Score(str(out / "odd" / f"{name}.mid")))
    single = tmp_path / "one.mid"  # one piece by name: the same file as --all wrote
    assert runner.invoke(app, ["detokenize", "silence.mid", "--tokens", str(tokens), "-o", str(single)]).exit_code == 0
    assert single.read_bytes() == (out / "odd" / "silence.mid").read_bytes()


def _sample(root: Path, count: int) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    return files[:: max(1, len(files) // count)][:count]


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("dataset", ["pop909", "nottingham"])
def test_real_files_come_back_note_for_note(shared_datasets, dataset):
    """100% of notes keep onset (within half a grid step), pitch and instrument; tracks never grow."""
    checked = 0
    for path in _sample(shared_datasets / dataset, 150):
        try:
            original = parse_midi(path.read_bytes(), str(path))
            piece = encode_score(original, CFG, str(path))
        except TokenizeError:
            continue
        decoded = Score.from_midi(tokens_to_midi_bytes(piece.tokens, CFG, skips=piece.skips))
        assert_every_note_placed(original, decoded)
        checked += 1
    assert checked >= 140
