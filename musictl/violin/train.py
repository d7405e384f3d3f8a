"""LoRA training of MusicGen's decoder: a violin-data artifact in, a violin-lora artifact out.

The trainer is what differs from the other trainers, under the same names: :func:`build` wraps the
base in LoRA and makes the optimizer, :func:`forward` is the loss of a batch, :func:`evaluate` the
validation loss per codebook, :func:`write_artifact` the adapter, card and manifest; :func:`train`
(the entry point) turns the clips into EnCodec codes once (:func:`encode_splits`) and hands the rest to
:meth:`musictl.training.Run.fit`, the one training loop of musictl (step, evaluation and checkpoint
cadence, resume, logging). The same code runs on 1 CPU, 1 GPU or N processes (``accelerate launch``):
the training clips are one seeded stream sharded by rank, validation rows are gathered over the ranks,
and only the main process writes. Under ``accelerate launch`` every process trains.

Which samples lose their text is drawn from the ``text-drop`` stream at the sample's stream position
(:func:`musictl.training.rng`), so it does not depend on the number of processes. Checkpoints are
:class:`musictl.training.Run`'s (the one run lifecycle); for a PEFT model they hold the adapter only, not
the frozen base.
"""

from __future__ import annotations

import functools
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from musictl import artifacts, training
from musictl.errors import ArtifactError
from musictl.progress import Progress
from musictl.violin import lora
from musictl.violin.audio import SAMPLE_RATE, read_clip
from musictl.violin.dataset import load_rows
from musictl.violin.settings import TINY, LoraTrainSettings

DATA_KIND, LORA_KIND = artifacts.VIOLIN_DATA, artifacts.VIOLIN_LORA
log = logging.getLogger(__name__)
TEXT_DROP = "text-drop"  # the random stream of the text drops (index: the sample's stream position)


@dataclass
class TrainResult:
    """What the training did (``to_dict()`` is the headline of metrics; :class:`TrainRun` adds where it went)."""

    steps: int
    trainable: int
    total: int
    train_loss: float
    valid_loss: float | None
    valid_loss_per_codebook: list[float] = field(default_factory=list)
    seconds: float = 0.0
    start_step: int = 0  # > 0 when resumed from a checkpoint
    batch: dict[str, Any] = field(default_factory=dict)  # per-device batch, processes, accumulation, precision

    @property
    def trainable_share(self) -> float:
        return self.trainable / self.total

    @property
    def processes(self) -> int:
        return int(self.batch.get("processes", 1))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"trainable_share": self.trainable_share}


@dataclass
class Clips:
    """EnCodec codes (N, K, T) and captions of one split."""

    codes: Any
    captions: list[str]

    def __len__(self) -> int:
        return len(self.captions)


def load_clips(data_dir: Path, split: str, seconds: float | None = None) -> tuple[np.ndarray, list[str]]:
    """(N, samples) audio of one split cut/padded to the shortest clip (or ``seconds``), and captions."""
    rows = load_rows(data_dir, split)
    audio = [read_clip(data_dir / r["audio"], SAMPLE_RATE, 0.1).samples for r in rows]
    if not audio:
        return np.zeros((0, 0), np.float32), []
    length = int(seconds * SAMPLE_RATE) if seconds else min(len(a) for a in audio)
    return np.stack([np.pad(a[:length], (0, max(0, length - len(a)))) for a in audio]), [r["caption"] for r in rows]


def audio_codes(model, audio: np.ndarray, chunk: int = 8):
    """EnCodec codes of ``audio`` (clips, samples), ``chunk`` clips at a time, on the CPU."""
    import torch

    from musictl.violin.model import encode_audio

    return torch.cat([encode_audio(model, audio[i : i + chunk]) for i in range(0, len(audio), chunk)]).cpu()


