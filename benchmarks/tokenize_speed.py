"""Tokenization speed: musictl vs MidiTok's Octuple vs a raw symusic parse, same files, one run.

    pip install -e .[bench]
    python benchmarks/tokenize_speed.py                      # POP909 + EMOPIA from ../shared/datasets
    python benchmarks/tokenize_speed.py --datasets pop909 --repeat 1

Rows (each over every file of a dataset, files read from disk each time):
  symusic parse     Score(path) only: the floor for any symusic-based tokenizer
  musictl, 1 proc   encode_file (parse + every Octuple field) in this process
  musictl tokenize  the whole `tokenize` pipeline with N workers (artifact written to a temp dir)
  MidiTok Octuple   miditok.Octuple (symusic backend) encoding each parsed Score, 1 process

Prints a markdown table; --write stores it in benchmarks/results/tokenize.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import paths, tables

SHARED = paths.DATASETS
QUESTION = "Is `musictl tokenize` at least 20 times faster than MidiTok on the same files, in one process?"
COMPARISON = "files/s of `musictl tokenize` (one process) over MidiTok 3 Octuple's, per dataset, best of the repeats"


def _files(dataset: str) -> list[Path]:
    return sorted(p for p in (SHARED / dataset).rglob("*") if p.suffix.lower() in (".mid", ".midi"))


def _best_of(repeat: int, fn) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_dataset(dataset: str, repeat: int, workers: int) -> list[tuple[str, int, int, float]]:
    import miditok
    from symusic import Score

    from musictl.midi.corpus import assign_splits, find_midi_files
    from musictl.midi.encode import encode_file
    from musictl.midi.pipeline import tokenize_corpus
    from musictl.midi.vocab import TokenizerConfig

    files = _files(dataset)
    config = TokenizerConfig()
    notes = sum(Score(str(f)).note_num() for f in files)
    rows = []

    rows.append(("symusic parse (floor)", len(files), notes, _best_of(repeat, lambda: [Score(str(f)) for f in files])))
    rows.append(("musictl encode, 1 process", len(files), notes, _best_of(repeat, lambda: [encode_file(f, config) for f in files])))

    sources = find_midi_files([SHARED / dataset])
    splits = assign_splits(sources, (0.8, 0.1, 0.1), 0)
    for n in sorted({1, workers}):
        def run_pipeline(n=n):
            with tempfile.TemporaryDirectory() as tmp:
                tokenize_corpus(sources, splits, Path(tmp) / "tokens", config, workers=n)

        rows.append((f"musictl tokenize --workers {n} (whole artifact)", len(files), notes, _best_of(repeat, run_pipeline)))

    tok_config = miditok.TokenizerConfig(
        use_programs=True,
        use_time_signatures=True,
        use_tempos=True,
        num_velocities=32,
        beat_res={(0, 4): 16, (4, 12): 4},
        max_bar_embedding=256,
    )
    tokenizer = miditok.Octuple(tok_config)

    def miditok_all():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for f in files:
                tokenizer.encode(Score(str(f)))

    rows.append(("MidiTok 3 Octuple (symusic backend), 1 process", len(files), notes, _best_of(max(1, repeat // 2), miditok_all)))
    return rows


def bench_memory(n_files: int, workers: int) -> str:
    """Peak memory of the whole pipeline on a corpus of ``n_files`` (hard links to real files)."""
    import subprocess

    sources = _files("emopia") + _files("pop909")
    lines = ["| files | notes | seconds | files/s | peak RSS, main process | peak RSS, one worker |", "|---:|---:|---:|---:|---:|---:|"]
    for n in sorted({n_files // 10, n_files}):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "corpus" / "style"
            folder.mkdir(parents=True)
            for i in range(n):
                target = folder / f"{i:06d}.mid"
                try:
                    os.link(sources[i % len(sources)], target)
                except OSError:  # another file system: copy instead
                    shutil.copyfile(sources[i % len(sources)], target)
            code = (
                "import resource, sys, time, json; from pathlib import Path;"
                "from musictl.midi.corpus import find_midi_files, assign_splits;"
                "from musictl.midi.pipeline import tokenize_corpus; from musictl.midi.vocab import TokenizerConfig;"
                f"files = find_midi_files([Path({str(folder.parent)!r})]);"
                "splits = assign_splits(files, (0.8, 0.1, 0.1), 0);"
                f"s = tokenize_corpus(files, splits, Path({tmp!r}) / 'tokens', TokenizerConfig(), {workers});"
                "print(json.dumps([s.notes, s.seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
                " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))"
            )
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            notes, secs, rss_main, rss_child = json.loads(out.strip().splitlines()[-1])
            lines.append(f"| {n:,} | {notes:,} | {secs:.1f} | {n / secs:,.0f} | {rss_main / 1024:.0f} MiB | {rss_child / 1024:.0f} MiB |")
    return "\n".join(lines)


def render(results: dict[str, list[tuple[str, int, int, float]]], workers: int) -> str:
    lines = [
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), Python {platform.python_version()}; "
        f"best of the repeats; files read from disk each time; {workers} workers for the parallel row.",
        "",
    ]
    for dataset, rows in results.items():
        parse_rate = rows[0][1] / rows[0][3]
        miditok_rate = rows[-1][1] / rows[-1][3]
        lines += [
            f"**{dataset}** ({rows[0][1]} files, {rows[0][2]:,} notes)",
            "",
            "| tokenizer | seconds | files/s | notes/s | vs MidiTok | vs symusic parse |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, n_files, n_notes, secs in rows:
            rate = n_files / secs
            lines.append(
                f"| {name} | {secs:.3f} | {rate:,.0f} | {n_notes / secs:,.0f} | {rate / miditok_rate:.1f}x | {rate / parse_rate:.0%} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["pop909", "emopia"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--memory-files", type=int, default=0, help="also measure peak memory at N/10 and N files")
    parser.add_argument("--write", action="store_true", help="write the table to benchmarks/results/tokenize.md")
    args = parser.parse_args()
    paths.require_datasets()
    results = {d: bench_dataset(d, args.repeat, args.workers) for d in args.datasets}
    table = render(results, args.workers)
    if args.memory_files:
        table += f"\n**Memory** (`--memory-files {args.memory_files}`: hard links to EMOPIA + POP909 files, {args.workers} workers)\n\n"
        table += bench_memory(args.memory_files, args.workers) + "\n"
    print(table)
    if args.write:
        head = "\n".join(["# Tokenization speed", "", *tables.planned(QUESTION, COMPARISON)])
        (paths.RESULTS / "tokenize.md").write_text(
            f"{head}\nCommand: `python benchmarks/tokenize_speed.py {' '.join(sys.argv[1:])}`\n\n" + table)


if __name__ == "__main__":
    main()
