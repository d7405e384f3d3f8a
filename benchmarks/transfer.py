"""Cross-style generation on real corpora: the study's three GCN variants on a clean split, GCN
training time, walk throughput, decodable share and style fidelity, in one run.

    python benchmarks/transfer.py --write            # needs ../shared/datasets (a few minutes on 2 cores)

Styles: Nottingham jigs, Bach chorales (music21), O'Neill's Irish fiddle tunes (music21), each capped
at --per-style pieces. One tiny MidiBert is pre-trained on all of them (training split) for the
token embeddings.
"""

from __future__ import annotations

import sys

# benchmarks/tokenize.py is named like the standard library's `tokenize`: keep this folder off the path.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("benchmarks")]

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
STYLES = {
    "nottingham-jigs": ("nottingham/midi", "jigs*.mid"),
    "bach-chorales": ("music21/bach", "*.mid"),
    "irish-fiddle": ("music21/oneills1850", "*.mid"),
}
VARIANTS = [("token", "similarity"), ("token-pos", "cooccurrence"), ("token", "cooccurrence")]


def main() -> None:
    import torch

    from musictl.bert.pretrain import PretrainSettings, pretrain
    from musictl.midi.corpus import assign_splits, find_midi_files
    from musictl.midi.decode import onsets, tokens_to_midi_bytes
    from musictl.midi.pipeline import tokenize_corpus
    from musictl.midi.vocab import TokenizerConfig
    from musictl.transfer.fidelity import style_fidelity
    from musictl.transfer.gcn import GcnSettings
    from musictl.transfer.pipeline import generate, load_walker, make_embeddings, make_gcn, make_graph
    from musictl.transfer.walk import WalkSettings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-style", type=int, default=150)
    parser.add_argument("--bert-steps", type=int, default=400)
    parser.add_argument("--walks", type=int, default=20)
    parser.add_argument("--bars", type=int, default=32)
    parser.add_argument("--gcn-epochs", type=int, default=GcnSettings.epochs, help="train-gcn --epochs")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} not found: the benchmark needs ../shared/datasets")
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        corpus_dir = Path(tmp) / "corpus"
        for style, (folder, pattern) in STYLES.items():
            (corpus_dir / style).mkdir(parents=True)
            for f in sorted((SHARED / folder).glob(pattern))[: args.per_style]:
                (corpus_dir / style / f.name).symlink_to(f)
        files = find_midi_files([corpus_dir])
        tokenize_corpus(files, assign_splits(files, (0.8, 0.1, 0.1), 0), ws / "tokens", TokenizerConfig(), os.cpu_count() or 1)
        t0 = time.perf_counter()
        bert = pretrain(ws / "tokens", ws / "bert", PretrainSettings(size="tiny", max_len=256, max_steps=args.bert_steps,
                                                                     eval_every=args.bert_steps))
        bert_seconds = time.perf_counter() - t0
        make_embeddings(str(ws / "bert"), ws / "tokens", ws / "embeddings")
        rows, walk_rows = [], []
        for style in STYLES:
            graph = make_graph(ws / "tokens", style, ws / "graph" / style)
            for features, graph_kind in VARIANTS:
                t0 = time.perf_counter()
                settings = GcnSettings(features=features, graph=graph_kind, epochs=args.gcn_epochs)
                m = make_gcn(ws, style, ws / "gcn" / style, settings, ws / "tokens", ws / "graph" / style, ws / "embeddings",
                             overwrite=True)
                rows.append((style, f"{features} + {graph_kind}", graph["nodes"], graph["edges"], m["test_auc"], m["test_ap"],
                             m["best_epoch"], time.perf_counter() - t0))
            walker_and_corpus = load_walker(ws, style, ws / "tokens")  # the last variant: the style graph
            config = walker_and_corpus[1].config
            t0 = time.perf_counter()
            walks = [generate(ws, style, WalkSettings(bars=args.bars, seed=s), ws / "tokens", walker_and_corpus=walker_and_corpus)
                     for s in range(args.walks)]
            walk_seconds = time.perf_counter() - t0
            decodable = 0
            for w in walks:
                values = w - 4
                ok = len(np.unique(values[:, 0])) == args.bars
                onsets(values, config)
                decodable += int(ok and len(tokens_to_midi_bytes(w, config)) > 0)
            fid = style_fidelity(walks, walker_and_corpus[1], style)
            walk_rows.append((style, sum(w.size for w in walks) / walk_seconds, decodable / len(walks), fid))
    lines = [
        f"Machine: {os.cpu_count()} CPU cores, no GPU. {args.per_style} pieces per style at most; tiny MidiBert "
        f"({bert['parameters']:,} parameters, {args.bert_steps} adversarial steps, {bert_seconds:.0f} s, validation masked "
        f"accuracy {bert['final_valid']['accuracy']:.3f}) gives the token embeddings. Clean split: validation/test edges "
        "are not in the message-passing graph.",
        "",
        "| style | variant | nodes | edges | test ROC-AUC | test AP | best epoch | GCN seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {s} | {v} | {n} | {e} | {auc:.4f} | {ap:.4f} | {ep} | {sec:.1f} |" for s, v, n, e, auc, ap, ep, sec in rows]
    lines += ["", f"Walks: {args.walks} per style, {args.bars} bars each, on the style graph with the default settings.", "",
              "| style | walk tokens/s | decodable | JS pitch-class own / others | JS interval own / others | "
              "JS duration own / others | novelty (4-grams) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for style, rate, share, fid in walk_rows:
        own, other = fid["divergence_own_style"], fid["divergence_other_styles_mean"]
        lines.append(f"| {style} | {rate:,.0f} | {share:.0%} | {own['pitch_class']:.3f} / {other['pitch_class']:.3f} | "
                     f"{own['interval']:.3f} / {other['interval']:.3f} | {own['duration']:.3f} / {other['duration']:.3f} | "
                     f"{fid['novelty']:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        out = Path(__file__).parent / "results" / "transfer.md"
        out.write_text(f"# Cross-style generation\n\nCommand: `python benchmarks/transfer.py {' '.join(sys.argv[1:])}`\n\n{table}\n")


if __name__ == "__main__":
    main()