def encode_splits(model, data_dir: Path) -> tuple[Clips, Clips]:
    """Codes of the training clips and of the held-out clips (cut to the training clips' length)."""
    audio, captions = load_clips(data_dir, "train")
    if not captions:
        raise ArtifactError(f"{data_dir} has no training clips; remake it: musictl lora-violin prepare --overwrite")
    valid_audio, valid_captions = load_clips(data_dir, "valid", audio.shape[1] / SAMPLE_RATE)
    return Clips(audio_codes(model, audio), captions), Clips(audio_codes(model, valid_audio) if valid_captions else None, valid_captions)


# ----- batches -------------------------------------------------------------------------------------
def drops_text(seed: int, position: int, drop_text: float) -> bool:
    """Whether the sample at this stream position is trained without its text (the null condition)."""
    return bool(training.rng(seed, TEXT_DROP, position).random() < drop_text)


def collate_for(clips: Clips, drop_text: float, seed: int):
    """The training loader's collate: a micro-batch of stream samples -> codes, captions, drop flags."""

    def collate(samples) -> dict:
        import torch

        return {"codes": torch.stack([clips.codes[s.index] for s in samples]),
                "captions": [clips.captions[s.index] for s in samples],
                "drop": torch.tensor([drops_text(seed, s.position, drop_text) for s in samples])}

    return collate


def _eval_collate(samples) -> list[int]:
    return [s.index for s in samples]


# ----- build, forward, evaluate ----------------------------------------------------------------------
def build(model, settings: LoraTrainSettings):
    """(peft model, AdamW): LoRA on the decoder modules, weight decay grouped as everywhere in musictl."""
    import torch

    peft_model = lora.add_lora(model, settings.modules(), settings.rank, settings.alpha, settings.dropout)
    if settings.grad_checkpointing:
        peft_model.get_base_model().decoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return peft_model, torch.optim.AdamW(training.param_groups(peft_model, settings.weight_decay), lr=settings.lr)


def forward(model, batch: dict, tokenizer):
    """One micro-batch (codes in the delay pattern, captions, text drops) through the prepared model: its output (``.loss``)."""
    return lora.forward(model, lora.text_batch(model, tokenizer, batch["captions"], batch["codes"], batch["drop"]))


def evaluate(run: training.Run, model, tokenizer, clips: Clips) -> dict:
    """Mean per-codebook loss over the held-out clips (text kept, dropout off), gathered over the ranks."""
    import torch

    if not len(clips):
        return {}
    model.eval()
    rows = []
    for idx in run.eval_loader(list(range(len(clips))), _eval_collate):
        batch = lora.text_batch(model, tokenizer, [clips.captions[j] for j in idx], clips.codes[idx],
                                torch.zeros(len(idx), dtype=torch.bool))
        losses = torch.tensor(lora.codebook_losses(model, batch, per_sample=True), device=run.device)
        rows.append(run.gather(losses).double().cpu())  # padding of the last batch dropped
    per_sample = torch.cat(rows)  # (clips, K)
    per_book = [float(x) for x in per_sample.mean(dim=0)]
    return {"valid_loss": float(np.mean(per_book)), "valid_loss_per_codebook": per_book}


def config_dict(settings: LoraTrainSettings) -> dict:
    """The settings as a manifest records them: the modules adapted and the preset they come from."""
    return settings.to_dict() | {"targets": list(settings.modules()), "lora_targets": settings.preset()}


# ----- the run ----------------------------------------------------------------------------------------
@dataclass
class TrainRun:
    path: Path
    result: TrainResult
    base: str
    random_base: bool
    device: str
    main_process: bool = True  # False in the other processes of an ``accelerate launch`` run (they write nothing)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "base": self.base, "random_base": self.random_base, "device": self.device,
                **self.result.to_dict()}


