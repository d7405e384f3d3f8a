"""The few-shot unseen-style protocol: does a style with k pieces of its own gain from what was learned elsewhere?

    python benchmarks/transfer_fewshot.py --write                  # the bundled corpus; minutes on 2 CPU cores
    python benchmarks/transfer_fewshot.py --corpus shared --per-style 200 --bert-steps 6000 --seeds 3 --threads 1 --write
    python benchmarks/transfer_fewshot.py --smoke                  # end to end in a temporary folder, tiny sizes

For each target style a tiny MidiBert is pre-trained without it (:mod:`musictl.transfer.fewshot` has the
protocol); then for k = 1, 2, 4, 8 and all of the style's training pieces x seeds, the next-note negative
log-likelihood of pitch and duration on the style's test pieces and the recovery of transitions unseen in the
k pieces, under the count models, the interpolated n-gram (orders 1-3 with the interval and pooled models,
weights by EM on the style's validation pieces) and Witten-Bell mixed with the link predictor on BERT features,
random features and no graph. Every choice (smoothing, n-gram weights, mixing weight, which count model is the
best) is made on validation pieces; test pieces are only scored. Intervals: the harness's one bootstrap
(test pieces and seeds resampled, differences paired by seed). Each (style, k, seed) cell is cached under
``--work`` as it finishes, so rerunning the same command resumes. Written to
benchmarks/results/transfer_fewshot.md + .json.

``--bert-model MODEL`` gives every target style the same pre-trained MidiBert instead (e.g. the 27k-step MLM
model of benchmarks/label_efficiency.py, whose corpus holds the target styles): an optimistic bound on what a
better encoder could give, written to transfer_fewshot_given.md + .json, its cells cached apart.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import cells as results_json
from harness import paths, stats, tables
from harness.data import TRANSFER_STYLES as STYLES  # the three styles of the shared corpora, defined once

SCRIPT = "benchmarks/transfer_fewshot.py"
SMOKE = ["--styles", "fiddle-tunes", "--shots", "1,all", "--seeds", "2", "--bert-steps", "2", "--fewshot-epochs", "20",
         "--threads", "1", "--bootstrap", "200", "--adapt-epochs", "2", "--adapt-patience", "1", "--unadapted-epochs", "2",
         "--adapt-max-len", "64"]
MIX_COLUMNS = (("predictor_bert", "BERT features"), ("predictor_random", "random features"), ("predictor_none", "no graph"))


# ----- encoders and tokens ----------------------------------------------------------------------------
def few_shot_corpus(args) -> Path:
    """The corpus folder: the bundled one, or the shared styles (``--corpus shared``) linked into the work folder."""
    from musictl.midi.corpus import bundled_corpus

    if args.corpus == "bundled":
        return bundled_corpus()
    shared = paths.require_datasets()
    folder = Path(args.work) / "shared-corpus"
    for style, (source, pattern) in STYLES.items():
        (folder / style).mkdir(parents=True, exist_ok=True)
        chosen = sorted((shared / source).glob(pattern))[: args.per_style]
        for f in chosen:
            if not (folder / style / f.name).exists():
                (folder / style / f.name).symlink_to(f)
        for extra in set(p.name for p in (folder / style).iterdir()) - {f.name for f in chosen}:
            (folder / style / extra).unlink()  # a link left by a run with a larger --per-style: not this corpus
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


# ----- the transformer rows: a left-context MidiBert, unadapted, adapted (LoRA, full), from scratch ------------
TRANSFORMER = ("transformer_unadapted", "transformer_lora", "transformer_full", "transformer_scratch")
LABELS = {"transformer_unadapted": "transformer unadapted", "transformer_lora": "transformer LoRA",
          "transformer_full": "transformer full", "transformer_scratch": "transformer scratch"}
ADAPTED = {"lora": "transformer_lora", "full": "transformer_full", "scratch": "transformer_scratch"}


def _key(data: dict) -> str:
    return hashlib.sha1(results_json.dumps(data).encode()).hexdigest()[:10]


def _adapt_once(tokens: Path, base: Path, out: Path, settings) -> dict:
    """``musictl adapt`` (the library call) into ``out`` unless a complete artifact is there; an interrupted run
    continues from its checkpoint. Returns its metrics.json."""
    import json

    from musictl import artifacts
    from musictl.bert.adapt import adapt

    if not (out / artifacts.MANIFEST).is_file():
        staged = artifacts.Resumable(out)
        resume = staged.step() is not None and staged.damage() is None
        adapt(tokens, base, out, settings, overwrite=True, resume=resume)
    return json.loads((out / "metrics.json").read_text())


def adapt_command(settings, tokens: str, base: str, out: str) -> str:
    """The ``musictl adapt`` command line equivalent to a library call with ``settings`` (for the page)."""
    from musictl.bert.settings import AdaptSettings, adapt_styles

    parts = ["musictl adapt", *(f"--style {s}" for s in adapt_styles(settings.style))]
    parts += ["--all-styles"] * settings.all_styles + ["--from-scratch"] * settings.from_scratch
    parts += ["--full"] * (settings.full and not settings.from_scratch)
    for name in ("pieces", "max_len", "epochs", "patience", "lr", "seed"):
        value = getattr(settings, name)
        default = AdaptSettings.default_of(name)
        if value is not None and value != default and not (name == "lr" and value == AdaptSettings(
                style="x", full=settings.full, from_scratch=settings.from_scratch).lr):
            parts.append(f"--{name.replace('_', '-')} {value:g}" if isinstance(value, float) else
                         f"--{name.replace('_', '-')} {value}")
    return " ".join([*parts, f"--tokens {tokens} --model {base} --out {out} --device cpu"])


def _score(model_dir: Path, corpus, test: list, max_len: int) -> tuple[dict, dict, float]:
    """(per scored field, each test piece's NLL sum on the count models' transition targets; their note counts; the
    CPU seconds of loading the model and scoring)."""
    import time

    from musictl.bert import nextnote
    from musictl.bert.adapt import load_adapted
    from musictl.transfer import fewshot

    started = time.process_time()
    model = load_adapted(model_dir)
    tokens = [corpus.piece_tokens(p) for p in test]
    log_p = nextnote.piece_log_probs(model, tokens, max_len, corpus.config.max_bars, batch_size=8)
    sums = [fewshot.target_nll(lp, t) for lp, t in zip(log_p, tokens)]
    nll = {name: [s[name] for s in sums] for name in fewshot.SCORED}
    counted = [len(fewshot.transition_targets(t)) for t in tokens]
    notes = {name: counted for name in fewshot.SCORED}
    return nll, notes, round(time.process_time() - started, 3)


def unadapted_model(work: Path, style: str, args) -> tuple[Path, dict, object]:
    """The next-note model pre-trained without ``style``: the style's MidiBert of :func:`bert_without` continued as a
    left-context next-note model (``adapt --all-styles --full``) on the other styles' training pieces, early-stopped on
    their validation pieces; made once per style and kept. (its folder, its metrics, its settings)"""
    from musictl.bert.settings import AdaptSettings

    ws = work / f"bert-without-{style}"
    settings = AdaptSettings(all_styles=True, full=True, max_len=args.adapt_max_len, epochs=args.unadapted_epochs,
                             patience=args.adapt_patience, lr=args.unadapted_lr, seed=0, device="cpu")
    out = ws / f"next-note-{_key(settings.to_dict())}"
    return out, _adapt_once(ws / "tokens", ws / "bert", out, settings), settings


def transformer_cells(corpus, tokens: Path, style: str, cells: list[dict], work: Path, args, commands: list,
                      on_progress=None) -> dict:
    """``{(k, seed): {method: {"nll": {field: [per test piece]}, "cpu_seconds": s}}}`` for the transformer rows of
    every count-model cell of ``style``; each adapt run and each scoring cached under ``work`` by its settings."""
    import json

    from musictl import artifacts
    from musictl.bert.settings import AdaptSettings

    base, base_metrics, base_settings = unadapted_model(work, style, args)
    commands.append(adapt_command(base_settings, "WORK/bert-without-S/tokens", "WORK/bert-without-S/bert", "NEXT"))
    cache = work / "transformer-cells" / style
    cache.mkdir(parents=True, exist_ok=True)
    test = [p for p in corpus.select(style=style, split="test")]
    if [p.path for p in test] != cells[0]["test"]:
        raise SystemExit(f"error: the test pieces of {style} differ from the count models' cells; rerun with --fresh work")

    def scored(path: Path, model_dir: Path, extra: dict) -> dict:
        if path.is_file():
            return json.loads(path.read_text())
        nll, notes, seconds = _score(model_dir, corpus, test, args.adapt_max_len)
        row = {"nll": nll, "notes": notes, "score_cpu_seconds": seconds, **extra}
        artifacts.atomic_write_json(path, row)
        return row

    base_key = base.name.removeprefix("next-note-")
    unadapted = scored(cache / f"unadapted-{base_key}.json", base,
                       {"adapt_cpu_seconds": base_metrics["cpu_seconds"], "valid_nll": base_metrics["after"]["fields"]})
    out: dict = {}
    jobs = [(cell, mode) for cell in cells for mode in ADAPTED]
    for done, (cell, mode) in enumerate(jobs, 1):
        k, seed = cell["k"], cell["seed"]
        if cell["notes"]["pitch"] != unadapted["notes"]["pitch"]:
            raise SystemExit(f"error: the transformer scores other notes than the count models in {style} (k={k}, seed "
                             f"{seed}); this is a bug in fewshot.transition_targets")
        settings = AdaptSettings(style=style, pieces=k or None, seed=seed, full=mode != "lora",
                                 from_scratch=mode == "scratch", max_len=args.adapt_max_len, epochs=args.adapt_epochs,
                                 patience=args.adapt_patience, device="cpu")
        key = _key({"settings": settings.to_dict(), "base": base_key})
        name = f"{mode}-k{k or 'all'}-seed{seed}-{key}"
        path = cache / f"{name}.json"
        cached = path.is_file()
        if not cached:
            model_dir = work / "transformer" / style / name
            metrics = _adapt_once(tokens, base, model_dir, settings)
            if metrics["train_pieces"] != cell["shots"]:
                raise SystemExit(f"error: adapt drew other pieces than the count models for {style} k={k} seed {seed}")
            row = scored(path, model_dir, {"adapt_cpu_seconds": metrics["cpu_seconds"],
                                           "valid_nll": metrics["after"]["fields"], "best_epoch": metrics["best_epoch"],
                                           "epochs_run": metrics["epochs_run"]})
        else:
            row = json.loads(path.read_text())
        if (k, seed) == (cells[0]["k"], cells[0]["seed"]):
            commands.append(adapt_command(settings, "WORK/tokens", "NEXT", f"WORK/transformer/S/{mode}-kK-seedN"))
        out.setdefault((k, seed), {})[ADAPTED[mode]] = {
            "nll": row["nll"], "cpu_seconds": round(row["adapt_cpu_seconds"] + row["score_cpu_seconds"], 3),
            "adapt_cpu_seconds": row["adapt_cpu_seconds"], "epochs_run": row.get("epochs_run")}
        if on_progress:
            print(f"transformer cell {done}/{len(jobs)}: {mode} k={k or 'all'} seed {seed}{' (cached)' * cached}",
                  file=sys.stderr, flush=True)
    for cell in cells:  # the same model for every cell: its training cost once, its scoring in each
        out.setdefault((cell["k"], cell["seed"]), {})["transformer_unadapted"] = {
            "nll": unadapted["nll"], "cpu_seconds": unadapted["score_cpu_seconds"],
            "adapt_cpu_seconds": unadapted["adapt_cpu_seconds"]}
    return out


def with_transformer(cells: list[dict], rows: dict) -> list[dict]:
    """The count-model cells with the transformer rows' per-piece NLL and CPU seconds added (copies)."""
    merged = []
    for cell in cells:
        cell = {**cell, "nll": dict(cell["nll"]), "cpu_seconds": dict(cell.get("cpu_seconds", {}))}
        for method, row in rows.get((cell["k"], cell["seed"]), {}).items():
            cell["nll"][method] = row["nll"]
            cell["cpu_seconds"][method] = row["cpu_seconds"]
        merged.append(cell)
    return merged


