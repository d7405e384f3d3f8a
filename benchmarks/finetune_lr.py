"""Fine-tuning learning rate and length, chosen on validation: what finetune-mask's defaults follow.

For a pre-trained MidiBert (default: the label-efficiency benchmark's cached MLM model) and each task,
``musictl finetune-mask`` runs with every learning rate of ``--lrs`` for up to ``--epochs`` epochs with
the reference patience rule (validation accuracy and loss both ``--patience`` epochs without improving),
from the pre-trained model and from scratch. Reported per run: the best validation accuracy (what
chooses the learning rate; the test split is not looked at), its epoch and the epochs run, and whether
the best epoch was the last (the run was still improving). Resumable: each run is a cell of the JSON
(benchmarks/harness/cells.py), written as it finishes and skipped when run again.

    python benchmarks/finetune_lr.py --write
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import cells, paths, tables

RESULTS = paths.RESULTS
WORK = paths.work_root()
LABEL_WORK = paths.work_folder("label_efficiency")
QUESTION = "Which fine-tuning learning rate should finetune-mask use, from a pre-trained model and from scratch?"
COMPARISON = ("per task and start, the best validation accuracy over the learning rates (one seed, up to the epoch cap with "
              "the patience rule); the test split is never read")
TASKS = {  # task: (tokens folder in the label-efficiency work folder, split file, training pieces kept (None: all))
    "composer": ("tokens-pianist8", "splits-pianist8.json", None),
    "melody": ("tokens-pop909", "splits-pop909.json", 30),
}


def split_file(work: Path, task: str) -> Path:
    """The task's split, its training part cut to the first N pieces where the table says so."""
    _, name, keep = TASKS[task]
    split = json.loads((LABEL_WORK / name).read_text())
    if keep:
        split["train"] = split["train"][:keep]
    return cells.write_plain(work / f"split-{task}.json", split)


