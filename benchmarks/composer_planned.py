"""The planned composer test: with 25% of Pianist8's training labels, does pre-training beat no pre-training?

    python benchmarks/composer_planned.py               # 3 tuning seeds x 3 starts x 3 rates, then 7 seeds x 3 starts
    python benchmarks/composer_planned.py --shard 1/2   # half the cells, beside a --shard 2/2 (one core each; same JSON)
    python benchmarks/composer_planned.py --smoke       # toy size in a temporary folder: the pipeline end to end
    python benchmarks/composer_planned.py --render      # rebuild composer_planned.md from composer_planned.json

label_efficiency.md's one positive fine-tuning cell (composer 25%, adversarial minus none) was 1 of 24
difference cells, on 3 seeds, with the from-scratch learning rate chosen elsewhere. This script re-asks it
as a planned test, fixed before any number is seen:

- 10 seeds, each with its own 25% training subset (a share of every composer, drawn by the seed as
  label_efficiency.py draws it); the whole validation and test splits;
- three starts: none (the same architecture from scratch), MLM, adversarial; the encoders are
  label_efficiency.py's cached pre-trained models, found in its work folder by the same settings hash
  (made there first if missing, with the same leak-free corpus);
- each start's learning rate re-tuned at this label count over 3e-4, 1e-3 and 3e-3 on the first
  ``--tuning-seeds`` seeds (3): the rate with the best mean validation accuracy over them (:func:`choose_rates`
  sees validation accuracies only); the other seeds run each start at its chosen rate only, and the test
  scores of the chosen rate, over all the seeds, are the only ones read (tuning every rate on all 10 seeds
  would cost 90 fine-tunings instead of 48);
- adversarial minus none (planned) and MLM minus none, paired by seed and subset, 95% bootstrap over
  test pieces and seeds (benchmarks/harness/stats.py).

Every fine-tuning is a cell of benchmarks/results/composer_planned.json, written as it finishes; a rerun
skips what is done. ``--shard K/N`` runs every N-th cell (from the K-th) of each phase, so N processes share
the work and the JSON; a shard that finishes its tuning cells waits for the others' before the rest.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import label_efficiency as le
from harness import cells, paths, stats, tables
from harness.data import piece_name, training_subset

RESULTS = paths.RESULTS
STARTS = ("none", "mlm", "adversarial")
RATES = ("3e-4", "1e-3", "3e-3")
AMOUNT = "25%"
DATASET = "pianist8"
QUESTION = ("With 25% of Pianist8's training labels, does adversarial pre-training beat the same architecture fine-tuned "
            "from scratch on composer classification?")
COMPARISON = ("test accuracy per piece, adversarial minus none, each start at its own learning rate chosen on validation, "
              "paired by seed and training subset, 95% bootstrap over test pieces and the 10 seeds")


class Context(le.Harness):
    """What label_efficiency's data and pre-training steps need (its presets, work folder and bookkeeping; its
    ``musictl``, ``show`` and ``save``), recorded in this benchmark's results."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.preset = dict(le.SMOKE if args.smoke else le.FULL)
        self.work = Path(args.work)  # label_efficiency's: its tokens and cached models
        self.runs = Path(args.runs)  # the fine-tuned models (deleted once scored)
        self.seeds = list(range(args.seeds))
        config = {"smoke": args.smoke, "amount": AMOUNT, "rates": list(RATES), "starts": list(STARTS),
                  **{k: self.preset[k] for k in ("pretrain_args", "adversarial_args", "finetune_args", "max_len", "limit",
                                                 "unlabelled_limit")}}
        self.results = cells.Results(Path(args.out) / "composer_planned.json", "benchmarks/composer_planned.py", config,
                                     command=shlex.join(["python", "benchmarks/composer_planned.py", *unsharded(args.argv)]),
                                     machine=paths.machine(), fresh=args.fresh, merged=("pretrain", "data"))
        self.data = self.results.data
        self.data["seeds"] = sorted(set(self.data.get("seeds", [])) | set(self.seeds))


