"""Three ways to a new style, side by side: one style nobody tuned for, one seed, four piano rolls.

    python benchmarks/three_ways.py --write    # needs ../shared/datasets; docs/img/three-ways-*.png, results/three_ways.*
    python benchmarks/three_ways.py --smoke    # the bundled corpus, 2 styles, 20 steps, a temporary folder
    python benchmarks/three_ways.py --render   # only rebuild benchmarks/results/three_ways.md from its JSON

Everything a user would type, through the CLI (``python -m musictl ...``), in a work folder of its own
(``$MUSICTL_BENCH_WORK/three-ways/<style>-per<N>-steps<S>``):

1. ``tokenize`` the target style (default Nottingham jigs) and the pre-training styles (Nottingham reels and
   hornpipes), each capped at ``--per-style`` files (the first by name, linked into a style folder), split
   0.7,0.15,0.15 with seed 0;
2. ``pretrain-bert --objective mlm --size tiny --lr 1e-3 --max-steps S`` on every style's training pieces (the
   target's validation and test pieces stay unseen);
3. the GCN path: ``embed``, ``adjacency --style T``, ``train-gcn --style T``; adapting the transformer:
   ``adapt --style T`` (LoRA, its defaults, early-stopped on the style's validation pieces);
4. four pieces of ``--bars`` bars, seed 0: a real test piece of the style (its first bars), the GCN walk
   (``generate-rwr --style T``), the adapted transformer choosing the notes (``generate-rwr --notes-by
   transformer``), and counts: the interpolated n-gram chain, made in this process by the library path
   benchmarks/transfer.py takes for its "interpolated n-gram" pieces (:func:`musictl.transfer.baselines.count_generators`:
   the style's training pieces counted in the walk's common key, weights fitted on its validation pieces, placed in
   a key of the style's as the walk is; there is no CLI command for it).

Each piece is read back from its MIDI file and drawn with :mod:`musictl.transfer.plot` on the same pitch range and
bars; the page gives each one's key consistency (:func:`musictl.transfer.fidelity.key_consistency`), notes, mean
melodic leap and the CPU seconds of every step. One style, one seed: an illustration, not a measurement of which
way is better (the generation benchmark compares them over many pieces and styles).

A rerun skips every step whose artifact exists (the CLI's artifacts are swapped in only when complete).
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import cells, commands, docs, paths, tables
from harness.data import TRANSFER_STYLES

SCRIPT = "benchmarks/three_ways.py"
DOC, DOC_BLOCK = paths.ROOT / "docs" / "transfer.md", "three ways table"  # the block it writes (harness.docs)
IMAGES = paths.ROOT / "docs" / "img"
SPLIT = "0.7,0.15,0.15"
SEED = 0
# where each style's files come from: (folder under the datasets, file pattern)
SOURCES = {**TRANSFER_STYLES, "nottingham-reels": ("nottingham/midi", "reels*.mid"),
           "nottingham-hornpipes": ("nottingham/midi", "hpps*.mid")}
DEFAULT_OTHERS = "nottingham-reels,nottingham-hornpipes"
SMOKE_STYLE, SMOKE_OTHERS = "fiddle-tunes", "german-folk"  # of the bundled corpus
SMOKE_ARGS = {"per_style": 12, "max_steps": 20}
SMOKE_FLAGS = {"pretrain-bert": ["--max-len", "64"], "train-gcn": ["--epochs", "5"],
               "adapt": ["--epochs", "2", "--max-len", "64"]}  # toy sizes, so the smoke takes minutes

# the four pieces: key -> (name on the page, what makes it)
METHODS = {
    "real": ("a real test piece", "the first bars of the style's first test piece (by file name) that has them"),
    "walk": ("the GCN walk", "generate-rwr: the walk over the style graph, counts mixed with the link predictor"),
    "transformer": ("the transformer chooses the notes", "generate-rwr --notes-by transformer: the adapted model picks "
                    "each pitch and duration among the graph's successors; the walk keeps rhythm and restarts"),
    "ngram": ("counts: the interpolated n-gram", "the Markov chain's plans and rhythm with pitch and duration drawn "
              "from interpolated 1-3-grams (weights on the style's validation pieces)"),
}
# the steps each piece's way needs, as this page runs them (generate-rwr loads the style's GCN even when the
# transformer chooses every note, so the transformer's chain holds embed and train-gcn too)
CHAINS = {
    "real": ["tokenize"],
    "walk": ["tokenize", "pretrain-bert", "embed", "adjacency", "train-gcn", "generate walk"],
    "transformer": ["tokenize", "pretrain-bert", "embed", "adjacency", "train-gcn", "adapt", "generate transformer"],
    "ngram": ["tokenize", "n-gram"],
}


# ----- the run ---------------------------------------------------------------------------------------
class Run:
    """The run's settings, its work folder and its results JSON (a cell per step and per piece)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.style, self.others = args.style, [s for s in args.others.split(",") if s]
        self.work = Path(args.work)
        config = {"style": self.style, "others": self.others, "per_style": args.per_style, "max_steps": args.max_steps,
                  "bars": args.bars, "split": SPLIT, "seed": SEED, "smoke": args.smoke,
                  "threads": os.environ.get("OMP_NUM_THREADS")}
        self.results = cells.Results(self.work / "three_ways.json", SCRIPT, config, command=command_line(),
                                     machine=paths.machine(), fresh=args.fresh)
        self.data = self.results.data

    def shown(self, text: str) -> str:
        return paths.show(text, self.work)

    def step(self, name: str, made: Path, *args: str) -> None:
        """``musictl ARGS`` unless ``made`` (its artifact or file) exists; its wall and CPU seconds (the child
        process's user + system time) saved as the step's cell."""
        if made.exists():
            if self.results.get({"step": name}) is None:  # made by an earlier run that kept no record
                self.results.put({"step": name}, {"command": "musictl " + self.shown(shlex.join(args)),
                                                  "wall_seconds": None, "cpu_seconds": None})
            print(f"skip {name}: {self.shown(str(made))} exists", file=sys.stderr)
            return
        before = child_cpu()
        wall = commands.musictl(self.results, *args, work=self.work, quiet=self.args.smoke)
        self.results.put({"step": name}, {"command": "musictl " + self.shown(shlex.join(args)), "wall_seconds": wall,
                                          "cpu_seconds": round(child_cpu() - before, 1)})