def run(task: str, lr: str, start: str, model: Path, work: Path, args, shift: int = 0) -> dict:
    out = work / (f"{task}-{start}-lr{lr}" + (f"-shift{shift}" if shift else ""))
    tokens = LABEL_WORK / TASKS[task][0]
    command = ["musictl", "finetune-mask", "--task", task, "--tokens", str(tokens), "--model", str(model), "--out", str(out),
               "--split-file", str(split_file(work, task)), "--lr", lr, "--epochs", str(args.epochs), "--patience",
               str(args.patience), "--max-len", "256", "--seed", "0", *(["--from-scratch"] if start == "scratch" else []),
               *(["--pitch-shift", str(shift)] if shift else [])]
    started = time.perf_counter()
    subprocess.run([*command, "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((out / "metrics.json").read_text())
    return {"command": paths.show(shlex.join(command), WORK),
            "valid_accuracy": metrics["valid"]["accuracy"], "valid_loss": metrics["valid"]["loss"],
            "best_epoch": metrics["best_epoch"], "epochs_run": metrics["epochs_run"],
            "best_is_last": metrics["best_epoch_is_last"], "train_pieces": metrics["pieces"]["train"],
            "minutes": round((time.perf_counter() - started) / 60, 1)}


def render(data: dict) -> str:
    """finetune_lr.md from the results JSON only."""
    runs = [{**c["settings"], **c} for c in data["cells"].values()]
    config = data["config"]
    last = sum(r["best_is_last"] for r in runs)
    shifted = [r for r in runs if r.get("pitch_shift")]
    lines = ["# Fine-tuning learning rate and length, chosen on validation", "",
             *tables.planned(QUESTION, COMPARISON, exploratory=len(shifted), intervals=False),
             f"Model: `{config['model']}` (MLM pre-training of benchmarks/label_efficiency.py) or the same architecture from "
             f"scratch; up to {config['epochs']} epochs, patience {config['patience']} (validation accuracy and loss both "
             "without improvement), 256-note windows, seed 0. Validation accuracy only: the test split is not looked at.",
             "", f"Runs whose best epoch was their last (still improving): {last} of {len(runs)}.", ""]
    rows = []
    for r in sorted(runs, key=lambda r: (r["task"], r["start"], float(r["lr"]), r.get("pitch_shift", 0))):
        shift = f"±{r['pitch_shift']}" if r.get("pitch_shift") else "-"
        rows.append([r["task"], r["start"], r["lr"], shift, r["train_pieces"], f"{r['valid_accuracy']:.4f}",
                     f"{r['best_epoch']} / {r['epochs_run']}{' (last)' if r['best_is_last'] else ''}", r["minutes"]])
    lines += tables.table(["task", "start", "lr", "pitch shift", "train pieces", "best valid accuracy",
                           "best epoch / epochs run", "minutes"], rows, "llrrrrrr")
    best = {}
    for r in (r for r in runs if not r.get("pitch_shift")):  # the learning rate is chosen without augmentation
        key = (r["task"], r["start"])
        if key not in best or r["valid_accuracy"] > best[key]["valid_accuracy"]:
            best[key] = r
    lines += ["", "Best learning rate on validation: " + "; ".join(f"{t} from {s}: {r['lr']}" for (t, s), r in sorted(best.items()))]
    for r in shifted:  # each augmented run beside the same run without augmentation
        plain = next((p for p in runs if not p.get("pitch_shift") and (p["task"], p["start"], p["lr"]) == (r["task"], r["start"], r["lr"])),
                     None)
        if plain:
            gain = r["valid_accuracy"] - plain["valid_accuracy"]
            lines.append(f"- {r['task']} from {r['start']}, lr {r['lr']}: --pitch-shift {r['pitch_shift']} "
                         f"{r['valid_accuracy']:.4f} vs {plain['valid_accuracy']:.4f} without ({gain:+.4f}, one seed, validation)")
    lines += ["", "Commands:", "", "```", *[r["command"] for r in runs], "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="pre-trained MidiBert [default: the label-efficiency MLM model]")
    parser.add_argument("--tasks", default="composer,melody")
    parser.add_argument("--lrs", default="1e-4,3e-4,1e-3")
    parser.add_argument("--starts", default="pretrained,scratch")
    parser.add_argument("--pitch-shifts", default="0", help="--pitch-shift values to run (piece tasks), e.g. 0,3")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--render", action="store_true")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="forget the JSON's runs and start again")
    args = parser.parse_args(argv)
    json_path = RESULTS / "finetune_lr.json"
    if args.render:
        data = cells.load(json_path)
    else:
        model = args.model or next(iter(sorted((LABEL_WORK / "bert").glob("mlm-*"))), None)
        if model is None or not (model / "manifest.json").is_file():
            raise SystemExit("error: no pre-trained model: run python benchmarks/label_efficiency.py --pretrain-only mlm, "
                             "or pass --model")
        config = {"model": paths.show(str(model), WORK), "epochs": args.epochs, "patience": args.patience}
        results = cells.Results(json_path, "benchmarks/finetune_lr.py", config, command="python benchmarks/finetune_lr.py "
                                + shlex.join(argv if argv is not None else sys.argv[1:]), machine=paths.machine(),
                                fresh=args.fresh, write=args.write)
        data = results.data
        work = WORK / "finetune-lr"
        work.mkdir(parents=True, exist_ok=True)
        for task in args.tasks.split(","):
            for start in args.starts.split(","):
                for lr, shift in ((lr, int(shift)) for lr in args.lrs.split(",") for shift in args.pitch_shifts.split(",")):
                    settings = {"task": task, "start": start, "lr": lr, "pitch_shift": shift}
                    if results.get(settings):
                        continue
                    print(cells.cell_key(settings), file=sys.stderr, flush=True)
                    results.put(settings, run(task, lr, start, model, work, args, shift))
                    if args.write:
                        (RESULTS / "finetune_lr.md").write_text(render(data))
    text = render(data)
    if args.render:
        (RESULTS / "finetune_lr.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
