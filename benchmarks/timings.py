"""The times the README, the docs and the --help texts state, measured as a user meets them.

    python benchmarks/timings.py --write

Runs the commands a new user runs, each as its own ``musictl`` process on the bundled corpus, and times
them by the wall clock (process start, imports and the final evaluation included):

- ``musictl demo`` with its defaults;
- ``musictl pretrain-bert`` for each ``--size`` at its defaults (512-note windows, batch 8) and the
  README's recipe (``--size tiny --max-len 256``), a few steps each: seconds per step, windows per second,
  and what 1,000 steps would take;
- ``musictl embed`` and ``musictl finetune-mask --task style`` (seconds per epoch, from the tiny model).

The machine must be idle for the numbers to mean anything: the script records the load average before
and after and says so in the table. Writes benchmarks/results/timings.md and timings.json with --write.
No test asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import results_json  # noqa: E402

# (label, --size, --max-len, --objective, (short, long) step counts): the README recipe first, then each size at the
# defaults (adversarial, the default objective; mlm costs about 2.5x less a step). A
# step's cost is the difference of the two runs' wall times over their difference in steps, so start-up and the
# final validation (the same in both) drop out; they are the short run's time minus its steps.
PRETRAIN = [("tiny, --max-len 256 (README recipe)", "tiny", 256, "adversarial", (20, 80)),
            ("tiny, --max-len 256, mlm", "tiny", 256, "mlm", (20, 80)),
            ("tiny (defaults)", "tiny", 512, "adversarial", (10, 40)),
            ("small (defaults)", "small", 512, "adversarial", (2, 8)),
            ("base (defaults)", "base", 512, "adversarial", (1, 2))]
FINETUNE_EPOCHS = 2


def musictl(*args: str, work: Path) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``musictl ARGS -w work`` (stderr captured); its wall-clock seconds and the process."""
    command = [sys.executable, "-m", "musictl", *args, "-w", str(work)]
    started = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
    seconds = time.perf_counter() - started
    if process.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{process.stderr[-2000:]}")
    return seconds, process


def busy_share(seconds: float = 5.0) -> float:
    """The share of CPU time spent busy (all cores) over ``seconds``, from /proc/stat: is the machine idle?"""
    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return (busy1 - busy0) / max(1, total1 - total0)


def measure(root: Path) -> dict:
    rows: dict[str, dict] = {}
    load_before, busy_before = os.getloadavg()[0], busy_share()

    seconds, _ = musictl("demo", "-o", str(root / "demo"), work=root / "demo")
    rows["demo"] = {"command": "musictl demo", "seconds": round(seconds, 1)}

    work = root / "work"
    seconds, _ = musictl("tokenize", work=work)
    rows["tokenize"] = {"command": "musictl tokenize", "seconds": round(seconds, 1)}
    for label, size, max_len, objective, (short, long) in PRETRAIN:
        walls = {}
        for steps in (short, long):
            out = root / f"bert-{size}-{max_len}-{objective}-{steps}"
            walls[steps], _ = musictl("pretrain-bert", "--size", size, "--max-len", str(max_len), "--max-steps", str(steps),
                                      "--eval-every", str(steps), "--objective", objective, "--device", "cpu", "--out", str(out),
                                      work=work)
        batch = json.loads((out / "metrics.json").read_text()).get("global_batch_size", 8)
        per_step = (walls[long] - walls[short]) / (long - short)
        fixed = walls[short] - short * per_step  # start-up, building the model, one validation, writing the artifact
        rows[f"pretrain {label}"] = {
            "command": f"musictl pretrain-bert --size {size} --max-len {max_len} --max-steps {short} / {long} --objective {objective}",
            "seconds": round(walls[long], 1), "s_per_step": round(per_step, 3), "windows_per_s": round(batch / per_step, 1),
            "fixed_seconds": round(fixed, 1), "minutes_per_1000_steps": round((fixed + 1000 * per_step) / 60, 1)}
        if (size, max_len, objective) == ("tiny", 512, "adversarial"):
            bert = out

    seconds, _ = musictl("embed", "--model", str(bert), "--out", str(root / "embeddings"), work=work)
    rows["embed"] = {"command": "musictl embed (tiny model)", "seconds": round(seconds, 1)}
    out = root / "style"
    seconds, _ = musictl("finetune-mask", "--task", "style", "--model", str(bert), "--epochs", str(FINETUNE_EPOCHS),
                         "--device", "cpu", "--out", str(out), work=work)
    metrics = json.loads((out / "metrics.json").read_text())
    rows["finetune-mask"] = {"command": f"musictl finetune-mask --task style --epochs {FINETUNE_EPOCHS} (tiny model)",
                             "seconds": round(seconds, 1),
                             "s_per_epoch": round(metrics["seconds"] / max(1, metrics["epochs_run"]), 1)}
    import torch

    return {"machine": {"cores": os.cpu_count(), "cpu": platform.machine(), "python": platform.python_version(),
                        "torch": torch.__version__, "threads": torch.get_num_threads(),
                        "load_before": round(load_before, 2), "busy_before": round(busy_before, 3),
                        "load_after": round(os.getloadavg()[0], 2)},
            "rows": rows}


def table(data: dict) -> str:
    machine = data["machine"]
    busy = machine["busy_before"]
    idle = f"idle ({100 * busy:.0f}% busy" if busy < 0.1 else f"NOT idle ({100 * busy:.0f}% busy"
    lines = ["# Times a user meets", "",
             "Planned question: how long does each command a new user runs take on 2 CPU cores, so that every time the "
             "README, the docs and the `--help` texts state is one measured here.", "",
             "Command: `python benchmarks/timings.py --write`", "",
             f"Machine: {machine['cores']} CPU cores ({machine['cpu']}), Python {machine['python']}, torch {machine['torch']} "
             f"({machine['threads']} threads); {idle} in the 5 s before the start, 1-minute load average "
             f"{machine['load_before']}, {machine['load_after']} at the end). Wall-clock seconds of each `musictl` process "
             "on the bundled corpus (160 pieces), start-up and the final evaluation included. Pre-training: s/step is "
             "the difference of a short and a long run's wall times over their difference in steps (start-up and the "
             "validation drop out), fixed s what the short run spent besides its steps, and 1,000 steps = fixed s + "
             "1,000 x s/step (with the default --eval-every 100 add nine validations). A loaded machine is slower: "
             "on 2 cores shared with another job, expect about twice these times.", "",
             "| command | seconds | s/step | windows/s | fixed s | 1,000 steps | s/epoch |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in data["rows"].values():
        steps = f"{row['minutes_per_1000_steps']} min" if "minutes_per_1000_steps" in row else ""
        lines.append(f"| `{row['command']}` | {row['seconds']} | {row.get('s_per_step', '')} | {row.get('windows_per_s', '')} "
                     f"| {row.get('fixed_seconds', '')} | {steps} | {row.get('s_per_epoch', '')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/timings.md and timings.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = measure(Path(tmp))
    text = table(data)
    print(text)
    if args.write:
        (HERE / "results" / "timings.md").write_text(text)
        results_json.write(HERE / "results" / "timings.json", data)


if __name__ == "__main__":
    main()
