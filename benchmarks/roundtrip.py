"""Round-trip fidelity: MIDI -> tokens -> MIDI on real files, note by note and track by track.

    python benchmarks/roundtrip.py                                  # 150 POP909 + 150 Nottingham files
    python benchmarks/roundtrip.py --datasets pop909 pianist8 --files 200 --write

For every file (an evenly spaced sample of each dataset, from ../shared/datasets) it encodes the parsed
score, decodes the tokens the way `musictl detokenize` does, parses the written MIDI again and counts:

  placed    notes that come back with the same onset (on the grid), pitch and instrument
  exact     notes that also keep their duration code and velocity bin
  tracks    tracks with notes in the input and in the output, and files whose track count grew
  clipped   notes longer than the longest duration code

Prints a markdown table; --write stores it in benchmarks/results/roundtrip.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import paths, tables

SHARED = paths.DATASETS
QUESTION = "Does MIDI -> tokens -> MIDI bring every note back?"
COMPARISON = "per dataset, the share of notes that come back with the same onset (on the grid), pitch and instrument"


def sample(dataset: str, count: int) -> list[Path]:
    files = sorted(p for p in (SHARED / dataset).rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    step = max(1, len(files) // count)
    return files[::step][:count]


def note_table(score, config) -> np.ndarray:
    """(onset position, program, pitch, duration code, velocity bin) of every sounding note."""
    from musictl import constants as C

    scale = config.positions_per_beat / score.ticks_per_quarter
    rows = []
    for track in score.tracks:
        notes = track.notes.numpy()
        keep = notes["velocity"] > 0
        if not keep.any():
            continue
        length = np.maximum(np.rint(notes["duration"][keep] * scale), 1)
        program = C.DRUM_PROGRAM if track.is_drum else int(track.program)
        rows.append(np.stack([
            np.rint(notes["time"][keep] * scale),
            np.full(int(keep.sum()), program),
            notes["pitch"][keep].astype(np.int64),
            np.searchsorted(config.duration_starts, length, side="right") - 1,
            notes["velocity"][keep].astype(np.int64) * config.velocity_bins // 128,
        ], axis=1).astype(np.int64))
    return np.concatenate(rows) if rows else np.zeros((0, 5), dtype=np.int64)


def common(a: np.ndarray, b: np.ndarray) -> int:
    """Size of the multiset intersection of the rows of ``a`` and ``b``."""
    if not len(a) or not len(b):
        return 0
    both = np.concatenate([a, b])
    _, inverse = np.unique(both, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    count_a = np.bincount(inverse[: len(a)], minlength=inverse.max() + 1)
    count_b = np.bincount(inverse[len(a):], minlength=inverse.max() + 1)
    return int(np.minimum(count_a, count_b).sum())


def round_trip(path: Path, config) -> dict | None:
    from symusic import Score

    from musictl.errors import TokenizeError
    from musictl.midi.decode import tokens_to_midi_bytes
    from musictl.midi.encode import encode_score, parse_midi

    try:
        original = parse_midi(path.read_bytes(), str(path))
        piece = encode_score(original, config, str(path))
    except TokenizeError:
        return None
    skips = getattr(piece, "skips", None)
    extra = {} if skips is None else {"skips": skips}
    decoded = Score.from_midi(tokens_to_midi_bytes(piece.tokens, config, **extra))
    before, after = note_table(original, config), note_table(decoded, config)
    return {
        "notes": len(before),
        "placed": common(before[:, :3], after[:, :3]),
        "exact": common(before, after),
        "tracks_in": sum(1 for t in original.tracks if t.note_num()),
        "tracks_out": sum(1 for t in decoded.tracks if t.note_num()),
        "clipped": int(getattr(piece, "clipped", 0)),
    }


def measure(dataset: str, count: int) -> dict:
    from musictl.midi.vocab import TokenizerConfig

    config = TokenizerConfig()
    totals = {"files": 0, "notes": 0, "placed": 0, "exact": 0, "tracks_in": 0, "tracks_out": 0, "clipped": 0,
              "files_moved": 0, "files_grown": 0}
    for path in sample(dataset, count):
        result = round_trip(path, config)
        if result is None:
            continue
        totals["files"] += 1
        for key in ("notes", "placed", "exact", "tracks_in", "tracks_out", "clipped"):
            totals[key] += result[key]
        totals["files_moved"] += result["placed"] < result["notes"]
        totals["files_grown"] += result["tracks_out"] > result["tracks_in"]
    return totals


def render(results: dict[str, dict]) -> str:
    lines = [
        "| dataset | files | notes | same onset, pitch, instrument | also same duration code and velocity bin "
        "| files with a moved note | tracks in -> out | files with more tracks | clipped durations |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in results.items():
        lines.append(
            f"| {name} | {t['files']} | {t['notes']:,} | {t['placed'] / t['notes']:.4%} | {t['exact'] / t['notes']:.4%} "
            f"| {t['files_moved']} | {t['tracks_in']:,} -> {t['tracks_out']:,} | {t['files_grown']} | {t['clipped']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["pop909", "nottingham"])
    parser.add_argument("--files", type=int, default=150, help="files per dataset (evenly spaced)")
    parser.add_argument("--write", action="store_true", help="write the table to benchmarks/results/roundtrip.md")
    args = parser.parse_args()
    paths.require_datasets()
    table = render({d: measure(d, args.files) for d in args.datasets})
    print(table)
    if args.write:
        head = "\n".join(["# Round-trip fidelity", "", *tables.planned(QUESTION, COMPARISON)])
        (paths.RESULTS / "roundtrip.md").write_text(
            f"{head}\nCommand: `python benchmarks/roundtrip.py {' '.join(sys.argv[1:])}`\n\n{table}\n")


if __name__ == "__main__":
    main()