# ----- the summary: the harness's bootstrap over test pieces and seeds ------------------------------------
def _cell(draws: stats.Resamples, numerator: np.ndarray, denominator: np.ndarray, level: float) -> dict:
    """The ratio of ``numerator`` (seeds, pieces) sums to ``denominator`` (pieces,) or (seeds, pieces) sums: its
    mean over seeds, and its interval on the shared draws (pieces and seeds resampled)."""
    numerator, denominator = np.atleast_2d(numerator), np.asarray(denominator, dtype=float)
    point = float(np.mean(numerator.sum(-1) / np.maximum(denominator.sum(-1), 1e-12)))
    low, high = stats.interval(draws.ratio(numerator, denominator), level)
    return {"mean": round(point, 4), "low": round(low, 4), "high": round(high, 4)}


def summarise(cells: list[dict], n: int = stats.BOOTSTRAP, seed: int = 0, level: float = stats.LEVEL) -> dict:
    """Per k: for every method, pitch / duration / note NLL (nats per note), MRR and Hits@10 of unseen
    transitions, each with its interval (test pieces and seeds resampled, :class:`harness.stats.Resamples`, the
    same draws for every row), and the note NLL minus the best count model's (chosen on validation,
    :func:`fewshot.choose_baseline`) and minus the interpolated n-gram's, paired by seed on the same draws."""
    from musictl.transfer import fewshot

    out: dict = {}
    for k in sorted({c["k"] for c in cells}, key=lambda v: v or 1 << 30):
        group = sorted((c for c in cells if c["k"] == k), key=lambda c: c["seed"])
        n_pieces = len(group[0]["test"])
        draws = stats.Resamples(n_pieces, len(group), n, seed)
        best = fewshot.choose_baseline(group)

        def column(key: str, method: str, name: str, group: list[dict] = group) -> np.ndarray:
            return np.array([c[key][method][name] for c in group], dtype=float)

        notes = {name: np.array(group[0]["notes"][name], dtype=float) for name in fewshot.SCORED}  # every seed's
        new = {name: np.array([c["new"][name] for c in group], dtype=float) for name in fewshot.SCORED}
        methods = [*fewshot.METHODS, *(m for m in TRANSFORMER if m in group[0]["nll"])]
        note_nll = {m: column("nll", m, "pitch") + column("nll", m, "duration") for m in methods}
        rows = {}
        for method in methods:
            row = {}
            for name in fewshot.SCORED:
                row[f"{name}_nll"] = _cell(draws, column("nll", method, name), notes[name], level)
                for metric, key in (("mrr", "rr"), (f"hits{fewshot.HITS_AT}", "hits")):
                    if method in group[0][key]:  # the transformer rows rank no unseen transitions
                        row[f"{name}_{metric}"] = _cell(draws, column(key, method, name), new[name], level)
            row["note_nll"] = _cell(draws, note_nll[method], notes["pitch"], level)
            against = [(best, "best"), (fewshot.NGRAM, "ngram")]
            if method in TRANSFORMER and "transformer_scratch" in note_nll:
                against.append(("transformer_scratch", "scratch"))
            for other, label in against:
                row[f"note_nll_minus_{label}"] = _cell(draws, note_nll[method] - note_nll[other], notes["pitch"], level)
            if "cpu_seconds" in group[0] and method in group[0]["cpu_seconds"]:
                row["cpu_seconds"] = round(float(np.mean([c["cpu_seconds"][method] for c in group])), 3)
            rows[method] = row
        choices = {name: {m: [c["choices"][name].get(m) for c in group] for m in group[0]["choices"][name]}
                   for name in fewshot.SCORED}
        validation = {m: round(float(np.mean([sum(c["valid_nll"][m][n] / max(c["valid_notes"][n], 1)
                                                  for n in fewshot.SCORED) for c in group])), 4)
                      for m in fewshot.METHODS}
        out["all" if k == 0 else str(k)] = {
            "k": k, "seeds": len(group), "test_pieces": n_pieces, "resampled": draws.resampled,
            "notes": {n: int(sum(group[0]["notes"][n])) for n in fewshot.SCORED},
            "unseen_transitions": {n: int(sum(group[0]["new"][n])) for n in fewshot.SCORED},
            "best_baseline": best, "validation_note_nll": validation, "rows": rows, "choices": choices}
    return out


