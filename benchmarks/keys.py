"""Keeping a key: the key consistency of generated pieces, counted in a common key or as they are, per style.

    python benchmarks/keys.py --write    # bundled corpus + the first 60 POP909 songs; results/keys.*, docs/generate-rwr.md
    python benchmarks/keys.py            # the same run, its page in the work folder only
    python benchmarks/keys.py --smoke    # the bundled corpus, 2 styles, toy steps, a temporary folder (numbers say nothing)
    python benchmarks/keys.py --render   # only rebuild results/keys.md and the docs block from results/keys.json

Everything a user would type, through the CLI (``python -m musictl ...``), in a work folder of its own
(``$MUSICTL_BENCH_WORK/keys/<name>``):

1. ``tokenize`` every style of the bundled corpus (musictl/data/corpus/*) and, as the style nobody tuned for, the
   first 60 POP909 songs by file name (../shared/datasets/pop909/midi; left out, with a note on the page, when
   ../shared is absent), split 0.6,0.2,0.2 with seed 0 (so 8 test pieces of a 40-piece style);
2. ``pretrain-bert --size tiny --max-steps 3000 --max-len 256`` (``--bert-steps``; the pre-training the other
   transfer benchmarks give their transformer) and ``embed``, once for every style;
3. per style, in the common key (``adjacency --key common``, the default): ``adjacency``, ``train-gcn --epochs
   50``, ``generate-rwr --evaluate 16`` (16 pieces of 16 bars, seed 0);
4. per style, as they are: the same in a second workspace (``adjacency --key as-is``; the same tokens and
   embeddings, passed with ``--tokens`` / ``--embeddings``);
5. per style, the adapted transformer choosing the notes: ``adapt --style S`` (LoRA, its defaults) and
   ``generate-rwr --notes-by transformer --evaluate 16`` on the common-key graph.

Each ``--evaluate`` report gives ``listening.key_consistency`` (:func:`musictl.transfer.fidelity.key_consistency`:
the share of a piece's pitched note time inside its best-fitting diatonic scale, averaged over the pieces) of the
generated pieces and of the style's held-out (test) pieces, and the pitch-class Jensen-Shannon divergence of the
generated pieces from the held-out ones. The planned question (:data:`QUESTION`) is answered from those numbers.
The table is written to benchmarks/results/keys.md (with keys.json) and, with ``--write``, between the markers
the "key table" markers of docs/generate-rwr.md (:mod:`harness.docs`), with the command that made it.

Every step is skipped when its artifact (or report) exists, so a rerun resumes; each step's wall and CPU seconds
are cells of the results JSON. Child processes run with ``--threads`` threads (OMP_NUM_THREADS, default 1).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import cells, commands, docs, paths, tables

SCRIPT = "benchmarks/keys.py"
DOC = paths.ROOT / "docs" / "generate-rwr.md"
DOC_BLOCK = "key table"  # docs/generate-rwr.md's block (harness.docs markers)
SPLIT = "0.6,0.2,0.2"
SEED = 0
MARGIN = 0.05  # the planned question's margin on key consistency
POP909, POP909_SONGS = "pop909", 60
POP909_SOURCE = "pop909/midi"  # under the datasets
FULL = {"evaluate": 16, "bars": 16, "bert_steps": 3000, "bert_max_len": 256, "gcn_epochs": 50, "adapt": []}
SMOKE = {"evaluate": 4, "bars": 4, "bert_steps": 10, "bert_max_len": 64, "gcn_epochs": 3,
         "adapt": ["--epochs", "1", "--max-len", "64"]}
SMOKE_STYLES = ("fiddle-tunes", "german-folk")
# the three ways of writing a piece: key -> (name on the page, what makes it)
METHODS = {
    "common": ("walk, `--key common`", "generate-rwr on the graph counted in the common key (adjacency's default)"),
    "as-is": ("walk, `--key as-is`", "generate-rwr on the graph counted with pitches as they are"),
    "transformer": ("transformer", "generate-rwr --notes-by transformer: the style's adapted model (adapt, LoRA "
                    "defaults) chooses each pitch and duration on the common-key graph"),
}
PLANNED = ("common", "transformer")
QUESTION = (f"Do the plain walk (`--key common`) and the adapted transformer (`--notes-by transformer`) stay within "
            f"{MARGIN} of the style's own held-out pieces' key consistency on every style, the one nobody tuned for "
            "(pop909) included?")
COMPARISON = (f"per style, |generated minus held-out| mean key consistency (`listening.key_consistency` of "
              f"`generate-rwr --evaluate`) at most {MARGIN}, for the common-key walk and for the transformer; "
              "one run each, seed 0, no interval")


# ----- the run ---------------------------------------------------------------------------------------
class Run:
    """The run's settings, its two workspaces and its results JSON (a cell per step and per report)."""

    def __init__(self, args: argparse.Namespace, styles: list[str], note: str | None):
        self.args, self.styles = args, styles
        self.preset = SMOKE if args.smoke else {**FULL, "bert_steps": args.bert_steps or FULL["bert_steps"]}
        self.work = Path(args.work)
        self.common, self.as_is = self.work / "common", self.work / "as-is"
        self.tokens, self.reports = self.common / "tokens", self.work / "reports"
        config = {"styles": styles, "split": SPLIT, "seed": SEED, "margin": MARGIN, "smoke": args.smoke,
                  "pop909_songs": POP909_SONGS if POP909 in styles else None, "threads": args.threads,
                  **{k: v for k, v in self.preset.items()}}
        self.results = cells.Results(self.work / "keys.json", SCRIPT, config, command=command_line(),
                                     machine=paths.machine(), fresh=args.fresh)
        self.data = self.results.data
        self.data["pop909_note"] = note

    def shown(self, text: str) -> str:
        return paths.show(text, self.work)

    def step(self, settings: dict, made: Path, *args: str) -> None:
        """``musictl ARGS`` unless ``made`` (its artifact or report) exists; its wall and CPU seconds (the child
        process's user + system time) saved as the cell ``settings``."""
        shown = "musictl " + self.shown(shlex.join(args))
        if made.exists():
            if self.results.get(settings) is None:  # made by an earlier run that kept no record
                self.results.put(settings, {"command": shown, "wall_seconds": None, "cpu_seconds": None})
            print(f"skip {cells.cell_key(settings)}: {self.shown(str(made))} exists", file=sys.stderr)
            return
        before = child_cpu()
        wall = commands.musictl(self.results, *args, work=self.work, quiet=self.args.smoke)
        self.results.put(settings, {"command": shown, "wall_seconds": wall, "cpu_seconds": round(child_cpu() - before, 1)})


