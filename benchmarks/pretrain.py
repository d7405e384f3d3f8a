"""Pre-training speed: MidiBert-mlm, MidiBert-adversarial and a plain BertForMaskedLM of the same
dimensions, on the same batch, in one run (CPU or GPU).

    python benchmarks/pretrain.py --size tiny --batch-size 8 --max-len 512 --steps 30 --write

Targets: MLM within 1.15x of the plain model's step time, adversarial within 1.6x of MLM.
The plain model gets the same number of input positions and one word-level vocabulary of the
summed field sizes, i.e. the same work minus the per-field embeddings and heads.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import paths, tables

QUESTION = "Is a MidiBert pre-training step within 1.15x of a plain BertForMaskedLM of the same dimensions?"
COMPARISON = "median seconds per step of MidiBert-mlm over the plain BertForMaskedLM's, the models taking turns"


def _batch(config, batch_size: int, max_len: int, seed: int = 0):
    from musictl import constants as C

    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randint(C.N_SPECIAL, v, (batch_size, max_len), generator=g) for v in config.vocab_sizes], dim=-1)
    return ids, torch.ones(batch_size, max_len, dtype=torch.long)


def _rss_mib() -> float:
    """Resident memory of this process now (Linux /proc; 0 elsewhere)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


def _train_step(name: str, size: str, batch_size: int, max_len: int, device: str):
    """One optimizer step of the named model on a fixed random batch, as a closure."""
    from transformers import BertConfig, BertForMaskedLM

    from musictl import constants as C
    from musictl.bert.hard_mining import hard_mining_step
    from musictl.bert.model import MidiBertConfig, MidiBertForPreTraining
    from musictl.bert.objective import mlm_step
    from musictl.midi.vocab import TokenizerConfig

    config = MidiBertConfig.of_size(size, TokenizerConfig(), max_position_embeddings=max(max_len, 512))
    ids, mask = (t.to(device) for t in _batch(config, batch_size, max_len))
    weights = torch.ones(C.N_FIELDS, device=device)
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    if name.startswith("MidiBert"):
        model = MidiBertForPreTraining(config).to(device).train()
        if name.endswith("mlm"):
            def loss(m):
                return mlm_step(m, ids, mask, weights, 0.15, g).loss
        else:
            def loss(m):
                return hard_mining_step(m, ids, mask, weights, 0.15, 0.2, g).loss
    else:
        model = BertForMaskedLM(BertConfig(
            vocab_size=sum(config.vocab_sizes), hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
            max_position_embeddings=config.max_position_embeddings)).to(device).train()
        words = ids[..., C.PITCH]
        labels = torch.where(torch.rand(words.shape, generator=g).to(device) < 0.15, words, torch.full_like(words, -100))

        def loss(m):
            return m(input_ids=words, attention_mask=mask, labels=labels).loss
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad()
        loss(model).backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def _peak_memory(name: str, size: str, batch_size: int, max_len: int, device: str, threads: int) -> float:
    """Run in a fresh process, so the peak is this model's own (RSS growth on CPU, allocator peak on GPU)."""
    import resource

    torch.set_num_threads(threads)
    step = _train_step(name, size, batch_size, max_len, device)
    baseline = _rss_mib()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(3):
        step()
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    # ru_maxrss is KiB on Linux; the growth over the built model is the step's working memory.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline


def _interleaved_times(steps: dict, rounds: int, per_round: int = 2, warmup: int = 3) -> dict[str, float]:
    """Median step time per model, taking turns in short rounds so that every model meets the same
    machine noise (a shared 2-core machine drifts by 20% over a minute)."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            for _ in range(per_round):
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


NAMES = ("MidiBert, mlm", "MidiBert, adversarial", "plain BertForMaskedLM (same dims)")


def run(size: str, batch_size: int, max_len: int, steps: int, device: str, threads: int) -> list[tuple[str, float, float, float]]:
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        peaks = [pool.apply(_peak_memory, (name, size, batch_size, max_len, device, threads)) for name in NAMES]
    seconds = _interleaved_times({name: _train_step(name, size, batch_size, max_len, device) for name in NAMES},
                                 rounds=max(1, steps // 2))
    return [(name, seconds[name], batch_size * max_len / seconds[name], peak) for name, peak in zip(NAMES, peaks)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny", choices=["tiny", "small", "base"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = run(args.size, args.batch_size, args.max_len, args.steps, device, args.threads)
    plain, mlm = rows[2][1], rows[0][1]
    memory = "peak GPU MiB" if device == "cuda" else "peak RSS growth MiB"
    lines = [
        f"Machine: {device} ({os.cpu_count()} CPU cores, {platform.machine()}), torch {torch.__version__}, {args.threads} threads; "
        f"size {args.size}, batch {args.batch_size} x {args.max_len} notes, {args.steps} timed steps per model (median), "
        "the models taking turns 2 steps at a time so that they share the machine's noise. Memory is measured with each "
        "model in its own process; on CPU it is the process's peak resident memory minus its size with "
        "the model and optimizer built (activations, gradients, optimizer state).",
        "",
        f"| model | s/step | notes/s | vs plain BERT | vs MidiBert-mlm | {memory} |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, seconds, rate, peak in rows:
        lines.append(f"| {name} | {seconds:.4f} | {rate:,.0f} | {seconds / plain:.2f}x | {seconds / mlm:.2f}x | "
                     f"{peak:,.0f} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        head = "\n".join([f"# Pre-training step time ({args.size})", "", *tables.planned(QUESTION, COMPARISON)])
        (paths.RESULTS / f"pretrain_{args.size}.md").write_text(f"{head}\nCommand: `python benchmarks/pretrain.py --size {args.size} "
                       f"--batch-size {args.batch_size} --max-len {args.max_len} --steps {args.steps} --write`\n\n{table}\n")


if __name__ == "__main__":
    main()
