"""The violin stage as library calls that read and write workspace artifacts.

prepare -> ``violin/data/`` (``violin-data``); generate -> a WAV file; evaluate -> ``violin/eval/``
(``violin-eval``, and a JSON file on request). Training (``violin/lora/``, ``violin-lora``) is the
trainer's own module, :func:`musictl.violin.train.train`. The CLI
(``musictl lora-violin ...``) calls these and renders what they return; each result has ``to_dict()``.

Every input is read through :func:`musictl.artifacts.require` (a missing, incomplete or edited
artifact is refused), every artifact is written inside :func:`musictl.artifacts.staging` (entered
before the work, so a second writer or an existing output is refused at once, and the old artifact
stays whole until the new one is complete), files named with ``-o`` through ``write_output``.
"""

from __future__ import annotations

import json
import logging
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
    EvaluateSettings,
    GenerateSettings,
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
    import musictl.violin.generate
    from musictl.device import resolve_device
    from musictl.violin.audio import wav_bytes

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
    audio = musictl.violin.generate.generate(model, tokenizer, [prompt], settings.seconds, settings.guidance, settings.seed)[0]
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
    import musictl.violin.evaluate
    from musictl.device import resolve_device

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
        results = musictl.violin.evaluate.evaluate(model, tokenizer, data_dir, settings, clap_model, on_progress)
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