def child_cpu() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def command_line() -> str:
    return "python " + SCRIPT + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")


def styles_and_sources(smoke: bool) -> tuple[dict[str, list[Path]], str | None]:
    """Each style's MIDI files (the bundled styles', all of them; POP909's first 60 by name) and a note when POP909
    is left out because ../shared is absent."""
    from musictl.midi.corpus import bundled_corpus

    bundled = sorted(p.name for p in bundled_corpus().iterdir() if p.is_dir())
    chosen = list(SMOKE_STYLES) if smoke else bundled
    sources = {s: sorted((bundled_corpus() / s).glob("*.mid")) for s in chosen}
    if smoke:
        return sources, None
    pop = paths.DATASETS / POP909_SOURCE
    if not pop.is_dir():
        return sources, (f"pop909 was left out: {paths.SHOWN_DATASETS}/{POP909_SOURCE} is not on this machine "
                         f"(see {paths.SHOWN_DATASETS}/README.md)")
    sources[POP909] = sorted(pop.glob("*.mid"))[:POP909_SONGS]
    if len(sources[POP909]) < POP909_SONGS:
        raise SystemExit(f"error: {len(sources[POP909])} MIDI files in {paths.SHOWN_DATASETS}/{POP909_SOURCE}, "
                         f"{POP909_SONGS} needed; check {paths.SHOWN_DATASETS}/README.md")
    return sources, None


