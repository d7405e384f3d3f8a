"""The pre-training loop: windows of the training split, accelerate, evaluation, checkpoints, resume.

Layout of the ``bert`` artifact::

    config.json, model.safetensors   the best model (by validation masked accuracy)
    checkpoints/last/                accelerate state (model, optimizer, scheduler, RNG) + trainer_state.json
    metrics.jsonl                    one line per logging step and per evaluation
    metrics.json                     final numbers; README.md model card; manifest.json
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from musictl import artifacts
from musictl.bert.data import cut_windows, epoch_order, pad_batch
from musictl.bert.model import MidiBertConfig, MidiBertForPreTraining
from musictl.bert.objectives import adversarial_step, evaluate, field_weights, mlm_step
from musictl.errors import ArtifactError, UsageError
from musictl.midi.tokens import TokenCorpus

KIND = "bert"
STATE_FILE = "trainer_state.json"


@dataclasses.dataclass
class PretrainSettings:
    size: str = "tiny"
    hidden_size: int | None = None
    num_hidden_layers: int | None = None
    num_attention_heads: int | None = None
    field_embed_dim: int | None = None
    objective: str = "adversarial"
    mask_ratio: float = 0.15
    random_share: float = 0.2
    max_len: int = 512
    batch_size: int = 8
    lr: float = 5e-4
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_steps: int | None = None
    epochs: int = 1
    eval_every: int = 100
    grad_accum: int = 1
    clip: float = 1.0
    seed: int = 0
    device: str = "cpu"


def _quiet_transformers() -> None:
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def prepare_output(out: Path, resume: bool, overwrite: bool) -> None:
    """Apply the rules for an existing output directory (see docs/workspace.md)."""
    has_content = out.exists() and any(out.iterdir())
    if resume:
        return
    if has_content and not overwrite:
        hint = "pass --resume to continue it or --overwrite to start again" if not (out / "manifest.json").exists() else \
            "pass --overwrite to replace it, or --resume with a larger --max-steps to continue training"
        raise ArtifactError(f"{out} already holds a pre-training run; {hint}")
    if has_content:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def pretrain(
    tokens_path: Path,
    out: Path,
    settings: PretrainSettings,
    resume: bool = False,
    overwrite: bool = False,
    on_step: Callable[[int, int, dict], None] | None = None,
) -> dict:
    """Pre-train MidiBert on the training split of a tokens artifact; returns the final metrics."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    _quiet_transformers()
    if settings.objective not in ("mlm", "adversarial"):
        raise UsageError(f"--objective {settings.objective!r}: choose mlm or adversarial")
    corpus = TokenCorpus.open(tokens_path)
    out = Path(out)
    checkpoint = out / "checkpoints" / "last"
    if resume and not (checkpoint / STATE_FILE).is_file():
        raise ArtifactError(f"--resume: nothing to resume in {out} (no checkpoints/last); start without --resume")
    # Validate everything before touching the output directory.
    set_seed(settings.seed)
    if resume:
        config = MidiBertConfig.from_pretrained(checkpoint)
        state = json.loads((checkpoint / STATE_FILE).read_text())
        check = artifacts.Manifest(kind=KIND, inputs={"tokens": state["tokens"]})
        artifacts.check_input(out, check, "tokens", corpus.manifest)
    else:
        config = MidiBertConfig.of_size(
            settings.size, corpus.config, hidden_size=settings.hidden_size, num_hidden_layers=settings.num_hidden_layers,
            num_attention_heads=settings.num_attention_heads, field_embed_dim=settings.field_embed_dim,
        )
        state = {"step": 0, "epoch": 0, "batch": 0, "best": None, "last_eval": None,
                 "tokens": artifacts.input_ref(tokens_path, corpus.manifest)}
    if settings.max_len > config.max_position_embeddings:
        raise UsageError(f"--max-len {settings.max_len} is longer than the model's {config.max_position_embeddings} positions")
    train_pieces = corpus.select(split="train")
    if not train_pieces:
        raise ArtifactError(f"{tokens_path} has no training pieces; run: musictl tokenize with a --split that keeps a train share")
    model = MidiBertForPreTraining(config)
    model.check_tokens(corpus.config, str(tokens_path))
    prepare_output(out, resume, overwrite)

    train_windows, _ = cut_windows(corpus, train_pieces, settings.max_len)
    valid_windows, _ = cut_windows(corpus, corpus.select(split="valid"), settings.max_len)
    valid_batches = [pad_batch(valid_windows[i : i + settings.batch_size]) for i in range(0, len(valid_windows), settings.batch_size)]

    batches_per_epoch = math.ceil(len(train_windows) / settings.batch_size)
    total_steps = settings.max_steps or max(1, settings.epochs * batches_per_epoch // settings.grad_accum)
    accelerator = Accelerator(
        cpu=settings.device == "cpu",
        mixed_precision="bf16" if settings.device == "cuda" else "no",
        gradient_accumulation_steps=settings.grad_accum,
    )
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "LayerNorm" in name or "embeddings" in name else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr
    )
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=int(settings.warmup * total_steps), num_training_steps=total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    if resume:
        accelerator.load_state(str(out / "checkpoints" / "last"))
    weights = field_weights(state["last_eval"]).to(accelerator.device)
    valid_batches = [(ids.to(accelerator.device), m.to(accelerator.device)) for ids, m in valid_batches]
    unwrapped = accelerator.unwrap_model(model)

    log_file = out / "metrics.jsonl"
    _truncate_log(log_file, state["step"])
    started, tokens_seen = time.perf_counter(), 0
    model.train()
    step = state["step"]
    while step < total_steps:
        order = epoch_order(len(train_windows), settings.seed, state["epoch"])
        for b in range(state["batch"], batches_per_epoch):
            ids, attention_mask = pad_batch([train_windows[i] for i in order[b * settings.batch_size : (b + 1) * settings.batch_size]])
            ids, attention_mask = ids.to(accelerator.device), attention_mask.to(accelerator.device)
            generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + step * 101 + b)
            with accelerator.accumulate(model):
                if settings.objective == "mlm":
                    result = mlm_step(unwrapped, ids, attention_mask, weights, settings.mask_ratio, generator)
                else:
                    result = adversarial_step(
                        unwrapped, ids, attention_mask, weights, settings.mask_ratio, settings.random_share, generator
                    )
                accelerator.backward(result.loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), settings.clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            tokens_seen += int(attention_mask.sum())
            state["batch"] = b + 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            state["step"] = step
            elapsed = time.perf_counter() - started
            row = {"step": step, "epoch": state["epoch"], "loss": round(float(result.loss.detach()), 5),
                   "recover_loss": round(result.recover_loss, 5), "masker_loss": round(result.masker_loss, 5),
                   "accuracy": round(result.accuracy, 5), "lr": scheduler.get_last_lr()[0],
                   "notes_per_s": round(tokens_seen / elapsed, 1) if elapsed else None}
            if step % settings.eval_every == 0 or step == total_steps:
                row["valid"] = evaluate(unwrapped, valid_batches, settings.mask_ratio, settings.seed + 7919)
                state["last_eval"] = row["valid"]
                weights = field_weights(row["valid"]).to(accelerator.device)
                if state["best"] is None or row["valid"]["accuracy"] > state["best"]["accuracy"]:
                    state["best"] = {"step": step, **row["valid"]}
                    _save_model(unwrapped, out)
                _append(log_file, row)
                _save_checkpoint(accelerator, unwrapped, out, state)
            elif step % max(1, settings.eval_every // 10) == 0:
                _append(log_file, row)
            if on_step:
                on_step(step, total_steps, row)
            if step >= total_steps:
                break
        else:
            state["epoch"] += 1
            state["batch"] = 0
            continue
        break

    seconds = time.perf_counter() - started
    final = state["last_eval"] or evaluate(unwrapped, valid_batches, settings.mask_ratio, settings.seed + 7919)
    metrics = {
        "objective": settings.objective,
        "steps": step,
        "train_windows": len(train_windows),
        "valid_windows": len(valid_windows),
        "train_pieces": len(train_pieces),
        "parameters": sum(p.numel() for p in unwrapped.parameters()),
        "seconds_this_run": round(seconds, 2),
        "notes_per_s": round(tokens_seen / seconds, 1) if seconds else None,
        "final_valid": final,
        "best_valid": state["best"],
    }
    if not (out / "model.safetensors").exists():
        _save_model(unwrapped, out)
    artifacts.atomic_write_json(out / "metrics.json", metrics)
    (out / "README.md").write_text(model_card(config, settings, metrics, tokens_path))
    manifest = artifacts.Manifest(
        kind=KIND,
        parameters={**dataclasses.asdict(settings), "model": {k: getattr(config, k) for k in (
            "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "field_embed_dim",
            "max_position_embeddings")}},
        inputs={"tokens": state["tokens"]},
        metrics={"valid_accuracy": final["accuracy"], "best_valid_accuracy": (state["best"] or final)["accuracy"],
                 "steps": step, "objective": settings.objective},
    )
    artifacts.write_manifest(out, manifest)
    return metrics


def _append(path: Path, row: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """On resume, forget log lines written after the checkpoint we continue from."""
    if path.exists():
        kept = [r for r in artifacts.read_jsonl(path) if r["step"] <= step]
        artifacts.write_jsonl(path, kept)


def _save_model(model, out: Path) -> None:
    """The best model at the top level, replaced file by file atomically."""
    tmp = out / ".best.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for file in tmp.iterdir():
        file.replace(out / file.name)
    tmp.rmdir()


def _save_checkpoint(accelerator, model, out: Path, state: dict) -> None:
    """``checkpoints/last``: everything needed to continue exactly, swapped in when complete."""
    tmp = out / "checkpoints" / ".last.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    accelerator.save_state(str(tmp))
    model.config.save_pretrained(tmp)
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
    artifacts.replace_dir(tmp, out / "checkpoints" / "last")


def model_card(config: MidiBertConfig, settings: PretrainSettings, metrics: dict, tokens_path: Path) -> str:
    best = metrics["best_valid"] or metrics["final_valid"]
    share = f", random share {settings.random_share}" if settings.objective == "adversarial" else ""
    fields = "\n".join(f"| {name} | {v['accuracy']:.3f} | {v['loss']:.3f} |" for name, v in best.get("fields", {}).items())
    return f"""---
library_name: transformers
tags: [midi, music, bert, musictl]
---
# MidiBert ({settings.objective} pre-training)

A MidiBert encoder (BERT over Octuple notes) pre-trained with `musictl pretrain-bert` on the training
split of `{tokens_path}` ({metrics['train_pieces']} pieces, {metrics['train_windows']} windows of up to
{settings.max_len} notes).

- Objective: `{settings.objective}` (mask ratio {settings.mask_ratio}{share})
- Size: {config.num_hidden_layers} layers, hidden {config.hidden_size}, {config.num_attention_heads} heads,
  {config.field_embed_dim}-d field embeddings, {metrics['parameters']:,} parameters
- Steps: {metrics['steps']}, batch {settings.batch_size} x {settings.grad_accum}, lr {settings.lr}, seed {settings.seed}
- Tokenizer vocabulary: `{config.tokenizer_config.vocab_id}` (parameters in config.json)

## Validation (masked notes, fixed random masks; best step {best.get('step', metrics['steps'])})
Mean accuracy {best['accuracy']:.3f}, mean loss {best['loss']:.3f}.

| field | accuracy | loss |
|---|---:|---:|
{fields}

Load with `musictl.bert.model.load_encoder(path)` or `MidiBertForPreTraining.from_pretrained(path)`.
"""
