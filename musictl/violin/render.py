"""Render a melody with the General MIDI violin of pretty_midi's bundled TimGM6mb.sf2.

The synthesizer is ``tinysoundfont`` (a pip wheel wrapping TinySoundFont, no system library):
it reads the SF2 and renders offline into numpy. FluidSynth would need the ``libfluidsynth``
system package that a user's machine may lack. tinysoundfont declares pyaudio (for live playback
only, and it does not build without PortAudio headers), so install it with ``pip install --no-deps``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musictl.errors import MusictlError

VIOLIN_PROGRAM = 40  # General MIDI "Violin"


@dataclass(frozen=True)
class Note:
    start: float  # seconds
    end: float
    pitch: int
    velocity: int


def soundfont_path() -> Path:
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


@functools.lru_cache(maxsize=1)
def _soundfont_bytes() -> bytes:
    return soundfont_path().read_bytes()


def renderer_available() -> str | None:
    """None when rendering works, else the reason and what to do."""
    try:
        import tinysoundfont  # noqa: F401
    except ImportError:
        return "no SoundFont renderer: pip install --no-deps tinysoundfont (or pass --audio DIR with your own clips)"
    if not soundfont_path().is_file():
        return f"the General MIDI soundfont {soundfont_path()} is missing; reinstall pretty_midi"
    return None


def render(notes: list[Note], seconds: float, sample_rate: int, program: int = VIOLIN_PROGRAM) -> np.ndarray:
    """Mono float32 audio of ``seconds`` with every note played on ``program``."""
    problem = renderer_available()
    if problem:
        raise MusictlError(problem)
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    sfid = synth.sfload(_soundfont_bytes())
    synth.program_select(0, sfid, 0, program)
    events = sorted(
        [(n.start, 1, n.pitch, n.velocity) for n in notes] + [(n.end, 0, n.pitch, 0) for n in notes],
        key=lambda e: (e[0], e[1]),
    )
    total = int(round(seconds * sample_rate))
    out = np.zeros((total, 2), np.float32)
    cursor = 0
    for time, is_on, pitch, velocity in events:
        at = min(total, int(round(time * sample_rate)))
        if at > cursor:
            out[cursor:at] = np.frombuffer(synth.generate(at - cursor), np.float32).reshape(-1, 2)
            cursor = at
        if is_on:
            synth.noteon(0, pitch, velocity)
        else:
            synth.noteoff(0, pitch)
    if total > cursor:
        out[cursor:] = np.frombuffer(synth.generate(total - cursor), np.float32).reshape(-1, 2)
    return out.mean(axis=1)