def stage_corpus(folder: Path, sources: dict[str, list[Path]]) -> Path:
    """Each style's files linked into ``folder/<style>/``."""
    for style, files in sources.items():
        (folder / style).mkdir(parents=True, exist_ok=True)
        for f in files:
            if not (folder / style / f.name).exists():
                (folder / style / f.name).symlink_to(f.resolve())
    return folder


def evaluate_args(run: Run, style: str) -> list[str]:
    return ["--style", style, "--evaluate", str(run.preset["evaluate"]), "-n", str(run.preset["bars"]),
            "--seed", str(SEED)]


def pipeline(run: Run, sources: dict[str, list[Path]]) -> None:
    """Every step through the CLI, each skipped when its artifact exists: the shared steps, then every style's two
    walks (cheap), then every style's adapter and transformer pieces (the costly part, last)."""
    p, common, as_is, tokens = run.preset, run.common, run.as_is, run.tokens
    corpus = stage_corpus(run.work / "corpus", sources)
    run.reports.mkdir(parents=True, exist_ok=True)
    run.step({"step": "tokenize"}, tokens / "manifest.json", "tokenize", str(corpus), "-o", str(tokens),
             "--split", SPLIT, "--seed", str(SEED), "--workers", "1")
    run.step({"step": "pretrain-bert"}, common / "bert" / "manifest.json", "pretrain-bert", "-w", str(common),
             "--size", "tiny", "--max-steps", str(p["bert_steps"]), "--max-len", str(p["bert_max_len"]),
             "--seed", str(SEED), "--device", "cpu")
    run.step({"step": "embed"}, common / "embeddings" / "manifest.json", "embed", "-w", str(common))
    gcn = ["--epochs", str(p["gcn_epochs"]), "--seed", str(SEED), "--device", "cpu"]
    for style in run.styles:
        run.step({"step": "adjacency", "style": style, "key": "common"}, common / "graph" / style / "manifest.json",
                 "adjacency", "-w", str(common), "--style", style, "--key", "common")
        run.step({"step": "train-gcn", "style": style, "key": "common"}, common / "gcn" / style / "manifest.json",
                 "train-gcn", "-w", str(common), "--style", style, *gcn)
        run.step({"step": "evaluate", "style": style, "method": "common"}, report(run, style, "common"),
                 "generate-rwr", "-w", str(common), *evaluate_args(run, style), "-o", str(report(run, style, "common")))
        run.step({"step": "adjacency", "style": style, "key": "as-is"}, as_is / "graph" / style / "manifest.json",
                 "adjacency", "-w", str(as_is), "--tokens", str(tokens), "--style", style, "--key", "as-is")
        run.step({"step": "train-gcn", "style": style, "key": "as-is"}, as_is / "gcn" / style / "manifest.json",
                 "train-gcn", "-w", str(as_is), "--tokens", str(tokens), "--embeddings", str(common / "embeddings"),
                 "--style", style, *gcn)
        run.step({"step": "evaluate", "style": style, "method": "as-is"}, report(run, style, "as-is"),
                 "generate-rwr", "-w", str(as_is), "--tokens", str(tokens), *evaluate_args(run, style),
                 "-o", str(report(run, style, "as-is")))
        measure(run, style, "common")
        measure(run, style, "as-is")
    for style in run.styles:
        run.step({"step": "adapt", "style": style}, common / "adapted" / style / "manifest.json", "adapt",
                 "-w", str(common), "--style", style, "--seed", str(SEED), "--device", "cpu", *p["adapt"])
        run.step({"step": "evaluate", "style": style, "method": "transformer"}, report(run, style, "transformer"),
                 "generate-rwr", "-w", str(common), *evaluate_args(run, style), "--notes-by", "transformer",
                 "-o", str(report(run, style, "transformer")))
        measure(run, style, "transformer")
        adapted(run, style)
    held_out(run)


def report(run: Run, style: str, method: str) -> Path:
    return run.reports / f"{style}-{method}.json"


