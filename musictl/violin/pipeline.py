"""The violin stage as library calls that read and write workspace artifacts.

prepare -> ``violin/data/`` (``violin-data``); train -> ``violin/lora/`` (``violin-lora``); generate ->
a WAV file; evaluate -> ``violin/eval/`` (``violin-eval``, and a JSON file on request). The CLI
(``musictl lora-violin ...``) calls these and renders what they return; each result has ``to_dict()``.

Every input is read through :func:`musictl.artifacts.require` (a missing, incomplete or edited
artifact is refused), every artifact is written inside :func:`musictl.artifacts.staging` (entered
before the work, so a second writer or an existing output is refused at once, and the old artifact
stays whole until the new one is complete), files named with ``-o`` through ``write_output``.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from musictl import artifacts
from musictl import constants as C
from musictl.errors import ArtifactError, MusictlError, UsageError
from musictl.progress import Progress
from musictl.violin.settings import (
    DEFAULT_BASE,
    SAMPLE_RATE,
    TINY,
    EvaluateSettings,
    GenerateSettings,
    LoraTrainSettings,
    PrepareSettings,
)

DATA_KIND, LORA_KIND, EVAL_KIND = artifacts.VIOLIN_DATA, artifacts.VIOLIN_LORA, artifacts.VIOLIN_EVAL
RESULTS = "eval_results.json"
log = logging.getLogger(__name__)


def _violin_dir(workdir) -> Path:
    return artifacts.workspace_root(workdir) / "violin"


# ----- prepare -------------------------------------------------------------------------------------
@dataclass
class PrepareResult:
    path: Path
    source: Path
    clips: int
    train: int
    valid: int
    problems: list[dict] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.problems)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"path": str(self.path), "source": str(self.source), "skipped": self.skipped}


def prepare(settings: PrepareSettings, out: Path, midi: Path | None = None, audio: Path | None = None,
            overwrite: bool = False, on_progress: Progress | None = None) -> PrepareResult:
    """Captioned 32 kHz violin clips from MIDI melodies (default: the bundled fiddle tunes) or the user's clips."""
    from musictl.midi.corpus import bundled_corpus, find_midi_files
    from musictl.violin import dataset
    from musictl.violin.render import renderer_available

    if midi is not None and audio is not None:
        raise UsageError("pass either --midi or --audio, not both")
    source = Path(audio if audio is not None else (midi or bundled_corpus() / "fiddle-tunes"))
    if not source.is_dir():
        raise UsageError(f"--{'audio' if audio is not None else 'midi'} {source}: not a folder")
    files = [] if audio is not None else [f.path.resolve() for f in find_midi_files([source])]
    if audio is None and not files:
        raise UsageError(f"--midi {source}: no MIDI files ({', '.join(C.MIDI_SUFFIXES)}) there")
    problem = None if audio is not None else renderer_available()
    if problem:
        raise MusictlError(problem)
    with artifacts.staging(out, overwrite) as tmp:
        if audio is not None:
            report = dataset.from_audio(source, tmp, settings.limit, min_seconds=min(settings.seconds, 1.0), valid=settings.valid)
        else:
            log.info("rendering violin melodies of %d MIDI files from %s", len(files), source)
            report = dataset.from_midi(files, tmp, settings.seconds, settings.limit, settings.seed, settings.track,
                                       settings.valid, on_progress)
        if not report.rows:
            raise MusictlError(f"no usable clip from {source}; nothing was written")
        artifacts.write_jsonl(tmp / dataset.METADATA, report.rows)
        artifacts.write_jsonl(tmp / "errors.jsonl", report.problems)
        splits = {s: sum(r["split"] == s for r in report.rows) for s in ("train", "valid")}
        params = settings.to_dict() | {"source": str(source.resolve()), "mode": "audio" if audio is not None else "midi",
                                       "sample_rate": SAMPLE_RATE, "renderer": None if audio is not None else "tinysoundfont"}
        metrics = {"clips": len(report.rows), **splits, "skipped": len(report.problems)}
        artifacts.write_manifest(tmp, artifacts.Manifest(DATA_KIND, params, metrics=metrics))
    return PrepareResult(out, source, len(report.rows), splits["train"], splits["valid"], report.problems, report.notices)