def _signed(cell: dict) -> str:
    return tables.interval(cell, digits=3, signed=True)


def _weights(block: dict, name: str) -> str:
    from musictl.transfer import fewshot

    seeds = block["choices"][name][fewshot.NGRAM]
    return ", ".join(f"{part} {np.mean([w[part] for w in seeds]):.2f}" for part in seeds[0])


def render(summary: dict, style: str, command: str) -> list[str]:
    """A Markdown table per k of one style (the command that made it in the header)."""
    from musictl.transfer import fewshot

    lines = [f"### {style}", "", f"Made by `{command}`. NLL in nats per note of the test pieces (lower is better); "
             "MRR and Hits@10 rank transitions that occur in test pieces but never in the k training pieces. "
             "Mean over seeds [95% interval, test pieces and seeds resampled]; the last two columns are the note NLL "
             "minus the best count model's (chosen on validation) and minus the interpolated n-gram's, paired by seed "
             "(below 0: better). CPU s: mean over seeds of the CPU seconds of the method in the cell (count models: "
             "fitting every count model of the cell, an upper bound for each, plus scoring it; link-predictor mixes: "
             "also training the predictor; transformer rows: its `adapt` run's `cpu_seconds` plus scoring; the "
             "unadapted model's one training is not in its row, see the transformer summary).", ""]
    hits = f"hits{fewshot.HITS_AT}"
    for key, block in summary.items():
        lines += [f"**k = {key}** ({block['seeds']} seeds, {block['test_pieces']} test pieces, "
                  f"{block['notes']['pitch']} transitions, unseen in training: {block['unseen_transitions']['pitch']} "
                  f"pitch / {block['unseen_transitions']['duration']} duration; best count model on validation: "
                  f"{block['best_baseline']}; n-gram weights, mean over seeds: pitch {_weights(block, 'pitch')}; "
                  f"duration {_weights(block, 'duration')})", ""]
        rows = [[LABELS.get(method, method)]
                + [tables.interval(row[name], digits=3) if name in row else "-" for name in
                   ("pitch_nll", "duration_nll", "pitch_mrr", f"pitch_{hits}", "duration_mrr", f"duration_{hits}")]
                + [_signed(row["note_nll_minus_best"]), _signed(row["note_nll_minus_ngram"]),
                   f"{row['cpu_seconds']:.2f}" if "cpu_seconds" in row else "-"]
                for method, row in block["rows"].items()]
        lines += tables.table(["method", "pitch NLL", "duration NLL", "pitch MRR", "pitch Hits@10", "duration MRR",
                               "duration Hits@10", "note NLL - best count model", "note NLL - n-gram", "CPU s"], rows)
        lines.append("")
    return lines


