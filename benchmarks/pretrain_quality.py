"""Pre-training quality: MLM vs adversarial vs hard-mining at the same step budget on real data (CPU), beside trivial predictors.

    python benchmarks/pretrain_quality.py --steps 400 --write

Tokenizes POP909 (its 4/4 MIDI-BERT split), Pianist8 and EMOPIA with their MIDI-BERT splits into one
tokens artifact, pre-trains a tiny MidiBert on the training pieces only with each objective (same
seed, steps, batch), and reports masked accuracy per field on the validation pieces (fixed random
masks, the same for both). The models are kept in the work folder ($MUSICTL_BENCH_WORK or
~/.cache/musictl-bench, /pretrain_quality) for benchmarks/downstream.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import paths, tables

SHARED = paths.DATASETS
WORK = paths.work_folder("pretrain_quality")
QUESTION = "At the same step budget, does any pre-training objective recover masked fields better than a trivial predictor?"
COMPARISON = ("per field, each objective's validation masked accuracy against the field's best trivial predictor of the same "
              "masked notes (unigram, window, previous note)")
DATASETS = ("pop909", "pianist8", "emopia")


OBJECTIVES = ("mlm", "adversarial", "hard-mining")


def build_tokens(work: Path) -> Path:
    """One tokens artifact of the three datasets (style = dataset) with the MIDI-BERT splits."""
    from musictl.midi.corpus import find_midi_files, load_split_file
    from musictl.midi.pipeline import tokenize_corpus
    from musictl.midi.vocab import TokenizerConfig

    tokens = work / "tokens"
    if (tokens / "manifest.json").is_file():
        return tokens
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    merged: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for name in DATASETS:
        link = corpus / name
        if not link.exists():
            link.symlink_to(SHARED / name / "midi", target_is_directory=True)
        split = json.loads((SHARED / name / "splits.json").read_text())
        for key in merged:
            merged[key] += [f"{name}/{entry}" for entry in split[key]]
    (work / "splits.json").write_text(json.dumps(merged))
    files = find_midi_files([corpus])
    splits, _ = load_split_file(work / "splits.json", files)
    tokenize_corpus(files, splits, tokens, TokenizerConfig(), os.cpu_count() or 1, overwrite=True)
    return tokens


def main() -> None:
    import torch

    from musictl import constants as C
    from musictl.bert.pretrain import best_trivial, pretrain
    from musictl.bert.settings import PretrainSettings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    paths.require_datasets()
    torch.set_num_threads(os.cpu_count() or 1)
    tokens = build_tokens(WORK)
    results, load = {}, [os.getloadavg()[0]]
    for objective in OBJECTIVES:
        settings = PretrainSettings(size=args.size, objective=objective, max_len=args.max_len, batch_size=args.batch_size,
                                    max_steps=args.steps, eval_every=max(1, args.steps // 4), seed=0, device="cpu")
        results[objective] = pretrain(tokens, WORK / f"bert-{objective}", settings, overwrite=True).to_dict()
        load.append(os.getloadavg()[0])
    first = results["mlm"]
    lines = [
        f"Machine: {os.cpu_count()} CPU cores, no GPU. MidiBert `{args.size}` ({first['parameters']:,} parameters), "
        f"{args.steps} steps of {args.batch_size} x {args.max_len} notes, seed 0, trained on {first['train_pieces']} "
        f"training pieces of POP909 + Pianist8 + EMOPIA (MIDI-BERT splits); validation: {first['valid_windows']} windows, 15% "
        "of notes masked with the same fixed masks for every objective. `adversarial` is the published objective, "
        "`hard-mining` our own variant (called `adversarial` before the published one was implemented). Trivial "
        "predictors of the same masked notes: the field's most frequent value in the training split (unigram), in the "
        "window, and the previous note's value; the best of the three is shown.",
        "",
        "| field | best trivial | " + " | ".join(f"{o} accuracy" for o in OBJECTIVES) + " | " +
        " | ".join(f"{o} loss" for o in OBJECTIVES) + " |",
        "|---|---:|" + "---:|" * (2 * len(OBJECTIVES)),
    ]
    for name in C.FIELDS:
        rows = [results[o]["final_valid"]["fields"][name] for o in OBJECTIVES]
        trivial = best_trivial(rows[0])
        lines.append(f"| {name} | {trivial:.4f} | " + " | ".join(f"{r['accuracy']:.4f}" for r in rows) + " | " +
                     " | ".join(f"{r['loss']:.3f}" for r in rows) + " |")
    lines.append("| **mean** | | " + " | ".join(f"**{results[o]['final_valid']['accuracy']:.4f}**" for o in OBJECTIVES) +
                 " | " + " | ".join(f"{results[o]['final_valid']['loss']:.3f}" for o in OBJECTIVES) + " |")
    times = ", ".join(f"{o} {results[o]['seconds_this_run']:.0f} s ({results[o]['notes_per_s']:,.0f} notes/s)" for o in OBJECTIVES)
    lines += ["", f"Wall time: {times}. The adversarial objective runs a second forward and backward pass (the masker's) "
                  "per step, about twice MLM's work." + (
                      f" The machine was busy (1-minute load average up to {max(load):.1f} on {os.cpu_count()} cores): these "
                      "wall times are not a speed measurement." if max(load) > (os.cpu_count() or 1) + 0.5 else "")]
    table = "\n".join(lines)
    print(table)
    if args.write:
        head = "\n".join(["# Pre-training quality: MLM vs adversarial vs hard-mining", "", *tables.planned(QUESTION, COMPARISON)])
        (paths.RESULTS / "pretrain_quality.md").write_text(
            f"{head}\nCommand: `python benchmarks/pretrain_quality.py --steps {args.steps} --write`\n\n{table}\n")


if __name__ == "__main__":
    main()
