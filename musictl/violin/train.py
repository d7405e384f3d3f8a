"""The LoRA training loop: EnCodec codes once, seeded batches, validation loss per codebook, resume.

Built on :class:`musictl.training.Run` (the one training loop of musictl), so the same code runs on
1 CPU, 1 GPU or N processes (``accelerate launch``): model, optimizer and data loader go through
``accelerator.prepare``, the prepared model does the forward pass (DDP synchronises the gradients),
the training clips are one seeded stream sharded by rank, validation rows are gathered over the
ranks, and only the main process writes. Read top to bottom: :func:`encode_splits` turns the clips
into codes, :func:`build` wraps the base in LoRA and makes the optimizer, :func:`train` steps,
validates and checkpoints.

Which samples lose their text is drawn from the ``text-drop`` stream at the sample's stream position
(:func:`musictl.training.rng`), so it does not depend on the number of processes. Checkpoints are
:class:`musictl.training.Run`'s (the one run lifecycle); for a PEFT model they hold the adapter only, not
the frozen base.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from musictl.errors import ArtifactError
from musictl.progress import Progress, no_progress
from musictl.violin.audio import SAMPLE_RATE, read_clip
from musictl.violin.dataset import load_rows
from musictl.violin.lora import add_lora, codebook_losses, forward, parameter_share, text_batch
from musictl.violin.settings import LoraTrainSettings

log = logging.getLogger(__name__)
TEXT_DROP = "text-drop"  # the random stream of the text drops (index: the sample's stream position)
# Settings a checkpoint must share with the run that resumes it (the others may change, e.g. --max-steps).


@dataclass
class TrainResult:
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


def _codes(model, audio: np.ndarray, chunk: int = 8):
    import torch

    from musictl.violin.model import encode_audio

    return torch.cat([encode_audio(model, audio[i : i + chunk]) for i in range(0, len(audio), chunk)]).cpu()


def encode_splits(model, data_dir: Path) -> tuple[Clips, Clips]:
    """Codes of the training clips and of the held-out clips (cut to the training clips' length)."""
    audio, captions = load_clips(data_dir, "train")
    if not captions:
        raise ArtifactError(f"{data_dir} has no training clips; remake it: musictl lora-violin prepare --overwrite")
    valid_audio, valid_captions = load_clips(data_dir, "valid", audio.shape[1] / SAMPLE_RATE)
    return Clips(_codes(model, audio), captions), Clips(_codes(model, valid_audio) if valid_captions else None, valid_captions)


# ----- batches -------------------------------------------------------------------------------------
def drops_text(seed: int, position: int, drop_text: float) -> bool:
    """Whether the sample at this stream position is trained without its text (the null condition)."""
    from musictl import training

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


# ----- the loop --------------------------------------------------------------------------------------
def build(model, settings: LoraTrainSettings):
    """(peft model, AdamW): LoRA on the decoder modules, weight decay grouped as everywhere in musictl."""
    import torch

    from musictl.training import param_groups

    peft_model = add_lora(model, settings.modules(), settings.rank, settings.alpha, settings.dropout)
    if settings.grad_checkpointing:
        peft_model.get_base_model().decoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return peft_model, torch.optim.AdamW(param_groups(peft_model, settings.weight_decay), lr=settings.lr)


def train(model, tokenizer, data_dir: Path, settings: LoraTrainSettings, run, state, on_progress: Progress | None = None):
    """Train LoRA on ``model`` (a base MusicGen) inside ``run.staged(...)``: (PeftModel, TrainResult).

    ``state`` is the run's :class:`musictl.training.TrainerState` (fresh, or the checkpoint's when
    resuming); a checkpoint (adapter, optimizer, RNG states, state) is written at every validation.
    """
    import time

    on_progress = on_progress or no_progress
    model.to(run.device)
    train_clips, valid_clips = encode_splits(model, data_dir)
    peft_model, optimizer = build(model, settings)
    trainable, total = parameter_share(peft_model)
    steps_per_epoch = -(-len(train_clips) // run.plan.global_batch)
    total_steps = settings.max_steps or settings.epochs * steps_per_epoch
    start_step = state.step
    loader = run.train_loader(list(range(len(train_clips))), collate_for(train_clips, settings.drop_text, settings.seed),
                              max(0, total_steps - state.step), start=state.position)
    prepared, optimizer, loader = run.prepare(peft_model, optimizer, loader)
    run.restore()
    if start_step:
        log.info("resumed at step %d", start_step)

    def step_forward(model, data):
        return forward(model, text_batch(model, tokenizer, data["captions"], data["codes"], data["drop"]))

    losses, started = [], time.perf_counter()
    for done in run.train(prepared, optimizer, None, loader, step_forward, start_step=state.step):
        losses.append(float(np.mean([run.reduce_mean(out.loss.detach()) for out in done.outputs])))
        state.step, state.position = done.step, state.position + run.plan.global_batch
        state.epoch = state.position // len(train_clips)
        row = {"step": done.step, "train_loss": losses[-1]}
        state.extra["train_loss"] = float(np.mean(losses[-steps_per_epoch:]))
        evaluating = done.step % settings.eval_every == 0 or done.step == total_steps
        if evaluating:
            row |= validate(run, run.unwrap(prepared), tokenizer, valid_clips)
            state.last_eval = row
        run.log(row)
        if evaluating:
            run.save_checkpoint(state)
        if run.is_main:
            on_progress(done.step, total_steps, row)
    last_valid = state.last_eval or {}
    result = TrainResult(total_steps, trainable, total, state.extra.get("train_loss", float("nan")),
                         last_valid.get("valid_loss"), last_valid.get("valid_loss_per_codebook", []),
                         time.perf_counter() - started, start_step, run.describe())
    return run.unwrap(prepared), result


def validate(run, model, tokenizer, clips: Clips) -> dict:
    """Mean per-codebook loss over the held-out clips (text kept, dropout off), gathered over the ranks."""
    import torch

    if not len(clips):
        return {}
    model.eval()
    rows = []
    for idx in run.eval_loader(list(range(len(clips))), _eval_collate):
        batch = text_batch(model, tokenizer, [clips.captions[j] for j in idx], clips.codes[idx],
                           torch.zeros(len(idx), dtype=torch.bool))
        losses = torch.tensor(codebook_losses(model, batch, per_sample=True), device=run.device)
        rows.append(run.gather(losses).double().cpu())  # padding of the last batch dropped
    per_sample = torch.cat(rows)  # (clips, K)
    per_book = [float(x) for x in per_sample.mean(dim=0)]
    return {"valid_loss": float(np.mean(per_book)), "valid_loss_per_codebook": per_book}


def config_dict(settings: LoraTrainSettings) -> dict:
    """The settings as a manifest records them: the modules adapted and the preset they come from."""
    return settings.to_dict() | {"targets": list(settings.modules()), "lora_targets": settings.preset()}
