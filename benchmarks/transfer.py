"""Cross-style generation on real corpora, with what each method has to beat.

    python benchmarks/transfer.py --write            # needs ../shared/datasets; about an hour on 2 CPU cores; resumes
    python benchmarks/transfer.py --unseen --write   # adds the unseen-style protocol (several tiny pre-trainings)
    python benchmarks/transfer.py --smoke            # the whole program on the bundled corpus, tiny sizes, minutes

1. The study's three models (``train-gcn --model 1|2|3``) on each style, test ROC-AUC / AP at the
   best validation epoch beside the baselines on the same test edges (heuristics on the training
   graph, a GCN on random features, an MLP on the embeddings without the graph).
2. A small sweep of model 3 chosen on validation ROC-AUC only; the test edges are scored once, for
   the chosen setting. The table goes into docs/train-gcn.md too.
3. The generation judge. ``--walks`` pieces (40 by default) of each of: the walk (``generate-rwr``, its mixing
   weight chosen on the style's validation pieces), the walk without the link predictor (``--no-gcn``), a
   first-order Markov chain with the same plans, rhythm and articulation tables, the same chain with those
   tables swapped for their unigrams (the ablation that shows what the shared tables earn), and the same chain
   drawing pitch and duration from the interpolated n-gram (orders 1-3 with the interval and pooled models,
   weights by EM on the validation pieces; :mod:`musictl.transfer.baselines`), and the walk with the style's
   adapted transformer choosing each pitch and duration (``musictl adapt --style S``, LoRA, early-stopped on the
   style's validation pieces, then ``generate-rwr --notes-by transformer``), adapted once from the workspace's
   MidiBert and once from a MidiBert pre-trained the same way without the style (so the style is new to it).
   The count models count in the key the walk's graph counts in. Each is compared with the
   style's test pieces only (never used to choose anything): tempo and metre events per piece, bars filled,
   repeated notes, JS divergences of pitch-class, interval, duration and onset-position histograms (own style
   vs the other styles), silence share and duration-to-next-onset ratio beside the test pieces', and the judge
   (a cross-validated classifier of test vs generated pieces; 0.5 = it cannot tell) with its accuracy's
   percentile in the real-vs-real null of the same run (the same judge on random splits of the test pieces).
4. ``--unseen``: the MidiBert is pre-trained without one style, which the chain then learns; (a) that
   BERT, (b) a BERT that saw the style, (c) random embeddings, (d) the best heuristic, over seeds.

The few-shot unseen-style protocol is its own program: benchmarks/transfer_fewshot.py.

Everything a run makes (tokens, the MidiBert, embeddings, the style classifier, each style's adapted model, and
each (style, method)'s pieces and scores) is kept in ``--work`` (default ``$MUSICTL_BENCH_WORK/transfer/<a hash of
the settings that shape them>``): a stopped run started again skips what is done. ``--smoke`` works in a
temporary folder.

Styles: Nottingham jigs, Bach chorales (music21), O'Neill's Irish fiddle tunes (music21), each capped at
--per-style pieces and split --split (train, valid, test) per style; 150 pieces at 0.6,0.1,0.3 give 45 test
pieces, so the judge compares 40 generated with 40+ real pieces. Written to benchmarks/results/transfer.md and
transfer.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import cells as results_json
from harness import docs, paths, tables
from harness.data import TRANSFER_STYLES

STYLES = TRANSFER_STYLES
SWEEP = [{}, {"patience": 60}, {"conv": "sage", "patience": 60}, {"lr": 0.005}]  # small and bounded
BASELINE_COLUMNS = ["common_neighbours", "adamic_adar", "resource_allocation", "degree_product", "gcn_random_features",
                    "mlp_embeddings"]
WALK_METHODS = ("walk", "walk --no-gcn", "Markov chain", "Markov chain, unigram tables", "interpolated n-gram",
                "transformer (adapted)", "transformer (pre-trained without the style, adapted)")
TRANSFORMER, UNSEEN = WALK_METHODS[-2:]  # adapted from the workspace's MidiBert / from one that never saw the style
# the settings that shape the work folder's artifacts (its name hashes them); the rest only shape the walks
WALK_SETTINGS = ("walks", "bars", "null_draws", "gcn_epochs")  # shape each (style, method)'s pieces and scores
WORK_SETTINGS = ("corpus", "styles", "per_style", "split", "bert_steps", "bert_lr", "classifier_epochs", "adapt_epochs",
                 "adapt_max_len")
SMOKE = ["--per-style", "12", "--bert-steps", "2", "--gcn-epochs", "3", "--walks", "3", "--bars", "4", "--adapt-epochs", "2",
         "--adapt-max-len", "64",
         "--classifier-epochs", "1", "--null-draws", "10", "--no-sweep", "--threads", "1", "--split", "0.5,0.2,0.3"]


def build_workspace(ws: Path, corpus_dir: Path, args, bert_styles: list[str] | None = None, seed: int = 0) -> dict:
    """tokenize -> pretrain-bert (on ``bert_styles``' training pieces, default all) -> embed; returns BERT facts.
    A workspace already made (its facts saved beside it) is reused as it is."""
    import json

    from musictl.bert.pretrain import pretrain
    from musictl.bert.settings import PretrainSettings
    from musictl.midi.corpus import assign_splits, find_midi_files
    from musictl.midi.pipeline import tokenize_corpus
    from musictl.midi.vocab import TokenizerConfig
    from musictl.transfer.pipeline import make_embeddings

    facts = ws / "bert-facts.json"
    if facts.is_file() and (ws / "embeddings" / "manifest.json").is_file():
        return json.loads(facts.read_text())
    files = find_midi_files([corpus_dir])
    splits = assign_splits(files, tuple(float(v) for v in args.split.split(",")), 0)
    tokenize_corpus(files, splits, ws / "tokens", TokenizerConfig(), os.cpu_count() or 1, overwrite=True)
    bert_tokens = ws / "tokens"
    if bert_styles is not None:  # a second tokens artifact without the held-out style, same vocabulary
        kept = [f for f in files if f.style in bert_styles]
        bert_tokens = ws / "bert-tokens"
        tokenize_corpus(kept, {f.path: splits[f.path] for f in kept}, bert_tokens, TokenizerConfig(), os.cpu_count() or 1,
                        overwrite=True)
    t0 = time.perf_counter()
    bert = pretrain(bert_tokens, ws / "bert", PretrainSettings(size="tiny", max_len=256, max_steps=args.bert_steps,
                                                               lr=args.bert_lr, warmup=0.05, eval_every=args.bert_steps,
                                                               seed=seed, device="cpu"), overwrite=True)
    seconds = time.perf_counter() - t0
    make_embeddings(ws / "bert", ws / "tokens", ws / "embeddings", overwrite=True)
    made = {"parameters": bert.parameters, "seconds": seconds, "accuracy": bert.final_valid["accuracy"]}
    facts.write_text(json.dumps(made))
    return made


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


def style_classifier(ws: Path, args, style: str):
    """finetune-mask --task style on the styles' training pieces (the workspace's BERT); the loaded model and
    its held-out test scores (a classifier already in the workspace is reused)."""
    import json

    from musictl.bert.finetune import finetune
    from musictl.bert.settings import FinetuneSettings
    from musictl.midi.tokens import TokenCorpus
    from musictl.transfer.fidelity import load_style_classifier

    out, saved = ws / "finetune" / "style", ws / "classifier-facts.json"
    if saved.is_file() and (out / "manifest.json").is_file():
        facts = json.loads(saved.read_text())
    else:
        t0 = time.perf_counter()
        result = finetune(ws / "tokens", ws / "bert", out, FinetuneSettings(
            task="style", epochs=args.classifier_epochs, max_len=256, device="cpu", seed=0), overwrite=True)
        facts = {"test_accuracy": result.test["accuracy"], "chance": result.chance_accuracy, "classes": result.classes,
                 "pieces": result.pieces, "best_epoch": result.best_epoch, "seconds": time.perf_counter() - t0}
        saved.write_text(json.dumps(facts))
    return load_style_classifier(out, TokenCorpus.open(ws / "tokens"), style), facts


def bert_without(ws: Path, style: str, args) -> Path:
    """A tiny MidiBert pre-trained as the workspace's is, on every other style's training pieces only (a tokens
    artifact of those styles' files, the same tokenizer, so the same vocabulary): a transformer that never saw
    ``style``; made once and kept."""
    from musictl.bert.pretrain import pretrain
    from musictl.bert.settings import PretrainSettings
    from musictl.midi.corpus import find_midi_files
    from musictl.midi.pipeline import tokenize_corpus
    from musictl.midi.tokens import TokenCorpus
    from musictl.midi.vocab import TokenizerConfig

    folder = ws / "bert-without" / style
    if (folder / "bert" / "manifest.json").is_file():
        return folder / "bert"
    corpus = TokenCorpus.open(ws / "tokens")
    splits = {Path(p.path).resolve(): p.split for p in corpus.select()}  # the workspace's splits, kept
    kept = [f for f in find_midi_files([ws.parent / "corpus"]) if f.style != style]
    tokenize_corpus(kept, {f.path: splits[Path(f.path).resolve()] for f in kept}, folder / "tokens", TokenizerConfig(),
                    1, overwrite=True)
    pretrain(folder / "tokens", folder / "bert", PretrainSettings(size="tiny", max_len=256, max_steps=args.bert_steps,
                                                                  lr=args.bert_lr, warmup=0.05, eval_every=args.bert_steps,
                                                                  seed=0, device="cpu"), overwrite=True)
    return folder / "bert"


def adapted_model(ws: Path, style: str, args, unseen: bool = False) -> tuple[Path, dict]:
    """``musictl adapt --style S`` on the workspace's MidiBert (``unseen``: on :func:`bert_without`'s) and the style's
    training pieces (LoRA, its defaults: early-stopped on the style's validation pieces; at most ``--adapt-epochs``),
    reused when already made; its folder and facts."""
    import json

    from musictl.bert.adapt import adapt
    from musictl.bert.settings import AdaptSettings

    out = ws / ("adapted-unseen" if unseen else "adapted") / style
    if not (out / "manifest.json").is_file():
        base = bert_without(ws, style, args) if unseen else ws / "bert"
        adapt(ws / "tokens", base, out, AdaptSettings(style=style, epochs=args.adapt_epochs, max_len=args.adapt_max_len,
                                                      device="cpu", seed=0), overwrite=True)
    metrics = json.loads((out / "metrics.json").read_text())
    notes = lambda scores: scores["fields"]["pitch"] + scores["fields"]["duration"]  # noqa: E731
    return out, {"best_epoch": metrics["best_epoch"], "epochs_run": metrics["epochs_run"],
                 "cpu_seconds": metrics["cpu_seconds"], "train_pieces": len(metrics["train_pieces"]),
                 "valid_nll": notes(metrics["after"]), "valid_nll_before": notes(metrics["before"])}


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


def walk_sources(ws: Path, style: str, methods=WALK_METHODS, adapted: dict[str, Path] | None = None):
    """(name, generator, use the link predictor) of each of ``methods`` (:data:`WALK_METHODS`): the walk, its
    ablation without the link predictor, the Markov chain on the same tables, the chain on the tables' unigrams,
    the chain drawing pitch and duration from the interpolated n-gram (weights on the style's validation pieces),
    and the walks whose notes the ``adapted`` models (method -> folder) choose (walk them with
    ``notes_by="transformer"``). The count
    models count in the key the walk's graph counts in (the common key by default) and are placed as it is."""
    from musictl.transfer.baselines import COUNT_MODELS, count_generators
    from musictl.transfer.generator import StyleGenerator

    generator = StyleGenerator.load(ws, style, ws / "tokens")
    counted = count_generators(generator, tuple(m for m in methods if m in COUNT_MODELS))
    sources = {"walk": (generator, True), "walk --no-gcn": (generator, False),
               **{name: (made, True) for name, made in counted.items()}}
    for method in (TRANSFORMER, UNSEEN):
        if method in methods:
            transformer = StyleGenerator.load(ws, style, ws / "tokens")
            transformer.use_adapted(ws, adapted[method])
            sources[method] = (transformer, True)
    return generator, [(name, *sources[name]) for name in methods]  # in the order of WALK_METHODS


def walk_rows(ws: Path, style: str, args, classifier, done) -> list[dict]:
    """Every method of :func:`walk_sources`: ``--walks`` pieces each, their facts and their style fidelity against
    the style's test pieces, with the judge and its real-vs-real null (the same null for every method: the same
    reference pieces and seed), and seconds per piece. ``done`` (a :class:`harness.cells.Results`) keeps each
    method's row as it finishes; a row already there is not made again."""
    from musictl.transfer.fidelity import classifier_assignments, style_fidelity
    from musictl.transfer.settings import WalkSettings

    todo = [m for m in WALK_METHODS if not done.get({"style": style, "method": m})]
    models = {TRANSFORMER: adapted_model(ws, style, args), UNSEEN: adapted_model(ws, style, args, unseen=True)}
    # each made once; its facts read from the artifact each time
    generator, sources = walk_sources(ws, style, todo, {m: folder for m, (folder, _) in models.items()}) if todo \
        else (None, [])
    for name, source, gcn in sources:
        notes_by = "transformer" if name in models else "walk"
        t0 = time.perf_counter()
        pieces = source.generate_many(args.walks, WalkSettings(bars=args.bars, gcn=gcn, notes_by=notes_by))
        seconds = time.perf_counter() - t0
        facts = [piece_facts(p, generator.config, args.bars) for p in pieces]
        done.put({"style": style, "method": name}, {
            "tokens_per_s": sum(len(p) for p in pieces) * 8 / seconds, "seconds_per_piece": seconds / len(pieces),
            "facts": facts, "mix": source.walker.mix if name == "walk" else None,
            "fidelity": style_fidelity(pieces, generator.corpus, style, null_draws=args.null_draws),
            "style_repeats": generator.tables.repeat_share,
            "classified_own": classifier_assignments(classifier, pieces, style)["assigned_to_style"]})
        print(f"done {style}: {name}", file=sys.stderr, flush=True)
    return [{"style": style, "method": m, **{k: v for k, v in done.get({"style": style, "method": m}).items()
                                             if k not in ("settings", "adapted")},
             "adapted": models[m][1] if m in models else None} for m in WALK_METHODS]


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

    others = sorted(d.name for d in corpus_dir.iterdir() if d.name != held_out)
    names = {"a": f"(a) BERT that never saw {held_out} ({args.bert_steps} steps)", "b": "(b) BERT that saw it",
             "c": "(c) random embeddings (same shape)", "d": "(d) best heuristic (CN, AA, RA, degree product)",
             "a-long": f"(a) with {args.long_steps} pre-training steps", "a-model2": "(a) as model 2 (token x position features and graph)"}
    spaces = {"a": tmp / "unseen-a", "b": tmp / "unseen-b", "a-long": tmp / "unseen-a-long"}
    build_workspace(spaces["a"], corpus_dir, args, others)
    build_workspace(spaces["b"], corpus_dir, args)
    build_workspace(spaces["a-long"], corpus_dir, argparse.Namespace(**{**vars(args), "bert_steps": args.long_steps}), others)
    for ws in spaces.values():
        make_graph(ws / "tokens", held_out, ws / "graph" / held_out, overwrite=True)
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
        shutil.copytree(spaces["b"] / "embeddings", noise, dirs_exist_ok=True)
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
           unseen: list[tuple[str, str]] | None, command: str) -> tuple[str, str]:
    """(the results page, the sweep table for docs/train-gcn.md)."""
    short = {"common_neighbours": "CN", "adamic_adar": "AA", "resource_allocation": "RA", "degree_product": "degree prod.",
             "gcn_random_features": "GCN random feat.", "mlp_embeddings": "MLP no graph"}
    styles = len({row["style"] for row in walks})
    lines = [*tables.planned(
        "Do the walk's pieces come closer to the style's test pieces than the strongest simple model's, the "
        "interpolated n-gram's?",
        "the judge's balanced accuracy on the walk's pieces and on the n-gram's (the same judge, the same test pieces, "
        "each read as its percentile in the same real-vs-real null; lower is closer, above the 95th percentile is told "
        f"apart), per style, {args.walks} generated pieces a method", planned_answer(walks),
        exploratory=len(walks) - 2 * styles + len(models)),
        f"Command: `{command}`", "",
        f"Machine: {paths.machine()}. {args.per_style} pieces per style at most, split {args.split} (train, valid, "
             f"test); a tiny MidiBert "
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
    lines += ["", "### Model 3 settings chosen on validation ROC-AUC only", "", sweep_text, "", *render_walks(args, walks)]
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


def planned_answer(walks: list[dict]) -> str | None:
    """The planned question's answer from the judge's rows of the walk and the n-gram, per style: closer means a lower
    accuracy, and only a walk below the null's 95th percentile (not told apart) where the n-gram is above counts as
    closer in a way the null can tell."""
    judged = {(r["style"], r["method"]): r["fidelity"]["judge"] for r in walks}
    styles = sorted({style for style, method in judged if method == "walk" and (style, "interpolated n-gram") in judged})
    if not styles:
        return None
    parts, closer = [], 0
    for style in styles:
        walk, ngram = judged[(style, "walk")], judged[(style, "interpolated n-gram")]
        if walk.get("accuracy") is None or ngram.get("accuracy") is None:
            return None
        closer += bool(walk.get("distinguishable") is False and ngram.get("distinguishable"))
        parts.append(f"{style} walk {walk['accuracy']:.2f} ({100 * walk['percentile']:.0f}th percentile), n-gram "
                     f"{ngram['accuracy']:.2f} ({100 * ngram['percentile']:.0f}th)")
    apart = sum(bool(judged[(s, m)].get("distinguishable")) for s in styles for m in ("walk", "interpolated n-gram"))
    both = "every style" if apart == 2 * len(styles) else "some styles" if apart else "no style"
    verdict = (f"**yes** on {closer} of {len(styles)} styles" if closer else
               f"**no**: on no style does the judge miss the walk's pieces where it tells the n-gram's apart (it tells "
               f"both methods' pieces from the test pieces on {both})")
    return f"{verdict}; judge accuracy {'; '.join(parts)}."


def render_walks(args, walks: list[dict]) -> list[str]:
    """The judge table (each method's accuracy beside the real-vs-real null of the same run) and the facts table."""
    lines = [f"### The generation judge: {args.walks} pieces of {args.bars} bars per style and method", "",
             "Every method is compared with the style's **test** pieces only: the graph, the link predictor, the tables "
             "and the n-gram's counts come from its training pieces, the walk's mixing weight and the n-gram's weights "
             "from its validation pieces, so no reference piece chose anything. The judge (a cross-validated logistic "
             "regression on per-piece histograms, silence share and duration ratio) tells the generated pieces from the "
             f"test pieces; its null is the same judge on {args.null_draws} random splits of the test pieces, in the same "
             "run. `percentile` is the share of null draws at or below the accuracy; above the null's 95th percentile the "
             "generated pieces are told apart. The Markov chain, the n-gram and the walk share the style's plans, rhythm "
             "and articulation tables; `Markov chain, unigram tables` swaps those for their unigrams (onsets not given "
             "the previous onset, chord sizes and parts not given the position, no articulation), so what the tables "
             "earn shows in its silence share and duration ratio. `transformer (adapted)` is the walk with the style's "
             "adapted MidiBert choosing every pitch and duration among the graph's candidates (`musictl adapt --style S`: "
             "LoRA on the MidiBert above, the style's training pieces, early-stopped on its validation pieces; then "
             "`generate-rwr --notes-by transformer`); `transformer (pre-trained without the style, adapted)` the same "
             "from a MidiBert pre-trained the same way on the other styles' training pieces only, so the style is new "
             "to it before adaptation.", ""]
    rows = []
    for row in walks:
        fid = row["fidelity"]
        judged, gen, real = fid["judge"], fid["listening"]["generated"], fid["listening"]["held_out"]
        null = judged.get("null") or {}
        told = {True: "told apart", False: "not told apart", None: "-"}[judged.get("distinguishable")]
        few = "" if judged.get("enough_pieces") else " (fewer than 40 a class)"
        rows.append([row["style"], row["method"], f"{judged['generated']} / {judged['held_out']}{few}",
                     f"{judged['accuracy']:.2f}" if judged.get("accuracy") is not None else "-",
                     f"{null['mean']:.2f} / {null['p95']:.2f}" if "p95" in null else "-",
                     f"{100 * judged['percentile']:.0f}" if judged.get("percentile") is not None else "-", told,
                     f"{gen['silence_share']:.3f} ({real['silence_share']:.3f})",
                     f"{gen['duration_ratio']:.2f} ({real['duration_ratio']:.2f})",
                     f"{gen['key_consistency']:.2f} ({real['key_consistency']:.2f})"
                     if gen.get("key_consistency") is not None and real.get("key_consistency") is not None else "-",
                     f"{row['mix']:.2f}" if row.get("mix") is not None else "-"])
    adapted = [(row["style"], row["method"], row["adapted"]) for row in walks if row.get("adapted")]
    lines += tables.table(["style", "method", "generated / test pieces", "judge accuracy", "null mean / 95th pct",
                           "null percentile", "verdict", "silence share (test)", "duration / next onset (test)",
                           "key consistency (test)", "walk mix (validation)"], rows, "llrrrrlrrrr")
    if adapted:
        lines += ["", "The adapted models (next-note NLL per note of pitch + duration, nats, on the style's validation pieces): "
                  + "; ".join(f"{style}, {method}: {a['valid_nll_before']:.3f} before, {a['valid_nll']:.3f} after (best "
                              f"epoch {a['best_epoch']} of {a['epochs_run']}, {a['train_pieces']} training pieces, "
                              f"{a['cpu_seconds']:.0f} CPU s)" for style, method, a in adapted) + "."]
    lines += ["", "Facts of the same pieces (JS divergences against the test pieces / the other styles' pieces; "
              "novelty: pitch 4-grams not copied from the training pieces):", ""]
    rows = []
    for row in walks:
        facts, fid = row["facts"], row["fidelity"]
        own, other = fid["divergence_own_style"], fid["divergence_other_styles_mean"]
        rows.append([row["style"], row["method"], max(f["tempos"] for f in facts), max(f["metres"] for f in facts),
                     f"{np.mean([f['full'] for f in facts]):.0%}",
                     f"{np.mean([f['repeats'] for f in facts]):.2f} ({row['style_repeats']:.2f})",
                     *[f"{own[k]:.3f} / {other[k]:.3f}" for k in ("pitch_class", "interval", "duration", "onset_position")],
                     f"{fid['novelty']:.2f}", f"{row['classified_own']:.0%}", f"{row['tokens_per_s']:,.0f}",
                     f"{row['seconds_per_piece']:.2f}" if row.get("seconds_per_piece") is not None else "-"])
    lines += tables.table(["style", "method", "tempo events", "metre events", "bars all filled",
                           "repeated notes (style)", "JS pitch-class", "JS interval", "JS duration", "JS onset", "novelty",
                           "classified as its style", "tokens/s", "seconds / piece"], rows, "ll" + "r" * 12)
    return lines


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


def corpus_folder(args, into: Path) -> Path:
    """The styles linked into ``into``: the shared corpora of :data:`STYLES` (``--corpus shared``) or the bundled
    corpus (``--corpus bundled``), each capped at ``--per-style`` pieces, only ``--styles`` when given."""
    from musictl.midi.corpus import bundled_corpus

    if args.corpus == "shared":
        shared = paths.require_datasets()
        sources = {style: (shared / folder, pattern) for style, (folder, pattern) in STYLES.items()}
    else:
        sources = {d.name: (d, "*.mid") for d in sorted(bundled_corpus().iterdir()) if d.is_dir()}
    wanted = args.styles.split(",") if args.styles else list(sources)
    unknown = sorted(set(wanted) - set(sources))
    if unknown:
        raise SystemExit(f"error: --styles {', '.join(unknown)} not in the {args.corpus} corpus ({', '.join(sources)})")
    for style in wanted:
        folder, pattern = sources[style]
        (into / style).mkdir(parents=True, exist_ok=True)
        for f in sorted(folder.glob(pattern))[: args.per_style]:
            if not (into / style / f.name).is_symlink():
                (into / style / f.name).symlink_to(f)
    return into


def work_folder(args) -> Path:
    """``--work``, or ``$MUSICTL_BENCH_WORK/transfer/<hash of WORK_SETTINGS>``."""
    import hashlib
    import json

    if args.work:
        return Path(args.work)
    key = json.dumps({k: getattr(args, k) for k in WORK_SETTINGS}, sort_keys=True)
    return paths.work_folder("transfer") / hashlib.blake2b(key.encode(), digest_size=5).hexdigest()


def measure(args, tmp: Path) -> tuple[dict, list, list, list, dict, list | None]:
    """Everything the page shows, made in ``tmp`` (the work folder: what is already there is reused)."""
    from musictl.transfer.pipeline import make_graph

    corpus_dir = corpus_folder(args, tmp / "corpus")
    styles = sorted(d.name for d in corpus_dir.iterdir())
    ws = tmp / "ws"
    bert = build_workspace(ws, corpus_dir, args)
    classifier, bert["classifier"] = style_classifier(ws, args, styles[0])
    done = results_json.Results(tmp / "walks.json", "benchmarks/transfer.py", {k: getattr(args, k) for k in WALK_SETTINGS},
                                command="python benchmarks/transfer.py", machine=paths.machine())
    models, sweeps, walks, graphs = [], [], [], {}
    for style in styles:
        graph = make_graph(ws / "tokens", style, ws / "graph" / style, overwrite=True)
        graphs[style] = f"{graph.nodes} / {graph.edges}"
        models += model_rows(ws, style, args)
        if not args.no_sweep:
            sweeps.append(sweep_rows(ws, style, args))
        walks += walk_rows(ws, style, args, classifier, done)
        print(f"done {style}", file=sys.stderr, flush=True)
    unseen = unseen_rows(tmp, corpus_dir, args.held_out, args) if args.unseen else None
    return bert, models, sweeps, walks, graphs, unseen


def write(args, command: str, page: str, sweep: str, sweeps: list, walks: list, models: list) -> None:
    """transfer.md and transfer.json into ``--results``; the sweep table into docs/train-gcn.md (not for --smoke)."""
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer.md").write_text(f"# Cross-style generation\n\n{page}\n")
    settings = {k: v for k, v in vars(args).items() if k not in ("write", "results", "smoke")}
    results = results_json.Results(out / "transfer.json", "benchmarks/transfer.py", settings, command=command,
                                   machine=paths.machine(), fresh=True)
    results.data["sweeps"] = results_json.canonical(sweeps)
    for row in models:
        r = row["result"]
        results.put({"part": "link prediction", "style": r.style, "model": r.model},
                    {"test_auc": r.test_auc, "test_ap": r.test_ap, "test_auc_same_field": r.test_auc_same_field,
                     "test_ap_same_field": r.test_ap_same_field, "baselines": r.baselines, "seconds": row["seconds"]})
    for row in walks:
        results.put({"part": "walks", "style": row["style"], "method": row["method"]},
                    {k: v for k, v in row.items() if k not in ("style", "method")})
    if sweeps and not args.smoke:
        docs.replace_block(paths.ROOT / "docs" / "train-gcn.md", "sweep table", "benchmarks/transfer.py",
                           f"Written by `{command}`:\n\n{sweep}")
    if not args.smoke:
        docs.replace_block(paths.ROOT / "docs" / "generate-rwr.md", "judge table", "benchmarks/transfer.py",
                           judge_block(args, command, walks))


def judge_block(args, command: str, walks: list[dict]) -> str:
    """docs/generate-rwr.md's block: the planned answer and, per style and method, what the results page's judge
    table says (accuracy and its null percentile, key consistency, silence share, pitch-class divergence)."""
    rows = []
    for row in walks:
        fid = row["fidelity"]
        judged, gen, real = fid["judge"], fid["listening"]["generated"], fid["listening"]["held_out"]
        rows.append([row["style"], row["method"], f"{judged['accuracy']:.2f} ({100 * judged['percentile']:.0f})"
                     if judged.get("accuracy") is not None else "-",
                     f"{gen['key_consistency']:.2f} ({real['key_consistency']:.2f})" if gen.get("key_consistency") is not None
                     and real.get("key_consistency") is not None else "-",
                     f"{gen['silence_share']:.3f} ({real['silence_share']:.3f})",
                     f"{fid['divergence_own_style']['pitch_class']:.3f}"])
    return "\n".join([f"Written by `{command}` ([results](../benchmarks/results/transfer.md)): {args.walks} pieces of "
                      f"{args.bars} bars per style and method against the style's test pieces.", "",
                      f"**Planned question:** does the walk come closer to the test pieces than the interpolated n-gram? "
                      f"**Answer:** {planned_answer(walks) or 'not answered (a row is missing)'}", "",
                      *tables.table(["style", "method", "judge accuracy (null percentile)", "key consistency (test)",
                                     "silence share (test)", "JS pitch-class"], rows, "llrrrr")])


def main(argv: list[str] | None = None) -> None:
    import torch

    from musictl.transfer.fidelity import NULL_DRAWS
    from musictl.transfer.settings import GCN_MAX_EPOCHS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=["shared", "bundled"], default="shared",
                        help="the shared corpora of three styles, or the bundled corpus")
    parser.add_argument("--styles", default="", help="styles, comma-separated [default: every style of the corpus]")
    parser.add_argument("--per-style", type=int, default=150)
    parser.add_argument("--split", default="0.6,0.1,0.3", help="train,valid,test fractions per style")
    parser.add_argument("--bert-steps", type=int, default=300)
    parser.add_argument("--bert-lr", type=float, default=1e-3, help="pre-training learning rate (benchmarks/pretrain_sweep.py)")
    parser.add_argument("--gcn-epochs", type=int, default=GCN_MAX_EPOCHS, help="train-gcn --epochs")
    parser.add_argument("--walks", type=int, default=40, help="pieces per style and method (the judge needs 40 a class)")
    parser.add_argument("--null-draws", type=int, default=NULL_DRAWS, help="random splits of the test pieces in the "
                                                                           "judge's real-vs-real null")
    parser.add_argument("--classifier-epochs", type=int, default=6, help="finetune-mask --task style --epochs")
    parser.add_argument("--adapt-epochs", type=int, default=50, help="musictl adapt --epochs (it stops early on the "
                                                                      "style's validation pieces)")
    parser.add_argument("--adapt-max-len", type=int, default=256, help="musictl adapt --max-len")
    parser.add_argument("--long-steps", type=int, default=1500, help="--unseen: the longer pre-training tried for (a)")
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--no-sweep", action="store_true", help="skip the sweep")
    parser.add_argument("--unseen", action="store_true", help="also run the unseen-style protocol")
    parser.add_argument("--held-out", default="irish-fiddle", help="--unseen: the style held out of pre-training")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (1 when sharing the machine)")
    parser.add_argument("--results", default=str(paths.RESULTS), help="where --write puts the tables")
    parser.add_argument("--work", default=None, help="where the run's artifacts are kept (a rerun reuses them) [default: "
                                                     "$MUSICTL_BENCH_WORK or ~/.cache/musictl-bench, /transfer/<settings hash>]")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on two bundled styles, results in a temporary "
                                                              "folder: the whole program in a few minutes")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    command = "python benchmarks/transfer.py " + " ".join(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.smoke:
            args = parser.parse_args([*argv, *SMOKE, "--corpus", "bundled", "--styles", "bach-chorales,fiddle-tunes",
                                      "--held-out", "fiddle-tunes", "--results", str(tmp / "results"), "--write",
                                      "--work", str(tmp / "work")])
        torch.set_num_threads(args.threads)
        work = work_folder(args)
        print(f"work folder: {work}", file=sys.stderr)
        bert, models, sweeps, walks, graphs, unseen = measure(args, work)
        page, sweep = render(args, bert, models, sweeps, walks, graphs, unseen, command)
        print(page)
        if args.write:
            write(args, command, page, sweep, sweeps, walks, models)
            print(f"wrote {paths.show(str(Path(args.results) / 'transfer'))}.md and .json", file=sys.stderr)


if __name__ == "__main__":
    main()