# ----- train ---------------------------------------------------------------------------------------
@dataclass
class TrainRun:
    path: Path
    result: Any  # musictl.violin.train.TrainResult
    base: str
    random_base: bool
    device: str
    main: bool = True  # False in the other processes of an ``accelerate launch`` run (they write nothing)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "base": self.base, "random_base": self.random_base, "device": self.device,
                **self.result.to_dict()}


def train(settings: LoraTrainSettings, data_dir: Path, out: Path, workdir=None, resume: bool = False,
          overwrite: bool = False, on_progress: Progress | None = None) -> TrainRun:
    """LoRA-train MusicGen's decoder on a violin-data artifact into a violin-lora artifact.

    The run lifecycle is :class:`musictl.training.Run`'s (lock, staging beside ``out``, a checkpoint at
    every validation, ``resume``, trackers); the old adapter is replaced only by a complete new one.
    Ctrl-C and SIGTERM raise :class:`Interrupted` saying what was kept. Under ``accelerate launch``
    every process trains and only the main one writes.
    """
    from musictl.hf import quiet_transformers
    from musictl.training import Run
    from musictl.violin.model import is_random_base, load_base, resolve_base
    from musictl.violin.train import train as run_training

    data_manifest = artifacts.require(data_dir, DATA_KIND)
    run = Run(settings, clip=None, find_unused_parameters=False)
    output = artifacts.resumable(out, LORA_KIND, what="LoRA training run")
    with run.staged(output, resume, overwrite, inputs={"data": artifacts.input_ref(data_dir, data_manifest)}) as state:
        quiet_transformers()
        base_ref = run.on_main(lambda: resolve_base(settings.base, _violin_dir(workdir)))  # the tiny base is built once
        random_base = settings.base == TINY or is_random_base(base_ref)
        if random_base and run.is_main:
            log.warning("base: a tiny untrained MusicGen; everything made from it is noise-level and only exercises the pipeline")
        model, tokenizer = load_base(base_ref)
        peft_model, result = run_training(model, tokenizer, data_dir, settings, run, state, on_progress)
        run.finish(lambda staging: _write_adapter(staging, peft_model, tokenizer, settings, result, base_ref, random_base,
                                                  run.device.type, state.inputs["data"]))
    return TrainRun(out, result, settings.base, random_base, run.device.type, run.is_main)


def _write_adapter(tmp: Path, peft_model, tokenizer, settings: LoraTrainSettings, result, base_ref,
                   random_base: bool, device: str, data_ref: dict) -> None:
    from musictl.hf import save_with_card
    from musictl.violin.train import config_dict

    config = config_dict(settings)
    headline = {
        "steps": result.steps,
        "trainable_parameters": result.trainable,
        "total_parameters": result.total,
        "trainable_share": result.trainable_share,
        "train_loss": result.train_loss,
        "valid_loss": result.valid_loss,
        "valid_loss_per_codebook": result.valid_loss_per_codebook,
        "lora_targets": config["lora_targets"],
        "random_base": random_base,
        "processes": result.processes,
    }
    save_with_card(peft_model, tmp, model_card(settings.base, random_base, config, headline))
    tokenizer.save_pretrained(tmp)
    if random_base:
        shutil.copytree(base_ref, tmp / "base")
    inputs = {"data": data_ref}
    if isinstance(base_ref, Path) and not random_base:  # a local base: found again relative to the adapter
        inputs["base"] = {"path": str(base_ref.resolve()), "kind": "musicgen", "fingerprint": ""}
    params = config | {"base": settings.base, "device": device, **result.batch}
    artifacts.write_manifest(tmp, artifacts.Manifest(LORA_KIND, params, inputs, headline))