def summary_table(summaries: dict, encoders: dict, given: bool) -> list[str]:
    """The page's first table: per style and k, the n-gram minus the best single count model, and each
    link-predictor mix minus the n-gram (nats per note, paired intervals); then what each encoder learned."""
    lines = ["## Summary: what the pre-trained embeddings buy, per k", "",
             "Note NLL differences in nats per note (below 0: the first is better), paired by seed, 95% intervals with "
             "test pieces and seeds resampled. The best count model (add-alpha, Witten-Bell, interval, pooled) is the "
             "one with the lowest validation NLL at that k. Transfer would show as the BERT column below 0 and below "
             "both the random-features and the no-graph columns.", ""]
    rows = []
    for style, summary in summaries.items():
        for k, block in summary.items():
            rows.append([style, k, block["best_baseline"], _signed(block["rows"]["ngram"]["note_nll_minus_best"]),
                         *[_signed(block["rows"][m]["note_nll_minus_ngram"]) for m, _ in MIX_COLUMNS],
                         _signed(block["rows"]["predictor_bert"]["note_nll_minus_best"])])
    lines += tables.table(["style", "k", "best count model (validation)", "n-gram - best count model",
                           *[f"{name} mix - n-gram" for _, name in MIX_COLUMNS], "BERT features mix - best count model"],
                          rows, "lrl" + "r" * 5)
    lines += ["", "What each target style's MidiBert learned (validation masked accuracy at its best evaluation / the "
              "best trivial predictor of the same notes):", ""]
    for style, encoder in encoders.items():
        learned = ", ".join(f"{name} {v['model']:.3f} / {v['trivial']:.3f} ({v['model'] - v['trivial']:+.3f})"
                            for name, v in encoder["fields"].items())
        which = "the given encoder, for every style" if given else f"without {style}"
        lines.append(f"- {which} ({encoder['steps']} steps, {encoder['train_pieces']} pieces): {learned or 'not recorded'}")
        if given:
            break
    return [*lines, ""]


