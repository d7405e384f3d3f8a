"""``musictl pretrain-bert``: MidiBert pre-training (plain MLM or adversarial masking)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from musictl.commands._common import Device, DeviceOpt, Overwrite, Seed, Workdir, reports_errors, resolve_device


class Objective(str, enum.Enum):
    adversarial = "adversarial"
    mlm = "mlm"


class Size(str, enum.Enum):
    tiny = "tiny"
    small = "small"
    base = "base"


def register(app: typer.Typer) -> None:
    app.command("pretrain-bert")(pretrain_bert)


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