def unsharded(argv: list[str]) -> list[str]:
    """The command line without ``--shard K/N``: the shards of one run make one table, whichever writes it last."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--shard":
            skip = True
        elif not arg.startswith("--shard="):
            out.append(arg)
    return out


def run(c: Context) -> dict:
    data = le.prepare_data(c)
    tokens = le.prepare_pretraining(c, data)
    models = {objective: le.pretrain(c, objective, tokens) for objective in le.OBJECTIVES}
    pianist8, split = data[DATASET]
    tuning, rest = c.seeds[:c.args.tuning_seeds], c.seeds[c.args.tuning_seeds:]
    for seed, start, lr in shard(tuning_cells(tuning), c.args.shard):
        finetune(c, start, lr, seed, pianist8, subset_file(c, split, seed), models)
    chosen = wait_for_rates(c, tuning)
    for seed, start in shard([(seed, start) for seed in rest for start in STARTS], c.args.shard):
        finetune(c, start, chosen[start]["lr"], seed, pianist8, subset_file(c, split, seed), models)
    c.results.save()  # the other shards' cells too, so that the page written next holds every cell saved so far
    return c.data


def tuning_cells(seeds: list[int]) -> list[tuple[int, str, str]]:
    """(seed, start, rate) of the tuning phase, seed by seed (a run stopped early leaves whole seeds)."""
    return [(seed, start, lr) for seed in seeds for start in STARTS for lr in RATES]


def shard(items: list, which: tuple[int, int]) -> list:
    """The K-th of every N items (``which`` = (K, N), K from 1)."""
    k, n = which
    return items[k - 1::n]


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` with 1 <= K <= N, for argparse."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N (e.g. 1/2)") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"{text!r}: K must be between 1 and N")
    return k, n


def subset_file(c: Context, split: dict[str, list[str]], seed: int) -> Path:
    """The seed's split file: its own 25% of the training pieces, the whole validation and test splits."""
    return cells.write_plain(c.runs / "splits" / f"{DATASET}-25pc-s{seed}.json",
                             {"train": training_subset(split["train"], AMOUNT, DATASET, seed),
                              "valid": split["valid"], "test": split["test"]})


def wait_for_rates(c: Context, tuning: list[int], poll: float = 30.0) -> dict[str, dict]:
    """Each start's rate chosen on the tuning seeds' validation accuracies, once every tuning cell is in the
    JSON (another shard may still be running some: the JSON is re-read every ``poll`` seconds)."""
    wanted = {cells.cell_key({"start": s, "lr": lr, "seed": seed}) for seed, s, lr in tuning_cells(tuning)}
    while True:
        c.results.save()  # merges what the other shards wrote meanwhile
        missing = wanted - set(c.results.cells)
        if not missing:
            return choose_rates(validation_accuracies(c.results.cells, tuning))
        print(f"waiting for {len(missing)} tuning cells of the other shards", file=sys.stderr, flush=True)
        time.sleep(poll)


def finetune(c: Context, start: str, lr: str, seed: int, tokens: Path, split_file: Path, models: dict[str, Path]) -> None:
    """One cell: finetune-mask from ``start`` at ``lr`` on the seed's subset; its validation accuracy (what
    chooses the rate) and its per-piece test scores (read only for the chosen rate)."""
    from musictl import artifacts

    settings = {"start": start, "lr": lr, "seed": seed}
    if c.results.get(settings):
        return
    out = c.runs / "ft" / f"{start}-lr{lr}-s{seed}"
    partial = artifacts.checkpoint_step(artifacts.resumable(out).checkpoint) is not None
    seconds = c.musictl("finetune-mask", "--task", "composer", "--model", str(models["mlm" if start == "none" else start]),
                        "--tokens", str(tokens), "-o", str(out), "--split-file", str(split_file),
                        *(["--from-scratch"] if start == "none" else []), "--max-len", str(c.max_len), "--seed", str(seed),
                        "--lr", lr, *shlex.split(c.preset["finetune_args"]), "--resume" if partial else "--overwrite")
    metrics = json.loads((out / "metrics.json").read_text())
    test_names = [piece_name(path) for path, _, _ in metrics["test"]["pieces"]]
    saved = c.data["data"].setdefault("test_pieces", test_names)
    if saved != test_names:
        raise SystemExit("error: the test pieces differ from the earlier cells'; pass --fresh")
    c.results.put(settings, {"valid_accuracy": metrics["valid"]["accuracy"],
                             "test_pieces": [[right, total] for _, right, total in metrics["test"]["pieces"]],
                             "best_epoch": metrics["best_epoch"], "epochs_run": metrics["epochs_run"],
                             "train_pieces": metrics.get("pieces", {}).get("train"), "seconds": seconds})
    shutil.rmtree(out, ignore_errors=True)


