"""``musictl pretrain-bert``: MidiBert pre-training (plain MLM or adversarial masking)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from musictl.commands._common import Device, DeviceOpt, Overwrite, Seed, Workdir, emit_binary, reports_errors, resolve_device


class Objective(str, enum.Enum):
    adversarial = "adversarial"
    mlm = "mlm"


class Size(str, enum.Enum):
    tiny = "tiny"
    small = "small"
    base = "base"


def register(app: typer.Typer) -> None:
    app.command("pretrain-bert")(pretrain_bert)
    app.command("finetune-mask")(finetune_mask)
    app.command("predict")(predict)


@reports_errors
def pretrain_bert(
    tokens: Annotated[Optional[Path], typer.Option(help="Tokens artifact [default: WORKDIR/tokens].")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output directory [default: WORKDIR/bert].")] = None,
    objective: Annotated[
        Objective, typer.Option(help="adversarial: a masker picks hard notes; mlm: random masking.")
    ] = Objective.adversarial,
    size: Annotated[Size, typer.Option(help="tiny (CPU minutes), small, base (12 layers, 768 hidden, 12 heads).")] = Size.tiny,
    hidden_size: Annotated[Optional[int], typer.Option(help="Override the size's hidden size.")] = None,
    layers: Annotated[Optional[int], typer.Option(help="Override the number of layers.")] = None,
    heads: Annotated[Optional[int], typer.Option(help="Override the number of attention heads.")] = None,
    field_embed_dim: Annotated[Optional[int], typer.Option(help="Override the per-field embedding size.")] = None,
    mask_ratio: Annotated[float, typer.Option(min=0.01, max=0.9, help="Share of real notes masked per window.")] = 0.15,
    random_share: Annotated[float, typer.Option(min=0.0, max=1.0, help="Adversarial: share of the mask budget drawn at random.")] = 0.2,
    max_len: Annotated[int, typer.Option(min=8, help="Notes per training window.")] = 512,
    batch_size: Annotated[int, typer.Option(min=1, help="Windows per batch (per device).")] = 8,
    grad_accum: Annotated[int, typer.Option(min=1, help="Batches per optimizer step.")] = 1,
    lr: Annotated[float, typer.Option(help="Peak learning rate (linear warm-up, then linear decay).")] = 5e-4,
    warmup: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of steps spent warming up.")] = 0.1,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.01,
    clip: Annotated[float, typer.Option(help="Gradient-norm clipping.")] = 1.0,
    max_steps: Annotated[Optional[int], typer.Option(min=1, help="Optimizer steps (overrides --epochs).")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training windows.")] = 1,
    eval_every: Annotated[int, typer.Option(min=1, help="Evaluate and checkpoint every N steps.")] = 100,
    resume: Annotated[bool, typer.Option(help="Continue exactly from OUT/checkpoints/last.")] = False,
    seed: Seed = 0,
    device: DeviceOpt = Device.auto,
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Pre-train MidiBert on the training split of the tokens artifact.

    Writes WORKDIR/bert: the best model (HF directory), checkpoints/last for --resume,
    metrics.jsonl, metrics.json, a model card. Multi-GPU: accelerate launch --multi_gpu -m musictl pretrain-bert ...

    Example: musictl pretrain-bert --objective adversarial --size tiny --max-steps 300
    """
    from rich.progress import TextColumn

    from musictl import artifacts
    from musictl.bert.pretrain import PretrainSettings, pretrain
    from musictl.console import err, progress

    settings = PretrainSettings(
        size=size.value, hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=heads,
        field_embed_dim=field_embed_dim, objective=objective.value, mask_ratio=mask_ratio, random_share=random_share,
        max_len=max_len, batch_size=batch_size, lr=lr, warmup=warmup, weight_decay=weight_decay, max_steps=max_steps,
        epochs=epochs, eval_every=eval_every, grad_accum=grad_accum, clip=clip, seed=seed, device=resolve_device(device),
    )
    tokens_path = tokens or artifacts.artifact_dir(workdir, "tokens")
    out_dir = out or artifacts.artifact_dir(workdir, "bert")
    with progress(TextColumn("{task.fields[info]}")) as bar:
        task = bar.add_task("pretrain-bert", total=None, info="")

        def on_step(step: int, total: int, row: dict) -> None:
            valid = f" valid acc {row['valid']['accuracy']:.3f}" if "valid" in row else ""
            bar.update(task, completed=step, total=total,
                       info=f"loss {row['loss']:.3f} acc {row['accuracy']:.3f} {row['notes_per_s'] or 0:,.0f} notes/s{valid}")
            if "valid" in row and not err.is_terminal:
                err.print(f"step {step}/{total}: loss {row['loss']:.4f}{valid}")

        metrics = pretrain(tokens_path, out_dir, settings, resume=resume, overwrite=overwrite, on_step=on_step)
    best = metrics["best_valid"] or metrics["final_valid"]
    err.print(
        f"[green]done[/]: {metrics['steps']} steps, valid masked accuracy {metrics['final_valid']['accuracy']:.3f} "
        f"(best {best['accuracy']:.3f}), {metrics['notes_per_s'] or 0:,.0f} notes/s"
    )
    print(out_dir)


