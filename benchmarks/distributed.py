"""Pre-training throughput on 1 vs 2 processes (CPU, gloo), same global batch, same model.

    python benchmarks/distributed.py --steps 60 --write

Each configuration is a real ``musictl pretrain-bert`` run (the 2-process one through the launch line of
docs/distributed.md); samples/s is windows per second of training, from the run's own metrics.json
(``steps x global batch / seconds_this_run``: start-up and imports excluded, the one final evaluation and
checkpoint included). Rows: 1 process with 1 thread, 1 process with all cores' threads, 2 processes
with cores / 2 threads each; the runs take turns ``--repeats`` times (so they share the machine's
noise) and the table gives the median and the range. Where a GPU is visible, 1 GPU with
``--mixed-precision bf16`` vs ``no`` is added. Writes benchmarks/results/distributed.md with the
command that made it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import paths, tables

ROOT = paths.ROOT
QUESTION = "Do 2 training processes train more windows per second than 1 at the same global batch?"
COMPARISON = "samples/s of each configuration over 1 process with 1 thread (median of the repeats, the configurations taking turns)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launcher(processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "musictl"]
    return [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
            "-m", "musictl"]


def run(work: Path, tokens: Path, name: str, processes: int, threads: int, args, extra: list[str]) -> dict:
    out = work / name
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    command = [*launcher(processes), "pretrain-bert", "--tokens", str(tokens), "--out", str(out), "--size", args.size,
               "--max-len", str(args.max_len), "--batch-size", str(args.global_batch // processes), "--objective", "mlm",
               "--max-steps", str(args.steps), "--eval-every", str(args.steps), "--overwrite", *extra]
    subprocess.run(command, check=True, env=env, capture_output=True, text=True)
    metrics = json.loads((out / "metrics.json").read_text())
    samples = metrics["steps"] * metrics["global_batch_size"]
    return {"name": name, "processes": metrics["processes"], "threads": threads, "per_device": metrics["per_device_batch_size"],
            "global": metrics["global_batch_size"], "precision": metrics["mixed_precision"], "device": metrics["device"],
            "seconds": metrics["seconds_this_run"], "samples_per_s": samples / metrics["seconds_this_run"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    import torch

    cores = os.cpu_count() or 1
    configs = [("1 process, 1 thread", 1, 1, ["--device", "cpu"]), (f"1 process, {cores} threads", 1, cores, ["--device", "cpu"]),
               (f"2 processes, {max(1, cores // 2)} thread(s) each", 2, max(1, cores // 2), ["--device", "cpu"])]
    if torch.cuda.is_available():
        configs += [(f"1 GPU, {p}", 1, cores, ["--device", "cuda", "--mixed-precision", p]) for p in ("no", "bf16")]
    runs: dict[str, list[dict]] = {name: [] for name, *_ in configs}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-m", "musictl", "tokenize", "-o", str(work / "tokens"), "--workers", "1"], check=True,
                       capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        for _ in range(args.repeats):
            for number, (name, processes, threads, extra) in enumerate(configs):
                runs[name].append(run(work, work / "tokens", f"run{number}", processes, threads, args, extra))
    rows = []
    for name, found in runs.items():
        speeds = sorted(r["samples_per_s"] for r in found)
        rows.append({**found[0], "name": name, "samples_per_s": statistics.median(speeds), "low": speeds[0], "high": speeds[-1],
                     "seconds": statistics.median(r["seconds"] for r in found)})
    base = rows[0]["samples_per_s"]
    command = (f"python benchmarks/distributed.py --steps {args.steps} --size {args.size} --max-len {args.max_len} "
               f"--global-batch {args.global_batch} --repeats {args.repeats}" + (" --write" if args.write else ""))
    lines = [
        "# Pre-training throughput: 1 vs 2 processes",
        "",
        *tables.planned(QUESTION, COMPARISON),
        f"Command: `{command}`",
        "",
        f"Machine: {cores} CPU cores ({platform.machine()}), torch {torch.__version__}, "
        f"{'a GPU' if torch.cuda.is_available() else 'no GPU'}; **the machine was shared with other jobs while this ran, "
        "so the numbers are noisy**. MidiBert `" + args.size + f"`, `--objective mlm`, windows of {args.max_len} notes "
        f"(bundled corpus), global batch {args.global_batch} in every row, {args.steps} steps; samples/s = windows trained per "
        "second, from each run's metrics.json (start-up excluded); median (and range) of "
        f"{args.repeats} runs each, the configurations taking turns.",
        "",
        "| run | processes | threads each | batch per process | global batch | precision | device | s (median) | samples/s "
        "(median) | range | vs 1 process, 1 thread |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['processes']} | {r['threads']} | {r['per_device']} | {r['global']} | {r['precision']} | "
                     f"{r['device']} | {r['seconds']:.1f} | {r['samples_per_s']:.1f} | {r['low']:.1f}-{r['high']:.1f} | "
                     f"{r['samples_per_s'] / base:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        (ROOT / "benchmarks" / "results" / "distributed.md").write_text(text)


if __name__ == "__main__":
    main()
