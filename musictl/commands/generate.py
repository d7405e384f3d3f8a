"""``musictl generate-rwr``: pieces in a style by a random walk with restart on its graph."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from musictl.commands._common import Overwrite, TokensOpt, Workdir, complete_style, emit_binary, option, reports_errors
from musictl.transfer.settings import GenerateSettings, NotesBy, WalkSettings

# The settings classes each command reads (for the defaults test).
SETTINGS = {"generate-rwr": (WalkSettings, GenerateSettings)}


def _value(value: Any) -> Any:
    """An option's value, also when the function is called from Python with its declared defaults."""
    return value.default if isinstance(value, typer.models.OptionInfo) else value


def destinations(out: Path | None, style: str, run: GenerateSettings, seed: int, overwrite: bool,
                 prompt: Path | None) -> list[Path | None]:
    """Where each piece (or the evaluation JSON) goes, checked before any work: an existing file needs
    --overwrite, the --prompt is never an output, binary MIDI never goes to a terminal."""
    import sys

    from musictl.artifacts import check_output
    from musictl.errors import UsageError

    inputs = [prompt] if prompt else []
    if run.plot and (out is None or run.evaluate):
        raise UsageError("--plot writes PNG files beside the MIDI files; pass -o FILE (or -o DIR with --count)")
    if run.evaluate:
        if out is not None:
            check_output(out, overwrite, inputs)
        return [out]
    if run.count > 1:
        if out is None or (out.exists() and not out.is_dir()):
            raise UsageError(f"--count {run.count} writes one MIDI file per piece: pass -o DIR (a folder)")
        paths = [out / f"{style}-{seed + i}.mid" for i in range(run.count)]
    elif out is None and sys.stdout.isatty():
        raise UsageError("refusing to write binary MIDI to a terminal; pass -o FILE or redirect: musictl generate-rwr > out.mid")
    else:
        paths = [out]
    for path in paths:
        if path is not None and str(path) != "-":
            check_output(path, overwrite, inputs)
            if run.plot:
                check_output(path.with_suffix(".png"), overwrite, inputs)
    return paths