PLANNED_K = ("4", "8")
QUESTION = ("At k = 4 and 8, does the adapted pre-trained transformer (LoRA, and full) give an unseen style's test "
            "pieces a lower next-note NLL than both the interpolated n-gram and the same transformer trained from "
            "scratch on the k pieces?")
COMPARISON = ("the `transformer LoRA` and `transformer full` rows minus the `ngram` row and minus the `transformer "
              "scratch` row (note NLL = pitch + duration, nats per note, on the same notes, paired by seed; test pieces "
              "and seeds resampled) at k = 4 and 8, each style: the transformer table's first four columns. Yes for a "
              "method where all its intervals there lie below 0")


def planned_answer(summaries: dict) -> str | None:
    """Per adapted method: in how many of the (style, k = 4, 8) blocks both its differences lie below 0."""
    said = []
    for method in ("transformer_lora", "transformer_full"):
        blocks = [(style, k, summary[k]["rows"][method]) for style, summary in summaries.items() for k in PLANNED_K
                  if k in summary and method in summary[k]["rows"]]
        if not blocks:
            return None
        both = [f"{style} k={k}" for style, k, row in blocks
                if row["note_nll_minus_ngram"]["high"] < 0 and row["note_nll_minus_scratch"]["high"] < 0]
        verdict = "yes" if len(both) == len(blocks) else "no"
        said.append(f"{LABELS[method]}: {verdict}, below both in {len(both)} of {len(blocks)} (style, k) blocks"
                    + (f" ({', '.join(both)})" if both and len(both) < len(blocks) else ""))
    return "; ".join(said) + "."