def child_cpu() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def command_line() -> str:
    return "python " + SCRIPT + " " + shlex.join(sys.argv[1:])


def sources(args) -> dict[str, tuple[Path, str]]:
    """Each style of the run: (its source folder, file pattern)."""
    if args.smoke:
        from musictl.midi.corpus import bundled_corpus

        return {s: (bundled_corpus() / s, "*.mid") for s in [args.style, *args.others.split(",")]}
    shared = paths.require_datasets()
    unknown = [s for s in [args.style, *args.others.split(",")] if s not in SOURCES]
    if unknown:
        raise SystemExit(f"error: unknown style {', '.join(unknown)}; pass one of {', '.join(SOURCES)}")
    return {s: (shared / SOURCES[s][0], SOURCES[s][1]) for s in [args.style, *args.others.split(",")]}


def stage_corpus(folder: Path, styles: dict[str, tuple[Path, str]], per_style: int) -> Path:
    """The first ``per_style`` files (by name) of each style linked into ``folder/<style>/``."""
    for style, (source, pattern) in styles.items():
        files = sorted(source.glob(pattern))[:per_style]
        if not files:
            raise SystemExit(f"error: no {pattern} in {paths.show(str(source))}; check ../shared/datasets/README.md")
        (folder / style).mkdir(parents=True, exist_ok=True)
        for f in files:
            if not (folder / style / f.name).exists():
                (folder / style / f.name).symlink_to(f.resolve())
    return folder


