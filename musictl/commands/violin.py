"""``musictl lora-violin``: violin text-to-music by LoRA fine-tuning of MusicGen (prepare, train, generate, evaluate).

Each command parses its options, calls one function of :mod:`musictl.violin.pipeline` (training:
:func:`musictl.violin.train.train`) and renders what it returns; defaults, help texts and ranges come from :mod:`musictl.violin.settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from musictl.commands._common import DeviceOpt, Overwrite, Workdir, option, reports_errors
from musictl.settings import DeviceName, Precision, ReportTo
from musictl.violin.settings import EvaluateSettings, GenerateSettings, LoraTrainSettings, PrepareSettings

SETTINGS = {
    "lora-violin prepare": (PrepareSettings,),
    "lora-violin train": (LoraTrainSettings,),
    "lora-violin generate": (GenerateSettings,),
    "lora-violin evaluate": (EvaluateSettings,),
}

HELP = "Violin text-to-music: captioned violin clips, MusicGen + LoRA, audio metrics."  # of the lora-violin group


def _dir(help_text: str, *flags: str):
    return typer.Option(*flags, help=help_text, show_default=False)


@reports_errors
def prepare(
    midi: Annotated[Optional[Path], _dir("MIDI folder [default: the bundled fiddle tunes].")] = None,
    audio: Annotated[Optional[Path], _dir("Import your own clips: wav/flac + .txt caption, or a metadata.jsonl.")] = None,
    track: Optional[str] = option(PrepareSettings, "track"),
    seconds: float = option(PrepareSettings, "seconds"),
    limit: int = option(PrepareSettings, "limit"),
    valid: float = option(PrepareSettings, "valid"),
    out: Annotated[Optional[Path], _dir("Output artifact [default: WORKDIR/violin/data].", "--out", "-o")] = None,
    seed: int = option(PrepareSettings, "seed"),
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Build captioned 32 kHz mono violin clips from MIDI melodies (GM violin) or import your own clips.

    Writes clips/*.wav, metadata.jsonl (audio, caption, attributes, source, split), errors.jsonl
    and manifest.json. Unusable inputs are skipped and reported; exit 1 if no clip was made.

    Example: musictl lora-violin prepare --seconds 8 --limit 64
    """
    from musictl import artifacts, console
    from musictl.console import err, info, warn
    from musictl.violin import pipeline

    settings = PrepareSettings.from_values(locals())
    target = out or artifacts.artifact_dir(workdir, artifacts.VIOLIN_DATA)
    with console.track("melodies") as on_progress:
        result = pipeline.prepare(settings, target, midi, audio, overwrite, on_progress)
    for notice in result.notices:
        info(notice)
    for problem in result.problems[:10]:
        warn(f"skipped {problem['path']}: {problem['reason']}")
    if result.skipped > 10:
        info(f"... {result.skipped - 10} more in {target / 'errors.jsonl'}")
    err.print(f"[green]ok[/] {result.clips} clips ({result.train} train, {result.valid} valid), skipped {result.skipped}")
    print(target)


