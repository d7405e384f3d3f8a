"""Piano rolls of token rows as PNG files, to see what a walk made."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musictl import constants as C
from musictl.midi.vocab import TokenizerConfig


def piano_roll_png(tokens: np.ndarray, config: TokenizerConfig, path: Path, title: str) -> None:
    """A piano roll of token rows (time in beats against pitch, one colour per instrument), written atomically."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from musictl.artifacts import atomic_write_bytes
    from musictl.midi.decode import onsets

    values = tokens.astype(np.int64) - C.N_SPECIAL
    start, _, _ = onsets(values, config)
    beats = start / config.positions_per_beat
    length = config.duration_starts[values[:, C.DURATION]] / config.positions_per_beat
    fig, ax = plt.subplots(figsize=(12, 4), dpi=100)
    for i, program in enumerate(np.unique(values[:, C.INSTRUMENT])):
        rows = values[:, C.INSTRUMENT] == program
        ax.barh(values[rows, C.PITCH], length[rows], left=beats[rows], height=0.8, color=f"C{i % 10}", edgecolor="black",
                linewidth=0.3, label="drums" if program == C.DRUM_PROGRAM else f"program {program}")
    ax.set_xlabel("beats")
    ax.set_ylabel("MIDI pitch")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(values):
        ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