def train(settings: LoraTrainSettings, data_dir: Path, out: Path, workdir=None, resume: bool = False,
          overwrite: bool = False, on_progress: Progress | None = None) -> TrainRun:
    """LoRA-train MusicGen's decoder on a violin-data artifact into a violin-lora artifact.

    The run lifecycle is :class:`musictl.training.Run`'s (lock, staging beside ``out``, a checkpoint at
    every validation, ``resume``, trackers); the old adapter is replaced only by a complete new one.
    Ctrl-C and SIGTERM raise :class:`musictl.errors.Interrupted` saying what was kept. Under
    ``accelerate launch`` every process trains and only the main one writes.
    """
    from musictl.hf import quiet_transformers
    from musictl.violin.model import is_random_base, load_base, resolve_base

    data_manifest = artifacts.require(data_dir, DATA_KIND)
    run = training.Run(settings, clip=None, find_unused_parameters=False)
    output = artifacts.resumable(out, LORA_KIND, what="LoRA training run")
    with run.staged(output, resume, overwrite, inputs={"data": artifacts.input_ref(data_dir, data_manifest)}) as state:
        quiet_transformers()
        violin_dir = artifacts.workspace_root(workdir) / "violin"
        base_ref = run.on_main(lambda: resolve_base(settings.base, violin_dir))  # the tiny base is built once
        random_base = settings.base == TINY or is_random_base(base_ref)
        if random_base and run.is_main:
            log.warning("base: a tiny untrained MusicGen; everything made from it is noise-level and only exercises the pipeline")
        model, tokenizer = load_base(base_ref)
        model.to(run.device)
        train_clips, valid_clips = encode_splits(model, data_dir)
        peft_model, optimizer = build(model, settings)
        trainable, total = lora.parameter_share(peft_model)
        steps_per_epoch = run.steps_per_epoch(len(train_clips))
        total_steps = settings.max_steps or settings.epochs * steps_per_epoch
        start_step = state.step
        prepared, optimizer = run.prepare(peft_model, optimizer)
        run.restore()
        if start_step:
            log.info("resumed at step %d", start_step)
        losses: list[float] = []

        def row(done: training.StepDone, state: training.TrainerState, scores: dict | None) -> dict:
            """The step's training loss (mean over the processes); the last epoch's mean is the result's train_loss."""
            losses.append(float(np.mean([run.reduce_mean(out.loss.detach()) for out in done.outputs])))
            state.extra["train_loss"] = float(np.mean(losses[-steps_per_epoch:]))
            return {"step": done.step, "train_loss": losses[-1]} | (scores or {})

        started = time.perf_counter()
        run.fit(state, training.Cadence.every(settings.eval_every, total_steps), prepared, optimizer, None,
                list(range(len(train_clips))), collate_for(train_clips, settings.drop_text, settings.seed),
                forward=functools.partial(forward, tokenizer=tokenizer),
                evaluate=lambda: evaluate(run, run.unwrap(prepared), tokenizer, valid_clips), row=row, on_progress=on_progress)
        last_valid = state.last_eval or {}
        result = TrainResult(total_steps, trainable, total, state.extra.get("train_loss", float("nan")),
                             last_valid.get("valid_loss"), last_valid.get("valid_loss_per_codebook", []),
                             time.perf_counter() - started, start_step, run.describe())
        peft_model = run.unwrap(prepared)
        run.finish(lambda staging: write_artifact(staging, peft_model, tokenizer, settings, result, base_ref, random_base,
                                                  run.device.type, state.inputs["data"]))
    return TrainRun(out, result, settings.base, random_base, run.device.type, run.is_main)


def write_artifact(tmp: Path, peft_model, tokenizer, settings: LoraTrainSettings, result: TrainResult, base_ref,
                   random_base: bool, device: str, data_ref: dict) -> None:
    """The adapter, the tokenizer, the card and the manifest (and a random base's copy), into the staging directory."""
    from musictl.hf import save_with_card

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
        shutil.copytree(base_ref, tmp / "base", dirs_exist_ok=True)  # a resumed finished run: its staging holds the copy
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
