"""``musictl lora-violin``: violin text-to-music by LoRA fine-tuning of MusicGen (prepare, train, generate, evaluate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from musictl import constants as C
from musictl.commands._common import Device, DeviceOpt, Overwrite, Seed, Workdir, reports_errors

DATA_KIND, LORA_KIND = "violin-data", "violin-lora"

violin_app = typer.Typer(
    help="Violin text-to-music: captioned violin clips, MusicGen + LoRA, audio metrics.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    violin_app.command("prepare")(prepare)
    violin_app.command("train")(train)
    violin_app.command("generate")(generate)
    violin_app.command("evaluate")(evaluate)
    app.add_typer(violin_app, name="lora-violin")


def _require(path: Path, kind: str):
    from musictl import artifacts

    return artifacts.require(path, kind)


def _quiet_transformers() -> None:
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


@reports_errors
def prepare(
    midi: Annotated[
        Optional[Path], typer.Option(help="MIDI folder [default: the bundled fiddle tunes].", show_default=False)
    ] = None,
    audio: Annotated[
        Optional[Path], typer.Option(help="Import your own clips: wav/flac + .txt caption, or a metadata.jsonl.")
    ] = None,
    track: Annotated[Optional[str], typer.Option(help="Melody = this named track [default: the highest voice].")] = None,
    seconds: Annotated[float, typer.Option(min=1.0, max=30.0, help="Clip length in seconds.")] = 8.0,
    limit: Annotated[int, typer.Option(min=1, help="At most this many clips.")] = 64,
    valid: Annotated[float, typer.Option(min=0.0, max=0.5, help="Share of clips held out for validation/evaluation.")] = 0.2,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output artifact [default: WORKDIR/violin/data].")] = None,
    seed: Seed = C.DEFAULT_SEED,
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Build captioned 32 kHz mono violin clips from MIDI melodies (GM violin) or import your own clips.

    Writes clips/*.wav, metadata.jsonl (audio, caption, attributes, source, split), errors.jsonl
    and manifest.json. Unusable inputs are skipped and reported; exit 1 if no clip was made.

    Example: musictl lora-violin prepare --seconds 8 --limit 64
    """
    from musictl import artifacts
    from musictl.console import err, info, progress, warn
    from musictl.errors import MusictlError, UsageError
    from musictl.midi.corpus import bundled_corpus, find_midi_files
    from musictl.violin import dataset

    if midi is not None and audio is not None:
        raise UsageError("pass either --midi or --audio, not both")
    target = out or artifacts.artifact_dir(workdir, "violin", "data")
    source = audio if audio is not None else (midi or bundled_corpus() / "fiddle-tunes")
    if not source.is_dir():
        raise UsageError(f"--{'audio' if audio is not None else 'midi'} {source}: not a folder")
    with artifacts.staging(target, overwrite) as tmp:
        if audio is not None:
            report = dataset.from_audio(audio, tmp, limit, min_seconds=min(seconds, 1.0), valid=valid)
        else:
            from musictl.violin.render import renderer_available

            problem = renderer_available()
            if problem:
                raise MusictlError(problem)
            files = [f.path for f in find_midi_files([source])]
            if not files:
                raise UsageError(f"--midi {source}: no MIDI files ({', '.join(C.MIDI_SUFFIXES)}) there")
            info(f"rendering violin melodies of {len(files)} MIDI files from {source}")
            with progress() as bar:
                task = bar.add_task("melodies", total=len(files))
                report = dataset.from_midi(files, tmp, seconds, limit, seed, track, valid, lambda n: bar.advance(task, n))
        for notice in report.notices:
            info(notice)
        for p in report.problems[:10]:
            warn(f"skipped {p['path']}: {p['reason']}")
        if len(report.problems) > 10:
            info(f"... {len(report.problems) - 10} more in {target / 'errors.jsonl'}")
        if not report.rows:
            raise MusictlError(f"no usable clip from {source}; nothing was written")
        artifacts.write_jsonl(tmp / dataset.METADATA, report.rows)
        artifacts.write_jsonl(tmp / "errors.jsonl", report.problems)
        splits = {s: sum(r["split"] == s for r in report.rows) for s in ("train", "valid")}
        params = {
            "source": str(source),
            "mode": "audio" if audio else "midi",
            "track": track,
            "seconds": seconds,
            "limit": limit,
            "valid": valid,
            "seed": seed,
            "sample_rate": 32000,
            "renderer": None if audio else "tinysoundfont",
        }
        artifacts.write_manifest(
            tmp,
            artifacts.Manifest(DATA_KIND, params, metrics={"clips": len(report.rows), **splits, "skipped": len(report.problems)}),
        )
    err.print(
        f"[green]ok[/] {len(report.rows)} clips ({splits['train']} train, {splits['valid']} valid), "
        f"skipped {len(report.problems)}"
    )
    print(target)