def pipeline(run: Run) -> dict[str, Path]:
    """Every step through the CLI (each skipped when its artifact exists); the MIDI file of each piece."""
    ws, style, args = run.work, run.style, run.args
    extra = lambda step: SMOKE_FLAGS.get(step, []) if args.smoke else []  # noqa: E731
    corpus = stage_corpus(ws / "corpus", sources(args), args.per_style)
    run.step("tokenize", ws / "tokens" / "manifest.json", "tokenize", str(corpus), "-o", str(ws / "tokens"),
             "--split", SPLIT, "--seed", str(SEED), "--workers", "1")
    run.step("pretrain-bert", ws / "bert" / "manifest.json", "pretrain-bert", "-w", str(ws), "--objective", "mlm",
             "--size", "tiny", "--lr", "1e-3", "--max-steps", str(args.max_steps), "--seed", str(SEED), "--device", "cpu",
             *extra("pretrain-bert"))
    run.step("embed", ws / "embeddings" / "manifest.json", "embed", "-w", str(ws))
    run.step("adjacency", ws / "graph" / style / "manifest.json", "adjacency", "-w", str(ws), "--style", style)
    run.step("train-gcn", ws / "gcn" / style / "manifest.json", "train-gcn", "-w", str(ws), "--style", style,
             "--seed", str(SEED), *extra("train-gcn"))
    run.step("adapt", ws / "adapted" / style / "manifest.json", "adapt", "-w", str(ws), "--style", style,
             "--seed", str(SEED), "--device", "cpu", *extra("adapt"))
    pieces = ws / "pieces"
    pieces.mkdir(exist_ok=True)
    files = {"real": real_piece(run, pieces / "real.mid")}
    files["walk"] = pieces / "walk.mid"
    run.step("generate walk", files["walk"], "generate-rwr", "-w", str(ws), "--style", style, "-n", str(args.bars),
             "--seed", str(SEED), "-o", str(files["walk"]))
    files["transformer"] = pieces / "transformer.mid"
    run.step("generate transformer", files["transformer"], "generate-rwr", "-w", str(ws), "--style", style,
             "--notes-by", "transformer", "-n", str(args.bars), "--seed", str(SEED), "-o", str(files["transformer"]))
    files["ngram"] = ngram_piece(run, pieces / "ngram.mid")
    return files


def real_piece(run: Run, out: Path) -> Path:
    """The first ``--bars`` bars of the style's first test piece (by file name) that has that many, as MIDI."""
    from musictl import constants as C
    from musictl.artifacts import atomic_write_bytes
    from musictl.midi.decode import tokens_to_midi_bytes
    from musictl.midi.tokens import TokenCorpus

    corpus = TokenCorpus.open(run.work / "tokens")
    bars = run.args.bars
    for piece in sorted(corpus.select(style=run.style, split="test"), key=lambda p: Path(p.path).name):
        tokens = corpus.piece_tokens(piece)
        bar = tokens[:, C.BAR].astype(np.int64) - C.N_SPECIAL
        if len(bar) and bar.max() >= bars - 1 and np.all(np.diff(bar) >= 0):
            if not out.exists():
                atomic_write_bytes(out, tokens_to_midi_bytes(tokens[bar < bars], corpus.config))
            run.data["real_piece"] = paths.show(str(Path(piece.path).resolve()), run.work)
            return out
    raise SystemExit(f"error: no test piece of {run.style} has {bars} bars; pass a smaller --bars or a larger --per-style")


def ngram_piece(run: Run, out: Path) -> Path:
    """The interpolated n-gram's piece (seed 0) by the library path benchmarks/transfer.py takes (walk_sources): the
    chain on the style's transition graph and tables, pitch and duration from n-grams counted on its training
    pieces, weights fitted on its validation pieces, the other styles' training pieces pooled. Its CPU seconds:
    this process's, loading the style's tables included."""
    from musictl.artifacts import atomic_write_bytes
    from musictl.transfer.baselines import count_generators
    from musictl.transfer.generator import StyleGenerator
    from musictl.transfer.settings import WalkSettings

    if out.exists():
        return out
    ws, style = run.work, run.style
    started, cpu = time.perf_counter(), time.process_time()
    ngram = count_generators(StyleGenerator.load(ws, style, ws / "tokens"), ("interpolated n-gram",))["interpolated n-gram"]
    tokens = ngram.generate(settings=WalkSettings(bars=run.args.bars, seed=SEED))
    atomic_write_bytes(out, ngram.midi(tokens))
    run.results.put({"step": "n-gram"}, {
        "command": f"in this process: musictl.transfer.baselines.count_generators on {style}'s training pieces "
                   f"(in the walk's key; weights on its validation pieces), {run.args.bars} bars, seed {SEED}",
        "wall_seconds": round(time.perf_counter() - started, 1), "cpu_seconds": round(time.process_time() - cpu, 1)})
    return out


