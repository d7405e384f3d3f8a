"""Downstream tasks with the MIDI-BERT splits: no / MLM / adversarial pre-training, each with mask
fine-tuning and without, the same budget per row, CPU-sized models.

    python benchmarks/pretrain_quality.py --steps 400     # makes the pre-trained models (in its work folder)
    python benchmarks/downstream.py --write

Tasks: composer (Pianist8), emotion (EMOPIA), melody and velocity (POP909, a subset of its 4/4 split
to stay within CPU minutes). Per row: the same tiny architecture, epochs, learning rate and batch;
composer and emotion over several seeds (mean ± standard deviation).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import cells, paths, tables

SHARED = paths.DATASETS
WORK = paths.work_folder("pretrain_quality")  # the models benchmarks/pretrain_quality.py made
QUESTION = "Does pre-training (MLM, adversarial) beat no pre-training at the same fine-tuning budget?"
COMPARISON = ("adversarial pre-training with mask fine-tuning minus no pre-training with mask fine-tuning, test accuracy per "
              "task, mean over seeds (this early table keeps no per-item scores, so it has no intervals: table3.md and "
              "label_efficiency.md measure the same question with them)")
PAPER = {  # accuracy %, from ../shared/datasets/README.md (full 12-layer models on GPUs)
    "composer": (79.76, 97.92), "emotion": (68.75, 79.46), "velocity": (38.70, 45.58), "melody": (87.98, 92.68),
}
TASKS = {"emotion": "emopia", "melody": "pop909", "velocity": "pop909", "composer": "pianist8"}


def dataset_tokens(name: str, pop_subset: tuple[int, int, int]) -> tuple[Path, Path]:
    from musictl.midi.corpus import find_midi_files, load_split_file
    from musictl.midi.pipeline import tokenize_corpus
    from musictl.midi.vocab import TokenizerConfig

    out = WORK / f"tokens-{name}"
    split_path = WORK / f"splits-{name}.json"
    split = json.loads((SHARED / name / "splits.json").read_text())
    if name == "pop909":
        split = {k: split[k][:n] for k, n in zip(("train", "valid", "test"), pop_subset)}
    cells.write_plain(split_path, {k: split[k] for k in ("train", "valid", "test")})
    files = find_midi_files([SHARED / name / "midi"])
    splits, _ = load_split_file(split_path, files)
    tokenize_corpus(files, splits, out, TokenizerConfig(), os.cpu_count() or 1, overwrite=True)
    return out, split_path


def main() -> None:
    import torch

    from musictl.bert.finetune import finetune
    from musictl.bert.settings import FinetuneSettings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3, help="seeds for composer and emotion (1 for the POP909 tasks)")
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--pop-subset", type=int, nargs=3, default=(120, 20, 40))
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    for objective in ("mlm", "adversarial"):
        if not (WORK / f"bert-{objective}" / "config.json").is_file():
            raise SystemExit("run benchmarks/pretrain_quality.py first: it makes the pre-trained models")
    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    for task in args.tasks:
        tokens, _ = dataset_tokens(TASKS[task], tuple(args.pop_subset))
        seeds = range(args.seeds if task in ("composer", "emotion") else 1)
        for pretraining in ("none", "mlm", "adversarial"):
            for mask_ratio in (0.15, 0.0):
                accs = []
                for seed in seeds:
                    settings = FinetuneSettings(task=task, mask_ratio=mask_ratio, from_scratch=pretraining == "none",
                                                max_len=args.max_len, epochs=args.epochs, patience=args.epochs, seed=seed)
                    model_dir = WORK / f"bert-{'mlm' if pretraining == 'none' else pretraining}"
                    m = finetune(tokens, model_dir, WORK / "ft" / f"{task}-{pretraining}-{mask_ratio}-{seed}", settings,
                                 overwrite=True).to_dict()
                    accs.append(100 * m["test"]["accuracy"])
                    print(task, pretraining, mask_ratio, seed, accs[-1], flush=True)
                rows.append((task, pretraining, mask_ratio, float(np.mean(accs)), float(np.std(accs)), len(accs), m["pieces"]))
        render(rows, args)


def render(rows, args) -> None:
    """Print the table and, with --write, save it (after every task, so a partial run leaves results)."""
    lines = [
        f"Machine: {paths.machine()}. Scale: tiny MidiBert (2 layers, hidden 64) pre-trained for the "
        "steps in pretrain_quality.md on the POP909 + Pianist8 + EMOPIA training splits; fine-tuning "
        f"{args.epochs} epochs, windows of {args.max_len} notes, lr 3e-4, batch 8, test at the best validation epoch. "
        f"POP909 tasks use the first {args.pop_subset[0]}/{args.pop_subset[1]}/{args.pop_subset[2]} pieces of its "
        "4/4 train/valid/test split. The paper's models are 12-layer BERTs trained for days on GPUs: compare the "
        "ordering of the rows, not the absolute numbers.",
        "",
    ]
    lines += tables.table(
        ["task", "pre-training", "mask fine-tuning", "test accuracy % (ours)", "seeds", "paper: no pre-training / adversarial + mask FT"],
        [[task, pretraining, "yes (0.15)" if mask_ratio else "no", f"{mean:.1f}" + (f" ± {std:.1f}" if n > 1 else ""), n,
          f"{PAPER[task][0]:.1f} / {PAPER[task][1]:.1f}"] for task, pretraining, mask_ratio, mean, std, n, _ in rows], "lllrrl")
    table = "\n".join(lines)
    print(table)
    if args.write:
        command = (f"python benchmarks/downstream.py --tasks {' '.join(args.tasks)} --epochs {args.epochs} --seeds {args.seeds} "
                   f"--max-len {args.max_len} --pop-subset {' '.join(map(str, args.pop_subset))} --write")
        head = "\n".join(["# Downstream tasks", "", *tables.planned(QUESTION, COMPARISON, exploratory=len(rows) - 2 * len(args.tasks),
                                                                   intervals=False)])
        (paths.RESULTS / "downstream.md").write_text(f"{head}\nCommand: `{command}`\n\n{table}\n")


if __name__ == "__main__":
    main()
