"""The cross-style chain as library calls that read and write workspace artifacts.

embed -> ``embeddings/``; adjacency -> ``graph/<style>/``; train-gcn -> ``gcn/<style>/``;
generate -> token rows (decoded to MIDI by the caller). The CLI and ``musictl demo`` call these.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from musictl import artifacts
from musictl import constants as C
from musictl.errors import ArtifactError, MusictlError
from musictl.midi.tokens import TokenCorpus
from musictl.transfer import adjacency as A
from musictl.transfer import embed as E
from musictl.transfer import gcn as G
from musictl.transfer.walk import RandomWalker, WalkSettings


# ----- embed ---------------------------------------------------------------------------------
def make_embeddings(model: str, tokens_path: Path, out: Path, mode: str = "static", style: str | None = None,
                    overwrite: bool = False) -> dict:
    from safetensors.torch import save_file

    from musictl.bert.pretrain import _quiet_transformers

    _quiet_transformers()
    corpus = TokenCorpus.open(tokens_path)
    model_path = Path(model)
    inputs = {"tokens": artifacts.input_ref(tokens_path, corpus.manifest)}
    if model_path.is_dir() and (model_path / artifacts.MANIFEST).is_file():
        inputs["model"] = artifacts.input_ref(model_path, artifacts.read_manifest(model_path))
    if mode not in ("static", "contextual"):
        raise MusictlError(f"--mode {mode!r}: choose static or contextual")
    if E.is_midibert_dir(model_path):
        if mode == "static":
            table, positions, vocab = E.static_midibert(model_path)
            counts = None
        else:
            if not style:
                raise MusictlError(f"--mode contextual needs --style (known styles: {', '.join(corpus.styles)})")
            table, counts, positions, vocab = E.contextual_midibert(model_path, corpus, style)
        if vocab.vocab_id != corpus.config.vocab_id:
            raise ArtifactError(f"{model} was trained on vocabulary {vocab.vocab_id}, but {tokens_path} uses "
                                f"{corpus.config.vocab_id}; tokenize with the model's parameters or pre-train on these tokens")
        mapped = np.ones(corpus.config.n_graph_tokens, dtype=bool) if counts is None else counts.numpy() > 0
    else:
        if mode == "contextual":
            raise MusictlError("--mode contextual needs a MidiBert model (musictl pretrain-bert); other models: --mode static")
        if not model_path.exists() and "/" not in model:
            raise ArtifactError(f"no model at {model}; run: musictl pretrain-bert, or pass a Hugging Face model directory")
        table, positions, mapped = E.static_hf(model, corpus.config)
    with artifacts.staging(out, overwrite) as tmp:
        import torch

        save_file({"token": table.contiguous().float(), "position": positions.contiguous().float(),
                   "mapped": torch.from_numpy(np.asarray(mapped, dtype=np.uint8))}, str(tmp / E.FILE),
                  metadata={"vocab_id": corpus.config.vocab_id, "model": str(model), "mode": mode})
        metrics = {"graph_tokens": int(table.shape[0]), "dim": int(table.shape[1]), "mapped_tokens": int(np.sum(mapped)),
                   "positions": int(positions.shape[0])}
        artifacts.write_manifest(tmp, artifacts.Manifest(
            kind=E.KIND, parameters={"model": str(model), "mode": mode, "style": style, "vocab_id": corpus.config.vocab_id},
            inputs=inputs, metrics=metrics))
    return metrics


# ----- adjacency -----------------------------------------------------------------------------
def make_graph(tokens_path: Path, style: str, out: Path, window: int = 2, normalize: str = "none",
               export: str | None = None, overwrite: bool = False) -> dict:
    corpus = TokenCorpus.open(tokens_path)
    pieces = corpus.require_style(style)
    if window < 0:
        raise MusictlError("--window must be 0 or more notes")
    graph = A.build_graph(corpus, pieces, window=window, normalize=normalize)
    stats = {**graph.stats(), "pieces": len(pieces), "notes": int(sum(p.length for p in pieces))}
    with artifacts.staging(out, overwrite) as tmp:
        A.save_graph(graph, tmp)
        if export == "graphml":
            A.export_graphml(graph, corpus.config, tmp / "graph.graphml")
        elif export:
            raise MusictlError(f"--export {export!r}: only graphml is supported")
        artifacts.write_manifest(tmp, artifacts.Manifest(
            kind=A.KIND, parameters={"style": style, "window": window, "normalize": normalize,
                                     "vocab_id": corpus.config.vocab_id},
            inputs={"tokens": artifacts.input_ref(tokens_path, corpus.manifest)}, metrics=stats))
    return stats


# ----- train-gcn -----------------------------------------------------------------------------
def node_features(table: np.ndarray, positions: np.ndarray, nodes: np.ndarray, corpus: TokenCorpus, style: str,
                  features: str) -> np.ndarray:
    """``token``: each node's token embedding. ``token-pos``: concatenated with the positional
    embedding at the mean sequence index where the token occurs in the style's pieces."""
    token = table[nodes]
    if features == "token":
        return token
    if features != "token-pos":
        raise MusictlError(f"--features {features!r}: choose token or token-pos")
    config = corpus.config
    total = np.zeros(config.n_graph_tokens)
    count = np.zeros(config.n_graph_tokens)
    for piece in corpus.select(style=style):
        ids = A.graph_ids(corpus.piece_tokens(piece), config)
        index = np.arange(len(ids)) % len(positions)
        np.add.at(total, ids.ravel(), np.repeat(index, C.N_FIELDS))
        np.add.at(count, ids.ravel(), 1)
    mean_index = np.rint(total[nodes] / np.maximum(count[nodes], 1)).astype(np.int64)
    return np.concatenate([token, positions[np.minimum(mean_index, len(positions) - 1)]], axis=1)


