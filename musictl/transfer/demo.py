"""``musictl demo``: the whole cross-style chain on the bundled corpus, small enough for a laptop CPU."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from musictl import artifacts
from musictl.midi.vocab import TokenizerConfig


def piano_roll_png(tokens: np.ndarray, config: TokenizerConfig, path: Path, title: str) -> None:
    """A piano roll of token rows (time in beats against pitch), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from musictl import constants as C
    from musictl.midi.decode import onsets

    values = tokens.astype(np.int64) - C.N_SPECIAL
    start, _, _ = onsets(values, config)
    beats = start / config.positions_per_beat
    length = config.duration_starts[values[:, C.DURATION]] / config.positions_per_beat
    fig, ax = plt.subplots(figsize=(12, 4), dpi=100)
    ax.barh(values[:, C.PITCH], length, left=beats, height=0.8, color="tab:blue", edgecolor="black", linewidth=0.3)
    ax.set_xlabel("beats")
    ax.set_ylabel("MIDI pitch")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def check_workspace(root: Path, overwrite: bool) -> None:
    """The demo replaces its own artifacts, never a user's: a workspace made by other commands is
    kept unless ``overwrite``."""
    from musictl.errors import ArtifactError

    manifest = root / "tokens" / artifacts.MANIFEST
    if manifest.is_file() and not overwrite and not artifacts.read_manifest(root / "tokens").parameters.get("demo"):
        raise ArtifactError(f"{root} holds artifacts not made by the demo; run it with --workdir DIR (e.g. "
                            "--workdir musictl-demo), or pass --overwrite to replace them")


def run_demo(workdir, style: str, bars: int, steps: int, out: Path, seed: int, overwrite: bool, gcn_epochs: int) -> dict:
    import torch
    from rich.console import Console
    from rich.table import Table

    from musictl.bert.pretrain import PretrainSettings, pretrain
    from musictl.console import info
    from musictl.midi.corpus import assign_splits, bundled_corpus, find_midi_files
    from musictl.midi.decode import tokens_to_midi_bytes
    from musictl.midi.pipeline import tokenize_corpus
    from musictl.transfer.fidelity import style_fidelity
    from musictl.transfer.gcn import GcnSettings
    from musictl.transfer.pipeline import generate, load_walker, make_embeddings, make_gcn, make_graph
    from musictl.transfer.walk import WalkSettings

    torch.manual_seed(seed)
    root = artifacts.workspace_root(workdir)
    check_workspace(root, overwrite)
    tokens = root / "tokens"
    started = time.perf_counter()
    timings = {}

    def stage(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 1)
        info(f"[green]done[/] {name} ({timings[name]} s)")

    t0 = time.perf_counter()
    info("1/6 tokenize the bundled corpus")
    files = find_midi_files([bundled_corpus()])
    styles = sorted({f.style for f in files})
    if style not in styles:
        from musictl.errors import UsageError

        raise UsageError(f"--style {style!r} is not in the bundled corpus; known styles: {', '.join(styles)}")
    tokenize_corpus(files, assign_splits(files, (0.8, 0.1, 0.1), seed), tokens, TokenizerConfig(), os.cpu_count() or 1,
                    {"inputs": [str(bundled_corpus())], "seed": seed, "demo": True}, overwrite=True)
    stage("tokenize", t0)

    t0 = time.perf_counter()
    info(f"2/6 pre-train a tiny MidiBert ({steps} steps, adversarial masking)")
    bert = pretrain(tokens, root / "bert", PretrainSettings(size="tiny", max_len=256, batch_size=8, max_steps=steps,
                                                            eval_every=max(1, steps // 4), seed=seed), overwrite=True)
    stage("pretrain-bert", t0)

    t0 = time.perf_counter()
    info("3/6 embed its token and positional tables")
    make_embeddings(str(root / "bert"), tokens, root / "embeddings", overwrite=True)
    stage("embed", t0)

    t0 = time.perf_counter()
    info(f"4/6 build the co-occurrence graph of '{style}'")
    graph = make_graph(tokens, style, root / "graph" / style, overwrite=True)
    stage("adjacency", t0)

    t0 = time.perf_counter()
    info("5/6 train the GCN link predictor")
    gcn = make_gcn(workdir, style, root / "gcn" / style, GcnSettings(seed=seed, epochs=gcn_epochs), tokens, root / "graph" / style,
                   root / "embeddings", overwrite=True)
    stage("train-gcn", t0)

    t0 = time.perf_counter()
    info(f"6/6 generate {bars} bars by random walk with restart")
    walker_and_corpus = load_walker(workdir, style, tokens)
    notes = generate(workdir, style, WalkSettings(bars=bars, seed=seed), tokens, walker_and_corpus=walker_and_corpus)
    config = walker_and_corpus[1].config
    out.mkdir(parents=True, exist_ok=True)
    midi_path, png_path = out / "demo.mid", out / "demo.png"
    artifacts.atomic_write_bytes(midi_path, tokens_to_midi_bytes(notes, config))
    piano_roll_png(notes, config, png_path, f"musictl demo: {bars} bars in the style '{style}'")
    pieces = [generate(workdir, style, WalkSettings(bars=bars, seed=seed + i), tokens, walker_and_corpus=walker_and_corpus)
              for i in range(8)]
    fidelity = style_fidelity(pieces, walker_and_corpus[1], style)
    stage("generate-rwr", t0)

    table = Table(title=f"musictl demo ({time.perf_counter() - started:.0f} s)")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("MidiBert valid masked accuracy", f"{bert['final_valid']['accuracy']:.3f} (tiny, {steps} steps)")
    table.add_row(f"graph '{style}'", f"{graph['nodes']} nodes, {graph['edges']} edges")
    table.add_row("GCN link prediction (test)", f"ROC-AUC {gcn['test_auc']:.3f}, AP {gcn['test_ap']:.3f}")
    own, other = fidelity["divergence_own_style"], fidelity.get("divergence_other_styles_mean", {})
    for key in own:
        table.add_row(f"{key} divergence own / others", f"{own[key]:.3f} / {other.get(key, float('nan')):.3f}")
    table.add_row("novelty (4-grams not in the corpus)", f"{fidelity['novelty']:.2f}")
    table.add_row("generated", f"{midi_path} ({len(notes)} notes), {png_path}")
    table.add_row("artifacts", str(root))
    Console().print(table)
    return {"bert": bert, "graph": graph, "gcn": gcn, "fidelity": fidelity, "timings": timings}