class Task(str, enum.Enum):
    melody = "melody"
    velocity = "velocity"
    composer = "composer"
    emotion = "emotion"
    style = "style"
    label = "label"


@reports_errors
def finetune_mask(
    task: Annotated[Task, typer.Option(help="melody, velocity (per note); composer, emotion, style, label (per piece).")],
    model: Annotated[Optional[Path], typer.Option(help="Pre-trained MidiBert [default: WORKDIR/bert].")] = None,
    tokens: Annotated[Optional[Path], typer.Option(help="Tokens artifact [default: WORKDIR/tokens].")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output [default: WORKDIR/finetune/TASK].")] = None,
    split_file: Annotated[
        Optional[Path], typer.Option(help="JSON train/valid/test lists of file names (else the tokens' splits).")
    ] = None,
    labels: Annotated[Optional[Path], typer.Option(help="--task label: CSV path,label or JSON {path: label}.")] = None,
    label_pattern: Annotated[str, typer.Option(help="--task emotion: regex whose group 1 is the label, on the file name.")] = r"^(Q[1-4])_",
    mask_ratio: Annotated[float, typer.Option(min=0.0, max=0.9, help="Share of input notes masked per batch (0: plain).")] = 0.15,
    from_scratch: Annotated[bool, typer.Option(help="Do not load pre-trained weights (same architecture).")] = False,
    epochs: Annotated[int, typer.Option(min=1, help="Maximum epochs.")] = 10,
    patience: Annotated[int, typer.Option(min=1, help="Stop after N epochs without better validation accuracy.")] = 3,
    eval_masked: Annotated[bool, typer.Option(help="Also report test accuracy on masked input.")] = False,
    max_len: Annotated[int, typer.Option(min=8, help="Notes per window.")] = 512,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 3e-4,
    seed: Seed = 0,
    device: DeviceOpt = Device.auto,
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Fine-tune MidiBert with mask fine-tuning on an understanding task; test at the best validation epoch.

    Example: musictl finetune-mask --task composer --split-file ../shared/datasets/pianist8/splits.json
    """
    from musictl import artifacts
    from musictl.bert.finetune import FinetuneSettings, finetune
    from musictl.console import err, info, progress

    settings = FinetuneSettings(task=task.value, mask_ratio=mask_ratio, from_scratch=from_scratch, max_len=max_len,
                                batch_size=batch_size, lr=lr, epochs=epochs, patience=patience, eval_masked=eval_masked,
                                seed=seed, device=resolve_device(device), label_pattern=label_pattern,
                                labels_file=str(labels) if labels else None)
    out_dir = out or artifacts.artifact_dir(workdir, "finetune", task.value)
    with progress() as bar:
        job = bar.add_task(f"finetune {task.value}", total=epochs)

        def on_epoch(epoch, total, row):
            bar.update(job, completed=epoch)
            if not err.is_terminal:
                info(f"epoch {epoch}: train loss {row['train_loss']:.4f}, valid accuracy {row['valid_accuracy']:.4f}")

        metrics = finetune(tokens or artifacts.artifact_dir(workdir, "tokens"), model or artifacts.artifact_dir(workdir, "bert"),
                           out_dir, settings, split_file, overwrite, on_epoch)
    if metrics["unlabelled_pieces"]:
        info(f"{metrics['unlabelled_pieces']} pieces had no label and were left out (listed in {out_dir / 'unlabelled.jsonl'})")
    err.print(f"[green]test[/] accuracy {metrics['test']['accuracy']:.4f}, macro-F1 {metrics['test']['macro_f1']:.4f} "
              f"(best epoch {metrics['best_epoch']}, chance {metrics['chance_accuracy']:.3f})")
    print(out_dir)


@reports_errors
def predict(
    files: Annotated[list[Path], typer.Argument(help="MIDI files (need not be tokenized).")],
    model: Annotated[Path, typer.Option(help="A finetune-mask output directory.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Token tasks: the output MIDI (one input file).")] = None,
    device: DeviceOpt = Device.auto,
) -> None:
    """Predict with a fine-tuned model: a MIDI split into melody/bridge/accompaniment tracks (or with
    predicted velocities), or one JSON line per file with the label and class probabilities.

    Example: musictl predict --model musictl-work/finetune/melody song.mid -o melody.mid
    """
    import json

    from musictl.bert.predict import load_classifier, predict_file, prediction_midi
    from musictl.console import warn
    from musictl.errors import MusictlError, TokenizeError, UsageError

    classifier, task = load_classifier(model)
    dev = resolve_device(device)
    if task in ("melody", "velocity"):
        if len(files) != 1:
            raise UsageError(f"--task {task} models write one MIDI file: give one input file")
        result = predict_file(classifier, task, files[0], device=dev)
        emit_binary(prediction_midi(result, task), out)
        return
    failed = 0
    for path in files:
        try:
            result = predict_file(classifier, task, path, device=dev)
        except TokenizeError as exc:
            warn(str(exc))
            failed += 1
            continue
        print(json.dumps({"file": str(path), "label": result["label"], "probabilities": result["probabilities"]}), flush=True)
    if failed == len(files):
        raise MusictlError("no input file could be read")
