"""MIDI -> audio: the one renderer of the package (``musictl render`` and ``lora-violin prepare``).

A General MIDI soundfont when one is given or found, played by ``tinysoundfont`` (a pip wheel around
TinySoundFont: it reads the SF2 and renders offline into numpy, no system library), else a built-in
additive synthesizer (no files needed). The soundfont found by default is the small General MIDI one
that ``pretty_midi`` ships (TimGM6mb.sf2). Each part gets its own channel and program; drum parts play
the soundfont's drum kit. FluidSynth would need the ``libfluidsynth`` system package that a user's
machine may lack. tinysoundfont declares pyaudio (for live playback only, and it does not build without
PortAudio headers), so install it with ``pip install --no-deps tinysoundfont``.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from musictl.errors import ArtifactError, UsageError

TAIL_SECONDS = 1.0  # render_midi lets the last notes ring this long


@dataclass
class Rendered:
    """What :func:`render_midi` did."""

    synth: str  # "soundfont" or "simple"
    soundfont: str | None
    seconds: float
    sample_rate: int
    notes: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Part:
    """The notes of one instrument, in seconds."""

    program: int
    is_drum: bool
    start: np.ndarray  # seconds
    end: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray


def read_parts(data: bytes, source: str) -> tuple[list[Part], float]:
    """The tracks of a MIDI file in seconds, and its length."""
    from symusic import Score

    try:
        score = Score.from_midi(data).to("second")
    except Exception as exc:  # symusic raises plain RuntimeErrors for malformed files
        raise UsageError(f"{source}: not a readable MIDI file ({str(exc).splitlines()[0] if str(exc) else exc!r})") from None
    parts = []
    for track in score.tracks:
        notes = track.notes.numpy()
        if len(notes["time"]):
            parts.append(Part(int(track.program), bool(track.is_drum), notes["time"], notes["time"] + notes["duration"],
                              notes["pitch"].astype(int), notes["velocity"].astype(int)))
    return parts, float(max((p.end.max() for p in parts), default=0.0))


def bundled_soundfont() -> Path | None:
    """pretty_midi's General MIDI soundfont (TimGM6mb.sf2), or None without pretty_midi."""
    try:
        import pretty_midi
    except ImportError:
        return None
    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def find_soundfont(soundfont: Path | None) -> Path | None:
    """``soundfont`` (checked), else the bundled General MIDI soundfont when present, else None."""
    if soundfont is not None:
        if not Path(soundfont).is_file():
            raise UsageError(f"--soundfont {soundfont}: no such file")
        return Path(soundfont)
    bundled = bundled_soundfont()
    return bundled if bundled is not None and bundled.is_file() else None


def renderer_available() -> str | None:
    """None when soundfont rendering works, else the reason and what to do."""
    try:
        import tinysoundfont  # noqa: F401
    except ImportError:
        return "no SoundFont renderer: pip install --no-deps tinysoundfont (or pass --audio DIR with your own clips)"
    bundled = bundled_soundfont()
    if bundled is None or not bundled.is_file():
        return f"the General MIDI soundfont {bundled or 'TimGM6mb.sf2'} is missing; reinstall pretty_midi"
    return None


@functools.lru_cache(maxsize=4)
def _soundfont_bytes(path: str, mtime_ns: int, size: int) -> bytes:
    """The bytes of a soundfont, read once per version of the file (clip after clip reuses them)."""
    return Path(path).read_bytes()


