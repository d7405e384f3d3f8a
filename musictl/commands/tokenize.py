"""``musictl tokenize`` and ``musictl detokenize``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from musictl import constants as C
from musictl.commands._common import Overwrite, Seed, Workdir, emit_binary, reports_errors


def register(app: typer.Typer) -> None:
    app.command("tokenize")(tokenize)
    app.command("detokenize")(detokenize)


@reports_errors
def tokenize(
    inputs: Annotated[
        Optional[list[Path]],
        typer.Argument(help="MIDI files and/or folders (searched recursively). Default: the bundled corpus.", show_default=False),
    ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output artifact directory [default: WORKDIR/tokens].")] = None,
    split: Annotated[str, typer.Option(help="train,valid,test fractions, drawn per style and file.")] = "0.8,0.1,0.1",
    split_file: Annotated[
        Optional[Path], typer.Option(help='JSON {"train": [...], "valid": [...], "test": [...]} of file names; overrides --split.')
    ] = None,
    workers: Annotated[int, typer.Option(help="Parallel worker processes [default: all cores].", show_default=False)] = 0,
    positions_per_beat: Annotated[int, typer.Option(help="Onset grid per quarter note.")] = C.POSITIONS_PER_BEAT,
    max_bar_beats: Annotated[int, typer.Option(help="Longest bar in quarter notes; longer bars are split.")] = C.MAX_BAR_BEATS,
    max_bars: Annotated[int, typer.Option(help="Bar field range; longer pieces continue in re-based chunks.")] = C.MAX_BARS,
    duration_levels: Annotated[int, typer.Option(help="Duration scale: number of doublings.")] = C.DURATION_LEVELS,
    duration_steps: Annotated[int, typer.Option(help="Duration scale: codes per doubling.")] = C.DURATION_STEPS,
    velocity_bins: Annotated[int, typer.Option(help="Velocity bins over 0..127.")] = C.VELOCITY_BINS,
    tempo_bins: Annotated[int, typer.Option(help="Tempo bins per doubling of BPM.")] = C.TEMPO_BINS_PER_DOUBLING,
    tempo_min: Annotated[float, typer.Option(help="Lowest tempo bin (BPM).")] = C.TEMPO_MIN,
    tempo_max: Annotated[float, typer.Option(help="Highest tempo bin (BPM).")] = C.TEMPO_MAX,
    seed: Seed = C.DEFAULT_SEED,
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Tokenize MIDI folders (one sub-folder per style) into Octuple tokens.

    Writes the tokens artifact: tokens.npy (all notes, memory-mappable), index.jsonl (one row
    per piece: path, style, split, offset, length, hash), vocab.json, errors.jsonl. Bad files
    are skipped and reported; exit status 1 if nothing could be tokenized.

    Example: musictl tokenize data/  (data/jazz/*.mid, data/folk/*.mid -> styles jazz, folk)
    """
    from musictl import artifacts
    from musictl.console import err, info, progress
    from musictl.errors import MusictlError, UsageError
    from musictl.midi.corpus import assign_splits, bundled_corpus, find_midi_files, load_split_file, parse_split_ratios
    from musictl.midi.pipeline import NothingTokenized, tokenize_corpus
    from musictl.midi.vocab import TokenizerConfig

    if workers < 0:
        raise UsageError("--workers must be 0 (all cores) or a positive number")
    ratios = parse_split_ratios(split)
    try:
        config = TokenizerConfig(
            positions_per_beat=positions_per_beat,
            max_bar_beats=max_bar_beats,
            max_bars=max_bars,
            duration_levels=duration_levels,
            duration_steps=duration_steps,
            velocity_bins=velocity_bins,
            tempo_min=tempo_min,
            tempo_max=tempo_max,
            tempo_bins_per_doubling=tempo_bins,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    sources = list(inputs) if inputs else [bundled_corpus()]
    files = find_midi_files(sources)
    if not files:
        raise UsageError(f"no MIDI files ({', '.join(C.MIDI_SUFFIXES)}) under {', '.join(map(str, sources))}")
    if split_file is not None:
        splits, unmatched = load_split_file(split_file, files)
        if unmatched:
            info(f"{unmatched} entries of {split_file} match no input file")
    else:
        splits = assign_splits(files, ratios, seed)
    out_dir = out or artifacts.artifact_dir(workdir, "tokens")
    n_workers = workers or os.cpu_count() or 1
    parameters = {
        "inputs": [str(p) for p in sources],
        "split": split if split_file is None else None,
        "split_file": str(split_file) if split_file else None,
        "seed": seed,
        "workers": n_workers,
    }
    info(f"tokenizing {len(files)} files from {', '.join(map(str, sources))} with {n_workers} workers")
    with progress() as bar:
        task = bar.add_task("tokenize", total=len(files))
        try:
            summary = tokenize_corpus(
                files, splits, out_dir, config, n_workers, parameters, overwrite, lambda n: bar.advance(task, n)
            )
        except NothingTokenized as exc:
            _print_problems(exc.summary.problems)
            raise MusictlError(f"none of the {len(files)} files could be tokenized; nothing was written") from None
    _print_problems(summary.problems)
    if summary.problems and summary.skipped + summary.failed > len(summary.problems):
        info(f"... see {out_dir / 'errors.jsonl'} for all {summary.skipped + summary.failed}")
    rate = summary.files / summary.seconds if summary.seconds else float("inf")
    err.print(
        f"[green]ok[/] {summary.ok}  skipped {summary.skipped}  failed {summary.failed}  "
        f"notes {summary.notes:,}  in {summary.seconds:.2f} s ({rate:,.0f} files/s)  "
        f"splits {summary.by_split}"
    )
    print(out_dir)


def _print_problems(problems: list[dict]) -> None:
    from musictl.console import err

    for p in problems:
        err.print(f"[yellow]{p['status']}[/] {p['path']}: {p['reason']}", soft_wrap=True)


@reports_errors
def detokenize(
    source: Annotated[
        str, typer.Argument(help="A piece of the tokens artifact (id, path or file name), or an (n, 8) .npy/.csv/.txt token file.")
    ],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="MIDI file to write; default: stdout when redirected.")] = None,
    tokens_dir: Annotated[Optional[Path], typer.Option("--tokens", help="Tokens artifact [default: WORKDIR/tokens].")] = None,
    program: Annotated[Optional[int], typer.Option(min=0, max=127, help="Play every pitched note with this GM program.")] = None,
    workdir: Workdir = None,
) -> None:
    """Turn tokens back into a MIDI file (one track per instrument, tempo and metre kept).

    Example: musictl detokenize 12 -o piece12.mid   |   musictl detokenize walk.npy > walk.mid
    """
    from musictl import artifacts
    from musictl.console import info
    from musictl.midi.decode import load_token_file, tokens_to_midi_bytes
    from musictl.midi.tokens import TokenCorpus
    from musictl.midi.vocab import TokenizerConfig

    tokens_path = tokens_dir or artifacts.artifact_dir(workdir, "tokens")
    if Path(source).suffix.lower() in (".npy", ".csv", ".txt"):
        array = load_token_file(Path(source))
        if (tokens_path / "vocab.json").is_file():
            config = TokenCorpus.open(tokens_path).config
        else:
            config = TokenizerConfig()
            info(f"no tokens artifact at {tokens_path}: decoding with the default tokenizer parameters")
    else:
        corpus = TokenCorpus.open(tokens_path)
        piece = corpus.find(source)
        array, config = corpus.piece_tokens(piece), corpus.config
        info(f"piece {piece.id}: {piece.path} ({piece.length} notes, style {piece.style}, split {piece.split})")
    emit_binary(tokens_to_midi_bytes(array, config, program=program), out)
