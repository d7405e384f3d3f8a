"""The LoRA training loop: EnCodec codes once, seeded batches, validation loss per codebook, resume.

Built on :class:`musictl.training.Run` (the one training loop of musictl), so the same code runs on
1 CPU, 1 GPU or N processes (``accelerate launch``): model, optimizer and data loader go through
``accelerator.prepare``, the prepared model does the forward pass (DDP synchronises the gradients),
the training clips are one seeded stream sharded by rank, validation rows are gathered over the
ranks, and only the main process writes. Read top to bottom: :func:`encode_splits` turns the clips
into codes, :func:`build` wraps the base in LoRA and makes the optimizer, :func:`train` steps,
validates and checkpoints.

Which samples lose their text is drawn from ``(seed, stream position)``, so it does not depend on
the number of processes, and a checkpoint (adapter, optimizer, step, stream position) needs no RNG
state. Checkpoints hold the adapter only, not the frozen base.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from musictl.errors import ArtifactError, UsageError
from musictl.progress import Progress, no_progress
from musictl.violin.audio import SAMPLE_RATE, read_clip
from musictl.violin.dataset import load_rows
from musictl.violin.lora import add_lora, codebook_losses, forward, parameter_share, text_batch
from musictl.violin.settings import LoraTrainSettings

log = logging.getLogger(__name__)
STATE = "state.json"
DROP_STREAM = 7  # a constant of the seed sequence that draws the text drops (apart from the stream order)
# Settings a checkpoint must share with the run that resumes it (the others may change, e.g. --max-steps).
RESUME_KEYS = ("rank", "alpha", "dropout", "targets", "drop_text", "seed")


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
    return bool(np.random.default_rng([seed, DROP_STREAM, position]).random() < drop_text)


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


# ----- checkpoints ---------------------------------------------------------------------------------
def checkpoint_step(path: Path) -> int | None:
    """The step of the checkpoint in ``path``, or None when there is none (or it is unreadable)."""
    try:
        return int(json.loads((Path(path) / STATE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_checkpoint(model, optimizer, path: Path, state: dict, settings: LoraTrainSettings, metrics: list[dict]) -> None:
    """Adapter, optimizer state, metrics and (last) the position, written beside ``path`` and swapped in."""
    import torch

    from musictl.artifacts import replace_dir

    tmp = path.with_name(path.name + ".tmp")
    with signals_deferred():  # Ctrl-C / SIGTERM wait until the checkpoint is whole (old or new, never half)
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
        (tmp / STATE).write_text(json.dumps(state | {"settings": _resume_settings(settings)}))
        replace_dir(tmp, path)


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM back for the block (main thread only; elsewhere a no-op)."""
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    except (AttributeError, ValueError, OSError):
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _resume_settings(settings: LoraTrainSettings) -> dict:
    return {k: v for k, v in (settings.to_dict() | {"targets": list(settings.modules())}).items() if k in RESUME_KEYS}


def load_checkpoint(model, optimizer, path: Path, settings: LoraTrainSettings) -> tuple[dict, list[dict]]:
    """Restore adapter and optimizer from ``path``: (state with ``step`` and ``position``, metrics rows so far)."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    try:
        state = json.loads((path / STATE).read_text())
        saved = state.get("settings", {})
        changed = [k for k in RESUME_KEYS if k in saved and saved[k] != _resume_settings(settings)[k]]
        if changed:
            raise UsageError(f"the checkpoint in {path} was made with other settings ({', '.join(changed)}); resume with "
                             "the same settings, or start afresh without --resume")
        set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
        rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines() if line.strip()]
        step, position = int(state["step"]), int(state["position"])
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArtifactError(f"{path}: unreadable checkpoint ({reason}); start afresh without --resume") from None
    return {"step": step, "position": position}, [r for r in rows if r["step"] <= step]


# ----- the loop --------------------------------------------------------------------------------------
def make_run(settings: LoraTrainSettings, device: str):
    """The :class:`musictl.training.Run` of a LoRA run (no gradient clipping, as before)."""
    from musictl.training import Run, RunConfig

    return Run(RunConfig(device=device, mixed_precision=settings.mixed_precision, batch_size=settings.batch_size,
                         grad_accum=settings.grad_accum, clip=None, seed=settings.seed, find_unused_parameters=False))


def build(model, settings: LoraTrainSettings):
    """(peft model, AdamW): LoRA on the decoder modules, weight decay grouped as everywhere in musictl."""
    import torch

    from musictl.training import param_groups

    peft_model = add_lora(model, settings.modules(), settings.rank, settings.alpha, settings.dropout)
    if settings.grad_checkpointing:
        peft_model.get_base_model().decoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return peft_model, torch.optim.AdamW(param_groups(peft_model, settings.weight_decay), lr=settings.lr)


def train(model, tokenizer, data_dir: Path, settings: LoraTrainSettings, checkpoint: Path, run, resume: bool = False,
          on_progress: Progress | None = None):
    """Train LoRA on ``model`` (a base MusicGen) in ``run``: (PeftModel, TrainResult, metrics rows).

    A checkpoint is written at every evaluation, so ``resume`` continues an interrupted run where it
    stopped (with any number of processes).
    """
    import time

    on_progress = on_progress or no_progress
    model.to(run.device)
    train_clips, valid_clips = encode_splits(model, data_dir)
    peft_model, optimizer = build(model, settings)
    trainable, total = parameter_share(peft_model)
    total_steps = settings.max_steps or settings.epochs * -(-len(train_clips) // run.plan.global_batch)
    state, metrics = {"step": 0, "position": 0}, []
    if resume and checkpoint.exists():
        state, metrics = load_checkpoint(peft_model, optimizer, checkpoint, settings)
    start_step = state["step"]
    if resume:
        log.info(f"resumed from {checkpoint} at step {state['step']}" if state["step"] else
                 f"no checkpoint in {checkpoint}: starting at step 0")
    loader = run.train_loader(list(range(len(train_clips))), collate_for(train_clips, settings.drop_text, settings.seed),
                              max(0, total_steps - state["step"]), start=state["position"])
    prepared, optimizer, loader = run.prepare(peft_model, optimizer, loader)

    def step_forward(model, data):
        return forward(model, text_batch(model, tokenizer, data["captions"], data["codes"], data["drop"]))

    losses, started = [], time.perf_counter()
    for done in run.train(prepared, optimizer, None, loader, step_forward, start_step=state["step"]):
        loss = np.mean([float(run.accelerator.reduce(out.loss.detach(), "mean")) for out in done.outputs])
        losses.append(float(loss))
        row = {"step": done.step, "train_loss": losses[-1]}
        state = {"step": done.step, "position": state["position"] + run.plan.global_batch}
        if done.step % settings.eval_every == 0 or done.step == total_steps:
            row |= validate(run, run.unwrap(prepared), tokenizer, valid_clips)
            run.on_main(functools.partial(save_checkpoint, run.unwrap(prepared), optimizer, checkpoint, state, settings,
                                          [*metrics, row]))
        metrics.append(row)
        if run.is_main:
            on_progress(done.step, total_steps, row)
    last_valid = next((r for r in reversed(metrics) if "valid_loss" in r), {})
    recent = losses[-(-len(train_clips) // run.plan.global_batch):] or [r["train_loss"] for r in metrics[-1:]]
    result = TrainResult(total_steps, trainable, total, float(np.mean(recent)) if recent else float("nan"),
                         last_valid.get("valid_loss"), last_valid.get("valid_loss_per_codebook", []),
                         time.perf_counter() - started, start_step, run.describe())
    return run.unwrap(prepared), result, metrics


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
