"""``musictl render``: MIDI to WAV with a soundfont or the built-in synth."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from musictl.cli import app
from musictl.errors import UsageError
from musictl.midi.audio import find_soundfont, render_midi
from tests.midi_factory import midi_bytes

runner = CliRunner()
TWO_SECONDS = midi_bytes([(0, 1, 60, 100), (1, 1, 64, 100), (2, 2, 67, 100)], tempo=120)  # 4 beats = 2 s


@pytest.mark.parametrize("synth", ["simple", "auto"])
def test_render_lasts_the_piece_and_is_not_silent(synth):
    data, done = render_midi(TWO_SECONDS, "piece.mid", 16000, synth)
    audio, rate = soundfile.read(io.BytesIO(data))
    assert rate == 16000 and audio.shape[1] == 2 and done.notes == 3
    assert abs(len(audio) / rate - 3.0) < 0.05  # two seconds of music and one of ring-out
    assert np.sqrt((audio[: rate * 2] ** 2).mean()) > 1e-3
    if synth == "auto" and find_soundfont(None) is not None:
        assert done.synth == "soundfont"


def test_render_refuses_what_it_cannot_play(tmp_path):
    with pytest.raises(UsageError, match="not a readable MIDI"):
        render_midi(b"not midi at all", "x.mid")
    with pytest.raises(UsageError, match="no such file"):
        render_midi(TWO_SECONDS, "x.mid", soundfont=tmp_path / "missing.sf2")


@pytest.mark.slow
def test_render_command(tmp_path):
    midi = tmp_path / "in.mid"
    midi.write_bytes(TWO_SECONDS)
    out = tmp_path / "out.wav"
    result = runner.invoke(app, ["render", str(midi), "-o", str(out), "--synth", "simple", "--sample-rate", "8000"])
    assert result.exit_code == 0, result.output
    assert soundfile.info(str(out)).samplerate == 8000
    assert runner.invoke(app, ["render", str(midi), "-o", str(out)]).exit_code == 1  # exists: needs --overwrite
    assert runner.invoke(app, ["render", str(midi), "-o", str(midi), "--overwrite"]).exit_code == 2  # its own input
    assert runner.invoke(app, ["render", str(tmp_path / "none.mid"), "-o", str(out)]).exit_code == 2
