"""A style's generator: its graph, trained link predictor, vocabulary and tables, loaded once.

``StyleGenerator.load(workdir, style)`` checks every artifact it reads (the graph and the GCN must
have been made from the current tokens and from each other), computes the decoder's probability for
every pair of nodes, and chooses the walk's mixing weight by likelihood on the style's validation
pieces (:meth:`RandomWalker.choose_mix`); ``.generate(bars, seed)`` walks one
piece. ``musictl generate-rwr``, ``musictl demo`` and ``benchmarks/transfer.py`` all use it, so
``--count K`` writes K pieces in one process without reloading anything.

A graph counted in the common key (``adjacency --key common``, the default) is walked in C major /
A minor: its tables, seed notes and validation pieces are transposed like the graph's pieces, and each walked
piece is then placed in the key of the style's piece whose plan it took (drawn by the seed, so the style's keys
come out as often as its pieces are in them), or in the prompt's key (:mod:`musictl.transfer.keys`).

With ``notes_by="transformer"`` (:meth:`StyleGenerator.use_adapted`, an ``adapted`` artifact of ``musictl adapt``)
the walk still lays out the rhythm, the parts, the restarts and the context notes, and the adapted model chooses
each pitch and duration among the graph's successors (:meth:`RandomWalker._model_note`). The model was adapted on the
style's pieces as they are, in their own keys, so it is fed each note as it will be written: the walk runs in the
common key and the pitches the model sees (and scores) are moved by the piece's placing shift beforehand.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musictl import artifacts
from musictl import constants as C
from musictl.errors import ArtifactError
from musictl.midi.tokens import TokenCorpus
from musictl.midi.vocab import TokenizerConfig
from musictl.progress import Progress
from musictl.transfer import adjacency as graphs
from musictl.transfer import keys as common
from musictl.transfer.settings import WalkSettings
from musictl.transfer.tables import PiecePlan, StyleTables
from musictl.transfer.walk import RandomWalker

log = logging.getLogger(__name__)
SEED_NOTES = 32


def check_chain(corpus: TokenCorpus, style: str, gcn_dir: Path) -> Path:
    """The graph directory behind ``gcn_dir``, after checking that graph and GCN are fresh against the tokens."""
    gcn_manifest = artifacts.require(gcn_dir, artifacts.GCN, style)
    graph_dir = artifacts.input_path(gcn_dir, gcn_manifest, "graph")
    if graph_dir is None:
        raise ArtifactError(f"{gcn_dir}/manifest.json names no graph; remake it: musictl train-gcn --style {style} --overwrite")
    graph_manifest = artifacts.require(graph_dir, artifacts.GRAPH, style)
    if gcn_manifest.parameters.get("vocab_id") != corpus.config.vocab_id:
        raise ArtifactError(f"{gcn_dir} was trained on other tokens than {corpus.path}; retrain it: "
                            f"musictl train-gcn --style {style} --overwrite")
    artifacts.check_input(graph_dir, graph_manifest, "tokens", corpus.manifest, f"musictl adjacency --style {style}")
    artifacts.check_input(gcn_dir, gcn_manifest, "graph", graph_manifest, f"musictl train-gcn --style {style}")
    artifacts.check_input(gcn_dir, gcn_manifest, "tokens", corpus.manifest, f"musictl train-gcn --style {style}")
    return graph_dir


def link_probabilities(gcn_dir: Path, embeddings: np.ndarray) -> np.ndarray:
    """``(n, n)`` probabilities of the trained decoder of ``gcn_dir`` for every pair of its node embeddings."""
    import json

    import torch
    from safetensors.torch import load_file

    from musictl.transfer import gcn

    try:
        config = json.loads((gcn_dir / "config.json").read_text())
        state = load_file(str(gcn_dir / "model.safetensors"))
        decoder = gcn.LinkDecoder(int(config["out_dim"]), config["decoder"])
        decoder.load_state_dict({k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")})
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ArtifactError(f"{gcn_dir}: unreadable link predictor ({exc}); retrain it: "
                            f"musictl train-gcn --style {gcn_dir.name} --overwrite") from None
    return gcn.link_probabilities(decoder, torch.as_tensor(np.asarray(embeddings), dtype=torch.float))


@dataclass
class AdaptedNotes:
    """An adapted next-note model (``musictl adapt``) that chooses the notes of ``--notes-by transformer``."""

    path: Path
    model: object = field(repr=False)
    max_len: int  # notes of context: the window it was adapted with (at most its positions)
    max_bars: int

    def continuation(self):
        """A fresh :class:`musictl.bert.nextnote.Continuation` for one piece."""
        from musictl.bert.nextnote import Continuation

        return Continuation(self.model, self.max_len, self.max_bars)


def load_adapted_notes(workdir, style: str, corpus: TokenCorpus, path: Path | None = None) -> AdaptedNotes:
    """The adapted model of ``style`` (``path``, default ``WORKDIR/adapted/<style>``), checked made from these tokens'
    vocabulary and not stale against them; a missing one names the commands that make it."""
    from musictl import workspace
    from musictl.bert.adapt import load_adapted

    path = Path(path) if path is not None else artifacts.artifact_dir(workdir, artifacts.ADAPTED, style)
    workspace.require_inputs(f"generate-rwr --style {style} --notes-by transformer", workdir,
                             [workspace.Needed(artifacts.ADAPTED, style, path)])
    model = load_adapted(path)  # a damaged or stale adapter: a one-line error naming musictl adapt
    manifest = artifacts.read_manifest(path)
    made_for = manifest.parameters.get("style", style)
    remake = f"{artifacts.producer_of(artifacts.ADAPTED, made_for)} --overwrite"
    if model.config.tokenizer_config.vocab_id != corpus.config.vocab_id:
        raise ArtifactError(f"{path} was adapted on tokens of another vocabulary than {corpus.path}; remake it: {remake}")
    artifacts.check_input(path, manifest, "tokens", corpus.manifest, remake.removesuffix(" --overwrite"))
    positions = int(model.config.max_position_embeddings)
    max_len = min(int(manifest.parameters.get("max_len", positions)), positions)
    return AdaptedNotes(path, model, max_len, corpus.config.max_bars)


class StyleGenerator:
    """Walks pieces in one style (see :mod:`musictl.transfer.walk`)."""

    def __init__(self, style: str, corpus: TokenCorpus, walker: RandomWalker):
        self.style = style
        self.corpus = corpus
        self.walker = walker
        self.graph_pieces = "train"  # which of the style's pieces its graph counted (graph manifest: pieces)
        self.keys: common.StyleKeys | None = None  # the graph counted in the common key: the pieces' shifts; None: as-is
        self.adapted: AdaptedNotes | None = None  # the model of --notes-by transformer (use_adapted)

    def use_adapted(self, workdir=None, path: Path | None = None, model=None, max_len: int | None = None) -> AdaptedNotes:
        """Let an adapted model choose the notes of walks with ``notes_by="transformer"``: the artifact at ``path``
        (default ``WORKDIR/adapted/<style>``, checked by :func:`load_adapted_notes`), or ``model``, a
        :class:`musictl.bert.nextnote.MidiBertForNextNote` already in hand (with its window ``max_len``)."""
        if model is not None:
            positions = int(model.config.max_position_embeddings)
            self.adapted = AdaptedNotes(Path(path or "."), model.eval(), min(max_len or positions, positions),
                                        self.config.max_bars)
        else:
            self.adapted = load_adapted_notes(workdir, self.style, self.corpus, path)
        return self.adapted

    @property
    def config(self):
        return self.corpus.config

    @property
    def tables(self) -> StyleTables:
        return self.walker.tables

    @classmethod
    def load(cls, workdir, style: str | None = None, tokens_path: Path | None = None) -> StyleGenerator:
        from safetensors.numpy import load_file

        from musictl.workspace import generate_style

        style = artifacts.safe_name(style or generate_style(workdir, None, tokens_path), "style")
        corpus = TokenCorpus.open(tokens_path or artifacts.artifact_dir(workdir, artifacts.TOKENS))
        corpus.require_style(style)
        gcn_dir = artifacts.artifact_dir(workdir, artifacts.GCN, style)
        graph_dir = check_chain(corpus, style, gcn_dir)
        graph = graphs.load_graph(graph_dir)
        stored = load_file(str(gcn_dir / "node_embeddings.safetensors"))
        if not np.array_equal(stored["nodes"], graph.nodes):
            raise ArtifactError(f"{gcn_dir} does not match the graph in {graph_dir}; retrain it: "
                                f"musictl train-gcn --style {style} --overwrite")
        if graph.loops is None:
            log.info("%s was made before self-loops were kept, so repeated notes are rare; remake it: "
                     "musictl adjacency --style %s --overwrite", graph_dir, style)
        parameters = artifacts.read_manifest(graph_dir).parameters
        key = parameters.get("key", "as-is")  # graphs made before --key counted pitches as they are
        if (key == "common") != (graph.keys is not None):
            raise ArtifactError(f"{graph_dir}: its manifest says key={key}, but {common.KEY_FILE} is "
                                f"{'missing' if graph.keys is None else 'there'}; remake it: "
                                f"musictl adjacency --style {style} --overwrite")
        links = link_probabilities(gcn_dir, stored["embeddings"])
        return cls.from_graph(style, corpus, graph, links, graph_pieces=parameters.get("pieces", "all"))

    @classmethod
    def from_graph(cls, style: str, corpus: TokenCorpus, graph: graphs.StyleGraph, links: np.ndarray | None = None,
                   graph_pieces: str = "train") -> StyleGenerator:
        """A generator on ``graph`` (``links``: the link predictor's probabilities; None: counts only, a Markov
        chain). A graph counted in the common key (``graph.keys``) gets tables and validation pieces transposed
        like its pieces, and its walks are placed back in a key of the style's (:meth:`generate`)."""
        key = "as-is" if graph.keys is None else "common"
        tables = StyleTables.from_pieces([corpus.piece_tokens(p) for p in cls._pieces(corpus, style)], corpus.config,
                                         key=key)
        walker = RandomWalker(graph.nodes, graph.adjacency, corpus.config, tables, graph.loops, links, graph.directed)
        valid = [corpus.piece_tokens(p) for p in corpus.select(style=style, split="valid")]
        walker.choose_mix(common.to_common_key(valid, corpus.config)[0] if graph.keys is not None else valid)  # as walked
        generator = cls(style, corpus, walker)
        generator.graph_pieces = graph_pieces
        generator.keys = graph.keys
        return generator

    @staticmethod
    def _pieces(corpus: TokenCorpus, style: str):
        """The pieces the style's graph and tables come from (its train split; every piece without one)."""
        return graphs.style_split(corpus, style)[0]

    def seed(self, seed: int, prompt: Path | None = None) -> tuple[np.ndarray, PiecePlan]:
        """Seed notes (node indices) and the piece plan: the prompt's, or a (seeded) random piece of the style's."""
        return self.seed_and_key(seed, prompt)[:2]

    def seed_and_key(self, seed: int, prompt: Path | None = None) -> tuple[np.ndarray, PiecePlan, int]:
        """(seed notes, piece plan, shift): the shift that moved the prompt or the style's piece to the common key
        (0 for a graph of pitches as they are); the seed notes are transposed by it, and the walked piece is placed
        back by it (:meth:`generate`)."""
        return self._seed_and_key(seed, None if prompt is None else self._encoded(prompt))

    def _encoded(self, prompt: Path) -> np.ndarray:
        """The prompt's token rows (the tokens' vocabulary)."""
        from musictl.midi.encode import encode_file

        return encode_file(prompt, self.config).tokens

    def _seed_and_key(self, seed: int, prompt: np.ndarray | None) -> tuple[np.ndarray, PiecePlan, int]:
        """:meth:`seed_and_key` of a prompt already encoded (``prompt``: its token rows)."""
        shift = 0
        if prompt is not None:
            tokens = prompt
            if self.keys is not None:
                shift = common.common_key_shift(tokens, self.config)
        else:
            pieces = self._pieces(self.corpus, self.style)  # own seeding: the next line draws the piece that prompts the walk
            piece = pieces[np.random.default_rng(seed).integers(len(pieces))]
            tokens = self.corpus.piece_tokens(piece)
            if self.keys is not None:
                recorded = self.keys.shift_of(piece.id)
                shift = common.common_key_shift(tokens, self.config) if recorded is None else recorded
        plan = PiecePlan.of_values(tokens.astype(np.int64) - C.N_SPECIAL) if len(tokens) else None
        return self.walker.seed_nodes(common.transpose(tokens[:SEED_NOTES], shift)), plan, shift

    def generate(self, bars: int | None = None, seed: int | None = None, settings: WalkSettings | None = None,
                 prompt: Path | None = None, on_progress: Progress | None = None) -> np.ndarray:
        """One piece as ``(n_notes, 8)`` token ids; ``bars`` and ``seed`` override ``settings``."""
        settings = settings or WalkSettings()
        overrides = {k: v for k, v in (("bars", bars), ("seed", seed)) if v is not None}
        settings = dataclasses.replace(settings, **overrides) if overrides else settings
        given = None if prompt is None else self._encoded(prompt)  # encoded once: it seeds the walk and primes the model
        seeds, plan, shift = self._seed_and_key(settings.seed, given)
        notes = None
        if settings.notes_by == "transformer":
            if self.adapted is None:
                raise ArtifactError(f"--notes-by transformer needs the style's adapted model; run: musictl adapt --style "
                                    f"{self.style}")
            notes = self.adapted.continuation()
            if given is not None:  # the model continues the prompt: its notes, as written, are the first context
                notes.prime(given)
        placing = shift if self.keys is not None else 0
        if notes is None:
            tokens = self.walker.walk(seeds, settings, plan, on_progress)
        else:
            from musictl.bert.nextnote import one_thread

            with one_thread():
                tokens = self.walker.walk(seeds, settings, plan, on_progress, notes=notes, shift=placing)
        return common.place(tokens, shift) if self.keys is not None else tokens

    def generate_many(self, count: int, settings: WalkSettings, prompt: Path | None = None,
                      on_progress: Progress | None = None) -> list[np.ndarray]:
        """``count`` pieces with seeds ``settings.seed``, ``settings.seed + 1``, ..."""
        if count == 1:  # one piece: progress by bar
            return [self.generate(settings=settings, prompt=prompt, on_progress=on_progress)]
        pieces = []
        for i in range(count):
            pieces.append(self.generate(seed=settings.seed + i, settings=settings, prompt=prompt))
            if on_progress:
                on_progress(i + 1, count, None)
        return pieces

    def midi(self, tokens: np.ndarray) -> bytes:
        from musictl.midi.decode import tokens_to_midi_bytes

        return tokens_to_midi_bytes(tokens, self.config)


