"""The cross-style chain as library calls that read and write workspace artifacts.

embed -> ``embeddings/``; adjacency -> ``graph/<style>/``; train-gcn -> ``gcn/<style>/``; walks come
from :class:`musictl.transfer.generator.StyleGenerator`. Each call checks its inputs (complete,
fresh, same vocabulary) and enters its output's staging directory before the work, so an existing
output without ``overwrite``, an unwritable workspace or a second writer is refused at once.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from musictl import artifacts, workspace
from musictl.errors import ArtifactError, UsageError
from musictl.midi.tokens import TokenCorpus
from musictl.progress import Progress
from musictl.transfer import adjacency as graphs
from musictl.transfer import embed as embedding
from musictl.transfer.results import EmbedResult, GcnResult, GraphResult
from musictl.transfer.settings import EmbedSettings, GcnSettings, GraphSettings

log = logging.getLogger(__name__)


# ----- embed ---------------------------------------------------------------------------------
def resolve_model(model: str | Path | None, workdir, corpus: TokenCorpus) -> tuple[str | Path, dict, bool]:
    """(model reference, its manifest input refs, is it a MidiBert), after checking a MidiBert is complete
    and not stale: trained on an older version of these very tokens."""
    if model is None:
        model = artifacts.artifact_dir(workdir, artifacts.BERT)
        artifacts.require(model, artifacts.BERT)
    path = Path(model)
    if (path / artifacts.MANIFEST).is_file():  # an artifact of another kind: say what it is and what makes a model
        found = artifacts.read_manifest(path)
        if found.kind not in (artifacts.BERT, artifacts.FINETUNE, artifacts.ADAPTED):
            raise ArtifactError(artifacts.wrong_kind(path, found, artifacts.BERT))
    if not embedding.is_midibert_dir(path):
        return model, {}, False
    if not (path / artifacts.MANIFEST).is_file():
        raise ArtifactError(f"{path} has no {artifacts.MANIFEST}: it is incomplete (an interrupted run?) or not an "
                            "artifact; remake it: musictl pretrain-bert --overwrite")
    manifest = artifacts.read_manifest(path)
    artifacts.require(path, manifest.kind)
    trained_on = artifacts.input_path(path, manifest, "tokens")
    if trained_on is not None and trained_on.resolve() == corpus.path.resolve():
        artifacts.check_input(path, manifest, "tokens", corpus.manifest, artifacts.producer_of(manifest.kind))
    return path, {"model": artifacts.input_ref(path, manifest)}, True


def embedding_tables(model, is_midibert: bool, corpus: TokenCorpus, settings: EmbedSettings, on_progress: Progress | None = None):
    """(token table, position table, mapped mask) of ``model`` over the corpus's vocabulary."""
    if not is_midibert:
        if settings.mode == "contextual":
            from musictl.hf import looks_like_path

            if looks_like_path(model) and not Path(str(model)).expanduser().exists():
                raise ArtifactError(f"no model at {model}: no such directory")
            raise UsageError(f"{model} is not a MidiBert: contextual embeddings (the default) need one (musictl "
                             "pretrain-bert); for another model's input tables pass --mode static")
        return embedding.static_hf(str(model), corpus.config)
    if settings.mode == "static":
        table, positions, vocab = embedding.static_midibert(model)
        mapped = np.ones(corpus.config.n_graph_tokens, dtype=bool)
    else:
        table, counts, positions, vocab = embedding.contextual_midibert(model, corpus, settings.style,
                                                                              on_progress=on_progress)
        mapped = counts.numpy() > 0
    if vocab.vocab_id != corpus.config.vocab_id:
        raise ArtifactError(f"{model} was trained on vocabulary {vocab.vocab_id}, but {corpus.path} uses "
                            f"{corpus.config.vocab_id}; tokenize with the model's parameters or pre-train on these tokens")
    return table, positions, mapped