def model_card(base: str, random_base: bool, config: dict, metrics: dict) -> str:
    warning = "\n**Random base**: trained on an untrained tiny MusicGen; outputs are noise and only exercise the pipeline.\n"
    return (
        f"---\nbase_model: {base}\nlibrary_name: peft\ntags: [musicgen, lora, violin, text-to-audio]\n---\n\n"
        f"# Violin LoRA for {base}\n{warning if random_base else ''}\n"
        f"LoRA adapter on the MusicGen decoder (`{', '.join(config['targets'])}`, preset `{config['lora_targets']}`, "
        f"rank {config['rank']}, alpha {config['alpha']}), "
        f"trained on captioned solo-violin clips with `musictl lora-violin train`. Text encoder and EnCodec are frozen.\n\n"
        f"- steps: {metrics['steps']}, trainable share: {100 * metrics['trainable_share']:.3f}%\n"
        f"- train loss: {metrics['train_loss']:.4f}, validation loss: {metrics['valid_loss']}\n\n"
        "Load: `PeftModel.from_pretrained(MusicgenForConditionalGeneration.from_pretrained(BASE), THIS_DIR)`\n"
    )


# ----- generate ------------------------------------------------------------------------------------
def adapter_base(adapter: Path | None, manifest: artifacts.Manifest | None, base: str | None, workdir=None):
    """The base to load: ``--base``, else the adapter's ``base/`` copy, else the base it was trained on."""
    from musictl.violin.model import resolve_base

    if base is not None:
        return resolve_base(base, _violin_dir(workdir))
    if adapter is None or manifest is None:
        return resolve_base(DEFAULT_BASE, _violin_dir(workdir))
    if (adapter / "base" / "config.json").is_file():
        return adapter / "base"
    recorded = artifacts.input_path(adapter, manifest, "base")
    if recorded is not None:
        return recorded
    return resolve_base(manifest.parameters.get("base", DEFAULT_BASE), _violin_dir(workdir))


def _load(adapter: Path | None, manifest, base: str | None, workdir, device: str):
    from musictl.hf import quiet_transformers
    from musictl.violin.generate import load_for_generation

    quiet_transformers()
    model, tokenizer, random_base = load_for_generation(adapter_base(adapter, manifest, base, workdir), adapter, device)
    if random_base:
        log.warning("the base is a tiny untrained MusicGen: its output is noise-level and only exercises the pipeline")
    return model, tokenizer, random_base


@dataclass
class GenerateResult:
    path: Path
    seconds: float
    seed: int
    guidance: float
    adapter: Path | None
    random_base: bool
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"path": str(self.path), "adapter": str(self.adapter) if self.adapter else None}


def generate(settings: GenerateSettings, prompt: str, out: Path, adapter: Path | None = None, use_adapter: bool = True,
             workdir=None, device: str = "cpu", overwrite: bool = False) -> GenerateResult:
    """A 32 kHz WAV of ``prompt`` from the adapter (default: the workspace's) or, without it, the base alone.
    ``device``: auto, cpu or cuda (:func:`musictl.device.resolve_device`)."""
    from musictl.device import resolve_device
    from musictl.violin.audio import wav_bytes
    from musictl.violin.generate import generate as sample

    device = resolve_device(device)

    if not prompt.strip():
        raise UsageError("--prompt is empty; describe the music, e.g. 'solo violin, gentle waltz in G major'")
    if adapter is not None and not use_adapter:
        raise UsageError("--adapter and --no-adapter contradict each other; pass one")
    adapter_dir = (adapter or artifacts.artifact_dir(workdir, LORA_KIND)) if use_adapter else None
    manifest = _require_adapter(adapter_dir, explicit=adapter is not None) if adapter_dir else None
    artifacts.check_output(out, overwrite, _inputs(adapter_dir))
    model, tokenizer, random_base = _load(adapter_dir, manifest, settings.base, workdir, device)
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    audio = sample(model, tokenizer, [prompt], settings.seconds, settings.guidance, settings.seed)[0]
    data = wav_bytes(audio, inner.config.audio_encoder.sampling_rate)
    artifacts.write_output(out, data, overwrite, _inputs(adapter_dir))
    return GenerateResult(out, settings.seconds, settings.seed, settings.guidance, adapter_dir, random_base, len(data))


