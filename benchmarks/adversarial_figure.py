"""The adversarial objective in a real short run: the mask book over time, the masker's score
against the recoverer's loss, and the three objectives side by side at the same step budget.

    python benchmarks/adversarial_figure.py --steps 600 --write

Drives the command line (``python -m musictl tokenize`` on the bundled corpus, then
``pretrain-bert`` once per objective: adversarial, mlm, hard-mining, same seed, size and steps),
reads each run's metrics.jsonl and the adversarial run's checkpointed mask book, and scores the
adversarial model's masker on the validation windows. Writes docs/img/adversarial.png and
benchmarks/results/adversarial.json; the Markdown table (benchmarks/results/adversarial.md) is
rebuilt from that JSON (``--render`` alone rebuilds it without running anything).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import cells, commands, paths, tables

ROOT, RESULTS = paths.ROOT, paths.RESULTS
WORK = paths.work_folder("adversarial")
QUESTION = "Does the adversarial masker learn to hide the notes that are hardest to recover?"
COMPARISON = ("the adversarial run's masker diagnostics on validation notes at the end of the run: Spearman(masker score, "
              "recovery loss) above 0 and the loss on the masker's notes over the loss on random notes above 1")

FIGURE = ROOT / "docs" / "img" / "adversarial.png"
OBJECTIVES = ("adversarial", "mlm", "hard-mining")


def musictl(*args: str) -> float:
    """Run one musictl command (stdout/stderr shown), return its wall time in seconds."""
    return commands.musictl(None, *args, work=WORK)


def run_all(args) -> dict:
    tokens = WORK / "tokens"
    seconds = {"tokenize": musictl("tokenize", "-o", str(tokens), "--seed", "0", "--overwrite")}
    for objective in OBJECTIVES:
        seconds[objective] = musictl(
            "pretrain-bert", "--tokens", str(tokens), "-o", str(WORK / f"bert-{objective}"), "--objective", objective,
            "--size", "tiny", "--max-len", str(args.max_len), "--max-steps", str(args.steps), "--eval-every", str(args.eval_every),
            "--seed", "0", "--device", "cpu", "--overwrite")
    curves = {o: [r for r in map(json.loads, (WORK / f"bert-{o}" / "metrics.jsonl").read_text().splitlines()) if "valid" in r]
              for o in OBJECTIVES}
    return {
        "format": cells.FORMAT, "script": "benchmarks/adversarial_figure.py",
        "command": f"python benchmarks/adversarial_figure.py --steps {args.steps} --max-len {args.max_len} "
                   f"--eval-every {args.eval_every} --write",
        "machine": paths.machine(),
        "config": {"size": "tiny", "max_len": args.max_len, "steps": args.steps, "batch": 8, "seed": 0,
                   "corpus": "the bundled corpus (musictl tokenize defaults, split 0.8/0.1/0.1)"},
        "cells": {}, "commands": [],
        "seconds": seconds,
        "curves": {o: [{"step": r["step"], **{k: r["valid"].get(k) for k in (
            "accuracy", "loss", "masker_spearman", "adversarial_loss_ratio", "frozen_share")}} for r in rows]
            for o, rows in curves.items()},
        "book": book_of(WORK / "bert-adversarial"),
        "scatter": score_and_loss(WORK / "bert-adversarial", tokens, args.max_len),
    }


def book_of(run: Path) -> dict:
    """The adversarial run's last checkpointed mask book (first 24 training windows) and freeze history."""
    from musictl.artifacts import read_state

    state = read_state(run / "checkpoints" / "last", "objective")
    book, lengths = np.asarray(state["book"]), np.asarray(state["lengths"])
    return {"windows": book[:24].tolist(), "lengths": lengths[:24].tolist(), "freezes": state.get("freezes", [])}


def score_and_loss(run: Path, tokens: Path, max_len: int) -> dict:
    """Per validation note: the masker's score on clean input and the loss when it is hidden at random."""
    import torch

    from musictl.bert.data import cut_windows, pad_batch
    from musictl.bert.diagnostics import hidden_note_losses, masker_scores, spearman
    from musictl.bert.masking import random_selection
    from musictl.bert.model import MidiBertForPreTraining
    from musictl.midi.tokens import TokenCorpus

    corpus = TokenCorpus.open(tokens)
    windows, _ = cut_windows(corpus, corpus.select(split="valid"), max_len)
    model = MidiBertForPreTraining.from_pretrained(run).eval()
    generator = torch.Generator().manual_seed(0)
    scores, losses = [], []
    with torch.no_grad():
        for start in range(0, len(windows), 8):
            ids, attention_mask = pad_batch(windows[start : start + 8])
            score = masker_scores(model, ids, attention_mask)
            hidden = random_selection(attention_mask, 0.15, generator)
            scores.append(score[hidden].numpy())
            losses.append(hidden_note_losses(model, ids, attention_mask, hidden)[0].numpy())
    score, loss = np.concatenate(scores), np.concatenate(losses)
    return {"score": np.round(score, 4).tolist(), "loss": np.round(loss, 4).tolist(), "spearman": round(spearman(score, loss), 4)}