def measure(run: Run, style: str, method: str) -> None:
    """The numbers of one ``--evaluate`` report, as a cell."""
    found = json.loads(report(run, style, method).read_text())
    listening, judge = found["listening"], found["judge"]
    run.results.put({"style": style, "method": method}, {
        "report": run.shown(str(report(run, style, method))), "pieces": found["pieces"],
        "reference": found["reference"],
        "key_consistency": listening["generated"]["key_consistency"],
        "held_out_key_consistency": listening["held_out"]["key_consistency"],
        "pitch_class_js": found["divergence_own_style"]["pitch_class"],
        "interval_js": found["divergence_own_style"]["interval"],
        "silence_share": listening["generated"]["silence_share"], "duration_ratio": listening["generated"]["duration_ratio"],
        "judge": {"accuracy": judge.get("accuracy"), "null_p95": (judge.get("null") or {}).get("p95"),
                  "distinguishable": judge.get("distinguishable")},
        "walk": found["walk"]})


def adapted(run: Run, style: str) -> None:
    """What the style's adapter says of itself (its metrics.json): mode, epochs, validation next-note NLL."""
    metrics = json.loads((run.common / "adapted" / style / "metrics.json").read_text())
    run.data.setdefault("adapted", {})[style] = {
        "mode": metrics.get("mode"), "train_pieces": len(metrics.get("train_pieces", [])),
        "best_epoch": metrics.get("best_epoch"), "epochs_run": metrics.get("epochs_run"),
        "nll": {f: {"before": metrics["before"]["fields"][f], "after": metrics["after"]["fields"][f]}
                for f in ("pitch", "duration")}}
    run.results.save()


def held_out(run: Run) -> None:
    """Each style's pieces per split and its held-out pieces' key consistency piece by piece (their spread; the
    table's mean is the report's)."""
    import numpy as np

    from musictl.midi.tokens import TokenCorpus
    from musictl.transfer.fidelity import key_consistency, reference_pieces

    corpus = TokenCorpus.open(run.tokens)
    run.data["splits"] = {s: {sp: len(corpus.select(style=s, split=sp)) for sp in ("train", "valid", "test")}
                          for s in run.styles}
    spread = {}
    for style in run.styles:
        _, reference, _ = reference_pieces(corpus, style)
        values = [k for k in (key_consistency(corpus.piece_tokens(p), corpus.config) for p in reference) if k is not None]
        spread[style] = {"pieces": len(values), "sd": round(float(np.std(values, ddof=1)), 4) if len(values) > 1 else None,
                         "min": round(min(values), 4), "max": round(max(values), 4)}
    run.data["held_out"] = spread
    run.results.save()


# ----- the page ------------------------------------------------------------------------------------
def summarise(data: dict) -> dict:
    """Per style: the held-out pieces' key consistency, each method's and its difference from it, whether the
    planned methods stay within the margin; and the planned answer."""
    margin = data["config"]["margin"]
    rows = {}
    for style in data["config"]["styles"]:
        found = {c["settings"]["method"]: c for c in cells.select(data["cells"], style=style) if "method" in c["settings"]
                 and "step" not in c["settings"]}
        if not found:
            continue
        held = {c["held_out_key_consistency"] for c in found.values()}
        if len(held) != 1:
            raise SystemExit(f"error: the reports of {style} disagree on the held-out pieces' key consistency ({held}); "
                             "they must come from one tokens artifact: rerun with --fresh")
        reference = next(iter(found.values()))["reference"]
        row = {"held_out": held.pop(), "held_out_pieces": reference["pieces"], "reference_split": reference["split"],
               "generated_pieces": next(iter(found.values()))["pieces"], "methods": {}}
        for method in METHODS:
            if method in found:
                c = found[method]
                diff = round(c["key_consistency"] - row["held_out"], 4)
                row["methods"][method] = {"key_consistency": c["key_consistency"], "difference": diff,
                                          "within": abs(diff) <= margin + 1e-9, "pitch_class_js": c["pitch_class_js"],
                                          "interval_js": c["interval_js"], "judge": c["judge"],
                                          "mix": c["walk"].get("mix")}
        rows[style] = row
    return {"rows": rows, "answer": answer(rows, data["config"]["styles"], margin)}