def make_embeddings(model: str | Path | None, tokens_path: Path, out: Path, settings: EmbedSettings | None = None,
                    overwrite: bool = False, workdir=None, on_progress: Progress | None = None) -> EmbedResult:
    """Write ``embeddings/``: every graph token's embedding in ``model`` (default: the workspace's MidiBert)."""
    import torch
    from safetensors.torch import save_file

    from musictl.hf import quiet_transformers

    settings = settings or EmbedSettings()
    quiet_transformers()
    needs = [workspace.Needed(artifacts.TOKENS, None, Path(tokens_path))]
    if model is None:
        needs.append(workspace.Needed(artifacts.BERT, None, artifacts.artifact_dir(workdir, artifacts.BERT)))
    workspace.require_inputs("embed", workdir, needs)
    corpus = TokenCorpus.open(tokens_path)
    if settings.style:
        workspace.check_style(settings.style, corpus.styles, tokens_path)
        corpus.require_style(artifacts.safe_name(settings.style, "style"))
    model, inputs, is_midibert = resolve_model(model, workdir, corpus)
    inputs["tokens"] = artifacts.input_ref(tokens_path, corpus.manifest)
    with artifacts.staging(out, overwrite) as tmp:
        table, positions, mapped = embedding_tables(model, is_midibert, corpus, settings, on_progress)
        save_file({"token": table.contiguous().float(), "position": positions.contiguous().float(),
                   "mapped": torch.from_numpy(np.asarray(mapped, dtype=np.uint8))}, str(tmp / embedding.FILE),
                  metadata={"vocab_id": corpus.config.vocab_id, "model": str(model), "mode": settings.mode})
        result = EmbedResult(out=Path(out), model=str(model), mode=settings.mode, graph_tokens=int(table.shape[0]),
                             dim=int(table.shape[1]), mapped_tokens=int(np.sum(mapped)), positions=int(positions.shape[0]))
        metrics = {k: v for k, v in result.to_dict().items() if k not in ("out", "model", "mode")}
        artifacts.write_manifest(tmp, artifacts.Manifest(
            kind=artifacts.EMBEDDINGS, inputs=inputs, metrics=metrics,
            parameters={"model": str(model), **settings.to_dict(), "vocab_id": corpus.config.vocab_id}))
    return result


# ----- adjacency -----------------------------------------------------------------------------
def make_graph(tokens_path: Path, style: str, out: Path, settings: GraphSettings | None = None, overwrite: bool = False,
               on_progress: Progress | None = None, workdir=None) -> GraphResult:
    """Write ``graph/<style>/``: the style's weighted graph, counted over its training pieces (held-out pieces stay
    unseen, for fidelity; every piece when the style has no train split), or over all pieces (``--pieces all``)."""
    settings = settings or GraphSettings()
    workspace.require_inputs(f"adjacency --style {style}", workdir, [workspace.Needed(artifacts.TOKENS, None, Path(tokens_path))])
    corpus = TokenCorpus.open(tokens_path)
    workspace.check_style(style, corpus.styles, tokens_path)
    corpus.require_style(artifacts.safe_name(style, "style"))
    pieces = graphs.style_split(corpus, style)[0] if settings.pieces == "train" else corpus.select(style=style)
    with artifacts.staging(out, overwrite) as tmp:
        graph = graphs.build_graph(corpus, pieces, window=settings.window, normalize=settings.normalize,
                                   on_progress=on_progress, fields=settings.fields, edges=settings.edges, key=settings.key)
        graphs.save_graph(graph, tmp)
        if settings.export == "graphml":
            graphs.export_graphml(graph, corpus.config, tmp / "graph.graphml")
        stats = {**graph.stats(), "pieces": len(pieces), "notes": int(sum(p.length for p in pieces))}
        keys = graph.keys.summary() if graph.keys is not None else None  # the style's keys, before the common key
        artifacts.write_manifest(tmp, artifacts.Manifest(
            kind=artifacts.GRAPH, parameters={"style": style, **settings.to_dict(), "vocab_id": corpus.config.vocab_id},
            inputs={"tokens": artifacts.input_ref(tokens_path, corpus.manifest)}, metrics={**stats, **(keys or {})}))
    return GraphResult(out=Path(out), style=style, **stats, keys=keys)