def transformer_table(summaries: dict, unadapted: dict) -> list[str]:
    """The transformer rows against the n-gram and the from-scratch transformer, per style and k, with CPU seconds;
    then what each style's unadapted next-note model cost."""
    lines = ["## The transformer: adapted (LoRA, full), from scratch, unadapted", "",
             "Note NLL differences in nats per note (below 0: the first is better), paired by seed, 95% intervals with "
             "test pieces and seeds resampled, on exactly the notes the count models score (each note of a part after "
             "its first; the transformer sees every earlier note of its window, the count models the same part's "
             "previous one or two). CPU s: mean over seeds, per cell (count models: fitting them all and scoring; "
             "transformer: its `adapt` run plus scoring).", ""]
    rows = []
    for style, summary in summaries.items():
        for k, block in summary.items():
            r = block["rows"]
            if "transformer_lora" not in r:
                continue
            rows.append([style, k, *(_signed(r[m][f"note_nll_minus_{against}"]) for m in ("transformer_lora", "transformer_full")
                                     for against in ("ngram", "scratch")),
                         _signed(r["transformer_unadapted"]["note_nll_minus_ngram"]),
                         _signed(r["transformer_scratch"]["note_nll_minus_ngram"]),
                         " / ".join(f"{r[m].get('cpu_seconds', 0):.1f}" for m in
                                    ("transformer_lora", "transformer_full", "transformer_scratch", "ngram"))])
    lines += tables.table(["style", "k", "LoRA - n-gram", "LoRA - scratch", "full - n-gram", "full - scratch",
                           "unadapted - n-gram", "scratch - n-gram", "CPU s: LoRA / full / scratch / n-gram"], rows,
                          "ll" + "r" * 7)
    lines += ["", "The unadapted next-note model of each target style (its MidiBert pre-trained without the style, "
              "continued with `adapt --all-styles --full` on the other styles' training pieces; trained once, its "
              "CPU seconds not in the per-cell column):", ""]
    for style, info in unadapted.items():
        lines.append(f"- without {style}: {info['cpu_seconds']:.1f} CPU s, {info['epochs_run']} epochs (best {info['best_epoch']}), "
                     f"validation next-note NLL on the other styles: pitch {info['valid']['pitch']:.3f}, duration "
                     f"{info['valid']['duration']:.3f}")
    return [*lines, ""]


# ----- the run ----------------------------------------------------------------------------------------------
def _report_cell(done: int, total: int, row: dict) -> None:
    cached = " (cached)" if row["cached"] else ""
    print(f"few-shot cell {done}/{total}: k={row['k'] or 'all'} seed {row['seed']}{cached}", file=sys.stderr, flush=True)