@reports_errors
def generate_rwr(
    bars: int = option(WalkSettings, "bars", "-n", "--bars"),
    style: Annotated[Optional[str], typer.Option(
        help="Style [default: the style with a trained GCN, when there is one; with several, name one].",
        autocompletion=complete_style)] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="MIDI file (a folder with --count K); default: stdout when redirected.")
    ] = None,
    prompt: Annotated[
        Optional[Path], typer.Option(help="MIDI file whose first notes (and metre, tempo, instruments) seed the walk.")
    ] = None,
    mix: Optional[float] = option(WalkSettings, "mix"),
    gcn: bool = option(WalkSettings, "gcn"),
    temperature: float = option(WalkSettings, "temperature"),
    restart: float = option(WalkSettings, "restart"),
    program: Optional[int] = option(WalkSettings, "program"),
    tempo: Optional[float] = option(WalkSettings, "tempo"),
    max_notes_per_bar: int = option(WalkSettings, "max_notes_per_bar"),
    notes_by: NotesBy = option(WalkSettings, "notes_by"),
    model: Annotated[Optional[Path], typer.Option(
        help="With --notes-by transformer: the adapted model (musictl adapt) [default: WORKDIR/adapted/STYLE].")] = None,
    transformer_weight: float = option(WalkSettings, "transformer_weight"),
    top_p: float = option(WalkSettings, "top_p"),
    count: int = option(GenerateSettings, "count"),
    evaluate: int = option(GenerateSettings, "evaluate"),
    plot: bool = option(GenerateSettings, "plot"),
    classifier: Annotated[Optional[Path], typer.Option(
        help="With --evaluate: a finetune-mask --task style model; the report adds the style it assigns to each piece.")] = None,
    tokens: TokensOpt = None,
    seed: int = option(WalkSettings, "seed"),
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Generate music in a style by a random walk with restart on its graph, decoded to MIDI.

    The walk mixes the style's transition counts with the trained link predictor's probabilities
    (--mix, chosen on the style's validation pieces by default; --no-gcn: without the predictor).
    --notes-by transformer: the style's adapted model (musictl adapt) chooses each pitch and duration
    among the graph's successors, given the notes written so far; the walk keeps the rhythm and restarts.

    Each piece has one tempo, one metre and one instrumentation (a piece of the style's, or
    --tempo / --program), and exactly -n full bars. --count K -o DIR writes K pieces in one run.

    Example: musictl generate-rwr -n 16 > out.mid   |   musictl generate-rwr --count 8 -o pieces/ --plot
    |   musictl generate-rwr --notes-by transformer -n 16 > out.mid
    |   musictl generate-rwr --evaluate 20 --classifier musictl-work/finetune/style
    """
    from musictl.artifacts import safe_name, write_output
    from musictl.commands._tables import progress_after
    from musictl.console import info
    from musictl.errors import UsageError
    from musictl.transfer.generator import generate_pieces
    from musictl.workspace import generate_style

    given = {k: _value(v) for k, v in locals().items()}
    walk, run = WalkSettings.from_values(given), GenerateSettings.from_values(given)
    out, prompt, overwrite = given["out"], given["prompt"], given["overwrite"]
    if prompt is not None and not prompt.is_file():
        raise UsageError(f"--prompt {prompt}: no such file")
    if given["classifier"] is not None and not run.evaluate:
        raise UsageError("--classifier judges the pieces of --evaluate N; add --evaluate N")
    if given["model"] is not None and walk.notes_by != "transformer":
        raise UsageError("--model is the adapted model that chooses the notes; add --notes-by transformer")
    if run.evaluate == 0 and run.count == 1 and out is None:
        destinations(out, "", run, walk.seed, overwrite, prompt)  # a terminal is refused before the workspace is read
    style = safe_name(generate_style(workdir, given["style"], given["tokens"]), "style")
    paths = destinations(out, style, run, walk.seed, overwrite, prompt)
    with progress_after("generate-rwr") as on_progress:
        generated = generate_pieces(workdir, style, given["tokens"], walk, run.evaluate or run.count, prompt,
                                    evaluate=bool(run.evaluate), on_progress=on_progress, classifier=given["classifier"],
                                    model=given["model"])
    if run.evaluate:
        _write_report(generated.fidelity, out, overwrite, prompt)
        _judge_summary(generated.fidelity.get("judge") or {})
        return
    for path, midi, tokens_array, piece_seed in zip(paths, generated.midi, generated.pieces, generated.seeds):
        info(f"{style}: {len(tokens_array)} notes in {walk.bars} bars (seed {piece_seed})")
        if path is None or str(path) == "-":
            emit_binary(midi, path, overwrite=overwrite, inputs=[prompt] if prompt else [])
            continue
        write_output(path, midi, overwrite, [prompt] if prompt else [])
        if run.plot:
            from musictl.transfer.plot import piano_roll_png

            piano_roll_png(tokens_array, generated.config, path.with_suffix(".png"),
                           f"{style}: {walk.bars} bars, seed {piece_seed}")
    if out is not None:
        info(f"wrote {len(paths)} MIDI file(s){' and piano rolls' if run.plot else ''} to {out}")


def _judge_summary(judge: dict) -> None:
    """The judge's accuracy and its place in the real-vs-real null on stderr, and a warning with fewer than 40
    pieces a class."""
    from musictl.commands._tables import judge_line
    from musictl.console import info, warn

    if judge.get("accuracy") is None:
        info(f"judge (real vs generated): {judge.get('note', 'not run')}")
        return
    info(f"judge (real vs generated, balanced accuracy): {judge_line(judge)}")
    if not judge.get("enough_pieces"):
        warn(judge["note"])


def _write_report(report: dict, out: Path | None, overwrite: bool, prompt: Path | None) -> None:
    import json
    import sys

    from musictl.artifacts import write_output
    from musictl.console import info

    text = json.dumps(report, indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    write_output(out, text.encode(), overwrite, [prompt] if prompt else [])
    info(f"wrote {out}")