def make_gcn(workdir, style: str, out: Path, settings: G.GcnSettings, tokens_path: Path, graph_dir: Path,
             embeddings_dir: Path, device: str = "cpu", overwrite: bool = False, on_epoch=None) -> dict:
    import torch
    from safetensors.torch import save_file

    corpus = TokenCorpus.open(tokens_path)
    corpus.require_style(style)
    graph_manifest = artifacts.require(graph_dir, A.KIND, style)
    emb_manifest = artifacts.require(embeddings_dir, E.KIND)
    for name, manifest in (("graph", graph_manifest), ("embeddings", emb_manifest)):
        if manifest.parameters.get("vocab_id") != corpus.config.vocab_id:
            raise ArtifactError(f"the {name} artifact was made from other tokens (vocabulary "
                                f"{manifest.parameters.get('vocab_id')}); remake it with --overwrite")
    artifacts.check_input(graph_dir, graph_manifest, "tokens", corpus.manifest)
    graph = A.load_graph(graph_dir)
    tables = E.load_embeddings(embeddings_dir)
    features = node_features(tables["token"].numpy(), tables["position"].numpy(), graph.nodes, corpus, style,
                             settings.features)
    if settings.graph == "cooccurrence":
        adjacency = graph.adjacency
    elif settings.graph == "similarity":
        adjacency = G.similarity_graph(tables["token"].numpy()[graph.nodes], settings.similarity_k)
    else:
        raise MusictlError(f"--graph {settings.graph!r}: choose cooccurrence or similarity")
    result = G.train_link_prediction(features, adjacency, settings, device=device, on_epoch=on_epoch)
    with artifacts.staging(out, overwrite) as tmp:
        save_file({k: v.contiguous() for k, v in result["state"].items()}, str(tmp / "model.safetensors"))
        artifacts.atomic_write_json(tmp / "config.json", {**asdict(settings), "in_dim": result["metrics"]["in_dim"]})
        save_file({"embeddings": result["embeddings"].contiguous(), "nodes": torch.from_numpy(graph.nodes)},
                  str(tmp / "node_embeddings.safetensors"))
        artifacts.atomic_write_json(tmp / "metrics.json", result["metrics"])
        artifacts.write_jsonl(tmp / "history.jsonl", result["history"])
        metrics = {k: result["metrics"][k] for k in ("test_auc", "test_ap", "val_auc", "best_epoch", "nodes")}
        artifacts.write_manifest(tmp, artifacts.Manifest(
            kind=G.KIND, parameters={**asdict(settings), "style": style, "vocab_id": corpus.config.vocab_id},
            inputs={"graph": artifacts.input_ref(graph_dir, graph_manifest),
                    "embeddings": artifacts.input_ref(embeddings_dir, emb_manifest),
                    "tokens": artifacts.input_ref(tokens_path, corpus.manifest)},
            metrics=metrics))
    return result["metrics"]


