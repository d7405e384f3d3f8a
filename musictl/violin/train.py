"""The LoRA training loop: EnCodec codes once, shuffled batches, validation loss per codebook, resume."""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from musictl.violin.audio import SAMPLE_RATE, read_clip
from musictl.violin.dataset import load_rows
from musictl.violin.lora import add_lora, codebook_losses, forward, make_batch, parameter_share


@dataclass
class TrainConfig:
    targets: tuple[str, ...] = ("q_proj", "v_proj")
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    lr: float = 2e-4
    batch_size: int = 4
    max_steps: int = 0  # 0: use epochs
    epochs: int = 3
    drop_text: float = 0.2
    grad_checkpointing: bool = False
    eval_every: int = 50
    seed: int = 0


@dataclass
class TrainResult:
    steps: int
    trainable: int
    total: int
    train_loss: float
    valid_loss: float | None
    valid_loss_per_codebook: list[float] = field(default_factory=list)
    seconds: float = 0.0


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


def train(model, tokenizer, data_dir: Path, config: TrainConfig, checkpoint: Path, device: str, resume: bool, log):
    """Train LoRA on ``model`` (a base MusicGen): returns (PeftModel, TrainResult, metrics rows).

    A checkpoint (adapter, optimizer, step, RNG state) is written at every evaluation, so
    ``resume`` continues an interrupted run where it stopped.
    """
    import torch
    from accelerate import Accelerator
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    torch.manual_seed(config.seed)
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision="bf16" if device == "cuda" else "no")
    model.to(accelerator.device)
    train_audio, train_captions = load_clips(data_dir, "train")
    valid_audio, valid_captions = load_clips(data_dir, "valid", train_audio.shape[1] / SAMPLE_RATE if len(train_audio) else None)
    train_codes, valid_codes = _codes(model, train_audio), _codes(model, valid_audio) if len(valid_audio) else None
    peft_model = add_lora(model, config.targets, config.rank, config.alpha, config.dropout)
    if config.grad_checkpointing:
        peft_model.get_base_model().decoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    trainable, total = parameter_share(peft_model)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=config.lr)
    n = len(train_captions)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    start_step = 0
    rng = np.random.default_rng(config.seed)
    if resume and (checkpoint / "state.json").is_file():
        state = json.loads((checkpoint / "state.json").read_text())
        set_peft_model_state_dict(peft_model, load_file(str(checkpoint / "adapter_model.safetensors")))
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
        start_step = state["step"]
        rng.bit_generator.state = state["rng"]
        log(f"resumed from {checkpoint} at step {start_step}")
    peft_model, optimizer = accelerator.prepare(peft_model, optimizer)
    order, cursor = rng.permutation(n), 0
    metrics = _previous_metrics(checkpoint, start_step)  # rows before a resume, so the log stays whole
    losses: list[float] = []
    started = time.perf_counter()
    peft_model.train()
    for step in range(start_step, total_steps):
        if cursor >= n:
            order, cursor = rng.permutation(n), 0
        idx = order[cursor : cursor + config.batch_size]
        cursor += config.batch_size
        batch = make_batch(peft_model, tokenizer, [train_captions[i] for i in idx], train_codes[idx], config.drop_text, rng)
        with accelerator.autocast():
            loss = forward(peft_model, batch).loss
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        row = {"step": step + 1, "train_loss": losses[-1]}
        if (step + 1) % config.eval_every == 0 or step + 1 == total_steps:
            per_book = _validate(peft_model, tokenizer, valid_captions, valid_codes, config.batch_size)
            if per_book:
                row |= {"valid_loss": float(np.mean(per_book)), "valid_loss_per_codebook": per_book}
            _save_checkpoint(accelerator.unwrap_model(peft_model), optimizer, checkpoint, step + 1, rng, [*metrics, row])
            peft_model.train()
            valid = f"  valid loss {row['valid_loss']:.4f}" if per_book else ""
            log(f"step {step + 1}/{total_steps}  train loss {np.mean(losses[-config.eval_every :]):.4f}{valid}")
        metrics.append(row)
    peft_model = accelerator.unwrap_model(peft_model)
    last_valid = next((r for r in reversed(metrics) if "valid_loss" in r), {})
    result = TrainResult(
        steps=total_steps,
        trainable=trainable,
        total=total,
        train_loss=float(np.mean(losses[-steps_per_epoch:])) if losses else float("nan"),
        valid_loss=last_valid.get("valid_loss"),
        valid_loss_per_codebook=last_valid.get("valid_loss_per_codebook", []),
        seconds=time.perf_counter() - started,
    )
    return peft_model, result, metrics


def _validate(model, tokenizer, captions, codes, batch_size: int) -> list[float]:
    """Mean per-codebook loss over the held-out clips (text kept, dropout off)."""
    if codes is None or not captions:
        return []
    model.eval()
    rng = np.random.default_rng(0)
    sums, weights = None, 0
    for i in range(0, len(captions), batch_size):
        batch = make_batch(model, tokenizer, captions[i : i + batch_size], codes[i : i + batch_size], 0.0, rng)
        per = np.array(codebook_losses(model, batch)) * len(batch.labels)
        sums = per if sums is None else sums + per
        weights += len(batch.labels)
    return [float(x) for x in sums / weights]


def _save_checkpoint(model, optimizer, path: Path, step: int, rng, metrics) -> None:
    import torch

    from musictl.artifacts import replace_dir

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "rng": rng.bit_generator.state}))
    (tmp / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    replace_dir(tmp, path)


def _previous_metrics(checkpoint: Path, start_step: int) -> list[dict]:
    file = checkpoint / "metrics.jsonl"
    if start_step == 0 or not file.is_file():
        return []
    return [r for r in (json.loads(line) for line in file.read_text().splitlines() if line.strip()) if r["step"] <= start_step]


def config_dict(config: TrainConfig) -> dict:
    return asdict(config) | {"targets": list(config.targets)}
