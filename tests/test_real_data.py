"""Real corpora from ../shared/datasets (skipped when absent): round trip and the CLI at scale."""

from __future__ import annotations

from pathlib import Path

import pytest
from symusic import Score

from musictl.errors import TokenizeError
from musictl.midi.decode import tokens_to_midi_bytes
from musictl.midi.encode import encode_score, parse_midi
from musictl.midi.vocab import TokenizerConfig
from tests.test_tokenize_roundtrip import one_track_per_instrument, quantised_notes

pytestmark = [pytest.mark.slow, pytest.mark.shared]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in (".mid", ".midi"))


@pytest.mark.parametrize("dataset", ["pop909", "emopia", "nottingham", "pianist8", "music21"])
def test_round_trip_on_every_file(shared_datasets, dataset):
    """>= 99.9% of notes come back exact within the quantisation, file by file.

    Exact = as MIDI with one track per instrument can hold them: notes of one pitch that overlap on
    one instrument share a track, so nested ones swap their ends (see one_track_per_instrument).
    """
    config = TokenizerConfig()
    total = exact = 0
    failed = []
    for path in _files(shared_datasets / dataset):
        try:
            original = parse_midi(path.read_bytes(), str(path))
            piece = encode_score(original, config)
        except TokenizeError as exc:
            failed.append(exc.reason)
            continue
        before = one_track_per_instrument(quantised_notes(original, config), config)
        after = quantised_notes(Score.from_midi(tokens_to_midi_bytes(piece.tokens, config, skips=piece.skips)), config)
        total += len(before)
        if before.shape == after.shape:
            exact += int((before == after).all(axis=1).sum())
    assert total > 0
    assert exact / total >= 0.999, f"{dataset}: {exact}/{total} notes exact"
    assert len(failed) <= 0.001 * (len(failed) + 1000), failed[:5]