# ----- what the pieces show ------------------------------------------------------------------------
def read_piece(path: Path, config) -> np.ndarray:
    """A MIDI file as token rows, read as any MIDI file is (what the user gets is the file)."""
    from musictl.midi.encode import encode_file

    return encode_file(path, config).tokens


def mean_leap(tokens: np.ndarray, config) -> float | None:
    """Mean absolute interval in semitones between consecutive onsets of the top line (the highest pitched note
    starting at each onset, over all parts: the skyline melody). None with fewer than two onsets."""
    from musictl import constants as C
    from musictl.midi.decode import onsets

    values = tokens.astype(np.int64) - C.N_SPECIAL
    values = values[values[:, C.INSTRUMENT] != C.DRUM_PROGRAM]
    if len(values) < 2:
        return None
    onset = onsets(values, config)[0]
    order = np.lexsort((values[:, C.PITCH], onset))
    onset, pitch = onset[order], values[order, C.PITCH]
    top = pitch[np.r_[onset[1:] != onset[:-1], True]]  # the last (highest) pitch of each onset
    return round(float(np.abs(np.diff(top)).mean()), 2) if len(top) > 1 else None


def measure(run: Run, files: dict[str, Path], images: Path, md_dir: Path) -> None:
    """Each piece read back from its MIDI file: notes, key consistency, mean leap; its piano roll (same pitch range
    and bars for all four) at ``images/three-ways-<method>.png``; the style's test pieces' key consistency beside."""
    from musictl import constants as C
    from musictl.midi.tokens import TokenCorpus
    from musictl.transfer.fidelity import key_consistency, mean_key_consistency

    corpus = TokenCorpus.open(run.work / "tokens")
    pieces = {m: read_piece(files[m], corpus.config) for m in METHODS}
    measured = {}
    for method, tokens in pieces.items():
        pitched = tokens[(tokens[:, C.INSTRUMENT].astype(np.int64) - C.N_SPECIAL) != C.DRUM_PROGRAM]
        k = key_consistency(tokens, corpus.config)
        measured[method] = {"midi": run.shown(str(files[method])), "notes": int(len(tokens)), "pitched_notes": int(len(pitched)),
                            "parts": int(len(np.unique(pitched[:, C.INSTRUMENT]))),
                            "key_consistency": None if k is None else round(k, 4),
                            "mean_leap": mean_leap(tokens, corpus.config),
                            "bars": int(tokens[:, C.BAR].astype(np.int64).max() - C.N_SPECIAL + 1) if len(tokens) else 0}
    rolls = draw(pieces, measured, corpus.config, images, run)
    for method, value in measured.items():
        run.results.put({"method": method}, {**value, "image": os.path.relpath(rolls[method], md_dir)})
    test = [corpus.piece_tokens(p) for p in corpus.select(style=run.style, split="test")]
    first = [t[(t[:, C.BAR].astype(np.int64) - C.N_SPECIAL) < run.args.bars] for t in test]
    run.data["style_test_pieces"] = {"pieces": len(test), "key_consistency": mean_key_consistency(test, corpus.config),
                                     "key_consistency_first_bars": mean_key_consistency(first, corpus.config),
                                     "mean_leap": round(float(np.mean([x for x in (mean_leap(t, corpus.config)
                                                                                   for t in test) if x is not None])), 2)}
    run.data["models"] = models(run.work, run.style)
    run.data["pieces_per_style"] = {s: len(corpus.select(style=s)) for s in corpus.styles}
    run.data["splits"] = {s: {sp: len(corpus.select(style=s, split=sp)) for sp in ("train", "valid", "test")}
                          for s in corpus.styles}
    run.results.save()