@dataclass
class Generated:
    """Pieces walked in one style, as tokens and as MIDI bytes, and their style fidelity when asked for."""

    style: str
    seeds: list[int]
    pieces: list[np.ndarray] = field(repr=False)
    midi: list[bytes] = field(repr=False)
    config: TokenizerConfig = field(repr=False)
    fidelity: dict | None = None

    def to_dict(self) -> dict:
        return {"style": self.style, "seeds": self.seeds, "notes": [len(p) for p in self.pieces], "fidelity": self.fidelity}


def generate_pieces(workdir, style: str | None, tokens_path: Path | None, settings: WalkSettings, count: int = 1,
                    prompt: Path | None = None, evaluate: bool = False, on_progress: Progress | None = None,
                    classifier: Path | None = None, model: Path | None = None) -> Generated:
    """``count`` pieces (seeds ``settings.seed`` ...) of ``style`` (default: the one style with a trained GCN), with
    their style fidelity against the corpus when ``evaluate`` (and a style classifier's verdict when given).
    ``settings.notes_by == "transformer"``: the adapted model at ``model`` (default ``WORKDIR/adapted/<style>``)
    chooses the pitches and durations."""
    from musictl.transfer import fidelity as judge

    generator = StyleGenerator.load(workdir, style, tokens_path)
    if settings.notes_by == "transformer":
        generator.use_adapted(workdir, model)
    classifier_model = judge.load_style_classifier(classifier, generator.corpus, generator.style) if classifier else None
    pieces = generator.generate_many(count, settings, prompt, on_progress)
    fidelity = None
    if evaluate:
        fidelity = judge.style_fidelity(pieces, generator.corpus, generator.style, settings.seed,
                                        graph_saw_held_out=generator.graph_pieces == "all")
        fidelity["walk"] = {"mix": generator.walker.mix if settings.mix is None else settings.mix, "gcn": settings.gcn,
                            "temperature": settings.temperature,
                            "key": "as-is" if generator.keys is None else "common", "notes_by": settings.notes_by}
        if generator.adapted is not None:
            fidelity["walk"].update(model=str(generator.adapted.path), transformer_weight=settings.transformer_weight,
                                    top_p=settings.top_p)
        if classifier_model is not None:
            fidelity["classifier"] = {"classifier": str(classifier),
                                      **judge.classifier_assignments(classifier_model, pieces, generator.style)}
    return Generated(style=generator.style, seeds=[settings.seed + i for i in range(count)], pieces=pieces,
                     midi=[] if evaluate else [generator.midi(p) for p in pieces], config=generator.config, fidelity=fidelity)
