"""Table 3 of Adversarial-MidiBERT (arXiv 2407.08306), measured with musictl's command line.

    python benchmarks/table3.py --budget smoke --write     # a few minutes: the harness end to end
    python benchmarks/table3.py --budget cpu --write       # about 1.5 hours alone on 2 CPU cores (72 fine-tunings)
    python benchmarks/table3.py --budget gpu --write       # on a GPU: the paper preset (not run yet)
    python benchmarks/table3.py --render                   # rebuild table3.md from table3.json only
    python benchmarks/table3.py --attach-pieces --render   # a table3.json made before segments had piece ids:
                                                           # re-tokenize the test pieces (seconds) to add them

Rows: majority class, no pre-training, MLM, adversarial (the published method), hard-mining, each
fine-tuned with mask fine-tuning (0.15) and, for MLM and adversarial, also plain (0.0); and the
paper's published numbers with the model size and budget they used. Columns: composer
(Pianist8), emotion (EMOPIA), velocity and melody (POP909 by default; --velocity-data takes any
folder), each scored per segment (one window of --max-len notes: how MIDI-BERT and the paper
score) and per piece (majority vote of its segments; token tasks: note accuracy pooled per piece),
with a 95% bootstrap interval over test pieces and fine-tuning seeds (a piece's segments resampled
together: benchmarks/harness/stats.py) and the spread over fine-tuning seeds.

Every step is a ``python -m musictl`` subprocess (tokenize, pretrain-bert, finetune-mask), so the
harness measures what a user runs. The test split is scored here, from each fine-tuned model, so
both scorings and the intervals come from the same predictions. Each run is a cell of
benchmarks/results/table3.json (benchmarks/harness/cells.py), saved as it finishes: a killed run
continues where it stopped (pre-training continues with --resume). Pre-training never sees a test piece: it uses the
training split of the three datasets' MIDI-BERT splits (the reference pre-trained on the test
splits too).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import cells, commands, paths, stats, tables
from harness.data import dataset_split, labelled

ROOT, SHARED, RESULTS = paths.ROOT, paths.DATASETS, paths.RESULTS
JSON = RESULTS / "table3.json"
TASKS = {"composer": "pianist8", "emotion": "emopia", "velocity": "pop909", "melody": "pop909"}
SEQUENCE_TASKS = ("composer", "emotion")
PRETRAININGS = ("mlm", "adversarial", "hard-mining")
# (pre-training, fine-tuning mask ratio): the measured rows; "none" = the same architecture from scratch
ROWS = (("none", 0.15), ("mlm", 0.15), ("mlm", 0.0), ("adversarial", 0.15), ("adversarial", 0.0), ("hard-mining", 0.15))
PAPER = [  # accuracy %, per 512-note segment; velocity on GiantMIDI (../shared/datasets/README.md)
    {"row": "paper: Adversarial-MidiBERT (adversarial pre-training + mask fine-tuning)", "composer": 97.92, "emotion": 79.46,
     "velocity": 45.58, "melody": 92.68, "model": "12 layers, 768 hidden, 12 heads",
     "budget": "pre-training up to 500 epochs (patience 30), batch 8, 1024-note windows, lr 1e-4; POP1K7 + POP909 + "
               "Pianist8 + EMOPIA"},
    {"row": "paper: MidiBERT (re-run in the paper)", "composer": 79.07, "emotion": 67.59, "velocity": 44.88, "melody": 92.53,
     "model": "12 layers, 768 hidden, 12 heads", "budget": "MidiBERT's MLM pre-training (not restated in the paper)"},
    {"row": "paper: without pre-training", "composer": 79.76, "emotion": 68.75, "velocity": 38.70, "melody": 87.98,
     "model": "12 layers, 768 hidden, 12 heads", "budget": "none (fine-tuning only)"},
]


@dataclasses.dataclass(frozen=True)
class Budget:
    model: tuple[str, ...]  # pretrain-bert size flags
    max_len: int
    pretrain_steps: int
    eval_every: int
    freeze_every: int  # epochs between mask-book freezes (passed when pretrain-bert has --freeze-every)
    epochs: int
    patience: int
    seeds: tuple[int, ...]
    subset: dict  # fine-tuning: dataset -> (train, valid, test) pieces kept of its split, or None for all
    pretrain_full: bool  # pre-train on the whole training splits (else on the fine-tuning subsets' only)
    describe: str


BUDGETS = {
    "smoke": Budget(("--size", "tiny", "--hidden-size", "32", "--layers", "1", "--heads", "2", "--field-embed-dim", "8"), 64, 12,
                    6, 1, 1, 1, (0, 1), {"pianist8": (16, 8, 8), "emopia": (16, 8, 8), "pop909": (6, 3, 3)}, False,
                    "harness check only: 1-layer 32-wide model, 12 pre-training steps, 1 fine-tuning epoch; numbers mean nothing"),
    "cpu": Budget(("--size", "tiny"), 256, 6000, 500, 1, 2, 1, (0, 1, 2),
                  {"pianist8": (160, 37, 37), "emopia": (400, 107, 107), "pop909": (120, 20, 40)}, True,
                  "tiny MidiBert (2 layers, hidden 64, 0.28M parameters), 6000 pre-training steps of 8 windows of 256 notes "
                  "per objective on the three datasets' whole training splits (about 5.5 epochs; adversarial freezes every "
                  "epoch), fine-tuning up to 2 epochs, 3 seeds, on subsets of the training splits taken in turn from each "
                  "class (Pianist8 160 of 337 pieces, EMOPIA 400 of 864, POP909 the first 120/20/40 of its 4/4 split) and the "
                  "whole validation and test splits of Pianist8 and EMOPIA"),
    "gpu": Budget(("--preset", "paper"), 512, 20000, 1000, 5, 10, 3, (0, 1, 2), {"pianist8": None, "emopia": None, "pop909": None},
                  True, "the paper preset (12 layers, 768 hidden, 12 heads, batch 8, lr 1e-4) but 512-note windows and 20000 "
                  "pre-training steps per objective (about 36 epochs; freezes every 5), fine-tuning up to 10 epochs (patience 3), "
                  "3 seeds, whole MIDI-BERT splits"),
}


class Harness:
    """The run's settings, its results (table3.json: a cell per fine-tuning run and per majority baseline;
    the pre-training runs and the test segments' pieces in their own sections) and the commands it ran."""

    def __init__(self, args: argparse.Namespace, json_path: Path = JSON):
        self.args, self.budget = args, BUDGETS[args.budget]
        self.work = Path(args.work)
        b = self.budget
        config = {"budget": args.budget, "velocity_data": str(args.velocity_data), "pitch_shift": list(args.pitch_shift),
                  "tasks": list(args.tasks),
                  "finetune": {"epochs": b.epochs, "patience": b.patience, "seeds": list(b.seeds), "subset": b.subset}}
        self.results = cells.Results(json_path, "benchmarks/table3.py", config, command="python benchmarks/table3.py "
                                     + shlex.join(sys.argv[1:]), machine=paths.machine(), fresh=args.fresh,
                                     changeable=("finetune",), drop_cells=True, merged=("pretrain", "segment_pieces"),
                                     write=args.write)
        self.data = self.results.data
        if self.results.dropped:
            print(f"the fine-tuning settings changed: the pre-trained models are kept, the {self.results.dropped} "
                  "fine-tuning cells start again", file=sys.stderr, flush=True)
            self.data["commands"] = [c for c in self.data["commands"] if "finetune-mask" not in c["command"]]
        self.data.update(describe=b.describe, max_len=b.max_len)

    def musictl(self, *args: str) -> float:
        """Run ``python -m musictl ARGS`` (its output shown), record the exact command; seconds taken."""
        return commands.musictl(self.results, *args, work=self.work)

    def save(self) -> None:
        self.results.save()