def models(ws: Path, style: str) -> dict:
    """What the two trained models say of themselves: the pre-trained MidiBert's best validation masked accuracy per
    field beside its strongest count baseline (its metrics.json), the adapter's validation next-note NLL (nats per
    note) before and after adaptation, with its epochs."""
    import json

    from musictl.bert.pretrain import best_baseline

    bert = json.loads((ws / "bert" / "metrics.json").read_text())
    fields = (bert.get("best_valid") or bert.get("final_valid") or {}).get("fields", {})
    adapted = json.loads((ws / "adapted" / style / "metrics.json").read_text())
    return {"bert": {"steps": bert.get("steps"), "train_pieces": bert.get("train_pieces"),
                     "fields": {f: {"model": fields[f]["accuracy"], "baseline": best_baseline(fields[f])[0],
                                    "baseline_accuracy": best_baseline(fields[f])[1]}
                                for f in ("pitch", "position", "duration") if f in fields and "unigram" in fields[f]}},
            "adapted": {"mode": adapted.get("mode"), "train_pieces": len(adapted.get("train_pieces", [])),
                        "best_epoch": adapted.get("best_epoch"), "epochs_run": adapted.get("epochs_run"),
                        "nll": {f: {"before": adapted["before"]["fields"][f], "after": adapted["after"]["fields"][f]}
                                for f in ("pitch", "duration")}}}


def draw(pieces: dict[str, np.ndarray], measured: dict[str, dict], config, images: Path, run: Run) -> dict[str, Path]:
    """Each piece's piano roll (:mod:`musictl.transfer.plot`), every one on the same pitch range, each across its
    own bars (a piece of another metre keeps its bars the same width as the others'), its measures in the title."""
    import io

    import matplotlib.pyplot as plt
    import pretty_midi

    from musictl.artifacts import atomic_write_bytes
    from musictl.transfer.plot import piano_roll, piano_roll_figure

    rolls = {m: piano_roll(t, config) for m, t in pieces.items()}
    pitches = np.concatenate([p.pitch for r in rolls.values() for p in r.parts])
    low, high = int(pitches.min()) - 2, int(pitches.max()) + 2
    out = {}
    for method, roll in rolls.items():
        m = measured[method]
        fig = piano_roll_figure(roll, f"{METHODS[method][0]} ({run.style}): key consistency "
                                      f"{m['key_consistency'] or 0:.2f}, mean leap {m['mean_leap'] or 0:.1f}, {m['notes']} notes")
        ax = fig.axes[0]
        ax.set_ylim(low, high)
        octaves = [c for c in range(0, 128, 12) if low <= c <= high]
        ax.set_yticks(octaves, [pretty_midi.note_number_to_name(c) for c in octaves])
        fig.set_size_inches(10, 3.2)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90)
        plt.close(fig)
        out[method] = images / f"three-ways-{method}.png"
        atomic_write_bytes(out[method], buffer.getvalue())
    return out


# ----- the page ------------------------------------------------------------------------------------
def summarise(data: dict) -> dict:
    """Per piece: its measures and the CPU seconds of the steps its way needs (None where a step kept no record)."""
    steps = {c["settings"]["step"]: c for c in cells.select(data["cells"]) if "step" in c["settings"]}
    rows = {}
    for method in METHODS:
        cell = cells.select(data["cells"], method=method)
        if not cell:
            continue
        cpu = [steps.get(s, {}).get("cpu_seconds") for s in CHAINS[method]]
        rows[method] = {**{k: cell[0][k] for k in ("notes", "parts", "key_consistency", "mean_leap", "image")},
                        "chain": CHAINS[method], "cpu_seconds": None if None in cpu else round(sum(cpu), 1)}
    return rows