# ----- the analysis --------------------------------------------------------------------------------
def validation_accuracies(found: dict, seeds: list[int] | None = None) -> dict[str, dict[str, dict[int, float]]]:
    """start -> rate -> seed -> validation accuracy of the cells in ``found`` (only ``seeds`` when given)."""
    return {start: {lr: {c["settings"]["seed"]: c["valid_accuracy"] for c in cells.select(found, start=start, lr=lr)
                         if seeds is None or c["settings"]["seed"] in seeds} for lr in RATES} for start in STARTS}


def choose_rates(valid: dict[str, dict[str, dict[int, float]]]) -> dict[str, dict]:
    """Per start, the learning rate with the best mean validation accuracy over the seeds every rate has
    (``valid``: start -> rate -> seed -> validation accuracy; validation only, nothing of the test split).
    A start is left out until every rate has a seed."""
    chosen = {}
    for start, by_rate in valid.items():
        seeds = sorted(set.intersection(*(set(by_rate.get(lr, {})) for lr in RATES)))
        if not seeds:
            continue
        means = {lr: float(np.mean([by_rate[lr][s] for s in seeds])) for lr in RATES}
        best = max(RATES, key=lambda lr: means[lr])  # ties: the first in RATES
        chosen[start] = {"lr": best, "seeds": seeds, "valid_means": means}
    return chosen


def summarise(data: dict) -> dict:
    """The rate chosen per start, the chosen rate's test cell (mean, interval over pieces and seeds), and
    the differences with none, paired by seed."""
    chosen = choose_rates(validation_accuracies(data["cells"]))
    test = {start: {c["settings"]["seed"]: c for c in cells.select(data["cells"], start=start, lr=pick["lr"])}
            for start, pick in chosen.items()}
    out: dict = {"chosen": chosen, "rows": {}, "minus_none": {}}
    for start, by_seed in test.items():
        seeds = sorted(by_seed)
        correct = np.array([[r for r, _ in by_seed[s]["test_pieces"]] for s in seeds], dtype=float)
        total = np.array([t for _, t in by_seed[seeds[0]]["test_pieces"]], dtype=float)
        out["rows"][start] = {**stats.ratio_bootstrap(correct, total, list(range(len(total)))),
                              "last_epoch": [sum(by_seed[s]["best_epoch"] == by_seed[s]["epochs_run"] for s in seeds), len(seeds)]}
        if start != "none" and "none" in test:
            paired = sorted(set(by_seed) & set(test["none"]))
            mine = np.array([[r for r, _ in by_seed[s]["test_pieces"]] for s in paired], dtype=float)
            other = np.array([[r for r, _ in test["none"][s]["test_pieces"]] for s in paired], dtype=float)
            out["minus_none"][start] = stats.paired_difference(mine, other, total, list(range(len(total))))
    return out


def answer(table: dict) -> str | None:
    found = table["minus_none"].get("adversarial")
    if not found:
        return None
    verdict = ("above 0: adversarial pre-training helps at this label count" if found["low"] > 0 else
               "below 0: adversarial pre-training hurts at this label count" if found["high"] < 0 else
               "the interval holds 0: not shown")
    return (f"adversarial minus none {tables.interval(found, signed=True)} points over {found['pairs']} seeds "
            f"(per seed {', '.join(f'{v:+.1f}' for v in found['per_pair'])}; {found['above_zero']:.0%} of resamples above 0): "
            f"{verdict}.")