def answer(rows: dict, styles: list[str], margin: float) -> dict:
    """The planned answer: per planned method, the styles within the margin and those outside it (with their
    differences), and the styles not measured."""
    out = {}
    for method in PLANNED:
        measured = [s for s in styles if method in rows.get(s, {}).get("methods", {})]
        fails = {s: rows[s]["methods"][method]["difference"] for s in measured if not rows[s]["methods"][method]["within"]}
        out[method] = {"measured": measured, "passed": [s for s in measured if s not in fails], "failed": fails,
                       "missing": [s for s in styles if s not in measured]}
    out["yes"] = all(not a["failed"] and not a["missing"] for a in out.values())
    out["untuned_missing"] = POP909 not in styles
    return out


def answer_text(table: dict, margin: float) -> str:
    ans = table["answer"]
    parts = []
    for method in PLANNED:
        a = ans[method]
        n = len(a["measured"]) + len(a["missing"])
        text = f"{METHODS[method][0]}: {len(a['passed'])} of {n} styles within {margin}"
        if a["failed"]:
            text += " (outside: " + ", ".join(f"{s} {d:+.3f}" for s, d in a["failed"].items()) + ")"
        if a["missing"]:
            text += " (not measured: " + ", ".join(a["missing"]) + ")"
        parts.append(text)
    if not ans["yes"]:
        verdict = "**no**. "
    elif ans["untuned_missing"]:
        verdict = "**not answered**: the style nobody tuned for (pop909) is not in this run; on the styles it has, yes. "
    else:
        verdict = "**yes**. "
    return verdict + "; ".join(parts) + "."