def _require_adapter(adapter: Path, explicit: bool) -> artifacts.Manifest:
    if not explicit and not adapter.exists():
        raise ArtifactError(f"no violin-lora adapter in {adapter}; run: musictl lora-violin train, pass --adapter DIR, "
                            "or --no-adapter to play the base alone")
    return artifacts.require(adapter, LORA_KIND)


def _inputs(*dirs: Path | None) -> list[Path]:
    """Every file of the input artifacts: ``-o`` may name none of them."""
    return [f for d in dirs if d is not None and d.is_dir() for f in d.rglob("*") if f.is_file()]


# ----- evaluate ------------------------------------------------------------------------------------
@dataclass
class EvaluateResult:
    path: Path  # the violin-eval artifact
    results: dict
    output: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.results


def evaluate(settings: EvaluateSettings, adapter: Path | None = None, data: Path | None = None, clap_model: Path | None = None,
             output: Path | None = None, workdir=None, device: str = "cpu", overwrite: bool = False,
             on_progress: Progress | None = None) -> EvaluateResult:
    """Base vs base + adapter on the held-out clips into ``WORKDIR/violin/eval/`` (and ``output`` when given).
    ``device``: auto, cpu or cuda (:func:`musictl.device.resolve_device`)."""
    from musictl.device import resolve_device
    from musictl.violin.evaluate import evaluate as score

    device = resolve_device(device)

    adapter_dir = adapter or artifacts.artifact_dir(workdir, LORA_KIND)
    manifest = artifacts.require(adapter_dir, LORA_KIND)
    data_dir = data or artifacts.input_path(adapter_dir, manifest, "data") or artifacts.artifact_dir(workdir, DATA_KIND)
    data_manifest = artifacts.require(data_dir, DATA_KIND)
    if data is None:  # the adapter's own data: the held-out clips must be the ones it did not train on
        artifacts.check_input(adapter_dir, manifest, "data", data_manifest)
    target = artifacts.artifact_dir(workdir, EVAL_KIND)
    if output is not None:
        if Path(output).resolve().is_relative_to(target.resolve()):
            raise UsageError(f"-o {output} lies inside the evaluation artifact {target}, which evaluate replaces; write it elsewhere")
        artifacts.check_output(output, overwrite, _inputs(adapter_dir, data_dir))
    with artifacts.staging(target, overwrite) as tmp:
        model, tokenizer, random_base = _load(adapter_dir, manifest, settings.base, workdir, device)
        results = score(model, tokenizer, data_dir, settings, clap_model, on_progress)
        if results is None:
            raise ArtifactError(f"{data_dir} has no held-out (valid) clips; remake it with: musictl lora-violin prepare "
                                "--valid 0.2 --overwrite")
        results |= {"adapter": str(adapter_dir.resolve()), "data": str(data_dir.resolve()), "seed": settings.seed,
                    "guidance": settings.guidance, "random_base": random_base}
        artifacts.atomic_write_json(tmp / RESULTS, results)
        inputs = {"adapter": artifacts.input_ref(adapter_dir, manifest), "data": artifacts.input_ref(data_dir, data_manifest)}
        params = settings.to_dict() | {"clap_model": str(clap_model) if clap_model else None, "device": device}
        headline = {system: results[system] for system in ("base", "base+adapter")}
        artifacts.write_manifest(tmp, artifacts.Manifest(EVAL_KIND, params, inputs, headline))
    if output is not None:
        artifacts.write_output(output, (json.dumps(results, indent=2) + "\n").encode(), overwrite, _inputs(adapter_dir, data_dir))
    return EvaluateResult(target, results, output)