@reports_errors
def train(
    data: Annotated[Optional[Path], _dir("violin-data artifact [default: WORKDIR/violin/data].")] = None,
    base: str = option(LoraTrainSettings, "base"),
    lora_targets: Literal["attention", "attention-mlp"] = option(LoraTrainSettings, "lora_targets"),
    targets: Optional[str] = option(LoraTrainSettings, "targets"),
    rank: int = option(LoraTrainSettings, "rank"),
    alpha: float = option(LoraTrainSettings, "alpha"),
    dropout: float = option(LoraTrainSettings, "dropout"),
    lr: float = option(LoraTrainSettings, "lr"),
    weight_decay: float = option(LoraTrainSettings, "weight_decay"),
    batch_size: int = option(LoraTrainSettings, "batch_size"),
    grad_accum: int = option(LoraTrainSettings, "grad_accum"),
    max_steps: int = option(LoraTrainSettings, "max_steps"),
    epochs: int = option(LoraTrainSettings, "epochs"),
    drop_text: float = option(LoraTrainSettings, "drop_text"),
    grad_checkpointing: bool = option(LoraTrainSettings, "grad_checkpointing"),
    eval_every: int = option(LoraTrainSettings, "eval_every"),
    global_batch_size: Optional[int] = option(LoraTrainSettings, "global_batch_size"),
    mixed_precision: Optional[Precision] = option(LoraTrainSettings, "mixed_precision"),
    report_to: ReportTo = option(LoraTrainSettings, "report_to"),
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint (of an interrupted run, or of a finished one "
                                              "with a larger --max-steps).", metavar="")] = False,
    out: Annotated[Optional[Path], _dir("Adapter artifact [default: WORKDIR/violin/lora].", "--out", "-o")] = None,
    seed: int = option(LoraTrainSettings, "seed"),
    device: DeviceName = option(LoraTrainSettings, "device"),
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Fine-tune MusicGen's decoder with LoRA on the violin clips (text encoder and EnCodec frozen).

    Writes a PEFT adapter directory with the tokenizer, a model card (README.md), metrics.jsonl,
    curves.png, checkpoints/last (for --resume) and manifest.json; a tiny random base is copied into
    base/ so the artifact stands alone. Runs on several processes with: accelerate launch --num_processes N -m musictl lora-violin train ...

    Example: musictl lora-violin train --base tiny-random --max-steps 20 --device cpu
    """
    import contextlib

    import musictl.violin.train
    from musictl import artifacts
    from musictl.console import err, info, track
    from musictl.device import is_main_process
    from musictl.progress import no_progress

    settings = LoraTrainSettings.from_values(locals())
    data_dir = data or artifacts.artifact_dir(workdir, artifacts.VIOLIN_DATA)
    target = out or artifacts.artifact_dir(workdir, artifacts.VIOLIN_LORA)
    bar = track("steps", describe=_loss_line, log_every=_eval_line) if is_main_process() else contextlib.nullcontext(no_progress)
    with bar as on_progress:
        run = musictl.violin.train.train(settings, data_dir, target, workdir, resume, overwrite, on_progress)
    if not run.main_process:  # another process of an `accelerate launch` run: the main one reports
        return
    result = run.result
    info(f"trainable parameters: {result.trainable:,} of {result.total:,} ({100 * result.trainable_share:.3f}%)")
    valid = f"{result.valid_loss:.4f}" if result.valid_loss is not None else "n/a (no valid clips)"
    err.print(f"[green]ok[/] {result.steps} steps in {result.seconds:.1f} s, train loss {result.train_loss:.4f}, valid loss {valid}")
    print(target)


def _loss_line(row) -> str:
    valid = f"  valid {row['valid_loss']:.4f}" if "valid_loss" in row else ""
    return f"loss {row['train_loss']:.4f}{valid}"


def _eval_line(row) -> str | None:
    return f"step {row['step']}  train loss {row['train_loss']:.4f}  valid loss {row['valid_loss']:.4f}" if "valid_loss" in row else None


Adapter = Annotated[Optional[Path], _dir("violin-lora artifact [default: WORKDIR/violin/lora].")]


@reports_errors
def generate(
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Text description of the music.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="WAV file to write.")],
    adapter: Adapter = None,
    no_adapter: Annotated[bool, typer.Option("--no-adapter", help="Play the base model alone, without an adapter.",
                                             metavar="")] = False,
    base: Optional[str] = option(GenerateSettings, "base"),
    seconds: float = option(GenerateSettings, "seconds"),
    guidance: float = option(GenerateSettings, "guidance"),
    seed: int = option(GenerateSettings, "seed"),
    device: DeviceOpt = "auto",
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Generate a 32 kHz WAV from a text prompt with MusicGen and the workspace's violin adapter (or the base alone).

    Example: musictl lora-violin generate -p "solo violin, lively reel in D major" -o reel.wav
    """
    from musictl.console import info
    from musictl.violin import pipeline

    settings = GenerateSettings.from_values(locals())
    result = pipeline.generate(settings, prompt, out, adapter, not no_adapter, workdir, device, overwrite)
    source = f"adapter {result.adapter}" if result.adapter else "base only"
    info(f"wrote {out} ({seconds:g} s, seed {seed}, guidance {guidance:g}, {source})")
    print(out)


@reports_errors
def evaluate(
    adapter: Adapter = None,
    data: Annotated[Optional[Path], _dir("violin-data artifact [default: the adapter's].")] = None,
    base: Optional[str] = option(EvaluateSettings, "base"),
    seconds: float = option(EvaluateSettings, "seconds"),
    guidance: float = option(EvaluateSettings, "guidance"),
    limit: int = option(EvaluateSettings, "limit"),
    clap_model: Annotated[Optional[Path], typer.Option(help="Local CLAP model directory for the text-audio score.")] = None,
    out: Annotated[Optional[Path], _dir("Also write the results JSON to this file.", "--out", "-o")] = None,
    seed: int = option(EvaluateSettings, "seed"),
    device: DeviceOpt = "auto",
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Compare base and base + adapter on the held-out clips (same prompts, same seeds).

    Metrics against the real clips: time-averaged log-mel distance, Frechet distance on log-mel
    frames and on EnCodec latents, key agreement of the audio's chroma with the caption, and CLAP
    only with --clap-model. Writes WORKDIR/violin/eval/ (eval_results.json + manifest.json), prints
    the JSON on stdout and a table on stderr.

    Example: musictl lora-violin evaluate --seconds 4 --limit 8
    """
    import json

    from musictl.console import err, track
    from musictl.violin import pipeline
    from musictl.violin.evaluate import table

    settings = EvaluateSettings.from_values(locals())
    with track("clips", describe=lambda row: row["system"]) as on_progress:
        result = pipeline.evaluate(settings, adapter, data, clap_model, out, workdir, device, overwrite,
                                   on_progress)
    err.print(table(result.results), soft_wrap=True)
    err.print(f"wrote {result.path / pipeline.RESULTS}" + (f" and {out}" if out else ""))
    print(json.dumps(result.results, indent=2))