# ----- data ----------------------------------------------------------------------------------------
subset_split = dataset_split  # the MIDI-BERT split, or its first (train, valid, test) entries of each class in turn
write_json = cells.write_plain


def pitch_shifted(dataset: str, entries: list[str], shifts: list[int], work: Path) -> list[str]:
    """Transposed copies of training files (drums untouched; a shift that leaves 0..127 is skipped),
    under ``work/aug/DATASET`` with the same folder (composer) and name prefix (emotion); their entries."""
    import symusic

    made = []
    for entry in entries:
        source = SHARED / dataset / "midi" / entry
        for shift in shifts:
            name = f"{Path(entry).stem}_shift{shift:+d}.mid"
            target = work / "aug" / dataset / Path(entry).parent / name
            if not target.exists():
                score = symusic.Score(str(source))
                pitches = [n.pitch for t in score.tracks if not t.is_drum for n in t.notes]
                if not pitches or min(pitches) + shift < 0 or max(pitches) + shift > 127:
                    continue
                for track in score.tracks:
                    if not track.is_drum:
                        track.shift_pitch(shift, inplace=True)
                target.parent.mkdir(parents=True, exist_ok=True)
                score.dump_midi(str(target))
            made.append(str(Path(entry).parent / name) if Path(entry).parent != Path(".") else name)
    return made