def draw(data: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), dpi=100)
    adv = data["curves"]["adversarial"]
    steps = [r["step"] for r in adv]
    axes[0, 0].plot(steps, [r["frozen_share"] for r in adv], marker="o")
    axes[0, 0].set(title="mask book: share of training notes frozen", xlabel="step", ylabel="frozen share")
    book = np.array(data["book"]["windows"], dtype=float)
    for row, length in enumerate(data["book"]["lengths"]):
        book[row, length:] = np.nan  # padding: never in the book
    cmap = plt.get_cmap("gray").copy()
    cmap.set_bad("lightsteelblue")  # padding
    axes[0, 1].imshow(book, aspect="auto", cmap=cmap, interpolation="nearest", vmin=0, vmax=1)
    axes[0, 1].set(title="mask book at the end (black frozen, blue padding)", xlabel="note", ylabel="training window (first 24)")
    scatter = data["scatter"]
    axes[0, 2].scatter(scatter["score"], scatter["loss"], s=4, alpha=0.4)
    axes[0, 2].set(title=f"validation notes (Spearman {scatter['spearman']:.2f})",
                   xlabel="masker score (clean input)", ylabel="recovery loss when hidden")
    for name, key, ax, label in (("spearman", "masker_spearman", axes[1, 0], "Spearman(score, loss)"),
                                 ("ratio", "adversarial_loss_ratio", axes[1, 1], "loss on masker's notes / random")):
        for objective in ("adversarial", "hard-mining"):
            rows = data["curves"][objective]
            ax.plot([r["step"] for r in rows], [r[key] for r in rows], marker=".", label=objective)
        ax.axhline(0.0 if name == "spearman" else 1.0, color="grey", linewidth=0.8)
        ax.set(title=f"masker diagnostic: {label}", xlabel="step")
        ax.legend()
    for objective, rows in data["curves"].items():
        axes[1, 2].plot([r["step"] for r in rows], [r["accuracy"] for r in rows], marker=".", label=objective)
    axes[1, 2].set(title="validation masked accuracy (random 15%)", xlabel="step", ylabel="accuracy")
    axes[1, 2].legend()
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE)
    plt.close(fig)


def render(data: dict) -> str:
    """The Markdown table, from the JSON only."""
    scale = data["config"]
    lines = [
        "# Adversarial pre-training on a short run",
        "",
        *tables.planned(QUESTION, COMPARISON, exploratory=2 * (len(data["curves"]) - 1), intervals=False),
        f"Command: `{data['command']}`",
        "",
        f"Machine: {data['machine']}. Scale: {scale['size']} MidiBert, windows of {scale['max_len']} notes, batch "
        f"{scale['batch']}, {scale['steps']} steps, seed {scale['seed']}, on {scale['corpus']}. Figure: docs/img/adversarial.png. The wall "
        "times were taken while other jobs shared the 2 cores: they are not a speed comparison (see pretrain_tiny.md).",
        "",
    ]
    cell = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines += tables.table(
        ["objective", "best valid masked accuracy", "final valid masked accuracy", "masker Spearman",
         "loss ratio (masker / random)", "frozen share", "wall seconds (shared machine)"],
        [[objective, f"{max(r['accuracy'] for r in rows):.3f}", f"{rows[-1]['accuracy']:.3f}",
          cell(rows[-1]["masker_spearman"]), cell(rows[-1]["adversarial_loss_ratio"]), cell(rows[-1]["frozen_share"]),
          f"{data['seconds'][objective]:.0f}"] for objective, rows in data["curves"].items()])
    freezes = ", ".join(f"epoch {f['epoch']}: {f['frozen_share']:.2f}" for f in data["book"]["freezes"])
    lines += ["", f"Mask book after each freeze (frozen share of the training notes): {freezes or 'none'}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--write", action="store_true", help="write the JSON, the Markdown table and the figure")
    parser.add_argument("--render", action="store_true", help="only rebuild the Markdown and the figure from the JSON")
    args = parser.parse_args()
    out = RESULTS / "adversarial.json"
    data = cells.load(out) if args.render else run_all(args)
    if args.write and not args.render:
        cells.write(out, data)
    table = render(data)
    print(table)
    if args.write or args.render:
        (RESULTS / "adversarial.md").write_text(table)
        draw(data)


if __name__ == "__main__":
    main()
