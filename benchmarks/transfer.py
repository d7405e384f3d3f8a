"""Cross-style generation on real corpora, with what each method has to beat.

    python benchmarks/transfer.py --write            # needs ../shared/datasets; minutes on 2 CPU cores
    python benchmarks/transfer.py --unseen --write   # adds the unseen-style protocol (several tiny pre-trainings)

1. The study's three models (``train-gcn --model 1|2|3``) on each style, test ROC-AUC / AP at the
   best validation epoch beside the baselines on the same test edges (heuristics on the training
   graph, a GCN on random features, an MLP on the embeddings without the graph).
2. A small sweep of model 3 chosen on validation ROC-AUC only; the test edges are scored once, for
   the chosen setting. The table goes into docs/train-gcn.md too.
3. Walks (``generate-rwr``), the same walk without the link predictor (``--no-gcn``) and a first-order
   Markov chain with the same plans, rhythm and articulation tables: tempo and metre events per piece,
   bars filled, repeated notes, style fidelity against the style's held-out pieces (JS divergence of
   pitch-class, interval, duration and onset-position histograms: own style vs the other styles),
   silence share and duration-to-next-onset ratio beside the held-out pieces', and the judge (a
   cross-validated classifier of held-out vs generated pieces; 0.5 = it cannot tell).
4. ``--unseen``: the MidiBert is pre-trained without one style, which the chain then learns; (a) that
   BERT, (b) a BERT that saw the style, (c) random embeddings, (d) the best heuristic, over seeds.
5. ``--few-shot`` (on its own): the few-shot unseen-style protocol of :mod:`musictl.transfer.fewshot` on the
   bundled corpus (or ``--corpus shared``): for each target style a tiny MidiBert pre-trained without it, then
   k = 1, 2, 4, 8, all training pieces x seeds, next-note NLL and edge recovery on the style's test pieces.
   Written to benchmarks/results/transfer_fewshot.md + .json; every cell is cached under ``--work`` as it
   finishes, so rerunning the same command resumes::

       python benchmarks/transfer.py --few-shot --write

   ``--bert-model MODEL`` gives every target style the same pre-trained MidiBert instead (e.g. the 27k-step MLM
   model of benchmarks/label_efficiency.py, whose corpus holds the target styles): an optimistic bound on what a
   better encoder could give, written to transfer_fewshot_given.md, its cells cached apart.

Styles: Nottingham jigs, Bach chorales (music21), O'Neill's Irish fiddle tunes (music21), each capped
at --per-style pieces.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
STYLES = {
    "nottingham-jigs": ("nottingham/midi", "jigs*.mid"),
    "bach-chorales": ("music21/bach", "*.mid"),
    "irish-fiddle": ("music21/oneills1850", "*.mid"),
}
SWEEP = [{}, {"patience": 60}, {"conv": "sage", "patience": 60}, {"lr": 0.005}]  # small and bounded
BASELINE_COLUMNS = ["common_neighbours", "adamic_adar", "resource_allocation", "degree_product", "gcn_random_features",
                    "mlp_embeddings"]
DOC_START, DOC_END = "<!-- sweep table: benchmarks/transfer.py -->", "<!-- end of sweep table -->"


def build_workspace(ws: Path, corpus_dir: Path, args, bert_styles: list[str] | None = None, seed: int = 0) -> dict:
    """tokenize -> pretrain-bert (on ``bert_styles``' training pieces, default all) -> embed; returns BERT facts."""
    from musictl.bert.pretrain import pretrain
    from musictl.bert.settings import PretrainSettings
    from musictl.midi.corpus import assign_splits, find_midi_files
    from musictl.midi.pipeline import tokenize_corpus
    from musictl.midi.vocab import TokenizerConfig
    from musictl.transfer.pipeline import make_embeddings

    files = find_midi_files([corpus_dir])
    splits = assign_splits(files, (0.8, 0.1, 0.1), 0)
    tokenize_corpus(files, splits, ws / "tokens", TokenizerConfig(), os.cpu_count() or 1)
    bert_tokens = ws / "tokens"
    if bert_styles is not None:  # a second tokens artifact without the held-out style, same vocabulary
        kept = [f for f in files if f.style in bert_styles]
        bert_tokens = ws / "bert-tokens"
        tokenize_corpus(kept, {f.path: splits[f.path] for f in kept}, bert_tokens, TokenizerConfig(), os.cpu_count() or 1)
    t0 = time.perf_counter()
    bert = pretrain(bert_tokens, ws / "bert", PretrainSettings(size="tiny", max_len=256, max_steps=args.bert_steps,
                                                               lr=args.bert_lr, warmup=0.05, eval_every=args.bert_steps,
                                                               seed=seed, device="cpu"))
    seconds = time.perf_counter() - t0
    make_embeddings(ws / "bert", ws / "tokens", ws / "embeddings")
    return {"parameters": bert.parameters, "seconds": seconds, "accuracy": bert.final_valid["accuracy"]}


def model_rows(ws: Path, style: str, args) -> list[dict]:
    """The study's three models with their baselines (one artifact each, overwritten in turn; model 3 last)."""
    from musictl.transfer.pipeline import make_gcn
    from musictl.transfer.settings import GcnSettings

    rows = []
    for model in (1, 2, 3):
        t0 = time.perf_counter()
        result = make_gcn(style, ws / "gcn" / style, GcnSettings(model=model, epochs=args.gcn_epochs), ws / "tokens",
                          ws / "graph" / style, ws / "embeddings", overwrite=True)
        rows.append({"style": style, "result": result, "seconds": time.perf_counter() - t0})
    return rows


def sweep_rows(ws: Path, style: str, args) -> dict:
    """Model 3 under each SWEEP setting, chosen on validation ROC-AUC (same-field negatives); the chosen one is
    retrained and tested once."""
    from musictl.midi.tokens import TokenCorpus
    from musictl.transfer.adjacency import load_graph
    from musictl.transfer.embed import load_embeddings
    from musictl.transfer.features import node_features
    from musictl.transfer.link_prediction import train_link_prediction
    from musictl.transfer.settings import GcnSettings

    corpus = TokenCorpus.open(ws / "tokens")
    graph = load_graph(ws / "graph" / style)
    tables = load_embeddings(ws / "embeddings")
    features = node_features(tables["token"].numpy(), tables["position"].numpy(), graph.nodes, corpus, style, "token")
    tried = []
    for change in SWEEP:
        settings = GcnSettings(epochs=args.gcn_epochs, baselines=False, **change)
        t0 = time.perf_counter()
        result = train_link_prediction(features, graph.undirected(), settings, score_test=False,
                                       fields=graph.node_fields(corpus.config))
        tried.append({"change": change, "val_auc": result.val_auc_same_field, "best_epoch": result.best_epoch,
                      "seconds": time.perf_counter() - t0})
    chosen = max(tried, key=lambda r: r["val_auc"])
    tested = train_link_prediction(features, graph.undirected(), GcnSettings(epochs=args.gcn_epochs, baselines=False,
                                                                              **chosen["change"]),
                                   fields=graph.node_fields(corpus.config))
    return {"style": style, "tried": tried, "chosen": chosen, "test_auc": tested.test_auc_same_field,
            "test_ap": tested.test_ap_same_field}


def style_classifier(ws: Path, args):
    """finetune-mask --task style on the styles' training pieces (the workspace's BERT); the loaded model and
    its held-out test scores."""
    from musictl.bert.finetune import finetune
    from musictl.bert.settings import FinetuneSettings
    from musictl.midi.tokens import TokenCorpus
    from musictl.transfer.fidelity import load_style_classifier

    t0 = time.perf_counter()
    result = finetune(ws / "tokens", ws / "bert", ws / "finetune" / "style", FinetuneSettings(
        task="style", epochs=args.classifier_epochs, max_len=256, device="cpu", seed=0))
    model = load_style_classifier(ws / "finetune" / "style", TokenCorpus.open(ws / "tokens"), next(iter(STYLES)))
    return model, {"test_accuracy": result.test["accuracy"], "chance": result.chance_accuracy, "classes": result.classes,
                   "pieces": result.pieces, "best_epoch": result.best_epoch, "seconds": time.perf_counter() - t0}


def piece_facts(tokens: np.ndarray, config, bars: int) -> dict:
    """Tempo and metre events of the decoded MIDI, bars with notes, and the repeated-note share."""
    from symusic import Score

    from musictl.midi.decode import tokens_to_midi_bytes
    from musictl.transfer.tables import repeated_notes

    score = Score.from_midi(tokens_to_midi_bytes(tokens, config))
    ts = score.time_signatures[0]
    bar = score.ticks_per_quarter * 4 * ts.numerator // ts.denominator
    starts = np.concatenate([t.notes.numpy()["time"] for t in score.tracks])
    same, pairs = repeated_notes(tokens.astype(np.int64) - 4)
    return {"tempos": len(score.tempos), "metres": len(score.time_signatures),
            "full": len(set((starts // bar).tolist())) == bars, "repeats": same / max(pairs, 1)}


def walk_rows(ws: Path, style: str, args, classifier) -> list[dict]:
    """The walk, the walk without the link predictor and the Markov chain: N pieces each, their facts and their
    style fidelity against the style's held-out pieces."""
    from musictl.transfer.baselines import markov_walker
    from musictl.transfer.fidelity import classifier_assignments, style_fidelity
    from musictl.transfer.generator import StyleGenerator
    from musictl.transfer.settings import WalkSettings

    generator = StyleGenerator.load(ws, style, ws / "tokens")
    markov = StyleGenerator(style, generator.corpus, markov_walker(
        generator.corpus, StyleGenerator._pieces(generator.corpus, style), generator.tables))
    rows = []
    for name, source, gcn in (("walk", generator, True), ("walk --no-gcn", generator, False),
                              ("Markov chain", markov, True)):
        t0 = time.perf_counter()
        pieces = source.generate_many(args.walks, WalkSettings(bars=args.bars, gcn=gcn))
        rate = sum(len(p) for p in pieces) * 8 / (time.perf_counter() - t0)
        facts = [piece_facts(p, generator.config, args.bars) for p in pieces]
        rows.append({"style": style, "method": name, "tokens_per_s": rate, "facts": facts,
                     "fidelity": style_fidelity(pieces, generator.corpus, style),
                     "style_repeats": generator.tables.repeat_share,
                     "classified_own": classifier_assignments(classifier, pieces, style)["assigned_to_style"]})
    return rows


def mean_ci(values: list[float]) -> str:
    """Mean ± the half-width of a 95% t interval."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return f"{values.mean():.4f}"
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return f"{values.mean():.4f} ± {half:.4f}"


def randomise_embeddings(folder: Path, seed: int) -> None:
    """Replace the token table of an embeddings artifact by Gaussian noise (same shape), manifest refreshed."""
    import torch
    from safetensors.torch import load_file, save_file

    from musictl import artifacts
    from musictl.transfer.embed import FILE

    tables = load_file(str(folder / FILE))
    tables["token"] = torch.randn(tables["token"].shape, generator=torch.Generator().manual_seed(seed))
    save_file(tables, str(folder / FILE))
    artifacts.write_manifest(folder, artifacts.read_manifest(folder))


def unseen_rows(tmp: Path, corpus_dir: Path, held_out: str, args) -> list[tuple[str, str]]:
    """(a) BERT without the style, (b) BERT with it, (c) random embeddings, (d) the best heuristic, and what the
    study suggests might help (a): more pre-training, positions in the features (model 2). One pre-training per
    BERT, then ``--seeds`` edge splits and GCN initialisations (the same split for every row of a seed)."""
    import shutil

    from musictl.transfer.pipeline import make_gcn, make_graph
    from musictl.transfer.settings import GcnSettings

    others = [s for s in STYLES if s != held_out]
    names = {"a": f"(a) BERT that never saw {held_out} ({args.bert_steps} steps)", "b": "(b) BERT that saw it",
             "c": "(c) random embeddings (same shape)", "d": "(d) best heuristic (CN, AA, RA, degree product)",
             "a-long": f"(a) with {args.long_steps} pre-training steps", "a-model2": "(a) as model 2 (token x position features and graph)"}
    spaces = {"a": tmp / "unseen-a", "b": tmp / "unseen-b", "a-long": tmp / "unseen-a-long"}
    build_workspace(spaces["a"], corpus_dir, args, others)
    build_workspace(spaces["b"], corpus_dir, args)
    build_workspace(spaces["a-long"], corpus_dir, argparse.Namespace(**{**vars(args), "bert_steps": args.long_steps}), others)
    for ws in spaces.values():
        make_graph(ws / "tokens", held_out, ws / "graph" / held_out)
    runs = {"a": ("a", 3), "b": ("b", 3), "a-long": ("a-long", 3), "a-model2": ("a", 2)}
    scores: dict[str, list[float]] = {k: [] for k in names}
    for seed in range(args.seeds):
        for key, (space, model) in runs.items():
            ws = spaces[space]
            result = make_gcn(held_out, ws / "gcn" / f"{held_out}-{key}", GcnSettings(
                model=model, epochs=args.gcn_epochs, seed=seed, baselines=key == "b"), ws / "tokens", ws / "graph" / held_out,
                ws / "embeddings", overwrite=True)
            scores[key].append(result.test_auc)
            if key == "b":
                scores["d"].append(max(result.baselines[h]["auc"] for h in BASELINE_COLUMNS[:4]))
        noise = spaces["b"] / f"embeddings-random-{seed}"
        shutil.copytree(spaces["b"] / "embeddings", noise)
        randomise_embeddings(noise, seed)
        random = make_gcn(held_out, spaces["b"] / "gcn-random", GcnSettings(epochs=args.gcn_epochs, seed=seed, baselines=False),
                          spaces["b"] / "tokens", spaces["b"] / "graph" / held_out, noise, overwrite=True)
        scores["c"].append(random.test_auc)
    order = ("a", "b", "c", "d", "a-long", "a-model2")
    rows = [(names[k], mean_ci(scores[k])) for k in order]
    for other in ("d", "c"):
        rows.append((f"(a) - ({other}), paired by seed", mean_ci((np.array(scores["a"]) - np.array(scores[other])).tolist())))
    return rows


def render(args, bert: dict, models: list[dict], sweeps: list[dict], walks: list[dict], graphs: dict,
           unseen: list[tuple[str, str]] | None) -> tuple[str, str]:
    """(the results page, the sweep table for docs/train-gcn.md)."""
    short = {"common_neighbours": "CN", "adamic_adar": "AA", "resource_allocation": "RA", "degree_product": "degree prod.",
             "gcn_random_features": "GCN random feat.", "mlp_embeddings": "MLP no graph"}
    lines = [f"Machine: {os.cpu_count()} CPU cores, no GPU. {args.per_style} pieces per style at most; a tiny MidiBert "
             f"({bert['parameters']:,} parameters, {args.bert_steps} steps on every style's training pieces, "
             f"{bert['seconds']:.0f} s, validation masked accuracy {bert['accuracy']:.3f}) gives the embeddings. "
             f"Edges split 80/10/10 (train/validation/test); at most {args.gcn_epochs} epochs, early stopping on validation "
             "ROC-AUC; test scored once, at the best validation epoch. Baselines score the same test edges and negatives "
             "(heuristics on the training graph only). Seconds are wall time on a machine shared with other jobs.", "",
             "### The study's three models and their baselines (test ROC-AUC, uniform / same-field negatives)", "",
             "Every model predicts the style graph's edges (models 1 and 2 pass messages over the kNN graph of their "
             "features, `--predict style`); same-field negatives pair each test edge with a non-edge of its field pair.",
             "", "| style | model | nodes / edges | GCN AUC | GCN AP | " + " | ".join(short[c] for c in BASELINE_COLUMNS)
             + " | GCN - best baseline | seconds |", "|---|---|---|---:|---:|" + "---:|" * len(BASELINE_COLUMNS) + "---:|---:|"]
    for row in models:
        r = row["result"]
        name, best = r.best_baseline
        hard_name, hard_best = r.best_baseline_on("auc_same_field")
        lines.append(f"| {r.style} | {r.model} ({r.features} + {r.graph}) | {graphs[r.style]} | {r.test_auc:.4f} / "
                     f"{r.test_auc_same_field:.4f} | {r.test_ap:.4f} / {r.test_ap_same_field:.4f} | "
                     + " | ".join(f"{r.baselines[c]['auc']:.4f} / {r.baselines[c]['auc_same_field']:.4f}"
                                  for c in BASELINE_COLUMNS)
                     + f" | {r.test_auc - best:+.4f} ({short[name]}) / {r.test_auc_same_field - hard_best:+.4f} "
                       f"({short[hard_name]}) | {row['seconds']:.0f} |")
    sweep = render_sweep(sweeps)
    sweep_text = sweep if sweeps else ("The sweep was not part of this run (`--no-sweep`); the last one is in "
                                       "[docs/train-gcn.md](../../docs/train-gcn.md#tuning-measured), with its command.")
    lines += ["", "### Model 3 settings chosen on validation ROC-AUC only", "", sweep_text, "",
              f"### Walks: {args.walks} pieces of {args.bars} bars per style and method", "",
              "Divergences, silence and ratios are measured against the style's held-out pieces (valid + test), never the "
              "training pieces the graph, the link predictor and the tables were made from; novelty against those.", "",
              "| style | method | tempo events | metre events | bars all filled | repeated notes (style) | "
              "JS pitch-class own / others | JS interval own / others | JS duration own / others | JS onset own / others | "
              "silence share (held-out) | duration / next onset (held-out) | judge accuracy | novelty | "
              "classified as its style | tokens/s |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in walks:
        facts, fid = row["facts"], row["fidelity"]
        own, other = fid["divergence_own_style"], fid["divergence_other_styles_mean"]
        js = " | ".join(f"{own[k]:.3f} / {other[k]:.3f}" for k in ("pitch_class", "interval", "duration", "onset_position"))
        gen, real = fid["listening"]["generated"], fid["listening"]["held_out"]
        lines.append(f"| {row['style']} | {row['method']} | {max(f['tempos'] for f in facts)} | {max(f['metres'] for f in facts)} "
                     f"| {np.mean([f['full'] for f in facts]):.0%} | {np.mean([f['repeats'] for f in facts]):.2f} "
                     f"({row['style_repeats']:.2f}) | {js} | {gen['silence_share']:.3f} ({real['silence_share']:.3f}) | "
                     f"{gen['duration_ratio']:.2f} ({real['duration_ratio']:.2f}) | {fid['judge']['accuracy']:.2f} | "
                     f"{fid['novelty']:.2f} | {row['classified_own']:.0%} | {row['tokens_per_s']:,.0f} |")
    clf = bert["classifier"]
    lines += ["", f"Style classifier: `finetune-mask --task style` on the MidiBert above ({clf['pieces']['train']} training "
              f"pieces of the {len(clf['classes'])} styles, best validation epoch {clf['best_epoch']}, {clf['seconds']:.0f} s); "
              f"on the styles' held-out test pieces it is right for {clf['test_accuracy']:.0%} of windows (chance "
              f"{clf['chance']:.0%}). \"classified as its style\" is the share of generated pieces it assigns to the style "
              "they were generated for (a piece's windows' probabilities averaged)."]
    if not unseen:
        lines += ["", "The unseen-style protocol was not part of this run: `python benchmarks/transfer.py --unseen --write`."]
    else:
        lines += ["", f"### Unseen style: {args.held_out} (mean ± 95% t-interval of test ROC-AUC over {args.seeds} seeds of "
                  "the edge split and GCN initialisation; one pre-training per BERT)", "",
                  "| embeddings | test ROC-AUC |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in unseen]
        lines += ["", "Targets: (a) - (d) >= 0.02 (the GCN on a BERT that never saw the style beats the best heuristic) and "
                  "(a) - (c) > 0 (that BERT's embeddings beat random ones); an interval that contains the target's "
                  "threshold does not meet it."]
    return "\n".join(lines), sweep


def render_sweep(sweeps: list[dict]) -> str:
    lines = ["| style | setting | validation ROC-AUC (same-field) | best epoch | seconds | test ROC-AUC, same-field "
             "(chosen only) |",
             "|---|---|---:|---:|---:|---:|"]
    for s in sweeps:
        for t in s["tried"]:
            label = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in t["change"].items()) or "defaults"
            chosen = t is s["chosen"]
            test = f"**{s['test_auc']:.4f}** (AP {s['test_ap']:.4f})" if chosen else ""
            lines.append(f"| {s['style']} | {'**' + label + '**' if chosen else label} | {t['val_auc']:.4f} | "
                         f"{t['best_epoch']} | {t['seconds']:.0f} | {test} |")
    return "\n".join(lines)


def few_shot_corpus(args) -> Path:
    """The corpus folder of the few-shot protocol: the bundled one, or the shared styles (``--corpus shared``)."""
    from musictl.midi.corpus import bundled_corpus

    if args.corpus == "bundled":
        return bundled_corpus()
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} not found: --corpus shared needs ../shared/datasets")
    folder = Path(args.work) / "shared-corpus"
    for style, (source, pattern) in STYLES.items():
        (folder / style).mkdir(parents=True, exist_ok=True)
        for f in sorted((SHARED / source).glob(pattern))[: args.per_style]:
            if not (folder / style / f.name).exists():
                (folder / style / f.name).symlink_to(f)
    return folder


def tokens_without(work: Path, corpus_dir: Path, splits: dict, style: str) -> Path:
    """The tokens of every style but ``style`` (with their splits): what an encoder of ``style`` may see; made once."""
    from musictl.midi.corpus import find_midi_files
    from musictl.midi.pipeline import tokenize_corpus
    from musictl.midi.vocab import TokenizerConfig

    tokens = work / f"bert-without-{style}" / "tokens"
    if not (tokens / "manifest.json").is_file():
        kept = [f for f in find_midi_files([corpus_dir]) if f.style != style]
        tokenize_corpus(kept, {f.path: splits[f.path] for f in kept}, tokens, TokenizerConfig(), 1, overwrite=True)
    return tokens


def bert_without(work: Path, corpus_dir: Path, splits: dict, style: str, args) -> Path:
    """embeddings/ of a tiny MidiBert pre-trained on every style but ``style`` (training pieces only): contextual,
    averaged over those pre-training pieces, never over the target style's; made once and kept."""
    from musictl.bert.pretrain import pretrain
    from musictl.bert.settings import PretrainSettings
    from musictl.transfer.pipeline import make_embeddings

    ws = work / f"bert-without-{style}"
    if (ws / "embeddings" / "manifest.json").is_file():
        return ws / "embeddings"
    tokens = tokens_without(work, corpus_dir, splits, style)
    pretrain(tokens, ws / "bert", PretrainSettings(size="tiny", max_len=256, max_steps=args.bert_steps, lr=args.bert_lr,
                                                   warmup=0.05, eval_every=args.bert_steps, seed=0, device="cpu"),
             overwrite=True)
    # contextual embeddings over the pre-training pieces only: the target style's pieces (beyond the k a cell
    # uses) must not reach its features; the same tokenizer, so the same graph-token vocabulary as work/tokens
    make_embeddings(ws / "bert", tokens, ws / "embeddings", overwrite=True)
    return ws / "embeddings"


def given_embeddings(model: Path, tokens: Path, out: Path) -> Path:
    """Contextual embeddings of a given MidiBert averaged over ``tokens`` (made once and kept)."""
    from musictl.transfer.pipeline import make_embeddings

    if not (out / "manifest.json").is_file():
        make_embeddings(model, tokens, out, overwrite=True)
    return out


def encoder_quality(bert: Path) -> dict:
    """What the target style's MidiBert learned: per field, its best validation masked accuracy and the best of
    the trivial predictors of the same masked notes (from its metrics.json)."""
    import json

    from musictl.bert.pretrain import best_trivial

    metrics = json.loads((bert / "metrics.json").read_text())
    fields = (metrics.get("best_valid") or metrics.get("final_valid") or {}).get("fields", {})
    return {"steps": metrics.get("steps"), "train_pieces": metrics.get("train_pieces"),
            "fields": {name: {"model": row["accuracy"], "trivial": best_trivial(row)}
                       for name, row in fields.items() if name in ("pitch", "position", "duration") and "unigram" in row}}


def few_shot_summary(summaries: dict, encoders: dict, given: bool = False) -> list[str]:
    """The page's first table: per style and k, each link-predictor mix minus the best count model (nats per note,
    paired 95% interval), so BERT features, random features and no graph stand side by side; then what each
    target style's MidiBert learned."""
    methods = (("predictor_bert", "BERT features"), ("predictor_random", "random features"), ("predictor_none", "no graph"))
    lines = ["## Summary: what the pre-trained embeddings buy, per k", "",
             "Note NLL of Witten-Bell mixed with the link predictor minus the best count model at that k (nats per note, "
             "below 0: better; paired 95% bootstrap interval over test pieces). Transfer would show as the BERT column "
             "below both the random-features and the no-graph columns.", "",
             "| style | k | best count model | " + " | ".join(name for _, name in methods) + " |",
             "|---|---:|---|" + "---:|" * len(methods)]
    for style, summary in summaries.items():
        for k, block in summary.items():
            cells = []
            for method, _ in methods:
                d = block["rows"][method]["note_nll_minus_best"]
                cells.append(f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
            lines.append(f"| {style} | {k} | {block['best_baseline']} | " + " | ".join(cells) + " |")
    lines += ["", "What each target style's MidiBert learned (validation masked accuracy at its best evaluation / the "
              "best trivial predictor of the same notes: the field's most frequent value, the window's, the previous "
              "note's):", ""]
    for style, encoder in encoders.items():
        learned = ", ".join(f"{name} {v['model']:.3f} / {v['trivial']:.3f} ({v['model'] - v['trivial']:+.3f})"
                            for name, v in encoder["fields"].items())
        which = "the given encoder, for every style" if given else f"without {style}"
        lines.append(f"- {which} ({encoder['steps']} steps, {encoder['train_pieces']} pieces): {learned or 'not recorded'}")
        if given:
            break
    return [*lines, ""]


def _report_cell(done: int, total: int, row: dict) -> None:
    cached = " (cached)" if row["cached"] else ""
    print(f"few-shot cell {done}/{total}: k={row['k'] or 'all'} seed {row['seed']}{cached}", file=sys.stderr, flush=True)


def few_shot(args, argv: list[str] | None = None) -> dict:
    """The few-shot protocol on each target style (see the module docstring); returns {style: summary} and, with
    ``--write``, writes ``transfer_fewshot.md`` and ``.json`` into ``--results``."""
    import hashlib
    import json

    from musictl.midi.corpus import assign_splits, find_midi_files
    from musictl.midi.pipeline import tokenize_corpus
    from musictl.midi.tokens import TokenCorpus
    from musictl.midi.vocab import TokenizerConfig
    from musictl.transfer import fewshot
    from musictl.transfer.embed import load_embeddings

    command = "python benchmarks/transfer.py " + " ".join(sys.argv[1:] if argv is None else argv)
    corpus_dir = few_shot_corpus(args)
    ratios = tuple(float(v) for v in args.split.split(","))
    key = hashlib.sha1(f"{corpus_dir}|{ratios}|{args.bert_steps}|{args.bert_lr}|{args.per_style}".encode()).hexdigest()[:10]
    work = Path(args.work) / key
    files = find_midi_files([corpus_dir])
    splits = assign_splits(files, ratios, 0)
    if not (work / "tokens" / "manifest.json").is_file():
        tokenize_corpus(files, splits, work / "tokens", TokenizerConfig(), 1, overwrite=True)
    corpus = TokenCorpus.open(work / "tokens")
    styles = args.styles.split(",") if args.styles else corpus.styles
    config = fewshot.FewShotConfig(shots=tuple(0 if k == "all" else int(k) for k in args.shots.split(",")),
                                   seeds=args.seeds, epochs=args.fewshot_epochs)
    given = Path(args.bert_model).resolve() if args.bert_model else None
    cells_dir = work / "cells" if given is None else work / f"cells-given-{hashlib.sha1(str(given).encode()).hexdigest()[:10]}"
    summaries, sections, encoders = {}, [], {}
    for style in styles:
        if given is None:
            embeddings = bert_without(work, corpus_dir, splits, style, args)
        else:  # averaged over the same pieces (every style but the target), no encoder of its own to pre-train
            embeddings = given_embeddings(given, tokens_without(work, corpus_dir, splits, style), cells_dir / f"embeddings-{style}")
        table = load_embeddings(embeddings)["token"].numpy()
        encoders[style] = encoder_quality(given or work / f"bert-without-{style}" / "bert")
        cells = fewshot.run_fewshot(corpus, style, table, config, cells_dir, _report_cell)
        summaries[style] = fewshot.summarise(cells)
        sections.append(fewshot.render(summaries[style], style, command))
    encoder = (f"For each target style a tiny MidiBert is pre-trained (the default objective, adversarial; lr {args.bert_lr}) "
               f"for {args.bert_steps} steps on the other styles' training pieces only, and its contextual embeddings")
    if given is not None:
        shown = str(given).replace(str(Path.home()), "~")
        encoder = (f"**One given MidiBert for every target style (`--bert-model {shown}`), whose pre-training corpus may "
                   "contain the target styles' pieces, test pieces included: an optimistic bound on what an encoder can "
                   "give, not a held-out test.** Its contextual embeddings")
    page = "\n".join([
        "# Few-shot unseen styles" + (" with a given encoder (optimistic bound)" if given else ""), "",
        f"Command: `{command}`", "",
        f"Corpus: {args.corpus} ({corpus_dir.name}), split {args.split} (train, valid, test) per style, seed 0. {encoder} "
        "(each token's mean hidden state over the other styles' training pieces, never the target style's) give the "
        "`bert` node features. k training pieces of the style are drawn per seed "
        "(all: every one); the style graph (musical node fields, transitions) and the counts come from them; the "
        "smoothing and mixing weights are chosen on the style's validation pieces; the test pieces are scored. "
        f"Link predictors: at most {args.fewshot_epochs} epochs, same-field negatives, early stopping on validation "
        "edges. The `bert` and `random` predictors also see each node's degrees; `none` is the same layers on the "
        "`bert` features without message passing or degrees.", "", *few_shot_summary(summaries, encoders, given is not None),
        *sections])
    if args.write:
        import results_json

        out = Path(args.results)
        out.mkdir(parents=True, exist_ok=True)
        name = "transfer_fewshot" if given is None else "transfer_fewshot_given"
        (out / f"{name}.md").write_text(page + "\n")
        results_json.write(out / f"{name}.json", {"command": command, "config": vars(args) | {"few_shot": True},
                                                   "encoders": encoders, "styles": json.loads(json.dumps(summaries))})
    else:
        print(page)
    return summaries


def main(argv: list[str] | None = None) -> None:
    import torch

    from musictl.transfer.pipeline import make_graph
    from musictl.transfer.settings import GCN_MAX_EPOCHS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-style", type=int, default=80)
    parser.add_argument("--bert-steps", type=int, default=300)
    parser.add_argument("--bert-lr", type=float, default=1e-3, help="pre-training learning rate (benchmarks/pretrain_sweep.py)")
    parser.add_argument("--gcn-epochs", type=int, default=GCN_MAX_EPOCHS, help="train-gcn --epochs")
    parser.add_argument("--walks", type=int, default=10)
    parser.add_argument("--classifier-epochs", type=int, default=6, help="finetune-mask --task style --epochs")
    parser.add_argument("--long-steps", type=int, default=1500, help="--unseen: the longer pre-training tried for (a)")
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--no-sweep", action="store_true", help="skip the sweep")
    parser.add_argument("--unseen", action="store_true", help="also run the unseen-style protocol")
    parser.add_argument("--held-out", default="irish-fiddle", choices=list(STYLES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (1 when sharing the machine)")
    parser.add_argument("--write", action="store_true")
    few = parser.add_argument_group("--few-shot")
    few.add_argument("--few-shot", action="store_true", help="run the few-shot unseen-style protocol (only)")
    few.add_argument("--corpus", choices=["bundled", "shared"], default="bundled")
    few.add_argument("--styles", default="", help="target styles, comma-separated [default: every style]")
    few.add_argument("--shots", default="1,2,4,8,all", help="k training pieces per cell")
    few.add_argument("--split", default="0.6,0.1,0.3", help="train,valid,test fractions per style")
    few.add_argument("--fewshot-epochs", type=int, default=200, help="link predictor epochs (early stopping)")
    few.add_argument("--bert-model", default=None, help="one pre-trained MidiBert for every target style instead of one "
                                                         "pre-trained without it (its corpus may hold the style: an optimistic "
                                                         "bound); written to transfer_fewshot_given.md")
    few.add_argument("--work", default=str(Path(os.environ.get("MUSICTL_BENCH_WORK", Path.home() / ".cache" / "musictl-bench"))
                                           / "fewshot"), help="cache, kept for resuming (outside the work tree)")
    few.add_argument("--results", default=str(ROOT / "benchmarks" / "results"), help="where --write puts the tables")
    args = parser.parse_args(argv)
    if args.few_shot:
        torch.set_num_threads(args.threads)
        few_shot(args, argv)
        return
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} not found: the benchmark needs ../shared/datasets")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus_dir = tmp / "corpus"
        for style, (folder, pattern) in STYLES.items():
            (corpus_dir / style).mkdir(parents=True)
            for f in sorted((SHARED / folder).glob(pattern))[: args.per_style]:
                (corpus_dir / style / f.name).symlink_to(f)
        ws = tmp / "ws"
        bert = build_workspace(ws, corpus_dir, args)
        classifier, bert["classifier"] = style_classifier(ws, args)
        models, sweeps, walks, graphs = [], [], [], {}
        for style in STYLES:
            graph = make_graph(ws / "tokens", style, ws / "graph" / style)
            graphs[style] = f"{graph.nodes} / {graph.edges}"
            models += model_rows(ws, style, args)
            if not args.no_sweep:
                sweeps.append(sweep_rows(ws, style, args))
            walks += walk_rows(ws, style, args, classifier)
            print(f"done {style}", file=sys.stderr, flush=True)
        unseen = unseen_rows(tmp, corpus_dir, args.held_out, args) if args.unseen else None
    page, sweep = render(args, bert, models, sweeps, walks, graphs, unseen)
    print(page)
    if args.write:
        command = f"python benchmarks/transfer.py {' '.join(sys.argv[1:])}"
        (ROOT / "benchmarks" / "results" / "transfer.md").write_text(f"# Cross-style generation\n\nCommand: `{command}`\n\n{page}\n")
        if sweeps:
            doc = ROOT / "docs" / "train-gcn.md"
            text = doc.read_text()
            block = f"{DOC_START}\nWritten by `{command}`:\n\n{sweep}\n{DOC_END}"
            doc.write_text(re.sub(re.escape(DOC_START) + ".*?" + re.escape(DOC_END), lambda _: block, text, flags=re.S))


if __name__ == "__main__":
    main()