def run(args, command: str) -> dict:
    """The protocol on each target style; returns {style: summary}; with ``--write`` writes the page and its JSON
    into ``--results``, else prints the page."""
    from musictl.midi.corpus import assign_splits, find_midi_files
    from musictl.midi.pipeline import tokenize_corpus
    from musictl.midi.tokens import TokenCorpus
    from musictl.midi.vocab import TokenizerConfig
    from musictl.transfer import fewshot
    from musictl.transfer.embed import load_embeddings

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
    summaries, sections, encoders, unadapted, adapt_commands = {}, [], {}, {}, []
    transformer = args.transformer and given is None  # a given encoder's page is about features only
    for style in styles:
        if given is None:
            embeddings = bert_without(work, corpus_dir, splits, style, args)
        else:  # averaged over the same pieces (every style but the target), no encoder of its own to pre-train
            embeddings = given_embeddings(given, tokens_without(work, corpus_dir, splits, style), cells_dir / f"embeddings-{style}")
        table = load_embeddings(embeddings)["token"].numpy()
        encoders[style] = encoder_quality(given or work / f"bert-without-{style}" / "bert")
        cells = fewshot.run_fewshot(corpus, style, table, config, cells_dir, _report_cell)
        if transformer:
            rows = transformer_cells(corpus, work / "tokens", style, cells, work, args, adapt_commands, _report_cell)
            cells = with_transformer(cells, rows)
            import json

            base, _, _ = unadapted_model(work, style, args)
            metrics = json.loads((base / "metrics.json").read_text())
            unadapted[style] = {"cpu_seconds": metrics["cpu_seconds"], "epochs_run": metrics["epochs_run"],
                                "best_epoch": metrics["best_epoch"], "valid": metrics["after"]["fields"]}
        summaries[style] = summarise(cells, args.bootstrap)
        sections += render(summaries[style], style, command)
    page = "\n".join(page_lines(args, command, corpus_dir, given, summaries, encoders, sections, unadapted,
                                 list(dict.fromkeys(adapt_commands))))
    if not args.write:
        print(page)
        return summaries
    out = Path(args.results)
    name = "transfer_fewshot" if given is None else "transfer_fewshot_given"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(page + "\n")
    settings = {k: v for k, v in vars(args).items() if k not in ("write", "results", "work", "smoke")}
    results = results_json.Results(out / f"{name}.json", SCRIPT, settings, command=command, machine=paths.machine(),
                                   fresh=True)  # every cell is summarised again from the cached (style, k, seed) cells
    results.data["encoders"] = results_json.canonical(encoders)
    if unadapted:
        results.data["unadapted"] = results_json.canonical(unadapted)
    for style, summary in summaries.items():
        for k, block in summary.items():
            results.put({"style": style, "k": k}, block)
    print(f"wrote {paths.show(str(out / name))}.md and .json", file=sys.stderr)
    return summaries


def page_lines(args, command: str, corpus_dir: Path, given: Path | None, summaries: dict, encoders: dict,
               sections: list[str], unadapted: dict | None = None, adapt_commands: list[str] | None = None) -> list[str]:
    blocks = sum(len(s) for s in summaries.values())
    exploratory = blocks * (len(MIX_COLUMNS) + 1)
    encoder = (f"For each target style a tiny MidiBert is pre-trained (the default objective, adversarial; lr {args.bert_lr}) "
               f"for {args.bert_steps} steps on the other styles' training pieces only, and its contextual embeddings")
    if given is not None:
        encoder = (f"**One given MidiBert for every target style (`--bert-model {paths.show(str(given))}`), whose "
                   "pre-training corpus may contain the target styles' pieces, test pieces included: an optimistic bound "
                   "on what an encoder can give, not a held-out test.** Its contextual embeddings")
    if unadapted:
        planned_blocks = sum(k in s for s in summaries.values() for k in PLANNED_K)
        exploratory += blocks * 6 - planned_blocks * 4  # the transformer table's columns, less the planned ones
        opening = tables.planned(QUESTION, COMPARISON, planned_answer(summaries), exploratory=exploratory)
        transformer = [
            f"Transformer rows (`--transformer`): each target style's MidiBert above, continued as a left-context "
            f"next-note model on the other styles' training pieces (`musictl adapt --all-styles --full`, lr "
            f"{args.unadapted_lr:g}, at most {args.unadapted_epochs} epochs, patience {args.adapt_patience}, early-stopped on "
            "their validation pieces): `transformer unadapted`; that model adapted on the cell's k pieces (the same "
            "draw as the count models') with LoRA (`transformer LoRA`) or in full (`transformer full`), and the same "
            f"architecture from random weights seeded by the cell's seed (`transformer scratch`): at most "
            f"{args.adapt_epochs} epochs, patience {args.adapt_patience}, windows of {args.adapt_max_len} notes, the "
            "`adapt` defaults otherwise, every one early-stopped on the target style's validation pieces. Each scores "
            "every test note given the earlier notes of its window; the NLL is read on the count models' transition "
            "targets only, so every row scores the same notes.", "",
            *transformer_table(summaries, unadapted),
            "The adapt runs, as commands (the benchmark calls the same library function; each cell with its own "
            "--style, --pieces and --seed; WORK is the work folder, S the style, NEXT the unadapted model):", "",
            "<details>", "", "```", *(adapt_commands or []), "```", "", "</details>", ""]
    else:
        opening = tables.planned(
            "Does Witten-Bell mixed with a link predictor on the pre-trained embeddings give an unseen style's test "
            "pieces a lower next-note NLL than the interpolated n-gram of the same k pieces?",
            "the `predictor_bert` row minus the `ngram` row (note NLL, nats per note, paired by seed; test pieces and "
            "seeds resampled), for each style and k: the \"BERT features mix - n-gram\" column", exploratory=exploratory)
        transformer = []
    return [
        "# Few-shot unseen styles" + (" with a given encoder (optimistic bound)" if given else ""), "",
        *opening,
        f"Command: `{command}`", "",
        f"Corpus: {args.corpus} ({corpus_dir.name}), split {args.split} (train, valid, test) per style, seed 0. {encoder} "
        "(each token's mean hidden state over the other styles' training pieces, never the target style's) give the "
        "`bert` node features. k training pieces of the style are drawn per seed (all: every one); the style graph "
        "(musical node fields, transitions) and the counts come from them. The interpolated n-gram mixes the add-one "
        "unigram, the Witten-Bell bigram, a Witten-Bell trigram backing off to it (the previous two notes of the part), "
        "the interval model and the pooled counts, its weights fitted by EM on the style's validation pieces. "
        "Smoothing, n-gram weights, mixing weights and the best count model are chosen on the validation pieces; the "
        "test pieces are only scored. "
        f"Link predictors: at most {args.fewshot_epochs} epochs, same-field negatives, early stopping on validation "
        "edges. The `bert` and `random` predictors also see each node's degrees; `none` is the same layers on the "
        "`bert` features without message passing or degrees.", "",
        *transformer, *summary_table(summaries, encoders, given is not None), *sections]