def prepare_tokens(h: Harness) -> dict[str, tuple[Path, Path]]:
    """Tokenize once: the three datasets (their whole MIDI-BERT splits, or only the subsets' files);
    per task its tokens and split file (the fine-tuning subset)."""
    splits = {d: subset_split(d, h.budget.subset.get(d)) for d in ("pianist8", "emopia", "pop909")}
    source = {d: subset_split(d, None) for d in splits} if h.budget.pretrain_full else splits
    combined = {s: [e for d in source.values() for e in d[s]] for s in ("train", "valid", "test")}
    tokens = h.work / "tokens"
    folders = [str(SHARED / d / "midi") for d in splits] if h.budget.pretrain_full else \
        [str(SHARED / d / "midi" / e) for d, split in splits.items() for entries in split.values() for e in entries]
    if not (tokens / "manifest.json").exists():
        h.musictl("tokenize", *folders, "-o", str(tokens), "--split-file", str(write_json(h.work / "splits-all.json", combined)),
                  "--seed", "0", "--overwrite")
    per_task = {t: (tokens, write_json(h.work / f"splits-{t}.json", splits[d])) for t, d in TASKS.items()}
    if h.args.velocity_data != SHARED / "pop909" / "midi":
        velocity = h.work / "tokens-velocity"
        if not (velocity / "manifest.json").exists():
            split = ["--split-file", str(h.args.velocity_split)] if h.args.velocity_split else ["--split", "0.8,0.1,0.1"]
            h.musictl("tokenize", str(h.args.velocity_data), "-o", str(velocity), *split, "--seed", "0", "--overwrite")
        per_task["velocity"] = (velocity, Path(h.args.velocity_split) if h.args.velocity_split else None)
    if h.args.pitch_shift:
        per_task.update(augmented_tokens(h, splits, folders))
    return per_task


def augmented_tokens(h: Harness, splits: dict, folders: list[str]) -> dict[str, tuple[Path, Path]]:
    """--pitch-shift: the classification tasks fine-tune on a tokens artifact with transposed training copies."""
    tokens = h.work / "tokens-aug"
    out, everything = {}, {s: [e for d in splits.values() for e in d[s]] for s in ("train", "valid", "test")}
    for task in SEQUENCE_TASKS:
        dataset = TASKS[task]
        copies = pitch_shifted(dataset, splits[dataset]["train"], list(h.args.pitch_shift), h.work)
        everything["train"] += copies
        split = {**splits[dataset], "train": splits[dataset]["train"] + copies}
        out[task] = (tokens, write_json(h.work / f"splits-{task}-aug.json", split))
    if not (tokens / "manifest.json").exists():
        aug = [str(h.work / "aug" / TASKS[t]) for t in SEQUENCE_TASKS]
        h.musictl("tokenize", *folders, *aug, "-o", str(tokens), "--split-file", str(write_json(h.work / "splits-aug.json", everything)),
                  "--seed", "0", "--overwrite")
    return out


# ----- pre-training and fine-tuning -----------------------------------------------------------------
def has_flag(command: str, flag: str) -> bool:
    found = subprocess.run([sys.executable, "-m", "musictl", command, "--help"], capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "COLUMNS": "300"})
    return flag in found.stdout


def pretrain(h: Harness, objective: str, tokens: Path) -> Path:
    out = h.work / f"bert-{objective}"
    if (out / "manifest.json").exists() and objective in h.data["pretrain"]:
        return out
    partial = out.exists() or (out.parent / f".{out.name}.staging").exists()
    extra = ["--freeze-every", str(h.budget.freeze_every)] if objective == "adversarial" and has_flag("pretrain-bert", "--freeze-every") \
        else []
    seconds = h.musictl("pretrain-bert", "--tokens", str(tokens), "-o", str(out), "--objective", objective, *h.budget.model,
                        "--max-len", str(h.budget.max_len), "--max-steps", str(h.budget.pretrain_steps), "--eval-every",
                        str(h.budget.eval_every), "--seed", "0", *extra, *shlex.split(h.args.pretrain_args),
                        *(["--resume"] if partial else ["--overwrite"]))
    metrics = json.loads((out / "metrics.json").read_text())
    best = metrics.get("best_valid") or metrics["final_valid"]
    h.data["pretrain"][objective] = {
        "seconds": seconds, "steps": metrics["steps"], "parameters": metrics["parameters"], "train_windows": metrics["train_windows"],
        "best_valid_accuracy": best["accuracy"], **{k: metrics["final_valid"].get(k) for k in (
            "masker_spearman", "adversarial_loss_ratio", "frozen_share")}}
    h.save()
    return out


