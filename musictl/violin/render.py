"""The violin's notes and their sound: a melody played on the General MIDI violin.

Rendering is :mod:`musictl.midi.audio` (the package's one MIDI-to-audio renderer) with pretty_midi's
bundled TimGM6mb.sf2; this module only turns :class:`Note` lists into its parts and keeps the clip mono.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musictl.errors import MusictlError
from musictl.midi.audio import Part, bundled_soundfont, renderer_available, soundfont_audio

VIOLIN_PROGRAM = 40  # General MIDI "Violin"

__all__ = ["VIOLIN_PROGRAM", "Note", "render", "renderer_available"]


@dataclass(frozen=True)
class Note:
    start: float  # seconds
    end: float
    pitch: int
    velocity: int


def render(notes: list[Note], seconds: float, sample_rate: int, program: int = VIOLIN_PROGRAM) -> np.ndarray:
    """Mono float32 audio of ``seconds`` with every note played on ``program``."""
    problem = renderer_available()
    if problem:
        raise MusictlError(problem)
    part = Part(program, False, np.array([n.start for n in notes], np.float64), np.array([n.end for n in notes], np.float64),
                np.array([n.pitch for n in notes], np.int64), np.array([n.velocity for n in notes], np.int64))
    return soundfont_audio([part], int(round(seconds * sample_rate)), sample_rate, bundled_soundfont()).mean(axis=1)