def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=["bundled", "shared"], default="bundled")
    parser.add_argument("--per-style", type=int, default=80, help="--corpus shared: pieces per style at most")
    parser.add_argument("--styles", default="", help="target styles, comma-separated [default: every style]")
    parser.add_argument("--shots", default="1,2,4,8,all", help="k training pieces per cell")
    parser.add_argument("--split", default="0.6,0.1,0.3", help="train,valid,test fractions per style")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--bert-steps", type=int, default=300)
    parser.add_argument("--bert-lr", type=float, default=1e-3, help="pre-training learning rate (benchmarks/pretrain_sweep.py)")
    parser.add_argument("--fewshot-epochs", type=int, default=200, help="link predictor epochs (early stopping)")
    parser.add_argument("--bert-model", default=None, help="one pre-trained MidiBert for every target style instead of one "
                                                           "pre-trained without it (its corpus may hold the style: an "
                                                           "optimistic bound); written to transfer_fewshot_given.md")
    parser.add_argument("--transformer", action=argparse.BooleanOptionalAction, default=True,
                        help="the transformer rows: unadapted, adapted with LoRA and in full, from scratch")
    parser.add_argument("--adapt-epochs", type=int, default=30, help="transformer rows: adapt's --epochs (at most)")
    parser.add_argument("--adapt-patience", type=int, default=3, help="transformer rows: adapt's --patience")
    parser.add_argument("--adapt-max-len", type=int, default=256, help="transformer rows: notes per window")
    parser.add_argument("--unadapted-epochs", type=int, default=20,
                        help="the unadapted next-note model's epochs on the other styles (at most)")
    parser.add_argument("--unadapted-lr", type=float, default=5e-4, help="the unadapted next-note model's learning rate")
    parser.add_argument("--bootstrap", type=int, default=stats.BOOTSTRAP, help="resamples of the intervals")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (1 when sharing the machine)")
    parser.add_argument("--work", default=str(paths.work_folder("fewshot")), help="cache, kept for resuming")
    parser.add_argument("--results", default=str(paths.RESULTS), help="where --write puts the tables")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the bundled corpus, work and results in a "
                                                              "temporary folder: the whole program in a few minutes")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    command = "python benchmarks/transfer_fewshot.py " + " ".join(argv)
    torch.set_num_threads(args.threads)
    if not args.smoke:
        run(args, command)
        return
    with tempfile.TemporaryDirectory() as tmp:
        args = parser.parse_args([*argv, *SMOKE, "--work", f"{tmp}/work", "--results", f"{tmp}/results", "--write"])
        run(args, command)
        print((Path(tmp) / "results" / "transfer_fewshot.md").read_text())


if __name__ == "__main__":
    main()