def finetune(h: Harness, task: str, row: tuple[str, float], seed: int, tokens: Path, split: Path | None) -> None:
    pretrained, mask = row
    settings = {"task": task, "start": pretrained, "mask_ratio": mask, "seed": seed}
    if h.results.get(settings):
        return
    key = cells.cell_key(settings)
    out = h.work / "ft" / f"{task}-{pretrained}-m{mask}-s{seed}"
    model = h.work / f"bert-{'mlm' if pretrained == 'none' else pretrained}"  # from scratch: the same architecture
    seconds = h.musictl("finetune-mask", "--task", task, "--model", str(model), "--tokens", str(tokens), "-o", str(out),
                        *(["--split-file", str(split)] if split else []), *(["--from-scratch"] if pretrained == "none" else []),
                        "--mask-ratio", str(mask), "--epochs", str(h.budget.epochs), "--patience", str(h.budget.patience),
                        "--max-len", str(h.budget.max_len), "--seed", str(seed), *shlex.split(h.args.finetune_args), "--overwrite")
    metrics = json.loads((out / "metrics.json").read_text())
    scored = score_test(out, tokens, split, task, h.budget.max_len)
    if abs(scored.pop("check") - metrics["test"]["accuracy"]) > 1e-4:
        print(f"warning: {key}: test accuracy scored here differs from finetune-mask's {metrics['test']['accuracy']}", flush=True)
    keep_owners(h.data, task, scored.pop("segment_pieces"))
    h.results.put(settings, {**scored, "seconds": seconds, "best_epoch": metrics["best_epoch"],
                             "finetune_test_accuracy": metrics["test"]["accuracy"]})


# ----- scoring the test split ------------------------------------------------------------------------
def keep_owners(data: dict, task: str, owners: list[int]) -> None:
    """Record which test piece each segment of ``task`` belongs to (the same for every run of the task)."""
    saved = data.setdefault("segment_pieces", {}).setdefault(task, owners)
    if saved != owners:
        raise SystemExit(f"{task}: the test segments differ from the earlier runs' (other tokens or --max-len?); pass --fresh")


def score_test(model_dir: Path, tokens: Path, split_file: Path | None, task: str, max_len: int) -> dict:
    """Per test segment and per test piece: [correct, scored] (sequence tasks: [1 or 0, 1]); the piece of
    each segment (``segment_pieces``: its number in the test pieces' order)."""
    import torch

    from musictl import constants
    from musictl.bert.data import pad_batch, piece_windows
    from musictl.bert.model import load_midibert
    from musictl.hf import quiet_transformers

    quiet_transformers()
    corpus, items = labelled(task, tokens, split_file, "test")
    model = load_midibert(model_dir).eval()
    label2id = {str(k): int(v) for k, v in model.config.label2id.items()}
    segments, pieces, summed, owners = [], [], [], []
    for number, item in enumerate(items):
        windows = piece_windows(item.tokens, max_len, corpus.config.max_bars)
        owners += [number] * len(windows)
        ids, attention_mask = pad_batch(windows)
        if task == "velocity":  # the label is the velocity: hidden, as finetune-mask does
            ids[..., constants.VELOCITY][attention_mask.bool()] = constants.MASK_ID
        with torch.no_grad():
            probs = torch.softmax(model(ids, attention_mask).float(), dim=-1).numpy()
        if task in SEQUENCE_TASKS:
            truth, votes = label2id[item.label], probs.argmax(-1)
            segments += [[int(v == truth), 1] for v in votes]
            counts = np.bincount(votes, minlength=probs.shape[-1]) + probs.sum(0) / (len(votes) + 1)  # ties: summed probability
            pieces.append([int(counts.argmax() == truth), 1])
            summed.append(int(probs.sum(0).argmax() == truth))
        else:
            per_window = [(probs[w, : len(win)].argmax(-1), np.asarray(item.label[w * max_len : w * max_len + len(win)]))
                          for w, win in enumerate(windows)]
            segments += [[int(((p == t) & (t >= 0)).sum()), int((t >= 0).sum())] for p, t in per_window]
            pieces.append([sum(s[0] for s in segments[-len(windows):]), sum(s[1] for s in segments[-len(windows):])])
    check = float(np.mean(summed)) if task in SEQUENCE_TASKS else sum(p[0] for p in pieces) / max(1, sum(p[1] for p in pieces))
    return {"segments": segments, "pieces": pieces, "check": check, "segment_pieces": owners}