def soundfont_audio(parts: list[Part], samples: int, sample_rate: int, soundfont: Path) -> np.ndarray:
    """Stereo float32 audio ``(samples, 2)`` by tinysoundfont, one channel per part (drums on channel 10, in drum mode)."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    try:
        stat = Path(soundfont).stat()
        sfid = synth.sfload(_soundfont_bytes(str(soundfont), stat.st_mtime_ns, stat.st_size))
    except Exception as exc:
        raise ArtifactError(f"{soundfont}: not a readable SoundFont ({exc}); pass another --soundfont or --synth simple") from None
    events = []
    for i, part in enumerate(parts[:15]):
        channel = 9 if part.is_drum else (i if i < 9 else i + 1)
        try:
            synth.program_select(channel, sfid, 0, 0 if part.is_drum else part.program, part.is_drum)
        except RuntimeError:  # a program the soundfont lacks: its first instrument
            synth.program_select(channel, sfid, 0, 0, part.is_drum)
        events += [(t, 1, channel, p, v) for t, p, v in zip(part.start, part.pitch, part.velocity)]
        events += [(t, 0, channel, p, 0) for t, p in zip(part.end, part.pitch)]
    out = np.zeros((samples, 2), np.float32)
    cursor = 0
    for time, is_on, channel, pitch, velocity in sorted(events, key=lambda e: (e[0], e[1])):
        at = min(samples, int(round(time * sample_rate)))
        if at > cursor:
            out[cursor:at] = np.frombuffer(synth.generate(at - cursor), np.float32).reshape(-1, 2)
            cursor = at
        if is_on:
            synth.noteon(channel, int(pitch), int(velocity))
        else:
            synth.noteoff(channel, int(pitch))
    if samples > cursor:
        out[cursor:] = np.frombuffer(synth.generate(samples - cursor), np.float32).reshape(-1, 2)
    return out


def simple_audio(parts: list[Part], samples: int, sample_rate: int) -> np.ndarray:
    """Stereo float32 audio ``(samples, 2)`` of decaying harmonic tones (noise bursts for drums): no soundfont needed."""
    mono = np.zeros(samples, np.float64)
    for part in parts:
        for start, end, pitch, velocity in zip(part.start, part.end, part.pitch, part.velocity):
            a = int(start * sample_rate)
            n = max(1, min(samples - a, int((end - start + 0.2) * sample_rate)))
            t = np.arange(n) / sample_rate
            if part.is_drum:  # own seeding: a drum's noise is its timbre, the same for the same pitch
                tone = np.random.default_rng(int(pitch)).normal(size=n) * np.exp(-t * 30)
            else:
                freq = 440.0 * 2 ** ((pitch - 69) / 12)
                tone = sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3)) * np.exp(-t * 3)
            release = np.clip((end - start + 0.2 - t) / 0.2, 0, 1)  # fade out after the note's end
            mono[a:a + n] += tone * release * (velocity / 127) * 0.2
    peak = np.abs(mono).max()
    mono = mono / peak * 0.8 if peak > 0.8 else mono
    return np.repeat(mono.astype(np.float32)[:, None], 2, axis=1)


def render_midi(data: bytes, source: str, sample_rate: int = 32000, synth: str = "auto",
                soundfont: Path | None = None) -> tuple[bytes, Rendered]:
    """(16-bit stereo WAV bytes, what was done) of MIDI ``data``."""
    import soundfile

    parts, length = read_parts(data, source)
    font = find_soundfont(soundfont) if synth != "simple" else None
    if synth == "soundfont" and font is None:
        raise UsageError("--synth soundfont needs a General MIDI soundfont: pass --soundfont FILE.sf2")
    if font is not None:
        try:
            import tinysoundfont  # noqa: F401
        except ImportError:
            if synth == "soundfont":
                raise UsageError("--synth soundfont needs tinysoundfont: pip install --no-deps tinysoundfont") from None
            font = None
    samples = int(round((length + TAIL_SECONDS) * sample_rate))
    audio = soundfont_audio(parts, samples, sample_rate, font) if font else simple_audio(parts, samples, sample_rate)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(audio, -1, 1), sample_rate, format="WAV", subtype="PCM_16")
    info = Rendered(synth="soundfont" if font else "simple", soundfont=str(font) if font else None,
                    seconds=round(len(audio) / sample_rate, 2), sample_rate=sample_rate,
                    notes=int(sum(len(p.start) for p in parts)))
    return buffer.getvalue(), info
