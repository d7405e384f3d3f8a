"""``musictl tokenize`` and ``musictl detokenize``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from musictl.commands._common import (
    Overwrite,
    TokensOpt,
    Workdir,
    check_binary_destination,
    emit_binary,
    option,
    refuse_flag_values,
    reports_errors,
)
from musictl.midi.settings import Dedup, DetokenizeSettings, TokenizeSettings

# The settings classes each command reads (for the defaults test).
SETTINGS = {"tokenize": (TokenizeSettings,), "detokenize": (DetokenizeSettings,)}


@reports_errors
def tokenize(
    context: typer.Context,
    inputs: Annotated[
        Optional[list[Path]],
        typer.Argument(help="MIDI files and/or folders (searched recursively). Default: the bundled corpus.", show_default=False),
    ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output artifact directory [default: WORKDIR/tokens].")] = None,
    split: str = option(TokenizeSettings, "split"),
    split_file: Annotated[
        Optional[Path], typer.Option(help='JSON {"train": [...], "valid": [...], "test": [...]} of file names; overrides --split.')
    ] = None,
    group_by: Optional[str] = option(TokenizeSettings, "group_by"),
    dedup: Dedup = option(TokenizeSettings, "dedup"),
    dedup_threshold: float = option(TokenizeSettings, "dedup_threshold"),
    workers: int = option(TokenizeSettings, "workers"),
    positions_per_beat: int = option(TokenizeSettings, "positions_per_beat"),
    max_bar_beats: int = option(TokenizeSettings, "max_bar_beats"),
    max_bars: int = option(TokenizeSettings, "max_bars"),
    duration_levels: int = option(TokenizeSettings, "duration_levels"),
    duration_steps: int = option(TokenizeSettings, "duration_steps"),
    velocity_bins: int = option(TokenizeSettings, "velocity_bins"),
    tempo_bins_per_doubling: int = option(TokenizeSettings, "tempo_bins_per_doubling"),
    tempo_min: float = option(TokenizeSettings, "tempo_min"),
    tempo_max: float = option(TokenizeSettings, "tempo_max"),
    seed: int = option(TokenizeSettings, "seed"),
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Tokenize MIDI folders (one sub-folder per style) into Octuple tokens.

    Writes the tokens artifact: tokens.npy (all notes, memory-mappable), index.jsonl (one row
    per piece: path, style, split, offset, length, hash), vocab.json, errors.jsonl. Near-duplicate
    pieces (transposed or re-timed copies of one tune) stay in one split (--dedup group, the default;
    listed in duplicates.jsonl). Bad files are skipped and reported; exit status 1 if nothing could be
    tokenized. An artifact made from
    the same files and settings is left as it is; one whose MIDI files changed needs --overwrite.

    Example: musictl tokenize data/  (data/jazz/\\*.mid, data/folk/\\*.mid -> styles jazz, folk)
    """
    from musictl import artifacts
    from musictl.console import err, info, plural, track
    from musictl.midi.pipeline import NothingTokenized, prepare_tokenize

    refuse_flag_values(context, inputs)
    settings = TokenizeSettings.from_values(locals())
    out_dir = out or artifacts.artifact_dir(workdir, artifacts.TOKENS)
    job = prepare_tokenize(list(inputs or []), out_dir, settings, split_file, overwrite)
    if job.current is not None:
        info(f"{out_dir} is up to date ({plural(job.current.ok, 'piece')} from {plural(len(job.files), 'file')}); "
             "nothing was rewritten (--overwrite remakes it)")
        print(out_dir)
        return
    info(f"tokenizing {plural(len(job.files), 'file')} from {', '.join(map(str, job.sources))} "
         f"with {plural(job.workers, 'worker')}")
    try:
        with track("tokenize", total=len(job.files)) as on_progress:
            result = job.run(on_progress)
    except NothingTokenized as exc:
        _print_problems(exc.result.problems)
        raise
    _print_problems(result.problems)
    problems = result.skipped + result.failed
    if result.problems and problems > len(result.problems):
        info(f"... see {out_dir / 'errors.jsonl'} for all {problems}")
    if result.clipped:
        info(f"{plural(result.clipped, 'note')} longer than the longest duration code "
             f"({job.config.max_duration / job.config.positions_per_beat:g} beats) kept that code (clipped)")
    if result.dedup is not None:
        _print_dedup(result, out_dir)
    rate = result.files / result.seconds if result.seconds else float("inf")
    err.print(
        f"[green]ok[/] {result.ok}  skipped {result.skipped}  failed {result.failed}  "
        f"notes {result.notes:,}  clipped {result.clipped}  in {result.seconds:.2f} s ({rate:,.0f} files/s)  "
        f"splits {result.by_split}"
    )
    print(out_dir)


