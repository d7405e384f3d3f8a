"""Pre-training quality: MLM vs adversarial masking at the same step budget on real data (CPU).

    python benchmarks/pretrain_quality.py --steps 400 --write

Tokenizes POP909 (its 4/4 MIDI-BERT split), Pianist8 and EMOPIA with their MIDI-BERT splits into one
tokens artifact, pre-trains a tiny MidiBert on the training pieces only with each objective (same
seed, steps, batch), and reports masked accuracy per field on the validation pieces (fixed random
masks, the same for both). The models are kept in benchmarks/.work for benchmarks/downstream.py.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
WORK = Path(__file__).resolve().parent / ".work"
DATASETS = ("pop909", "pianist8", "emopia")


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
    from musictl.bert.pretrain import pretrain
    from musictl.bert.settings import PretrainSettings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} not found: the benchmark needs ../shared/datasets")
    torch.set_num_threads(os.cpu_count() or 1)
    tokens = build_tokens(WORK)
    results = {}
    for objective in ("mlm", "adversarial"):
        settings = PretrainSettings(size=args.size, objective=objective, max_len=args.max_len, batch_size=args.batch_size,
                                    max_steps=args.steps, eval_every=max(1, args.steps // 4), seed=0)
        results[objective] = pretrain(tokens, WORK / f"bert-{objective}", settings, overwrite=True).to_dict()
    lines = [
        f"Machine: {os.cpu_count()} CPU cores, no GPU. MidiBert `{args.size}` "
        f"({results['mlm']['parameters']:,} parameters), {args.steps} steps of {args.batch_size} x {args.max_len} notes, "
        f"seed 0, trained on {results['mlm']['train_pieces']} training pieces of POP909 + Pianist8 + EMOPIA (MIDI-BERT splits); "
        f"validation: {results['mlm']['valid_windows']} windows, 15% of notes masked with the same fixed masks for both.",
        "",
        "| field | MLM accuracy | adversarial accuracy | MLM loss | adversarial loss |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in C.FIELDS:
        m, a = results["mlm"]["final_valid"]["fields"][name], results["adversarial"]["final_valid"]["fields"][name]
        lines.append(f"| {name} | {m['accuracy']:.4f} | {a['accuracy']:.4f} | {m['loss']:.3f} | {a['loss']:.3f} |")
    m, a = results["mlm"], results["adversarial"]
    lines.append(f"| **mean** | **{m['final_valid']['accuracy']:.4f}** | **{a['final_valid']['accuracy']:.4f}** | "
                 f"{m['final_valid']['loss']:.3f} | {a['final_valid']['loss']:.3f} |")
    lines += ["", f"Wall time: MLM {m['seconds_this_run']:.0f} s ({m['notes_per_s']:,.0f} notes/s), adversarial "
                  f"{a['seconds_this_run']:.0f} s ({a['notes_per_s']:,.0f} notes/s)."]
    table = "\n".join(lines)
    print(table)
    if args.write:
        out = Path(__file__).parent / "results" / "pretrain_quality.md"
        out.write_text(f"# Pre-training quality: MLM vs adversarial\n\nCommand: `python benchmarks/pretrain_quality.py "
                       f"--steps {args.steps} --write`\n\n{table}\n")


if __name__ == "__main__":
    main()