def render(data: dict) -> str:
    config, table = data["config"], data["table"]
    style, bars = config["style"], config["bars"]
    cell = lambda v, d=2: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    splits = ", ".join(f"{s} {v['train']}/{v['valid']}/{v['test']}" for s, v in data.get("splits", {}).items())
    lines = [f"# Three ways to a new style: {style}, one seed", "",
             *tables.planned("none. One style, one seed, one piece per way: an illustration of what each way writes, "
                             "not a measurement of which is better.",
                             "none (the generation benchmark compares the ways over 40+ pieces on three held-out "
                             "styles, with intervals; see transfer.md and transfer_fewshot.md)"),
             f"Command: `{data['command']}`", "", f"Machine: {data['machine']}, OMP_NUM_THREADS={config['threads']}.", "",
             f"Corpus: {style} (the target) and {', '.join(config['others'])}, at most {config['per_style']} files a style "
             f"(the first by name), split {config['split']} with seed {config['seed']} (train/valid/test pieces: "
             f"{splits}). The tiny MidiBert (MLM, lr 1e-3, "
             f"{config['max_steps']} steps) is pre-trained on every style's training pieces, the target's included; "
             "the target's validation and test pieces are never trained on (validation chooses the walk's mix, the "
             "n-gram's weights and the adapter's early stop).", "",
             f"The real piece: the first {bars} bars of `{data.get('real_piece', '-')}`. Every piece is read back from "
             "its MIDI file; the piano rolls share one pitch range, each spans its own bars.", "",
             "**Key consistency**: the share of pitched note time inside the best-fitting diatonic scale "
             "(musictl.transfer.fidelity.key_consistency; about 0.6 for random pitches). **Mean leap**: the mean "
             "absolute interval, in semitones, between the top notes of consecutive onsets (the skyline melody): a large one "
             "means the top line jumps between registers, as when a part that holds melody and chords (one program, "
             "**parts** counts the programs) sounds only its chords at some onsets. "
             "**CPU s**: user + system seconds of the steps that way needs, summed (the step table below).", ""]
    ref = data.get("style_test_pieces")
    rows = [[f"{METHODS[m][0]}", str(r["notes"]), str(r["parts"]), cell(r["key_consistency"]), cell(r["mean_leap"], 1),
             cell(r["cpu_seconds"], 0), " + ".join(r["chain"])] for m, r in table.items()]
    if ref:
        rows.append([f"the style's {ref['pieces']} test pieces (mean; first {bars} bars)", "-", "-",
                     f"{cell(ref['key_consistency'])} ({cell(ref['key_consistency_first_bars'])})",
                     cell(ref["mean_leap"], 1), "-", "-"])
    lines += tables.table(["piece", "notes", "parts", "key consistency", "mean leap", "CPU s", "steps"], rows,
                          align="lrrrrrl")
    lines += ["", "The transformer's chain holds embed and train-gcn because `generate-rwr` loads the style's GCN "
              "even when the transformer chooses every note (`--transformer-weight 1`); its notes do not use it. "
              "The n-gram has no CLI command: it is made in the benchmark's process by the library path "
              "benchmarks/transfer.py takes (its CPU seconds include loading the style's tables, not starting Python: "
              "each CLI step's include starting Python and its imports, a few seconds). The walk and the transformer "
              "work in the common key (`adjacency`'s default `--key common`: the pieces counted transposed to C major / "
              "A minor, each walk placed back in a key of the style's), and so does the n-gram (counted on the same "
              "transposed pieces and placed the same way), so all three see the pieces as the walk does.", ""]
    learned = data.get("models")
    if learned:
        bert, adapted = learned["bert"], learned["adapted"]
        lines += ["What the two trained models learned (validation pieces): the pre-trained MidiBert's masked accuracy "
                  f"after {bert['steps']} steps beside its strongest count baseline, "
                  + ", ".join(f"{f} {v['model']:.3f} vs {v['baseline_accuracy']:.3f} ({v['baseline']})"
                              for f, v in bert["fields"].items())
                  + f"; the {adapted['mode']} adapter on the style's {adapted['train_pieces']} training pieces "
                  f"(best epoch {adapted['best_epoch']} of {adapted['epochs_run']}"
                  + (": the last, still improving when it stopped" if adapted["best_epoch"] == adapted["epochs_run"] else "")
                  + "), next-note NLL in nats per note "
                  + ", ".join(f"{f} {v['before']:.2f} before, {v['after']:.2f} after" for f, v in adapted["nll"].items())
                  + ".", ""]
    for method, r in table.items():
        lines += [f"## {METHODS[method][0]}", "", METHODS[method][1] + ".", "", f"![{method}]({r['image']})", ""]
    steps = [c for c in cells.select(data["cells"]) if "step" in c["settings"]]
    lines += ["## Steps", ""]
    lines += tables.table(["step", "wall s", "CPU s", "command"],
                          [[c["settings"]["step"], cell(c["wall_seconds"], 1), cell(c["cpu_seconds"], 1),
                            f"`{c['command']}`"] for c in sorted(steps, key=lambda c: step_order(c["settings"]["step"]))],
                          align="lrrl")
    lines += ["", "WORK is the run's work folder, ../shared/datasets the shared corpora. A step whose artifact was "
              "already there is skipped on a rerun, so the seconds are those of the run that made it.", ""]
    return "\n".join(lines)