def _print_dedup(result, out_dir: Path) -> None:
    """The --dedup report: groups found, pieces moved or dropped (the first few by name), where the list is."""
    from rich.markup import escape

    from musictl.console import err, info, plural

    d = result.dedup
    line = f"near-duplicates (--dedup {d['mode']}, threshold {d['threshold']:g}): "
    if not d["groups"]:
        info(escape(line + "none"))
        return
    line += f"{plural(d['groups'], 'group')} of {plural(d['pieces_in_groups'], 'piece')}"
    if d["mode"] == "group" and "near_copies" not in d:
        line += f"; {plural(d['moved'], 'piece')} moved so that each group has one split"
    if d["mode"] == "drop":
        line += f"; dropped {plural(d['dropped'], 'piece')} (kept the first of each group by path)"
    info(escape(line + f"; listed in {out_dir / 'duplicates.jsonl'}"))
    for row in result.dropped:
        err.print(f"[yellow]dropped[/] {escape(row['path'])}: near-copy of {escape(row['kept'])}", soft_wrap=True)
    if d["dropped"] > len(result.dropped):
        info(escape(f"... all {d['dropped']} dropped pieces are in {out_dir / 'duplicates.jsonl'}"))


def _print_problems(problems: list[dict]) -> None:
    from rich.markup import escape

    from musictl.console import err

    for p in problems:
        err.print(f"[yellow]{p['status']}[/] {escape(p['path'])}: {escape(p['reason'])}", soft_wrap=True)


@reports_errors
def detokenize(
    source: Annotated[
        Optional[str],
        typer.Argument(help="A piece of the tokens artifact (id, path or file name), or an (n, 8) .npy/.csv/.txt token file.",
                       show_default=False),
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="MIDI file to write (a folder with --all); default: stdout when redirected.")
    ] = None,
    all_pieces: Annotated[bool, typer.Option("--all", help="Decode every piece of the tokens artifact into the folder -o.",
                                             metavar="")] = False,
    tokens_dir: TokensOpt = None,
    program: Optional[int] = option(DetokenizeSettings, "program"),
    workers: int = option(DetokenizeSettings, "workers"),
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Turn tokens back into MIDI (one track per instrument, tempo and metre kept).

    Example: musictl detokenize 12 -o piece12.mid   |   musictl detokenize walk.npy > walk.mid   |
    musictl detokenize --all -o decoded/
    """
    from musictl import artifacts
    from musictl.errors import UsageError

    settings = DetokenizeSettings.from_values(locals())
    tokens_path = tokens_dir or artifacts.artifact_dir(workdir, artifacts.TOKENS)
    if all_pieces:
        if source is not None or out is None:
            raise UsageError("--all decodes every piece into the folder given with -o DIR; give no SOURCE")
        _detokenize_all(tokens_path, out, settings, overwrite)
    elif source is None:
        raise UsageError("give a SOURCE (piece id, path or file name, or a token file), or --all -o DIR")
    else:
        _detokenize_one(source, tokens_path, out, settings, overwrite)


def _detokenize_one(source: str, tokens_path: Path, out: Path | None, settings: DetokenizeSettings, overwrite: bool) -> None:
    from musictl.console import info
    from musictl.midi.decode import load_token_file, tokens_to_midi_bytes
    from musictl.midi.tokens import TokenCorpus
    from musictl.midi.vocab import TokenizerConfig

    skips = None
    if Path(source).suffix.lower() in (".npy", ".csv", ".txt"):
        inputs = [Path(source)]
        check_binary_destination(out, overwrite=overwrite, inputs=inputs)
        array = load_token_file(Path(source))
        if (tokens_path / "vocab.json").is_file():
            config = TokenCorpus.open(tokens_path).config
        else:
            config = TokenizerConfig()
            info(f"no tokens artifact at {tokens_path}: decoding with the default tokenizer parameters")
    else:
        corpus = TokenCorpus.open(tokens_path)
        piece = corpus.find(source)
        inputs = [Path(piece.path), tokens_path / "tokens.npy"]
        check_binary_destination(out, overwrite=overwrite, inputs=inputs)
        array, config, skips = corpus.piece_tokens(piece), corpus.config, piece.skips
        info(f"piece {piece.id}: {piece.path} ({piece.length} notes, style {piece.style}, split {piece.split})")
    data = tokens_to_midi_bytes(array, config, program=settings.program, skips=skips)
    emit_binary(data, out, overwrite=overwrite, inputs=inputs)


def _detokenize_all(tokens_path: Path, out: Path, settings: DetokenizeSettings, overwrite: bool) -> None:
    import os

    from musictl.console import info, plural, track
    from musictl.midi.export import decode_corpus

    workers = settings.workers or os.cpu_count() or 1
    with track("detokenize") as on_progress:
        result = decode_corpus(tokens_path, out, workers, settings.program, overwrite, on_progress)
    info(f"wrote {plural(result.pieces, 'MIDI file')} ({result.notes:,} notes) to {out} in {result.seconds:.2f} s "
         f"with {plural(workers, 'worker')}")
    print(out)
