"""Choose the pre-training size, learning rate, dropout and window at matched compute, on the validation margin
over the strongest count baseline.

Each configuration pre-trains MidiBert with ``musictl pretrain-bert --objective mlm`` on the same tokens artifact for
the same CPU seconds of training steps (:data:`BUDGET`, one core) and is scored on its validation split on what
matters first: masked accuracy on pitch, position and duration, hidden notes only, beside each field's strongest
baseline (unigram, window mode, previous note, ``neighbours``, ``context``; see musictl/bert/baselines.py). A
configuration is ranked by its mean margin over that baseline on the three fields; ``--longer NAME`` runs one
configuration at three times the budget, to show how the margin grows with compute.

Resumable: each run's artifact is cached under ``--work`` and each table row is written to the JSON as it finishes;
running the command again skips what is done (``--render`` rebuilds the .md only). Two processes may share the
configurations (``--configs``), one core each.

    python benchmarks/label_efficiency.py --data-only        # WORK/tokens-pretrain, the corpus label_efficiency uses
    python benchmarks/pretrain_sweep.py --tokens WORK/tokens-pretrain --write [--longer mini-lr1e-3]
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
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"
FIELDS = ("pitch", "position", "duration")
# Compute-matched: every configuration gets BUDGET CPU seconds of training on one core (OMP_NUM_THREADS=1), its steps
# set from the CPU seconds one training step of 8 windows of 256 notes costs that architecture (measured on this
# machine by step_costs() below (--step-costs), one thread: tiny 0.106 s, mini 0.465 s, mini at 192 hidden 0.638 s). Evaluation
# and start-up come on top and are in each row's measured CPU seconds.
BUDGET = 600
STEP_COST = {"tiny": 0.106, "mini": 0.465, "mini192": 0.638}
ARCH = {"tiny": "--size tiny", "mini": "--size mini", "mini192": "--size mini --hidden-size 192"}
CONFIGS = {  # name -> (architecture, other pretrain-bert flags)
    "tiny-lr1e-3": ("tiny", "--lr 1e-3"),
    "mini-lr1e-3": ("mini", "--lr 1e-3"),
    "mini-lr5e-4": ("mini", "--lr 5e-4"),
    "mini-lr1e-3-nodrop": ("mini", "--lr 1e-3 --dropout 0"),
    "mini192-lr5e-4": ("mini192", "--lr 5e-4"),
    "tiny-lr2e-3-nodrop": ("tiny", "--lr 2e-3 --dropout 0"),
    "tiny-lr1e-3-len128-batch16": ("tiny", "--lr 1e-3 --max-len 128 --batch-size 16"),
}
COMMON = "--max-len 256 --batch-size 8 --warmup 0.05 --device cpu --seed 0"


def flags_of(name: str, factor: int = 1) -> str:
    """The configuration's pretrain-bert flags at ``factor`` times the budget (later flags win)."""
    arch, extra = CONFIGS[name]
    steps = int(round(factor * BUDGET / STEP_COST[arch], -2))
    return f"{ARCH[arch]} {extra} --max-steps {steps} --eval-every {max(100, steps // 4)}"


def step_costs(repeats: int = 8) -> dict[str, float]:
    """CPU seconds of one MLM training step (8 windows x 256 notes, random tokens, AdamW) per architecture, one thread."""
    import torch

    from musictl.bert.model import MidiBertConfig, MidiBertForPreTraining
    from musictl.midi.vocab import TokenizerConfig

    torch.set_num_threads(1)
    out = {}
    for arch, flags in ARCH.items():
        words = flags.split()
        overrides = {"hidden_size": int(words[words.index("--hidden-size") + 1])} if "--hidden-size" in words else {}
        config = MidiBertConfig.of_size(words[1], TokenizerConfig(), **overrides)
        model = MidiBertForPreTraining(config)
        optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
        ids = torch.stack([torch.randint(4, v, (8, 256)) for v in config.vocab_sizes], -1)
        mask, hidden = torch.ones(8, 256, dtype=torch.long), torch.rand(8, 256) < 0.15

        for done in range(repeats + 1):  # the first step warms up, uncounted
            if done == 1:
                started = time.process_time()
            loss = sum(logits.logsumexp(-1).mean() for logits in model(ids, mask, hidden))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        out[arch] = round((time.process_time() - started) / repeats, 4)
    return out


def margins(valid: dict) -> dict[str, float]:
    """Per field, masked accuracy minus the strongest baseline's on the same hidden notes."""
    from musictl.bert.pretrain import best_trivial

    return {f: round(valid["fields"][f]["accuracy"] - best_trivial(valid["fields"][f]), 4) for f in FIELDS}


