"""Piano rolls of token rows as PNG files, to see what a walk made.

:func:`piano_roll` is what the picture shows (the pitched parts by General MIDI instrument name, the
drums apart, the bar lines), :func:`piano_roll_figure` draws it (pitched notes over time, a drum lane
below them with a row per drum sound, a grey line at every bar), :func:`piano_roll_png` writes it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from musictl import constants as C
from musictl.midi.vocab import TokenizerConfig

MAX_BAR_LABELS = 32  # beyond this many bars, only every k-th bar is numbered


@dataclasses.dataclass(frozen=True)
class Part:
    """The notes of one instrument: onsets and lengths in beats, MIDI pitches (for drums, GM drum keys)."""

    program: int  # 0-127, or DRUM_PROGRAM (128)
    name: str  # the General MIDI instrument name, or "Drums"
    start: np.ndarray
    length: np.ndarray
    pitch: np.ndarray


@dataclasses.dataclass(frozen=True)
class PianoRoll:
    """What a piano roll shows: pitched parts (by program), the drums (in a lane of their own) and the
    bar lines (the beat where every bar starts, then where the last one ends)."""

    parts: list[Part]
    drums: Part | None
    bar_lines: np.ndarray

    @property
    def drum_sounds(self) -> list[tuple[int, str]]:
        """The drum lane's rows, bottom to top: (GM drum key, its name), the lowest key first."""
        keys = [] if self.drums is None else sorted(set(self.drums.pitch.tolist()))
        return [(key, drum_name(key)) for key in keys]


def instrument_name(program: int) -> str:
    """The General MIDI name of a program, "Drums" for this project's drum program (128)."""
    import pretty_midi

    return "Drums" if program == C.DRUM_PROGRAM else pretty_midi.program_to_instrument_name(int(program))


def drum_name(key: int) -> str:
    """The General MIDI percussion name of a drum key ("Bass Drum 1"), or "key N" outside the GM set."""
    import pretty_midi

    return pretty_midi.note_number_to_drum_name(int(key)) or f"key {key}"


def piano_roll(tokens: np.ndarray, config: TokenizerConfig) -> PianoRoll:
    """The parts, drums and bar lines of token rows (ids; rows holding a special id are not notes)."""
    from musictl.midi.decode import note_rows, onsets, validate_tokens

    tokens = note_rows(tokens)
    validate_tokens(tokens, config)
    values = tokens.astype(np.int64) - C.N_SPECIAL
    if not len(values):
        return PianoRoll([], None, np.zeros(0))
    onset, bar_start, ts_of_bar = onsets(values, config)
    per_beat = config.positions_per_beat
    start, length = onset / per_beat, config.duration_starts[values[:, C.DURATION]] / per_beat
    bar_end = bar_start[-1] + config.time_signature_units[ts_of_bar[-1]]
    parts = []
    for program in np.unique(values[:, C.INSTRUMENT]).tolist():
        rows = values[:, C.INSTRUMENT] == program
        parts.append(Part(program, instrument_name(program), start[rows], length[rows], values[rows, C.PITCH]))
    return PianoRoll(parts=[p for p in parts if p.program != C.DRUM_PROGRAM],
                     drums=next((p for p in parts if p.program == C.DRUM_PROGRAM), None),
                     bar_lines=np.append(bar_start, bar_end) / per_beat)


def piano_roll_figure(roll: PianoRoll, title: str) -> Any:
    """A matplotlib figure of ``roll``: the pitched parts on top, one colour each, named in the legend;
    the drums below on a row per drum sound; bar lines and bar numbers on both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lanes = [lane for lane, present in (("pitched", roll.parts or roll.drums is None), ("drums", roll.drums)) if present]
    heights = [3.0 if lane == "pitched" else 0.6 + 0.25 * len(roll.drum_sounds) for lane in lanes]
    fig, axes = plt.subplots(len(lanes), 1, figsize=(12, 1.2 + sum(heights)), dpi=100, sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    axes = dict(zip(lanes, axes[:, 0]))
    if "pitched" in axes:
        _draw_pitched(axes["pitched"], roll.parts)
    if "drums" in axes:
        _draw_drums(axes["drums"], roll)
    for ax in axes.values():
        _draw_bars(ax, roll.bar_lines)
    axes[lanes[0]].set_title(title)
    axes[lanes[-1]].set_xlabel("bar")
    fig.tight_layout()
    return fig


def piano_roll_png(tokens: np.ndarray, config: TokenizerConfig, path: Path, title: str) -> None:
    """The piano roll of token rows (:func:`piano_roll_figure`), written atomically as a PNG."""
    import io

    import matplotlib.pyplot as plt

    from musictl.artifacts import atomic_write_bytes

    fig = piano_roll_figure(piano_roll(tokens, config), title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())


# ----- drawing ----------------------------------------------------------------------------------------------
def _draw_pitched(ax: Any, parts: list[Part]) -> None:
    import pretty_midi

    for i, part in enumerate(parts):
        ax.barh(part.pitch, part.length, left=part.start, height=0.8, color=f"C{i % 10}", edgecolor="black",
                linewidth=0.3, label=part.name)
    ax.set_ylabel("pitch")
    pitches = np.concatenate([p.pitch for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    if len(pitches):
        ax.set_ylim(pitches.min() - 2, pitches.max() + 2)
        octaves = [c for c in range(0, 128, 12) if pitches.min() - 2 <= c <= pitches.max() + 2]
        if octaves:
            ax.set_yticks(octaves, [pretty_midi.note_number_to_name(c) for c in octaves])
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")  # beside the notes
    ax.grid(axis="y", alpha=0.3)


def _draw_drums(ax: Any, roll: PianoRoll) -> None:
    sounds = roll.drum_sounds
    row_of = {key: row for row, (key, _) in enumerate(sounds)}
    rows = np.array([row_of[key] for key in roll.drums.pitch.tolist()])
    ax.scatter(roll.drums.start, rows, marker="o", s=14, color="0.2", zorder=3)
    ax.set_yticks(range(len(sounds)), [name for _, name in sounds], fontsize=7)
    ax.set_ylim(-0.7, len(sounds) - 0.3)
    ax.set_ylabel("Drums")
    ax.grid(axis="y", alpha=0.3)


def _draw_bars(ax: Any, bar_lines: np.ndarray) -> None:
    for x in bar_lines:
        ax.axvline(x, color="0.55", linewidth=0.7, zorder=0)
    if len(bar_lines):
        every = -(-(len(bar_lines) - 1) // MAX_BAR_LABELS) or 1
        starts = bar_lines[:-1]
        ax.set_xticks(starts[::every], [str(n + 1) for n in range(0, len(starts), every)])
        ax.set_xticks(np.arange(bar_lines[0], bar_lines[-1]), minor=True)  # the beats
        ax.set_xlim(bar_lines[0], bar_lines[-1])