@reports_errors
def train(
    data: Annotated[
        Optional[Path], typer.Option(help="violin-data artifact [default: WORKDIR/violin/data].", show_default=False)
    ] = None,
    base: Annotated[str, typer.Option(help="MusicGen hub id or local directory; 'tiny-random' builds a small untrained one.")] = (
        "facebook/musicgen-small"
    ),
    targets: Annotated[
        str, typer.Option(help="Decoder modules to adapt: q_proj,k_proj,v_proj,out_proj,fc1,fc2.")
    ] = "q_proj,v_proj",
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 16,
    alpha: Annotated[float, typer.Option(help="LoRA alpha (scale = alpha / rank).")] = 32.0,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.9, help="LoRA dropout.")] = 0.05,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 2e-4,
    batch_size: Annotated[int, typer.Option(min=1, help="Clips per step.")] = 4,
    max_steps: Annotated[int, typer.Option(min=0, help="Optimizer steps (0: use --epochs).")] = 0,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training clips when --max-steps is 0.")] = 3,
    drop_text: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of samples trained without text (keeps guidance working).")
    ] = 0.2,
    grad_checkpointing: Annotated[bool, typer.Option(help="Recompute decoder activations to save GPU memory.")] = False,
    eval_every: Annotated[int, typer.Option(min=1, help="Validate and checkpoint every N steps.")] = 50,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint of an interrupted run.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Adapter artifact [default: WORKDIR/violin/lora].")] = None,
    seed: Seed = C.DEFAULT_SEED,
    device: DeviceOpt = Device.auto,
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Fine-tune MusicGen's decoder with LoRA on the violin clips (text encoder and EnCodec frozen).

    Writes a PEFT adapter directory with the tokenizer, a model card (README.md), metrics.jsonl
    and manifest.json; a tiny random base is copied into base/ so the artifact stands alone.

    Example: musictl lora-violin train --base tiny-random --max-steps 20 --device cpu
    """
    import shutil

    from musictl import artifacts
    from musictl.commands._common import resolve_device
    from musictl.console import err, info
    from musictl.errors import ArtifactError, UsageError
    from musictl.violin.lora import ALLOWED_TARGETS
    from musictl.violin.model import TINY, is_random_base, load_base, resolve_base
    from musictl.violin.train import TrainConfig, config_dict
    from musictl.violin.train import train as run_training

    names = tuple(t.strip() for t in targets.split(",") if t.strip())
    bad = [t for t in names if t not in ALLOWED_TARGETS]
    if not names or bad:
        raise UsageError(f"--targets {targets}: choose from {', '.join(ALLOWED_TARGETS)}")
    data_dir = data or artifacts.artifact_dir(workdir, "violin", "data")
    data_manifest = _require(data_dir, DATA_KIND)
    target = out or artifacts.artifact_dir(workdir, "violin", "lora")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise ArtifactError(f"{target} already exists; pass --overwrite to replace it (or choose another --out)")
    dev = resolve_device(device)
    _quiet_transformers()
    from transformers import set_seed

    set_seed(seed)
    base_ref = resolve_base(base, artifacts.artifact_dir(workdir, "violin"))
    random_base = base == TINY or is_random_base(base_ref)
    model, tokenizer = load_base(base_ref)
    if random_base:
        info("base: a tiny untrained MusicGen; everything made from it is noise-level and only exercises the pipeline")
    config = TrainConfig(
        names, rank, alpha, dropout, lr, batch_size, max_steps, epochs, drop_text, grad_checkpointing, eval_every, seed
    )
    checkpoint = target.with_name(f".{target.name}.checkpoint")
    if not resume:
        shutil.rmtree(checkpoint, ignore_errors=True)
    peft_model, result, metrics = run_training(model, tokenizer, data_dir, config, checkpoint, dev, resume, info)
    share = result.trainable / result.total
    info(f"trainable parameters: {result.trainable:,} of {result.total:,} ({100 * share:.3f}%)")
    with artifacts.staging(target, overwrite) as tmp:
        peft_model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if random_base:
            shutil.copytree(base_ref, tmp / "base")
        artifacts.write_jsonl(tmp / "metrics.jsonl", metrics)
        headline = {
            "steps": result.steps,
            "trainable_parameters": result.trainable,
            "total_parameters": result.total,
            "trainable_share": share,
            "train_loss": result.train_loss,
            "valid_loss": result.valid_loss,
            "valid_loss_per_codebook": result.valid_loss_per_codebook,
            "random_base": random_base,
        }
        (tmp / "README.md").write_text(_model_card(base, random_base, config_dict(config), headline))
        params = config_dict(config) | {"base": base, "base_path": str(base_ref), "device": dev}
        artifacts.write_manifest(
            tmp, artifacts.Manifest(LORA_KIND, params, {"data": artifacts.input_ref(data_dir, data_manifest)}, headline)
        )
    shutil.rmtree(checkpoint, ignore_errors=True)
    valid = f"{result.valid_loss:.4f}" if result.valid_loss is not None else "n/a (no valid clips)"
    err.print(
        f"[green]ok[/] {result.steps} steps in {result.seconds:.1f} s, train loss {result.train_loss:.4f}, valid loss {valid}"
    )
    print(target)


def _model_card(base: str, random_base: bool, config: dict, metrics: dict) -> str:
    warning = "\n**Random base**: trained on an untrained tiny MusicGen; outputs are noise and only exercise the pipeline.\n"
    return (
        f"---\nbase_model: {base}\nlibrary_name: peft\ntags: [musicgen, lora, violin, text-to-audio]\n---\n\n"
        f"# Violin LoRA for {base}\n{warning if random_base else ''}\n"
        f"LoRA adapter on the MusicGen decoder (`{', '.join(config['targets'])}`, "
        f"rank {config['rank']}, alpha {config['alpha']}), "
        f"trained on captioned solo-violin clips with `musictl lora-violin train`. Text encoder and EnCodec are frozen.\n\n"
        f"- steps: {metrics['steps']}, trainable share: {100 * metrics['trainable_share']:.3f}%\n"
        f"- train loss: {metrics['train_loss']:.4f}, validation loss: {metrics['valid_loss']}\n\n"
        "Load: `PeftModel.from_pretrained(MusicgenForConditionalGeneration.from_pretrained(BASE), THIS_DIR)`\n"
    )


def _adapter_base(adapter: Path, base: Optional[str]):
    """The base to load for an adapter: --base, else base/ inside it, else the one it was trained on."""
    from musictl.violin.model import DEFAULT_BASE, resolve_base

    if base is not None:
        return resolve_base(base, adapter.parent if adapter else Path("."))
    if adapter is not None and (adapter / "base" / "config.json").is_file():
        return adapter / "base"
    if adapter is not None:
        manifest = _require(adapter, LORA_KIND)
        recorded = manifest.parameters.get("base_path") or manifest.parameters.get("base", DEFAULT_BASE)
        return Path(recorded) if Path(recorded).exists() else recorded
    return DEFAULT_BASE


@reports_errors
def generate(
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Text description of the music.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="WAV file to write.")],
    adapter: Annotated[Optional[Path], typer.Option(help="violin-lora artifact; without it the base model alone plays.")] = None,
    base: Annotated[
        Optional[str], typer.Option(help="MusicGen hub id or directory [default: the adapter's base].", show_default=False)
    ] = None,
    seconds: Annotated[float, typer.Option(min=0.5, max=30.0, help="Length of the audio.")] = 8.0,
    guidance: Annotated[float, typer.Option(min=1.0, help="Classifier-free guidance scale (1 = off).")] = 3.0,
    seed: Seed = C.DEFAULT_SEED,
    device: DeviceOpt = Device.auto,
) -> None:
    """Generate a 32 kHz WAV from a text prompt with MusicGen, with or without a violin LoRA adapter.

    Example: musictl lora-violin generate --adapter musictl-work/violin/lora -p "solo violin, lively reel in D major" -o reel.wav
    """
    from musictl.artifacts import atomic_write_bytes
    from musictl.commands._common import resolve_device
    from musictl.console import info, warn
    from musictl.violin.audio import wav_bytes
    from musictl.violin.generate import generate as run_generate
    from musictl.violin.generate import load_for_generation

    if not prompt.strip():
        from musictl.errors import UsageError

        raise UsageError("--prompt is empty; describe the music, e.g. 'solo violin, gentle waltz in G major'")
    if adapter is not None:
        _require(adapter, LORA_KIND)
    dev = resolve_device(device)
    _quiet_transformers()
    model, tokenizer, random_base = load_for_generation(_adapter_base(adapter, base), adapter, dev)
    if random_base:
        warn("the base is a tiny untrained MusicGen: the audio is noise-level and only exercises the pipeline")
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    audio = run_generate(model, tokenizer, [prompt], seconds, guidance, seed)[0]
    atomic_write_bytes(out, wav_bytes(audio, inner.config.audio_encoder.sampling_rate))
    source = f"adapter {adapter}" if adapter else "base only"
    info(f"wrote {out} ({seconds:g} s, seed {seed}, guidance {guidance:g}, {source})")
    print(out)


@reports_errors
def evaluate(
    adapter: Annotated[
        Optional[Path], typer.Option(help="violin-lora artifact [default: WORKDIR/violin/lora].", show_default=False)
    ] = None,
    data: Annotated[
        Optional[Path], typer.Option(help="violin-data artifact [default: the adapter's].", show_default=False)
    ] = None,
    base: Annotated[
        Optional[str], typer.Option(help="MusicGen hub id or directory [default: the adapter's base].", show_default=False)
    ] = None,
    seconds: Annotated[float, typer.Option(min=0.5, max=30.0, help="Seconds generated per held-out clip.")] = 8.0,
    guidance: Annotated[float, typer.Option(min=1.0, help="Classifier-free guidance scale.")] = 3.0,
    limit: Annotated[int, typer.Option(min=1, help="At most this many held-out clips.")] = 16,
    clap_model: Annotated[Optional[Path], typer.Option(help="Local CLAP model directory for the text-audio score.")] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Results JSON [default: WORKDIR/violin/eval_results.json].")
    ] = None,
    seed: Seed = C.DEFAULT_SEED,
    device: DeviceOpt = Device.auto,
    workdir: Workdir = None,
) -> None:
    """Compare base and base + adapter on the held-out clips (same prompts, same seeds).

    Metrics against the real clips: time-averaged log-mel distance, Frechet distance on log-mel
    frames and on EnCodec latents, key agreement of the audio's chroma with the caption, and CLAP
    only with --clap-model. Prints the JSON on stdout, a table on stderr, and writes the JSON.

    Example: musictl lora-violin evaluate --seconds 4 --limit 8
    """
    import json

    from musictl import artifacts
    from musictl.commands._common import resolve_device
    from musictl.console import err, warn
    from musictl.errors import ArtifactError
    from musictl.violin.evaluate import evaluate as run_evaluate
    from musictl.violin.evaluate import table
    from musictl.violin.generate import load_for_generation

    adapter_dir = adapter or artifacts.artifact_dir(workdir, "violin", "lora")
    manifest = _require(adapter_dir, LORA_KIND)
    data_dir = data or artifacts.input_path(adapter_dir, manifest, "data") or artifacts.artifact_dir(workdir, "violin", "data")
    _require(data_dir, DATA_KIND)
    dev = resolve_device(device)
    _quiet_transformers()
    model, tokenizer, random_base = load_for_generation(_adapter_base(adapter_dir, base), adapter_dir, dev)
    if random_base:
        warn("the base is a tiny untrained MusicGen: these numbers only show that the pipeline runs")
    results = run_evaluate(model, tokenizer, data_dir, seconds, guidance, seed, limit, clap_model, err.print)
    if results is None:
        raise ArtifactError(f"{data_dir} has no held-out (valid) clips; remake it with: musictl lora-violin prepare --valid 0.2")
    results |= {
        "adapter": str(adapter_dir),
        "data": str(data_dir),
        "seed": seed,
        "guidance": guidance,
        "random_base": random_base,
    }
    target = out or artifacts.artifact_dir(workdir, "violin") / "eval_results.json"
    artifacts.atomic_write_json(target, results)
    err.print(table(results), soft_wrap=True)
    err.print(f"wrote {target}")
    print(json.dumps(results, indent=2))