def majority(h: Harness, task: str, tokens: Path, split: Path | None) -> None:
    """The most frequent training class, predicted for every test segment / note."""
    if h.results.get({"task": task, "start": "majority"}):
        return
    _, train = labelled(task, tokens, split, "train")
    _, test = labelled(task, tokens, split, "test")
    max_len = h.budget.max_len
    if task in SEQUENCE_TASKS:
        names, counts = np.unique([i.label for i in train], return_counts=True)
        top = str(names[counts.argmax()])
        segments = [[int(i.label == top), 1] for i in test for _ in range(0, len(i.tokens), max_len)]
        pieces = [[int(i.label == top), 1] for i in test]
    else:
        top = int(np.bincount(np.concatenate([np.asarray(i.label) for i in train])).argmax())
        segments = [[int((np.asarray(i.label[s : s + max_len]) == top).sum()), len(i.label[s : s + max_len])]
                    for i in test for s in range(0, len(i.tokens), max_len)]
        pieces = [[int((np.asarray(i.label) == top).sum()), len(i.label)] for i in test]
    keep_owners(h.data, task, segment_owners([len(i.tokens) for i in test], max_len))
    h.results.put({"task": task, "start": "majority"}, {"class": str(top), "segments": segments, "pieces": pieces})


def segment_owners(lengths: list[int], max_len: int) -> list[int]:
    """The test piece of each segment, for pieces of ``lengths`` notes cut into windows of ``max_len``
    (``musictl.bert.data.piece_windows``: one window per started ``max_len`` notes)."""
    return [number for number, n in enumerate(lengths) for _ in range(0, n, max_len)]


# ----- the table ----------------------------------------------------------------------------------
QUESTION = ("Does the published method (adversarial pre-training, then mask fine-tuning) beat the same architecture "
            "fine-tuned from scratch, on each of the paper's four tasks?")
COMPARISON = ("adversarial (mask fine-tuning) minus no pre-training (mask fine-tuning), per segment (the paper's scoring), "
              "paired by seed, 95% bootstrap over test pieces and seeds: one difference per task (the first table below)")


def majority_runs(data: dict) -> dict[str, dict]:
    """The majority-class cell of each task."""
    return {c["settings"]["task"]: c for c in cells.select(data["cells"], start="majority")}


def runs_by_seed(data: dict, task: str, start: str, mask: float) -> dict[int, dict]:
    """The fine-tuning cells of (task, start, mask ratio), by seed."""
    return {c["settings"]["seed"]: c for c in cells.select(data["cells"], task=task, start=start, mask_ratio=mask)}


def owners_of(data: dict, task: str, scoring: str) -> list[int] | None:
    """The piece of each scored item: per piece, the item itself; per segment, its piece when table3.json
    records it (``segment_pieces``), else None (then segments are resampled as if independent)."""
    if scoring == "pieces":
        majority = majority_runs(data)
        return list(range(len(majority[task]["pieces"]))) if task in majority else None
    return data.get("segment_pieces", {}).get(task)


def cell(runs: list[dict], scoring: str, owners: list[int] | None) -> dict:
    """Mean accuracy % over seeds, 95% bootstrap interval over test pieces (a piece's segments together) and
    seeds, and the standard deviation over seeds."""
    correct = np.array([[c for c, _ in r[scoring]] for r in runs], dtype=float)  # (seeds, items)
    total = np.array([t for _, t in runs[0][scoring]], dtype=float)
    return stats.ratio_bootstrap(correct, total, owners)


def difference(mine: dict[int, dict], other: dict[int, dict], scoring: str, owners: list[int] | None) -> dict | None:
    """``mine`` minus ``other`` (runs by seed), in points: seeds paired, paired bootstrap over test pieces and seeds."""
    seeds = sorted(set(mine) & set(other))
    if not seeds:
        return None
    correct = lambda runs: np.array([[c for c, _ in runs[k][scoring]] for k in seeds], dtype=float)  # noqa: E731
    total = np.array([t for _, t in mine[seeds[0]][scoring]], dtype=float)
    return stats.paired_difference(correct(mine), correct(other), total, owners)


