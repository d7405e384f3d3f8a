"""Choose the pre-training model size, window length, learning rate and steps on validation per-field accuracy.

Each configuration pre-trains MidiBert with ``musictl pretrain-bert`` (MLM unless ``--objective`` says
otherwise) on the same tokens artifact and is scored on its validation split by what matters first:
masked accuracy on pitch, position and duration beside each field's best trivial predictor (the
field's most frequent value in the training split, in the same window, or the previous note's value).
A configuration is ranked by its mean margin over the best trivial predictor on those three fields.

Resumable: each run's artifact is cached under ``--work`` and each table row is written to the JSON as
it finishes; running the command again skips what is done (``--render`` rebuilds the .md only).

    python benchmarks/pretrain_sweep.py --tokens WORK/pretrain-tokens --write
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FIELDS = ("pitch", "position", "duration")
# name -> pretrain-bert flags. On 2 CPU cores (one core per run) small makes about 1.1 steps/s and tiny about 12:
# the 1200-step runs compare learning rates at the same steps, the 18k-step tiny runs spend what small's 1200 cost.
CONFIGS = {
    "small-256-lr5e-4": "--size small --max-len 256 --lr 5e-4 --max-steps 1200 --eval-every 300",
    "small-256-lr1e-3": "--size small --max-len 256 --lr 1e-3 --max-steps 1200 --eval-every 300",
    "tiny-256-lr2e-3": "--size tiny --max-len 256 --lr 2e-3 --max-steps 1200 --eval-every 300",
    "tiny-256-lr5e-4-18k": "--size tiny --max-len 256 --lr 5e-4 --max-steps 18000 --eval-every 3000",
    "tiny-256-lr1e-3-18k": "--size tiny --max-len 256 --lr 1e-3 --max-steps 18000 --eval-every 3000",
}
COMMON = "--batch-size 8 --warmup 0.05 --device cpu --seed 0"


def margins(valid: dict) -> dict[str, float]:
    """Per field, masked accuracy minus the best trivial predictor's on the same notes."""
    from musictl.bert.pretrain import best_trivial

    return {f: round(valid["fields"][f]["accuracy"] - best_trivial(valid["fields"][f]), 4) for f in FIELDS}


def run_config(name: str, flags: str, tokens: Path, work: Path, objective: str) -> dict:
    out = work / f"{objective}-{name}"
    command = ["musictl", "pretrain-bert", "--tokens", str(tokens), "--out", str(out), "--objective", objective,
               *shlex.split(flags), *shlex.split(COMMON)]
    resume = (out / "checkpoints" / "last").is_dir() or (work / f".{out.name}.staging").is_dir()
    started = time.perf_counter()
    subprocess.run([*command, "--resume" if resume else "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((out / "metrics.json").read_text())
    best = metrics["best_valid"] or metrics["final_valid"]
    return {"name": name, "objective": objective, "flags": flags, "command": shlex.join(command), "steps": metrics["steps"],
            "parameters": metrics["parameters"], "minutes": round((time.perf_counter() - started) / 60, 1),
            "best_step": best.get("step"), "mean_accuracy": best["accuracy"],
            "fields": {f: best["fields"][f] for f in FIELDS}, "margin": margins(best),
            "mean_margin": round(sum(margins(best).values()) / len(FIELDS), 4)}


def render(data: dict) -> str:
    rows = sorted(data["runs"].values(), key=lambda r: -r["mean_margin"])
    lines = [
        "# Pre-training sweep: what learns pitch, position and duration",
        "",
        f"Tokens: `{data['tokens']}` ({data.get('train_pieces', '?')} training pieces). Each run: "
        f"`musictl pretrain-bert ... {COMMON}`; scored at its best validation evaluation. Cells: masked accuracy "
        "/ best trivial predictor (most frequent value in the training split, in the window, or the previous note's "
        "value) on the same masked notes; margin = accuracy - best trivial. Ranked by the mean margin of the three fields.",
        "",
        "| config | objective | parameters | steps | minutes | pitch | position | duration | mean margin |",
        "|---|---|---:|---:|---:|---|---|---|---:|",
    ]
    from musictl.bert.pretrain import best_trivial

    for r in rows:
        cells = [f"{r['fields'][f]['accuracy']:.3f} / {best_trivial(r['fields'][f]):.3f} ({r['margin'][f]:+.3f})"
                 for f in FIELDS]
        lines.append(f"| {r['name']} | {r['objective']} | {r['parameters']:,} | {r['steps']} | {r['minutes']} | "
                     f"{' | '.join(cells)} | {r['mean_margin']:+.3f} |")
    if rows:
        best = rows[0]
        learned = [f for f in FIELDS if best["margin"][f] > 0]
        lines += ["", f"Chosen: **{best['name']}** (`{best['flags']}`); beats every trivial predictor on "
                      f"{', '.join(learned) if learned else 'none of the three fields'}."]
    lines += ["", "Commands:", "", "```", *[r["command"] for r in rows], "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=Path, help="the pre-training tokens artifact (train and valid splits)")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("MUSICTL_BENCH_WORK", Path.home() / ".cache" /
                                                                        "musictl-bench")) / "pretrain-sweep")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--objective", default="mlm", choices=["mlm", "adversarial", "hard-mining"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--render", action="store_true", help="only rebuild the .md from the JSON")
    parser.add_argument("--write", action="store_true", help="write pretrain_sweep.md + .json")
    args = parser.parse_args(argv)
    json_path, md_path = args.out / "pretrain_sweep.json", args.out / "pretrain_sweep.md"
    data = json.loads(json_path.read_text()) if json_path.is_file() else {"runs": {}}
    if not args.render:
        if args.tokens is None:
            parser.error("--tokens is required unless --render")
        data["tokens"] = str(args.tokens)
        index = [json.loads(line) for line in (args.tokens / "index.jsonl").read_text().splitlines() if line.strip()]
        data["train_pieces"] = sum(p.get("split") == "train" for p in index)
        args.work.mkdir(parents=True, exist_ok=True)
        for name in args.configs:
            key = f"{args.objective}-{name}"
            if key in data["runs"]:
                continue
            print(f"{key}: {CONFIGS[name]}", file=sys.stderr, flush=True)
            row = run_config(name, CONFIGS[name], args.tokens, args.work, args.objective)
            if json_path.is_file():  # another sweep process may have written rows meanwhile
                data["runs"].update(json.loads(json_path.read_text())["runs"])
            data["runs"][key] = row
            if args.write:
                args.out.mkdir(parents=True, exist_ok=True)
                json_path.write_text(json.dumps(data, indent=None, separators=(",", ":")) + "\n")
                md_path.write_text(render(data))
    text = render(data)
    if args.write:
        md_path.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
