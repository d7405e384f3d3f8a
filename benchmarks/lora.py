"""LoRA (both --lora-targets presets) vs full fine-tuning of MusicGen's decoder: trainable share and step time,
then base vs base + adapter.

    python benchmarks/lora.py --write                  # tiny and wider random bases on CPU
    python benchmarks/lora.py --base DIR --write       # also musicgen-small from a local directory (GPU advised)

The reference is full fine-tuning of the same decoder on the same batches, in the same run. The
evaluate table uses the tiny *untrained* base: its numbers show the pipeline, not music quality.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import paths, tables

RESULTS = paths.RESULTS / "lora.md"
QUESTION = "How much of MusicGen's decoder does LoRA train, and how fast is its step, against full fine-tuning?"
COMPARISON = ("trainable share and median ms per step of LoRA (each --lora-targets preset) against full fine-tuning of the "
              "same decoder on the same batches, in the same run")


MODES = ("full", "attention", "attention-mlp")


class Trainer:
    """One method (full fine-tuning of the decoder, or LoRA with a --lora-targets preset) on its own model copy."""

    def __init__(self, base_dir, audio, mode: str, device: str):
        import torch

        from musictl.violin.lora import add_lora, parameter_share
        from musictl.violin.model import freeze_encoders, load_base
        from musictl.violin.settings import TARGET_PRESETS
        from musictl.violin.train import audio_codes

        model, self.tokenizer = load_base(base_dir)
        model.to(device)
        self.codes = audio_codes(model, audio)
        if mode in TARGET_PRESETS:
            model = add_lora(model, TARGET_PRESETS[mode], rank=16, alpha=32, dropout=0.05)
        else:
            freeze_encoders(model)
            model.decoder.requires_grad_(True)
        self.model, self.device, self.mode = model.to(device).train(), device, mode
        self.trainable, self.total = parameter_share(model)
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        self.rng, self.times = np.random.default_rng(0), []

    def step(self, captions: list[str], batch_size: int, timed: bool) -> None:
        import torch

        from musictl.violin.lora import forward, make_batch

        idx = self.rng.choice(len(captions), batch_size, replace=False)
        batch = make_batch(self.model, self.tokenizer, [captions[i] for i in idx], self.codes[idx], 0.2, self.rng)
        if self.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.device == "cuda"):
            loss = forward(self.model, batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        if self.device == "cuda":
            torch.cuda.synchronize()
        if timed:
            self.times.append(time.perf_counter() - start)


def compare(base_dir, data_dir: Path, steps: int, batch_size: int, device: str, label: str) -> list[str]:
    """The methods take turns step by step (so a busy machine slows all alike); median ms per step."""
    from musictl.violin.train import load_clips

    audio, captions = load_clips(data_dir, "train")
    trainers = [Trainer(base_dir, audio, mode, device) for mode in MODES]
    for step in range(steps + 1):
        for trainer in trainers:
            trainer.step(captions, batch_size, timed=step > 0)  # step 0 warms up
    rows = []
    for t in trainers:
        name = "full fine-tuning (decoder)" if t.mode == "full" else f"LoRA --lora-targets {t.mode} r=16"
        rows.append(f"| {label} | {device} | {name} | {t.trainable:,} | {100 * t.trainable / t.total:.3f}% | "
                    f"{1000 * float(np.median(t.times)):.1f} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    import torch

    from musictl import artifacts as artifacts_module
    from musictl.violin.dataset import from_midi
    from musictl.violin.evaluate import evaluate, table
    from musictl.violin.generate import load_for_generation
    from musictl.violin.model import build_tiny_base
    from musictl.violin.settings import EvaluateSettings, LoraTrainSettings
    from musictl.violin.train import train

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
    from musictl.hf import quiet_transformers

    quiet_transformers()
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
    load = os.getloadavg()[0]
    threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""

    settings = LoraTrainSettings(
        base=str(tiny), rank=16, alpha=32, lr=3e-3, batch_size=args.batch_size, max_steps=args.train_steps,
        eval_every=args.train_steps, device="cpu"
    )
    artifacts_module.write_manifest(work / "data", artifacts_module.Manifest("violin-data", {"seconds": args.seconds}))
    start = time.perf_counter()
    result = train(settings, work / "data", work / "lora", work).result
    train_s = time.perf_counter() - start
    model, tokenizer, _ = load_for_generation(tiny, work / "lora", "cpu")
    results = evaluate(model, tokenizer, work / "data", EvaluateSettings(seconds=args.seconds, guidance=3.0, seed=0, limit=8))
    vocab = model.get_base_model().config.decoder.vocab_size
    lines = [
        "# LoRA vs full fine-tuning of MusicGen's decoder",
        "",
        *tables.planned(QUESTION, COMPARISON),
        f"Machine: {os.cpu_count()} CPU cores, {'a GPU' if device == 'cuda' else 'no GPU'}, {torch.get_num_threads()} torch "
        f"thread(s), load average {load:.1f} while timing. "
        f"Command: `{threads}python benchmarks/lora.py{' --quick' if args.quick else ''} --write`. "
        f"Batch {args.batch_size} clips of {args.seconds:g} s ({len(report.rows)} clips rendered from the bundled fiddle tunes); "
        f"median of {args.timing_steps} steps after one warm-up, the three methods taking turns step by step. "
        "Reference: full fine-tuning of the same decoder in the same run.",
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