def summarise(data: dict, resample_seeds: bool = True) -> dict:
    table: dict = {"rows": {}, "planned": {}, "mask_gain": {}, "resampled": {}}
    majority = majority_runs(data)
    for scoring in ("segments", "pieces"):
        owners = {t: owners_of(data, t, scoring) for t in TASKS}
        table["resampled"][scoring] = {t: "pieces" if owners[t] is not None else "items" for t in TASKS}
        rows = {"majority class": {t: cell([m], scoring, owners[t]) for t, m in majority.items()}}
        for pretrained, mask in ROWS:
            name = f"{pretrained} ({'mask' if mask else 'plain'} fine-tuning)"
            rows[name] = {t: cell([by_seed[k] for k in sorted(by_seed)], scoring, owners[t]) for t in TASKS
                          if (by_seed := runs_by_seed(data, t, pretrained, mask))}
        table["rows"][scoring] = rows
        table["planned"][scoring] = {
            t: gain for t in TASKS
            if (gain := difference(runs_by_seed(data, t, "adversarial", 0.15), runs_by_seed(data, t, "none", 0.15), scoring,
                                   owners[t]))}
        table["mask_gain"][scoring] = {
            p: {t: gain for t in TASKS
                if (gain := difference(runs_by_seed(data, t, p, 0.15), runs_by_seed(data, t, p, 0.0), scoring, owners[t]))}
            for p in PRETRAININGS}
    return table


def interval_note(table: dict) -> str:
    """What the intervals resampled, said in the table."""
    kinds = {kind for by_task in table.get("resampled", {}).values() for kind in by_task.values()}
    if kinds == {"pieces"}:
        return ("Intervals: 95% bootstrap over test pieces and fine-tuning seeds, a piece's segments resampled together "
                "(benchmarks/harness/stats.py); differences paired by seed on the same resamples.")
    segments_as_items = [t for t, kind in table.get("resampled", {}).get("segments", {}).items() if kind == "items"]
    return ("Intervals: 95% bootstrap over test pieces and fine-tuning seeds, except the per-segment rows of "
            f"{', '.join(segments_as_items) or 'no task'}, where table3.json records no piece of each segment and "
            "segments are resampled as if independent (narrower than they should be; "
            "`python benchmarks/table3.py --attach-pieces --render` adds the pieces).")


def planned_answer(table: dict) -> str | None:
    return tables.verdict(table.get("planned", {}).get("segments", {}))


def exploratory_count(table: dict) -> int:
    """Every difference on the page besides the planned per-segment ones."""
    per_piece = len(table.get("planned", {}).get("pieces", {}))
    return per_piece + sum(len(by_task) for gains in table["mask_gain"].values() for by_task in gains.values())