# ----- train-gcn -----------------------------------------------------------------------------
def check_gcn_inputs(corpus: TokenCorpus, style: str, graph_dir: Path, embeddings_dir: Path):
    """(graph manifest, embeddings manifest), after checking both are complete, of these tokens, and fresh."""
    graph_manifest = artifacts.require(graph_dir, artifacts.GRAPH, style)
    emb_manifest = artifacts.require(embeddings_dir, artifacts.EMBEDDINGS)
    for name, manifest, command in (("graph", graph_manifest, f"musictl adjacency --style {style}"),
                                    ("embeddings", emb_manifest, "musictl embed")):
        if manifest.parameters.get("vocab_id") != corpus.config.vocab_id:
            raise ArtifactError(f"the {name} artifact was made from other tokens (vocabulary "
                                f"{manifest.parameters.get('vocab_id')}); remake it: {command} --overwrite")
    artifacts.check_input(graph_dir, graph_manifest, "tokens", corpus.manifest, f"musictl adjacency --style {style}")
    model_dir = artifacts.input_path(embeddings_dir, emb_manifest, "model")
    if model_dir is not None and (model_dir / artifacts.MANIFEST).is_file():  # the model was remade since
        artifacts.check_input(embeddings_dir, emb_manifest, "model", artifacts.read_manifest(model_dir), "musictl embed")
    return graph_manifest, emb_manifest


def make_gcn(style: str, out: Path, settings: GcnSettings, tokens_path: Path, graph_dir: Path, embeddings_dir: Path,
             device: str = "cpu", overwrite: bool = False, on_progress: Progress | None = None, workdir=None,
             resume: bool = False) -> GcnResult:
    """Write ``gcn/<style>/``: a link predictor of the study's ``settings.model`` with its baselines.

    Missing inputs are named all at once, with every command that makes them (``workdir``: where those
    commands write); ``result.graph`` is the graph the GCN learned: the style graph's edges (transition,
    cooccurrence) or ``similarity``. ``device``: auto, cpu or cuda (:func:`musictl.device.resolve_device`).
    The training is :func:`musictl.transfer.train_gcn.train`'s, on :class:`musictl.training.Run` (``resume``:
    continue the interrupted or finished run in ``out``'s staging); the caller's global RNGs are left as they were."""
    from musictl.transfer.features import model_graphs, node_features
    from musictl.transfer.train_gcn import train

    tokens = workspace.Needed(artifacts.TOKENS, None, Path(tokens_path))
    known = workspace.tokens_styles(tokens_path) if (Path(tokens_path) / artifacts.MANIFEST).is_file() else []
    if known:  # a misspelt style first: the chain below names it
        workspace.check_style(style, known, tokens_path)
    name = artifacts.safe_name(style, "style")
    workspace.require_inputs(f"train-gcn --style {style}", workdir, [
        tokens, workspace.Needed(artifacts.GRAPH, name, Path(graph_dir)),
        workspace.Needed(artifacts.EMBEDDINGS, None, Path(embeddings_dir))])
    corpus = TokenCorpus.open(tokens_path)
    corpus.require_style(name)
    graph_manifest, emb_manifest = check_gcn_inputs(corpus, style, graph_dir, embeddings_dir)
    if device != settings.device:
        settings = dataclasses.replace(settings, device=device)
    # the style graph is named by its edges (transition or cooccurrence), as adjacency built it
    built = graph_manifest.parameters.get("edges", "cooccurrence") if settings.graph == "cooccurrence" else settings.graph

    def inputs_of():
        graph = graphs.load_graph(graph_dir)
        tables = embedding.load_embeddings(embeddings_dir)
        features = node_features(tables["token"].numpy(), tables["position"].numpy(), graph.nodes, corpus, style,
                                 settings.features)
        target, message = model_graphs(settings, features, graph.undirected())
        return features, target, graph.node_fields(corpus.config), message, graph.nodes

    summary = train(style, out, settings, inputs_of, built_graph=built, vocab_id=corpus.config.vocab_id, inputs={
        "graph": artifacts.input_ref(graph_dir, graph_manifest), "embeddings": artifacts.input_ref(embeddings_dir, emb_manifest),
        "tokens": artifacts.input_ref(tokens_path, corpus.manifest)}, resume=resume, overwrite=overwrite,
        on_progress=on_progress)
    return summary