# ----- generate-rwr --------------------------------------------------------------------------
def latest_gcn_style(workdir) -> str:
    """The style of the most recently trained GCN in the workspace."""
    root = artifacts.artifact_dir(workdir, G.KIND)
    found = []
    for manifest_file in root.glob(f"*/{artifacts.MANIFEST}"):
        manifest = artifacts.read_manifest(manifest_file.parent)
        found.append((manifest.created, manifest_file.parent.name))
    if not found:
        raise ArtifactError(f"no trained GCN in {root}; run: musictl train-gcn --style STYLE")
    return max(found)[1]


def load_walker(workdir, style: str, tokens_path: Path) -> tuple[RandomWalker, TokenCorpus]:
    from safetensors.numpy import load_file

    corpus = TokenCorpus.open(tokens_path)
    corpus.require_style(style)
    gcn_dir = artifacts.artifact_dir(workdir, G.KIND, style)
    gcn_manifest = artifacts.require(gcn_dir, G.KIND, style)
    graph_dir = artifacts.input_path(gcn_dir, gcn_manifest, "graph")
    graph_manifest = artifacts.require(graph_dir, A.KIND, style)
    artifacts.check_input(gcn_dir, gcn_manifest, "graph", graph_manifest)
    if gcn_manifest.parameters.get("vocab_id") != corpus.config.vocab_id:
        raise ArtifactError(f"{gcn_dir} was trained on other tokens than {tokens_path}; retrain it with --overwrite")
    graph = A.load_graph(graph_dir)
    stored = load_file(str(gcn_dir / "node_embeddings.safetensors"))
    if not np.array_equal(stored["nodes"], graph.nodes):
        raise ArtifactError(f"{gcn_dir} does not match the graph in {graph_dir}; retrain it with --overwrite")
    pieces = corpus.select(style=style)
    notes_per_bar = float(np.mean([p.length / max(1, _bars_spanned(corpus.piece_tokens(p))) for p in pieces]))
    return RandomWalker(graph.nodes, graph.adjacency, stored["embeddings"], corpus.config, notes_per_bar), corpus


def _bars_spanned(tokens: np.ndarray) -> int:
    bars = tokens[:, C.BAR].astype(np.int64)
    return int(np.sum(np.diff(bars) != 0) + 1) if len(bars) else 1


def seed_tokens(corpus: TokenCorpus, style: str, seed: int, prompt: Path | None = None, max_notes: int = 32) -> np.ndarray:
    """Seed notes: the prompt's first notes, or the first notes of a (seeded) random piece of the style."""
    if prompt is not None:
        from musictl.midi.encode import encode_file

        return encode_file(prompt, corpus.config).tokens[:max_notes]
    pieces = corpus.select(style=style, split="train") or corpus.select(style=style)
    piece = pieces[np.random.default_rng(seed).integers(len(pieces))]
    return corpus.piece_tokens(piece)[:max_notes]


def generate(workdir, style: str, settings: WalkSettings, tokens_path: Path, prompt: Path | None = None,
             tempo: float | None = None, walker_and_corpus=None) -> np.ndarray:
    walker, corpus = walker_and_corpus or load_walker(workdir, style, tokens_path)
    seeds = walker.seed_nodes(seed_tokens(corpus, style, settings.seed, prompt))
    tokens = walker.walk(seeds, settings)
    if tempo is not None:
        cfg = corpus.config
        value = int(np.argmin(np.abs(np.log2(cfg.tempo_values / tempo))))
        tokens[:, C.TEMPO] = value + C.N_SPECIAL
    return tokens