def render(data: dict) -> str:
    """table3.md, from table3.json only."""
    config, table = data["config"], data["table"]
    pre = data["pretrain"]
    size = lambda p: f"{pre[p]['parameters'] / 1e6:.2f}M parameters" if p in pre else "-"  # noqa: E731
    budget = lambda p: f"{pre[p]['steps']} steps ({pre[p]['seconds'] / 60:.0f} min)" if p in pre else "-"  # noqa: E731
    fmt = lambda c: tables.interval(c, spread=True)  # noqa: E731
    diff = lambda c: tables.interval(c, signed=True)  # noqa: E731
    header = ["row", "model", "pre-training", *TASKS]
    lines = ["# Table 3: Adversarial-MidiBERT's downstream tasks, measured", "",
             *tables.planned(QUESTION, COMPARISON, planned_answer(table), exploratory_count(table)),
             f"Made by `{data['command']}` on {data['machine']}; every number below comes from "
             "benchmarks/results/table3.json (the runs' per-item scores), rebuilt by `python benchmarks/table3.py --render`.", "",
             f"Scale (`--budget {config['budget']}`): {data['describe']}. Cells: test accuracy % as mean over fine-tuning seeds "
             "[95% bootstrap interval] ±standard deviation over seeds. Datasets: " + datasets_line(data) + ".", "",
             interval_note(table), ""]
    lines += ["## Planned: adversarial minus no pre-training, both with mask fine-tuning (points, paired bootstrap 95%)", "",
              *tables.table(["scoring", *TASKS], [[scoring + (" (planned)" if scoring == "segments" else " (exploratory)"),
                                                   *(diff(by_task.get(t)) for t in TASKS)]
                                                  for scoring, by_task in table.get("planned", {}).items() if by_task],
                            "l" + "r" * len(TASKS)), ""]
    titles = {"segments": f"Per segment ({data['max_len']}-note windows; how MIDI-BERT and the paper score)",
              "pieces": "Per piece (majority vote of a piece's segments; token tasks: note accuracy pooled per piece)"}
    for scoring, rows in table["rows"].items():
        body = []
        for name, by_task in rows.items():
            pretrained = name.split(" ")[0]
            model = "-" if name == "majority class" else size("mlm" if pretrained == "none" else pretrained)
            spent = "none" if pretrained in ("none", "majority") else budget(pretrained)
            body.append([name, model, spent, *(fmt(by_task.get(t)) for t in TASKS)])
        if scoring == "segments":
            body += [[p["row"], p["model"], p["budget"], *(f"{p[t]:.2f}" + (" (GiantMIDI, not POP909)" if t == "velocity" else "")
                                                          for t in TASKS)] for p in PAPER]
        lines += [f"## {titles[scoring]}", "", *tables.table(header, body, "lll" + "r" * len(TASKS))]
        if scoring == "segments":
            lines += ["", "The paper measured velocity on GiantMIDI, not on POP909 as the rows above do: its velocity "
                          "numbers are not comparable with this table's."]
        lines.append("")
    gains = [[pretrained, scoring, *(diff(by_task.get(t)) for t in TASKS)]
             for scoring, by_pretraining in table["mask_gain"].items() for pretrained, by_task in by_pretraining.items() if by_task]
    lines += ["## Exploratory: mask fine-tuning minus plain fine-tuning, same pre-trained model (points, paired bootstrap 95%)",
              "", *tables.table(["pre-training", "scoring", *TASKS], gains, "ll" + "r" * len(TASKS))]
    value = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines += ["", "## Pre-training runs", "", *tables.table(
        ["objective", "steps", "minutes", "best valid masked accuracy", "masker Spearman", "loss ratio", "frozen share"],
        [[objective, p["steps"], f"{p['seconds'] / 60:.1f}", f"{p['best_valid_accuracy']:.3f}", value(p["masker_spearman"]),
          value(p["adversarial_loss_ratio"]), value(p["frozen_share"])] for objective, p in pre.items()])]
    lines += ["", *tables.commands(data["commands"], unit="runs")]
    return "\n".join(lines)


def datasets_line(data: dict) -> str:
    pieces = {t: len(m["pieces"]) for t, m in majority_runs(data).items()}
    velocity = data["config"]["velocity_data"]
    named = {"composer": "Pianist8", "emotion": "EMOPIA", "melody": "POP909",
             "velocity": "POP909" if velocity.endswith("pop909/midi") else velocity}
    shift = data["config"]["pitch_shift"]
    augmented = f"; composer and emotion trained with pitch-shifted copies {shift}" if shift else "; no augmentation"
    return ", ".join(f"{t} {named[t]} ({pieces.get(t, '?')} test pieces)" for t in TASKS) + " (MIDI-BERT splits)" + augmented


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="smoke")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--velocity-data", type=Path, default=SHARED / "pop909" / "midi", help="any MIDI folder for velocity")
    parser.add_argument("--velocity-split", type=Path, default=None, help="its split file (else 0.8/0.1/0.1 by seed 0)")
    parser.add_argument("--pitch-shift", type=int, nargs="*", default=[], help="composer/emotion: transposed training copies")
    parser.add_argument("--pretrain-args", default="", help="extra pretrain-bert flags, e.g. '--device cuda --preset paper'")
    parser.add_argument("--finetune-args", default="", help="extra finetune-mask flags, e.g. '--device cuda'")
    parser.add_argument("--work", default=str(paths.work_folder("table3")),
                        help="where artifacts go (kept for resuming) [default: $MUSICTL_BENCH_WORK or ~/.cache/musictl-bench, /table3]")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of table3.json/.md [default: benchmarks/results]")
    parser.add_argument("--fresh", action="store_true", help="forget table3.json's runs and start again")
    parser.add_argument("--write", action="store_true", help="save table3.json after every run and write table3.md")
    parser.add_argument("--render", action="store_true", help="only rebuild table3.md from table3.json")
    parser.add_argument("--attach-pieces", action="store_true",
                        help="with --render: add the piece of each test segment to a table3.json that lacks it "
                             "(re-tokenizes the datasets as the run did; seconds, no training)")
    args = parser.parse_args()
    json_path = args.out / "table3.json"
    if args.render:
        data = cells.load(json_path)
        if args.attach_pieces:
            attach_pieces(data, Path(args.work))
    else:
        data = run(args, json_path)
    data["table"] = summarise(data)
    table = render(data)
    print(table)
    if args.write or args.render:
        cells.write(json_path, data)
        (args.out / "table3.md").write_text(table)


