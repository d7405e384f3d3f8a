"""``musictl demo``: the whole cross-style chain on the bundled corpus, small enough for a laptop CPU.

The library half: it runs the six stages, reports each through ``on_progress`` and returns a
:class:`DemoResult`; the command renders it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from musictl import artifacts
from musictl.errors import ArtifactError, UsageError
from musictl.progress import Progress
from musictl.transfer.results import GcnResult, GraphResult, Result
from musictl.transfer.settings import DemoSettings, GcnSettings, WalkSettings

STAGES = ("tokenize", "pretrain-bert", "embed", "adjacency", "train-gcn", "generate-rwr")
FIDELITY_PIECES = 8


@dataclass
class DemoResult(Result):
    root: Path
    style: str
    steps: int
    bert_accuracy: float
    graph: GraphResult
    gcn: GcnResult
    fidelity: dict
    midi_path: Path
    png_path: Path
    notes: int
    bars: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = super().to_dict()
        data["graph"], data["gcn"] = self.graph.to_dict(), self.gcn.to_dict()
        return data


def check_workspace(root: Path, overwrite: bool) -> None:
    """The demo replaces its own artifacts, never a user's: a workspace made by other commands is
    kept unless ``overwrite``."""
    tokens = artifacts.artifact_dir(root, artifacts.TOKENS)
    if (tokens / artifacts.MANIFEST).is_file() and not overwrite and not artifacts.read_manifest(tokens).parameters.get("demo"):
        raise ArtifactError(f"{root} holds artifacts not made by the demo; run it with --workdir DIR (e.g. "
                            "--workdir musictl-demo), or pass --overwrite to replace them")


class _Stages:
    """Runs the stages in order, timing each and reporting it."""

    def __init__(self, on_progress: Progress | None):
        self.on_progress = on_progress
        self.timings: dict[str, float] = {}

    def run(self, name: str, what: str, work: Callable[[Progress | None], object]):
        """``work(on_progress)``: the stage, reporting its own steps as rows ``{"status": "progress", ...}``."""
        done = STAGES.index(name)
        if self.on_progress:
            self.on_progress(done, len(STAGES), {"stage": name, "status": "start", "what": what})

        def inner(step: int, total: int | None, row=None) -> None:
            self.on_progress(done, len(STAGES), {"stage": name, "status": "progress", "done": step, "total": total})

        t0 = time.perf_counter()
        value = work(inner if self.on_progress else None)
        self.timings[name] = round(time.perf_counter() - t0, 1)
        if self.on_progress:
            self.on_progress(done + 1, len(STAGES), {"stage": name, "status": "done", "seconds": self.timings[name]})
        return value


def _tokenize(tokens: Path, style: str, seed: int) -> None:
    from musictl.midi.corpus import assign_splits, bundled_corpus, find_midi_files
    from musictl.midi.pipeline import tokenize_corpus
    from musictl.midi.vocab import TokenizerConfig

    files = find_midi_files([bundled_corpus()])
    styles = sorted({f.style for f in files})
    if style not in styles:
        raise UsageError(f"--style {style!r} is not in the bundled corpus; known styles: {', '.join(styles)}")
    tokenize_corpus(files, assign_splits(files, (0.8, 0.1, 0.1), seed), tokens, TokenizerConfig(), os.cpu_count() or 1,
                    {"inputs": [str(bundled_corpus())], "seed": seed, "demo": True}, overwrite=True)


def run_demo(workdir, settings: DemoSettings, out: Path, overwrite: bool = False,
             on_progress: Progress | None = None) -> DemoResult:
    """tokenize -> pretrain-bert -> embed -> adjacency -> train-gcn -> generate-rwr, with tiny settings."""
    import torch

    from musictl.bert.pretrain import pretrain
    from musictl.bert.settings import PretrainSettings
    from musictl.transfer.fidelity import style_fidelity
    from musictl.transfer.generator import StyleGenerator
    from musictl.transfer.pipeline import make_embeddings, make_gcn, make_graph
    from musictl.transfer.plot import piano_roll_png

    torch.manual_seed(settings.seed)  # own seeding: the global RNG of the chain's library calls (the trainers seed their own)
    root = artifacts.workspace_root(workdir)
    style, steps, seed = artifacts.safe_name(settings.style, "style"), settings.steps, settings.seed
    check_workspace(root, overwrite)
    def where(kind: str, name: str | None = None) -> Path:
        return artifacts.artifact_dir(root, kind, name)

    tokens, started, stages = where(artifacts.TOKENS), time.perf_counter(), _Stages(on_progress)
    stages.run("tokenize", "tokenize the bundled corpus", lambda _: _tokenize(tokens, style, seed))
    bert_settings = PretrainSettings(size="tiny", max_len=256, batch_size=8, max_steps=steps, eval_every=max(1, steps // 4),
                                     seed=seed, device="cpu")
    bert = stages.run("pretrain-bert", f"pre-train a tiny MidiBert ({steps} steps)", lambda report: pretrain(
        tokens, where(artifacts.BERT), bert_settings, overwrite=True, on_progress=report))
    stages.run("embed", "embed its token and positional tables",
               lambda report: make_embeddings(where(artifacts.BERT), tokens, where(artifacts.EMBEDDINGS), overwrite=True,
                                              on_progress=report))
    graph = stages.run("adjacency", f"build the musical graph of '{style}'",
                       lambda _: make_graph(tokens, style, where(artifacts.GRAPH, style), overwrite=True))
    gcn = stages.run("train-gcn", "train the GCN link predictor and its baselines", lambda report: make_gcn(
        style, where(artifacts.GCN, style), GcnSettings(seed=seed, epochs=settings.gcn_epochs), tokens,
        where(artifacts.GRAPH, style), where(artifacts.EMBEDDINGS), overwrite=True, on_progress=report))

    def generate(_):
        generator = StyleGenerator.load(workdir, style, tokens)
        walk = WalkSettings(bars=settings.bars, seed=seed)
        pieces = generator.generate_many(FIDELITY_PIECES, walk)
        out.mkdir(parents=True, exist_ok=True)
        artifacts.atomic_write_bytes(out / "demo.mid", generator.midi(pieces[0]))
        piano_roll_png(pieces[0], generator.config, out / "demo.png", f"musictl demo: {settings.bars} bars in the style '{style}'")
        return pieces[0], style_fidelity(pieces, generator.corpus, style)

    notes, fidelity = stages.run("generate-rwr", f"generate {settings.bars} bars by random walk with restart", generate)
    return DemoResult(root=root, style=style, steps=steps, bert_accuracy=float(bert.final_valid["accuracy"]), graph=graph,
                      gcn=gcn, fidelity=fidelity, midi_path=out / "demo.mid", png_path=out / "demo.png", notes=len(notes),
                      bars=settings.bars, seconds=round(time.perf_counter() - started, 1), timings=stages.timings)