def number(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def key_cell(method: dict | None, planned: bool) -> str:
    """A method's key consistency, its difference from the held-out pieces', **out** when a planned one misses."""
    if method is None:
        return "-"
    out = planned and not method["within"]
    return f"{number(method['key_consistency'])} ({method['difference']:+.3f})" + (" **out**" if out else "")


def judge_cell(method: dict | None) -> str:
    if method is None or method["judge"]["accuracy"] is None:
        return "-"
    return f"{method['judge']['accuracy']:.2f} (p95 {number(method['judge']['null_p95'], 2)})"


def key_table(table: dict) -> list[str]:
    """The table of the page and of the docs block."""
    rows = []
    for style, row in table["rows"].items():
        m = row["methods"]
        rows.append([style, f"{number(row['held_out'])} ({row['held_out_pieces']})",
                     *(key_cell(m.get(k), k in PLANNED) for k in METHODS),
                     " / ".join(number(m[k]["pitch_class_js"]) if k in m else "-" for k in METHODS)])
    return tables.table(["style", "held-out pieces (n)", "walk, `--key common`", "walk, `--key as-is`",
                         "transformer", "pitch-class JS: common / as-is / transformer"], rows)


def doc_block(data: dict) -> str:
    """The key table's block in docs/generate-rwr.md (between its markers)."""
    config, table = data["config"], data["table"]
    lines = [f"Written by `{data['command']}` ([results](../benchmarks/results/keys.md)).", "",
             *tables.planned(QUESTION, COMPARISON, answer_text(table, config["margin"])),
             *([data["pop909_note"], ""] if data.get("pop909_note") else []),
             f"{config['evaluate']} generated pieces of {config['bars']} bars a style and method, seed {SEED}, one run "
             "each, against the style's held-out (test) pieces. Key consistency, with its difference from the "
             f"held-out pieces' in brackets (**out**: a planned method more than {config['margin']} away):", "",
             *key_table(table)]
    return "\n".join(lines)


def render(data: dict) -> str:
    config, table = data["config"], data["table"]
    f = number
    n_styles = len(config["styles"])
    exploratory = n_styles * (1 + 3 * 3)  # as-is vs held-out; each method's pitch-class JS, interval JS and judge
    splits = ", ".join(f"{s} {v['train']}/{v['valid']}/{v['test']}" for s, v in data.get("splits", {}).items())
    lines = ["# Keeping a key: common key, as-is and the transformer, per style", "",
             *tables.planned(QUESTION, COMPARISON, answer_text(table, config["margin"]), exploratory, intervals=False),
             f"Command: `{data['command']}`", "", f"Machine: {data['machine']}, OMP_NUM_THREADS={config['threads']}.", ""]
    if config["smoke"]:
        lines += ["**A smoke run** (two bundled styles, toy sizes): its numbers say nothing.", ""]
    if data.get("pop909_note"):
        lines += [f"**{data['pop909_note']}.**", ""]
    pop = (f" and the first {config['pop909_songs']} POP909 songs by file name (pop909, the style nobody tuned for)"
           if config.get("pop909_songs") else "")
    lines += [f"Corpus: the bundled styles{pop}, "
              f"tokenized together, split {config['split']} with seed {config['seed']} (train/valid/test pieces: "
              f"{splits}). One tiny MidiBert (`pretrain-bert --size tiny --max-steps {config['bert_steps']} --max-len "
              f"{config['bert_max_len']}`) and its embeddings serve every style; each style's graph and GCN "
              f"(`train-gcn --epochs {config['gcn_epochs']}`) are made twice, `--key common` and `--key as-is`; the "
              f"transformer is the style's `adapt` (LoRA, {' '.join(config['adapt']) or 'its defaults'}) choosing the "
              "notes on the common-key graph.", "",
              f"Each cell is one `generate-rwr --evaluate {config['evaluate']} -n {config['bars']} --seed {SEED}` report "
              "(the Steps table below): `listening.key_consistency`, the share of a piece's pitched note time inside its "
              "best-fitting diatonic scale, averaged over the pieces (1: every note in one key; random pitches about "
              "7/12), for the generated pieces and for the style's held-out (test) pieces, and "
              "`divergence_own_style.pitch_class`, the Jensen-Shannon divergence (base 2) of the generated pieces' pooled "
              "pitch-class histogram from the held-out pieces'. In brackets: generated minus held-out; **out**: a "
              f"planned method more than {config['margin']} away.", "", *key_table(table), ""]
    spread = data.get("held_out", {})
    if spread:
        lines += ["The held-out pieces' own spread (key consistency piece by piece): "
                  + "; ".join(f"{s} sd {f(v['sd'])}, {f(v['min'])} to {f(v['max'])} over {v['pieces']}"
                              for s, v in spread.items())
                  + ". One run of each method, no repeats and no interval: a difference a few hundredths wide is "
                  "within what another draw of pieces could move.", ""]
    judge_rows = []
    for style, row in table["rows"].items():
        m = row["methods"]
        judge_rows.append([style, " / ".join(number(m[k]["interval_js"]) if k in m else "-" for k in METHODS),
                           " / ".join(judge_cell(m.get(k)) for k in METHODS),
                           " / ".join(number(m[k]["mix"], 2) if k in m else "-" for k in METHODS)])
    lines += ["## Exploratory: intervals and the judge", "",
              f"Interval JS divergence, and the judge's balanced accuracy telling {config['evaluate']} generated pieces "
              "from the held-out ones (with the 95th percentile of its real-vs-real null in brackets; both classes are "
              "far under 40 pieces, so read it as noise), for common / as-is / transformer; and the walk's mixing weight "
              "chosen on validation.", ""]
    lines += tables.table(["style", "interval JS", "judge (null p95)", "mix"], judge_rows)
    lines += [""]
    learned = data.get("adapted", {})
    if learned:
        lines += ["The adapters (validation next-note NLL, nats per note, before and after adaptation): "
                  + "; ".join(f"{s}: {a['mode']} on {a['train_pieces']} training pieces, best epoch {a['best_epoch']} of "
                              f"{a['epochs_run']}, pitch {a['nll']['pitch']['before']:.2f} to {a['nll']['pitch']['after']:.2f}, "
                              f"duration {a['nll']['duration']['before']:.2f} to {a['nll']['duration']['after']:.2f}"
                              for s, a in learned.items()) + ".", ""]
        capped = [s for s, a in learned.items() if a["best_epoch"] == a["epochs_run"]]
        if capped:
            lines += [f"{len(capped)} of {len(learned)} adapters ({', '.join(capped)}) had their best epoch at the last "
                      "one they ran: still improving when the epoch cap stopped them, so not converged.", ""]
    steps = sorted((c for c in cells.select(data["cells"]) if "step" in c["settings"]),
                   key=lambda c: step_order(c["settings"], config["styles"]))
    total = sum(c["cpu_seconds"] or 0 for c in steps)
    lines += [f"## Steps ({len(steps)}, {total / 60:.1f} CPU minutes in all)", ""]
    lines += tables.table(["step", "style", "key / method", "wall s", "CPU s", "command"],
                          [[c["settings"]["step"], c["settings"].get("style", "-"),
                            c["settings"].get("key", c["settings"].get("method", "-")), f(c["wall_seconds"], 1),
                            f(c["cpu_seconds"], 1), f"`{c['command']}`"] for c in steps], align="lllrrl")
    lines += ["", "WORK is the run's work folder (WORK/common: the common-key workspace, WORK/as-is: the as-is one), "
              "../shared/datasets the shared corpora. A step whose artifact was already there is skipped on a rerun, "
              "so the seconds are those of the run that made it.", ""]
    return "\n".join(lines)


def step_order(settings: dict, styles: list[str]) -> tuple:
    """The pipeline's order: the shared steps, then each style's walks, then its adapter and transformer pieces."""
    order = ["tokenize", "pretrain-bert", "embed", "adjacency", "train-gcn", "evaluate", "adapt"]
    what = settings.get("key", settings.get("method", ""))
    late = settings["step"] == "adapt" or what == "transformer"
    style = styles.index(settings["style"]) if settings.get("style") in styles else -1
    return (late, style, list(METHODS).index(what) if what in METHODS else -1, order.index(settings["step"]))


def write_doc(data: dict) -> None:
    """Replace the key table's block in docs/generate-rwr.md (:mod:`harness.docs`)."""
    docs.replace_block(DOC, DOC_BLOCK, SCRIPT, doc_block(data))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=None, help="work folder [default: $MUSICTL_BENCH_WORK or ~/.cache/musictl-bench,"
                                                     " /keys/full-stepsN]")
    parser.add_argument("--bert-steps", type=int, default=None, help=f"pretrain-bert --max-steps [default: "
                                                                      f"{FULL['bert_steps']}]")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every step [default: 1]")
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/keys.{md,json} and the table "
                                                             "block of docs/generate-rwr.md (else: the work folder)")
    parser.add_argument("--fresh", action="store_true", help="forget the run's JSON (artifacts and reports are kept)")
    parser.add_argument("--render", action="store_true", help="only rebuild benchmarks/results/keys.md and the docs "
                                                              "block from benchmarks/results/keys.json")
    parser.add_argument("--smoke", action="store_true", help="the bundled corpus, 2 styles, toy steps, a temporary folder")
    args = parser.parse_args(argv)
    if args.threads < 1:
        raise SystemExit("error: --threads needs at least 1")
    if args.smoke and args.write:
        raise SystemExit("error: --smoke writes into a temporary folder only; drop --write")
    if args.render:
        write_doc(cells.republish(paths.RESULTS / "keys", summarise, render))
        return
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)
    sources, note = styles_and_sources(args.smoke)
    if args.smoke:
        args.work = args.work or tempfile.mkdtemp(prefix="keys-smoke-")
    args.work = args.work or str(paths.work_folder("keys") / f"full-steps{args.bert_steps or FULL['bert_steps']}")
    out = paths.RESULTS if args.write else Path(args.work)
    started = time.perf_counter()
    run = Run(args, list(sources), note)
    pipeline(run, sources)
    print(f"finished in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(cells.publish(run.data, summarise, render, out / "keys.json", out / "keys.md"))
    if args.write:
        write_doc(run.data)


if __name__ == "__main__":
    main()
