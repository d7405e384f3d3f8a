"""``musictl render``: hear a MIDI file (a generated piece) as a WAV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from musictl.commands._common import Overwrite, option, reports_errors
from musictl.transfer.settings import RenderSettings, SynthName

# The settings classes each command reads (for the defaults test).
SETTINGS = {"render": (RenderSettings,)}


@reports_errors
def render(
    midi: Annotated[Path, typer.Argument(help="MIDI file to render.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="WAV file to write (- for stdout when redirected).")],
    soundfont: Annotated[Optional[Path], typer.Option(help="General MIDI SoundFont (.sf2) [default: pretty_midi's TimGM6mb.sf2].")] = None,
    synth: SynthName = option(RenderSettings, "synth"),
    sample_rate: int = option(RenderSettings, "sample_rate"),
    overwrite: Overwrite = False,
) -> None:
    """Render a MIDI file to a 16-bit stereo WAV, with a General MIDI soundfont or a built-in synth.

    Example: musictl generate-rwr -n 16 -o walk.mid && musictl render walk.mid -o walk.wav
    """
    from musictl.commands._common import check_binary_destination, emit_binary
    from musictl.console import info
    from musictl.errors import UsageError
    from musictl.midi.audio import render_midi

    settings = RenderSettings.from_values(locals())
    if not midi.is_file():
        raise UsageError(f"{midi}: no such MIDI file")
    check_binary_destination(out, "WAV", overwrite, [midi])
    data, done = render_midi(midi.read_bytes(), str(midi), settings.sample_rate, settings.synth, soundfont)
    info(f"{done.notes} notes, {done.seconds} s at {done.sample_rate} Hz ({done.synth}"
         f"{': ' + done.soundfont if done.soundfont else ''})")
    emit_binary(data, out, "WAV", overwrite, [midi])
