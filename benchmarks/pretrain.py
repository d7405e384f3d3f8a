"""Pre-training speed: MidiBert-mlm, MidiBert-adversarial and a plain BertForMaskedLM of the same
dimensions, on the same batch, in one run (CPU or GPU).

    python benchmarks/pretrain.py --size tiny --batch-size 8 --max-len 512 --steps 20 --write

Targets: MLM within 1.15x of the plain model's step time, adversarial within 1.6x of MLM.
The plain model gets the same number of input positions and one word-level vocabulary of the
summed field sizes, i.e. the same work minus the per-field embeddings and heads.
"""

from __future__ import annotations

import sys

# benchmarks/tokenize.py is named like the standard library's `tokenize`: keep this folder off the path.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("benchmarks")]

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402


def _batch(config, batch_size: int, max_len: int, seed: int = 0):
    from musictl import constants as C

    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randint(C.N_SPECIAL, v, (batch_size, max_len), generator=g) for v in config.vocab_sizes], dim=-1)
    return ids, torch.ones(batch_size, max_len, dtype=torch.long)


def _time(step, steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def run(size: str, batch_size: int, max_len: int, steps: int, device: str) -> list[tuple[str, float, float, float]]:
    from transformers import BertConfig, BertForMaskedLM

    from musictl import constants as C
    from musictl.bert.model import MidiBertConfig, MidiBertForPreTraining
    from musictl.bert.objectives import adversarial_step, mlm_step
    from musictl.midi.vocab import TokenizerConfig

    config = MidiBertConfig.of_size(size, TokenizerConfig(), max_position_embeddings=max(max_len, 512))
    ids, mask = (t.to(device) for t in _batch(config, batch_size, max_len))
    weights = torch.ones(C.N_FIELDS, device=device)
    rows = []

    def measure(name, model, step_fn):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()

        def step():
            optimizer.zero_grad()
            step_fn(model).backward()
            optimizer.step()
            if device == "cuda":
                torch.cuda.synchronize()

        seconds = _time(step, steps)
        peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
        rows.append((name, seconds, batch_size * max_len / seconds, peak))

    torch.manual_seed(0)
    midibert = MidiBertForPreTraining(config).to(device).train()
    g = torch.Generator().manual_seed(1)
    measure("MidiBert, mlm", midibert, lambda m: mlm_step(m, ids, mask, weights, 0.15, g).loss)
    measure("MidiBert, adversarial", midibert, lambda m: adversarial_step(m, ids, mask, weights, 0.15, 0.2, g).loss)
    plain = BertForMaskedLM(BertConfig(
        vocab_size=sum(config.vocab_sizes), hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings)).to(device).train()
    words = ids[..., C.PITCH]
    labels = torch.where(torch.rand(words.shape, generator=g).to(device) < 0.15, words, torch.full_like(words, -100))
    measure("plain BertForMaskedLM (same dims)", plain, lambda m: m(input_ids=words, attention_mask=mask, labels=labels).loss)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny", choices=["tiny", "small", "base"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = run(args.size, args.batch_size, args.max_len, args.steps, device)
    plain, mlm = rows[2][1], rows[0][1]
    lines = [
        f"Machine: {device} ({os.cpu_count()} CPU cores, {platform.machine()}), torch {torch.__version__}, {args.threads} threads; "
        f"size {args.size}, batch {args.batch_size} x {args.max_len} notes, {args.steps} timed steps after 3 warm-up steps.",
        "",
        "| model | s/step | notes/s | vs plain BERT | vs MidiBert-mlm | peak GPU MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, seconds, rate, peak in rows:
        lines.append(f"| {name} | {seconds:.4f} | {rate:,.0f} | {seconds / plain:.2f}x | {seconds / mlm:.2f}x | "
                     f"{'n/a (CPU)' if peak != peak else f'{peak:.0f}'} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        out = Path(__file__).parent / "results" / f"pretrain_{args.size}.md"
        out.write_text(f"# Pre-training step time ({args.size})\n\nCommand: `python benchmarks/pretrain.py --size {args.size} "
                       f"--batch-size {args.batch_size} --max-len {args.max_len} --steps {args.steps} --write`\n\n{table}\n")


if __name__ == "__main__":
    main()