def render(data: dict) -> str:
    """composer_planned.md, from composer_planned.json only."""
    table, config = data["table"], data["config"]
    chosen = table["chosen"]
    lines = ["# Composer with 25% of the labels: the planned test", "",
             *tables.planned(QUESTION, COMPARISON, answer(table), exploratory=len(table["minus_none"]) - 1
                             if "adversarial" in table["minus_none"] else len(table["minus_none"])),
             f"Made by `{data['command']}` on {data['machine']}"
             + (" (**--smoke: toy sizes, the numbers mean nothing**)" if config["smoke"] else "")
             + "; every number comes from benchmarks/results/composer_planned.json, rebuilt by "
               "`python benchmarks/composer_planned.py --render`.", "",
             f"Pianist8 (MIDI-BERT split), {len(data['data'].get('test_pieces', []))} test pieces; per seed a new 25% "
             "training subset (a share of every composer); encoders: benchmarks/label_efficiency.py's cached pre-trained "
             "models (pre-training runs below); fine-tuning with finetune-mask's defaults"
             + (f" and `{config['finetune_args']}`" if config["finetune_args"] else "") + f", windows of {config['max_len']} "
             "notes. Test accuracy: one prediction per piece. Intervals: 95% bootstrap over test pieces and seeds; "
             "differences paired by seed (the same subset) on the same resamples.", "",
             "## Learning rate, chosen on validation per start (mean validation accuracy over the tuning seeds, where every rate ran)", ""]
    lines += tables.table(["start", *RATES, "chosen", "tuning seeds"],  # validation accuracy
                          [[start, *(f"{pick['valid_means'][lr]:.4f}" for lr in RATES), pick["lr"], len(pick["seeds"])]
                           for start, pick in chosen.items()])
    lines += ["", "Only the chosen rate's test scores are read; the other rates' are kept in the JSON and never shown.", "",
              "## Test accuracy at the chosen rate", ""]
    lines += tables.table(["start", "lr", "test accuracy %", "seeds", "best epoch was the last"],
                          [[start, chosen[start]["lr"], tables.interval(row, spread=True), row["seeds"],
                            f"{row['last_epoch'][0]}/{row['last_epoch'][1]}"] for start, row in table["rows"].items()])
    lines += ["", "## Minus no pre-training (points, paired by seed)", ""]
    lines += tables.table(["start", "role", "difference", "share of resamples above 0", "per seed"],
                          [[start, "planned" if start == "adversarial" else "exploratory", tables.interval(d, signed=True),
                            f"{d['above_zero']:.3f}", ", ".join(f"{v:+.1f}" for v in d["per_pair"])]
                           for start, d in table["minus_none"].items()], "llrrr")
    lines += ["", *le.pretrain_lines(data), *tables.commands(data["commands"], note="; WORK = label_efficiency's work folder")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="seeds (0..N-1), each with its own 25%% subset")
    parser.add_argument("--tuning-seeds", type=int, default=3, help="the first seeds, on which every rate is tried")
    parser.add_argument("--shard", type=parse_shard, default=(1, 1), help="K/N: run every N-th cell from the K-th "
                                                                           "(N processes, one JSON) [default: 1/1]")
    parser.add_argument("--work", default=None, help="label_efficiency's work folder (its tokens and cached models) "
                                                     "[default: $MUSICTL_BENCH_WORK or ~/.cache/musictl-bench, /label_efficiency]")
    parser.add_argument("--runs", default=None, help="where the fine-tunings run [default: the work root, /composer_planned]")
    parser.add_argument("--out", default=None, help="folder of composer_planned.json/.md [default: benchmarks/results]")
    parser.add_argument("--fresh", action="store_true", help="forget the JSON's cells (cached models are kept)")
    parser.add_argument("--render", action="store_true", help="only rebuild the .md from the JSON")
    parser.add_argument("--smoke", action="store_true", help="toy sizes, 2 seeds, into a temporary folder")
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.smoke:
        temporary = tempfile.mkdtemp(prefix="composer-planned-smoke-")
        args.work, args.runs, args.out = args.work or temporary, args.runs or temporary, args.out or temporary
        args.seeds, args.tuning_seeds = 3, 2
    args.work = args.work or str(paths.work_folder("label_efficiency"))
    args.runs = args.runs or str(paths.work_folder("composer_planned"))
    args.out = args.out or str(RESULTS)
    json_path, md_path = Path(args.out) / "composer_planned.json", Path(args.out) / "composer_planned.md"
    if args.render:
        data = cells.load(json_path)
    else:
        paths.require_datasets()
        started = time.perf_counter()
        data = run(Context(args))
        print(f"finished in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(cells.publish(data, summarise, render, json_path, md_path))


if __name__ == "__main__":
    main()