def step_order(step: str) -> int:
    order = ["tokenize", "pretrain-bert", "embed", "adjacency", "train-gcn", "adapt", "generate walk",
             "generate transformer", "n-gram"]
    return order.index(step) if step in order else len(order)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--style", default=None, help="the target style [default: nottingham-jigs; smoke: fiddle-tunes]")
    parser.add_argument("--others", default=None, help="pre-training styles, comma-separated "
                                                       f"[default: {DEFAULT_OTHERS}; smoke: {SMOKE_OTHERS}]")
    parser.add_argument("--per-style", type=int, default=60, help="at most N files a style (the first by name)")
    parser.add_argument("--max-steps", type=int, default=3000, help="pretrain-bert optimizer steps")
    parser.add_argument("--bars", type=int, default=16, help="bars of each piece")
    parser.add_argument("--work", default=None, help="work folder [default: $MUSICTL_BENCH_WORK or ~/.cache/musictl-bench,"
                                                     " /three-ways/<style>-per<N>-steps<S>]")
    parser.add_argument("--write", action="store_true", help="write docs/img/three-ways-*.png and "
                                                             "benchmarks/results/three_ways.{md,json} (else: the work folder)")
    parser.add_argument("--fresh", action="store_true", help="forget the run's JSON (artifacts are kept)")
    parser.add_argument("--render", action="store_true", help="only rebuild benchmarks/results/three_ways.md from its JSON")
    parser.add_argument("--smoke", action="store_true", help="the bundled corpus, 2 styles, 20 steps, a temporary folder")
    args = parser.parse_args(argv)
    if args.per_style < 3 or args.max_steps < 1 or args.bars < 1:
        raise SystemExit("error: --per-style needs at least 3 (a piece per split), --max-steps and --bars at least 1")
    if args.smoke and args.write:
        raise SystemExit("error: --smoke writes into a temporary folder only; drop --write")
    if args.render:
        docs.replace_block(DOC, DOC_BLOCK, SCRIPT, doc_table(cells.republish(paths.RESULTS / "three_ways", summarise, render)))
        return
    if args.smoke:
        args.work = args.work or tempfile.mkdtemp(prefix="three-ways-smoke-")
        args.per_style, args.max_steps = SMOKE_ARGS["per_style"], SMOKE_ARGS["max_steps"]
    args.style = args.style or (SMOKE_STYLE if args.smoke else "nottingham-jigs")
    args.others = args.others if args.others is not None else (SMOKE_OTHERS if args.smoke else DEFAULT_OTHERS)
    if args.style in args.others.split(","):
        raise SystemExit(f"error: {args.style} is the target style; leave it out of --others")
    args.work = args.work or str(paths.work_folder("three-ways") / f"{args.style}-per{args.per_style}-steps{args.max_steps}")
    out = paths.RESULTS if args.write else Path(args.work)
    images = IMAGES if args.write else Path(args.work) / "img"
    started = time.perf_counter()
    run = Run(args)
    files = pipeline(run)
    measure(run, files, images, out)
    print(f"finished in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(cells.publish(run.data, summarise, render, out / "three_ways.json", out / "three_ways.md"))
    if args.write:
        docs.replace_block(DOC, DOC_BLOCK, SCRIPT, doc_table(run.data))


def doc_table(data: dict) -> str:
    """docs/transfer.md's block: each piece's key consistency and mean leap, as the results page gives them."""
    table, bars = data["table"], data["config"]["bars"]
    cell = lambda v, d=2: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    rows = [[METHODS[m][0], cell(r["key_consistency"]), cell(r["mean_leap"], 1)] for m, r in table.items()]
    ref = data.get("style_test_pieces")
    if ref:
        rows.append([f"the style's {ref['pieces']} test pieces (mean; first {bars} bars)", cell(ref["key_consistency"]),
                     cell(ref["mean_leap"], 1)])
    return "\n".join([f"Written by `{data['command']}`:", "",
                      *tables.table(["piece", "key consistency", "mean leap of the top line (semitones)"], rows, "lrr")])


if __name__ == "__main__":
    main()