def run(args: argparse.Namespace, json_path: Path = JSON) -> dict:
    h = Harness(args, json_path)
    per_task = prepare_tokens(h)
    tokens = h.work / "tokens"
    models = {objective: pretrain(h, objective, tokens) for objective in PRETRAININGS}
    assert all(m.exists() for m in models.values())
    for task in args.tasks:
        majority(h, task, *per_task[task])
    for seed in h.budget.seeds:  # seed by seed: a run stopped early still fills every cell
        for task in args.tasks:
            for row in ROWS:
                finetune(h, task, row, seed, *per_task[task])
    return h.data


def attach_pieces(data: dict, work: Path) -> None:
    """Add ``segment_pieces`` (the test piece of each segment, per task) to a table3.json whose runs
    predate it: tokenize the datasets as the run did (same files, split file and tokenizer defaults), cut
    each test piece into windows as :func:`score_test` does, and keep the result only if it agrees with
    every recorded run (segment counts; token tasks: each piece's segments sum to its piece score;
    sequence tasks: a piece whose segments all voted right (wrong) was scored right (wrong))."""
    from musictl.midi.pipeline import prepare_tokenize
    from musictl.midi.settings import TokenizeSettings

    config, max_len = data["config"], data["max_len"]
    budget = BUDGETS[config["budget"]]
    subsets = config["finetune"]["subset"]
    splits = {d: subset_split(d, subsets.get(d)) for d in ("pianist8", "emopia", "pop909")}
    source = {d: subset_split(d, None) for d in splits} if budget.pretrain_full else splits
    combined = {s: [e for d in source.values() for e in d[s]] for s in ("train", "valid", "test")}
    folders = [SHARED / d / "midi" for d in splits] if budget.pretrain_full else \
        [SHARED / d / "midi" / e for d, split in splits.items() for entries in split.values() for e in entries]
    tokens = work / "attach-pieces" / "tokens"
    split_file = write_json(work / "attach-pieces" / "splits-all.json", combined)
    prepare_tokenize(folders, tokens, TokenizeSettings(seed=0), split_file, overwrite=True).run()
    found = {}
    majority = majority_runs(data)
    for task in majority:
        if task == "velocity" and not config["velocity_data"].endswith("pop909/midi"):
            print(f"{task}: made from {config['velocity_data']}; its segments keep per-segment intervals", file=sys.stderr)
            continue
        _, items = labelled(task, tokens, write_json(work / "attach-pieces" / f"splits-{task}.json", splits[TASKS[task]]), "test")
        owners = segment_owners([len(i.tokens) for i in items], max_len)
        runs = {"majority": majority[task], **{k: v for k, v in data["cells"].items()
                                               if v["settings"]["task"] == task and v["settings"]["start"] != "majority"}}
        problems = [name for name, run in runs.items() if not owners_agree(task, owners, run)]
        if problems:
            raise SystemExit(f"{task}: the re-made test pieces do not match {len(problems)} recorded runs "
                             f"({', '.join(problems[:3])}); table3.json keeps per-segment intervals")
        found[task] = owners
        print(f"{task}: {len(items)} test pieces, {len(owners)} segments, consistent with {len(runs)} runs", file=sys.stderr)
    data.setdefault("segment_pieces", {}).update(found)


def owners_agree(task: str, owners: list[int], run: dict) -> bool:
    """Whether ``owners`` (the piece of each segment) fits one run's per-segment and per-piece scores."""
    segments, pieces = np.array(run["segments"], dtype=float), np.array(run["pieces"], dtype=float)
    if len(owners) != len(segments) or (owners and max(owners) + 1 != len(pieces)):
        return False
    sums = stats.piece_sums(segments.T, np.array(owners))  # (2, pieces): right, scored
    if task not in SEQUENCE_TASKS:
        return bool(np.array_equal(sums.T, pieces))
    counts = np.bincount(owners, minlength=len(pieces))
    all_right, none_right = sums[0] == counts, sums[0] == 0
    return bool(np.all(pieces[all_right, 0] == 1) and np.all(pieces[none_right, 0] == 0))


if __name__ == "__main__":
    main()