def run_config(key: str, flags: str, tokens: Path, work: Path, objective: str) -> dict:
    out = work / f"{objective}-{key}"
    command = ["musictl", "pretrain-bert", "--tokens", str(tokens), "--out", str(out), "--objective", objective,
               *shlex.split(COMMON), *shlex.split(flags)]
    resume = (out / "checkpoints" / "last").is_dir() or (work / f".{out.name}.staging").is_dir()
    started, before = time.perf_counter(), os.times()
    subprocess.run([*command, "--resume" if resume else "--overwrite"], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    after = os.times()
    metrics = json.loads((out / "metrics.json").read_text())
    best = metrics["best_valid"] or metrics["final_valid"]
    from musictl.bert.pretrain import best_baseline

    return {"curve": curve(out), "name": key, "objective": objective, "flags": flags, "command": shlex.join(command),
            "steps": metrics["steps"],
            "parameters": metrics["parameters"], "minutes": round((time.perf_counter() - started) / 60, 1),
            "cpu_seconds": round(after.children_user + after.children_system - before.children_user - before.children_system),
            "resumed": resume, "best_step": best.get("step"), "mean_accuracy": best["accuracy"],
            "fields": {f: best["fields"][f] for f in FIELDS}, "margin": margins(best),
            "against": {f: best_baseline(best["fields"][f])[0] for f in FIELDS},
            "mean_margin": round(sum(margins(best).values()) / len(FIELDS), 4)}


def curve(out: Path) -> list[dict]:
    """The run's margins at each of its validation evaluations (metrics.jsonl): how they grow with the steps spent
    (under one learning-rate schedule, so an early evaluation is not a shorter run's end)."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{"step": r["step"], "margin": margins(r["valid"])} for r in rows if r.get("valid", {}).get("fields")]


def current(runs: dict) -> dict:
    """The rows of today's configurations (rows of configurations since removed are dropped)."""
    return {key: row for key, row in runs.items() if row["name"].split("-x")[0] in CONFIGS and "against" in row}


from harness import paths  # noqa: E402  (benchmarks/harness, after the path above)


def planned_block(data: dict, rows: list[dict]) -> list[str]:
    from harness import tables

    matched = [r for r in rows if not r["name"].endswith("-x3")]
    best = max(matched, key=lambda r: r["mean_margin"], default=None)
    answer = None if best is None else (
        f"the best configuration at the matched budget, {best['name']}, is "
        + ", ".join(f"{f} {best['margin'][f]:+.3f}" for f in FIELDS) + " over the strongest baseline: "
        + ("the goal is met." if all(best["margin"][f] >= 0.05 for f in FIELDS) else "the goal is not met.")
        + " One seed per configuration: margins within a few points of each other are not told apart.")
    return tables.planned(
        "at the same compute, which size, learning rate, dropout and window make masked-note pre-training beat the "
        "strongest count baseline on pitch, position and duration (goal: each field +0.05)?",
        "each configuration's validation margin over the strongest baseline, per field, at the same CPU budget; the "
        "best mean margin is chosen", answer, max(0, len(rows) - 1), intervals=False)


def render(data: dict) -> str:
    rows = sorted(data["runs"].values(), key=lambda r: -r["mean_margin"])
    lines = [
        "# Pre-training sweep: what learns pitch, position and duration",
        "",
        *planned_block(data, rows),
        f"Tokens: `{paths.show(data['tokens'])}` ({data.get('train_pieces', '?')} training pieces; validation: the tokens' valid "
        f"split). Each run: `musictl pretrain-bert ... {COMMON}` plus its flags, one core (`OMP_NUM_THREADS=1`), "
        f"{BUDGET} CPU seconds of training steps{' (`x3`: three times that)' if any(r['name'].endswith('-x3') for r in rows) else ''}"
        f", its steps set from the per-step CPU cost of the architecture measured once beforehand "
        f"({', '.join(f'{a} {c} s' for a, c in data.get('step_costs', STEP_COST).items())}; measured beside other jobs, so "
        "the runs' own CPU seconds, in the table, came out lower than the budget and differ between runs: compare by that "
        "column too); "
        "scored at its best validation evaluation on hidden notes only (masked or replaced). Cells: masked accuracy / "
        "the strongest baseline on the same notes (of unigram, window mode, previous note, `neighbours`: the most "
        "frequent value given both neighbours, and `context`: the neighbours' distribution tilted by the window's "
        "visible notes, for pitch its pitch-class histogram; docs/pretrain-bert.md) and its margin; the letter names "
        "the strongest (n neighbours, c context, w window). CPU seconds: the whole run (start-up, baseline counting and "
        "evaluations included). Ranked by the mean margin of the three fields. One seed per configuration.",
        "",
        "| config | parameters | steps | CPU s | pitch | position | duration | mean margin |",
        "|---|---:|---:|---:|---|---|---|---:|",
    ]
    from musictl.bert.pretrain import best_trivial

    for r in rows:
        against = r.get("against", {})
        cells = [f"{r['fields'][f]['accuracy']:.3f} / {best_trivial(r['fields'][f]):.3f}{(' ' + against[f][0]) if f in against else ''}"
                 f" ({r['margin'][f]:+.3f})" for f in FIELDS]
        lines.append(f"| {r['name']} | {r['parameters']:,} | {r['steps']} | {r.get('cpu_seconds', '?')} | "
                     f"{' | '.join(cells)} | {r['mean_margin']:+.3f} |")
    if rows:
        best = max((r for r in rows if not r["name"].endswith("-x3")), key=lambda r: r["mean_margin"], default=rows[0])
        learned = [f for f in FIELDS if best["margin"][f] > 0]
        met = [f for f in FIELDS if best["margin"][f] >= 0.05]
        lines += ["", f"Chosen at the matched budget: **{best['name']}** (`{best['flags']}`); beats the strongest "
                      f"baseline on {', '.join(learned) if learned else 'none of the three fields'}; the +0.05 goal is "
                      f"{'met on ' + ', '.join(met) if met else 'met on no field'}."]
        for r in rows:
            if r["name"].endswith("-x3"):
                base = data["runs"].get(f"{r['objective']}-{r['name'][:-3]}")
                if base:
                    lines.append(f"With three times the compute, {r['name'][:-3]} moves its margins from "
                                 + ", ".join(f"{f} {base['margin'][f]:+.3f} to {r['margin'][f]:+.3f}" for f in FIELDS) + ".")
    curves = [r for r in rows if r.get("curve")]
    if curves:
        lines += ["", "## How the margins grow with the steps spent", "",
                  "Each run's margins over the strongest baseline (pitch / position / duration) at each of its validation "
                  "evaluations: one schedule per run (warm-up, then linear decay to the last step), so an early evaluation "
                  "is not what a shorter run would reach, only how far this one had come.", "",
                  "| config | " + " | ".join(f"{q}/4 of the steps" for q in range(1, 5)) + " |", "|---|---|---|---|---|"]
        for r in curves:
            points = [" / ".join(f"{c['margin'][f]:+.3f}" for f in FIELDS) for c in r["curve"][-4:]]
            lines.append(f"| {r['name']} | " + " | ".join(points + ["-"] * (4 - len(points))) + " |")
    lines += ["", "Commands:", "", "```", *[paths.show(r["command"]) for r in rows], "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=Path, help="the pre-training tokens artifact (train and valid splits)")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("MUSICTL_BENCH_WORK", Path.home() / ".cache" /
                                                                        "musictl-bench")) / "pretrain-sweep")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--longer", choices=list(CONFIGS), help="also run this configuration at three times the budget")
    parser.add_argument("--fresh", action="store_true", help="forget the JSON's rows (cached runs are reused)")
    parser.add_argument("--step-costs", action="store_true",
                        help="only measure each architecture's CPU seconds per step (what STEP_COST holds) and print them")
    parser.add_argument("--objective", default="mlm", choices=["mlm", "adversarial", "hard-mining"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--render", action="store_true", help="only rebuild the .md from the JSON")
    parser.add_argument("--write", action="store_true", help="write pretrain_sweep.md + .json")
    args = parser.parse_args(argv)
    if args.step_costs:
        print(json.dumps(step_costs()))
        return
    json_path, md_path = args.out / "pretrain_sweep.json", args.out / "pretrain_sweep.md"
    data = json.loads(json_path.read_text()) if json_path.is_file() and not args.fresh else {"runs": {}}
    data.setdefault("budget_cpu_seconds", BUDGET)
    data["runs"] = current(data["runs"])
    for row in data["runs"].values():  # rows recorded before the curve was kept: read it from the cached run
        cached = args.work / f"{row['objective']}-{row['name']}"
        if "curve" not in row and (cached / "metrics.jsonl").is_file():
            row["curve"] = curve(cached)
    if not args.render:
        if args.tokens is None:
            parser.error("--tokens is required unless --render")
        data["tokens"] = str(args.tokens)
        index = [json.loads(line) for line in (args.tokens / "index.jsonl").read_text().splitlines() if line.strip()]
        data["train_pieces"] = sum(p.get("split") == "train" for p in index)
        args.work.mkdir(parents=True, exist_ok=True)
        data["step_costs"] = STEP_COST
        todo = [(name, 1) for name in args.configs] + ([(args.longer, 3)] if args.longer else [])
        for name, factor in todo:
            label = name if factor == 1 else f"{name}-x{factor}"
            key = f"{args.objective}-{label}"
            if key in data["runs"]:
                continue
            print(f"{key}: {flags_of(name, factor)}", file=sys.stderr, flush=True)
            row = run_config(label, flags_of(name, factor), args.tokens, args.work, args.objective)
            if json_path.is_file():  # another sweep process may have written rows meanwhile
                data["runs"].update(current(json.loads(json_path.read_text())["runs"]))
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
