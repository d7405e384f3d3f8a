"""LoRA vs full fine-tuning of MusicGen's decoder: trainable share and step time, then base vs base + adapter.

    python benchmarks/lora.py --write                  # tiny random base on CPU (about a minute on 2 cores)
    python benchmarks/lora.py --base DIR --write       # also musicgen-small from a local directory (GPU advised)

The reference is full fine-tuning of the same decoder on the same batches, in the same run. The
evaluate table uses the tiny *untrained* base: its numbers show the pipeline, not music quality.
"""

from __future__ import annotations

import sys

# benchmarks/tokenize.py is named like the standard library's `tokenize`: keep this folder off the path.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("benchmarks")]

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "lora.md"


def step_times(model, tokenizer, codes, captions, mode: str, steps: int, batch_size: int, device: str) -> dict:
    """Mean seconds per optimizer step (after one warm-up step) and the trainable share."""
    import torch

    from musictl.violin.lora import add_lora, forward, make_batch, parameter_share
    from musictl.violin.model import freeze_encoders

    if mode == "lora":
        model = add_lora(model, ["q_proj", "v_proj"], rank=16, alpha=32, dropout=0.05)
    else:
        freeze_encoders(model)
        model.decoder.requires_grad_(True)
    model.to(device).train()
    trainable, total = parameter_share(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    rng = np.random.default_rng(0)
    times = []
    for step in range(steps + 1):
        idx = rng.choice(len(captions), batch_size, replace=False)
        batch = make_batch(model, tokenizer, [captions[i] for i in idx], codes[idx], 0.2, rng)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = forward(model, batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device == "cuda":
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - start)
    return {"trainable": trainable, "total": total, "step_s": float(np.mean(times)), "loss": loss.item()}


def compare(base_dir, data_dir: Path, steps: int, batch_size: int, device: str, label: str) -> list[str]:
    from musictl.violin.model import load_base
    from musictl.violin.train import _codes, load_clips

    rows = []
    audio, captions = load_clips(data_dir, "train")
    for mode in ("full", "lora"):
        model, tokenizer = load_base(base_dir)
        model.to(device)
        codes = _codes(model, audio)
        r = step_times(model, tokenizer, codes, captions, mode, steps, batch_size, device)
        name = "full fine-tuning (decoder)" if mode == "full" else "LoRA q_proj,v_proj r=16"
        rows.append(
            f"| {label} | {device} | {name} | {r['trainable']:,} | {100 * r['trainable'] / r['total']:.3f}% | "
            f"{1000 * r['step_s']:.1f} |"
        )
        print(rows[-1], flush=True)
        del model
    return rows


def main() -> None:
    import torch

    from musictl.violin.dataset import from_midi
    from musictl.violin.evaluate import evaluate, table
    from musictl.violin.generate import load_for_generation
    from musictl.violin.model import build_tiny_base, load_base
    from musictl.violin.train import TrainConfig, train

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--timing-steps", type=int, default=10)
    parser.add_argument("--train-steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--base", type=Path, help="local musicgen-small directory (timed only where given)")
    parser.add_argument("--quick", action="store_true", help="8 clips of 2 s, 3 timing steps, 20 training steps")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS}")
    args = parser.parse_args()
    if args.quick:
        args.clips, args.seconds, args.timing_steps, args.train_steps = 8, 2.0, 3, 20
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    from musictl.midi.corpus import bundled_corpus, find_midi_files

    work = Path(tempfile.mkdtemp(prefix="lora-bench-"))
    files = [f.path for f in find_midi_files([bundled_corpus() / "fiddle-tunes"])]
    report = from_midi(files, work / "data", args.seconds, args.clips, seed=0, valid=0.25)
    from musictl.artifacts import write_jsonl

    write_jsonl(work / "data" / "metadata.jsonl", report.rows)
    tiny = build_tiny_base(work / "tiny")
    rows = compare(tiny, work / "data", args.timing_steps, args.batch_size, "cpu", "tiny random (32-d x 2 layers)")
    if not args.quick:
        wider = build_tiny_base(work / "wider", hidden_size=512, layers=6, codebook_size=256)
        rows += compare(wider, work / "data", args.timing_steps, args.batch_size, "cpu", "random (512-d x 6 layers)")
    if args.base is not None and device == "cuda":
        rows += compare(args.base, work / "data", args.timing_steps, args.batch_size, device, "musicgen-small")
    else:
        why = "no --base DIR with local weights" if args.base is None else "no GPU"
        rows.append(f"| musicgen-small | - | not run: {why} | - | - | - |")

    model, tokenizer = load_base(tiny)
    config = TrainConfig(
        rank=16, alpha=32, lr=3e-3, batch_size=args.batch_size, max_steps=args.train_steps, eval_every=args.train_steps
    )
    start = time.perf_counter()
    peft_model, result, _ = train(model, tokenizer, work / "data", config, work / "ckpt", "cpu", False, print)
    train_s = time.perf_counter() - start
    peft_model.save_pretrained(work / "lora")
    model, tokenizer, _ = load_for_generation(tiny, work / "lora", "cpu")
    results = evaluate(model, tokenizer, work / "data", args.seconds, 3.0, 0, 8, None, print)
    vocab = model.get_base_model().config.decoder.vocab_size
    lines = [
        "# LoRA vs full fine-tuning of MusicGen's decoder",
        "",
        f"Machine: 2 CPU cores, no GPU. Command: `python benchmarks/lora.py{' --quick' if args.quick else ''} --write`. "
        f"Batch {args.batch_size} clips of {args.seconds:g} s ({len(report.rows)} clips rendered from the bundled fiddle tunes); "
        f"mean of {args.timing_steps} steps after one warm-up. Reference: full fine-tuning of the same decoder in the same run.",
        "",
        "| base | device | method | trainable params | trainable share | ms / step |",
        "|---|---|---|---:|---:|---:|",
        *rows,
        "",
        f"## Evaluate table: tiny **random** base, LoRA trained {result.steps} steps ({train_s:.0f} s)",
        "",
        f"Validation loss per codebook after training: {', '.join(f'{x:.3f}' for x in result.valid_loss_per_codebook)} "
        f"(uniform over {vocab} codes would be {np.log(vocab):.3f}).",
        f"{results['clips']} held-out clips, {args.seconds:g} s each, same prompts and seeds for both systems; "
        "'reference' compares the real clips with themselves (the zero point). The base is untrained and its random EnCodec "
        "decoder maps different codes to similar audio, so these numbers only show that the pipeline runs end to end.",
        "",
        table(results),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
