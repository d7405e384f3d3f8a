"""What a link predictor has to beat, scored on exactly its held-out test edges and negatives (uniform and
same-field, see :mod:`musictl.transfer.gcn`).

- Parameter-free heuristics on the training edges of the graph being predicted only: common neighbours,
  Adamic-Adar, resource allocation and the degree product (preferential attachment).
- ``gcn_random_features``: the same GCN with the node embeddings replaced by Gaussian noise of the
  same width (log-degrees kept when ``--degree-features``): what the graph alone gives.
- ``mlp_embeddings``: the same layer sizes without message passing, on the embeddings alone: what
  the embeddings give without the graph.

If the GCN does not beat these, the embeddings add nothing the graph's degrees do not already say.

And what a walk has to beat (the generation judge, benchmarks/transfer.py): a first-order Markov chain with the
walk's plans, rhythm and articulation tables (:func:`markov_walker`), the same chain drawing pitch and duration
from interpolated n-grams (:func:`ngram_walker`), and the chain with those tables swapped for their unigrams
(:func:`unigram_tables`), which shows what the shared tables, not the walk, earn.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from musictl import constants as C
from musictl.errors import UsageError
from musictl.midi.tokens import TokenCorpus
from musictl.progress import Progress
from musictl.transfer import ngram
from musictl.transfer.gcn import Encoder, MlpEncoder, fit_and_test, labelled_pairs, link_scores, node_inputs, score_row
from musictl.transfer.settings import GcnSettings
from musictl.transfer.tables import StyleTables
from musictl.transfer.walk import RandomWalker

HEURISTICS = ("common_neighbours", "adamic_adar", "resource_allocation", "degree_product")


def heuristic_scores(edge_index: np.ndarray, num_nodes: int, pairs: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of each pair ``(2, m)`` by each heuristic, on the unweighted graph of ``edge_index``."""
    adjacency = sp.coo_matrix((np.ones(edge_index.shape[1]), (edge_index[0], edge_index[1])), shape=(num_nodes, num_nodes))
    adjacency = (adjacency.tocsr() > 0).astype(np.float64)
    adjacency.setdiag(0)
    adjacency.eliminate_zeros()
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    left, right = adjacency[pairs[0]], adjacency[pairs[1]]
    shared = left.multiply(right)  # (m, n): 1 where a node neighbours both ends

    def weighted(weights: np.ndarray) -> np.ndarray:
        return np.asarray(shared @ weights).ravel()

    with np.errstate(divide="ignore"):
        inverse_log = np.where(degree > 1, 1.0 / np.log(np.maximum(degree, 2)), 0.0)
        inverse = np.where(degree > 0, 1.0 / np.maximum(degree, 1), 0.0)
    return {
        "common_neighbours": np.asarray(shared.sum(axis=1)).ravel(),
        "adamic_adar": weighted(inverse_log),
        "resource_allocation": weighted(inverse),
        "degree_product": degree[pairs[0]] * degree[pairs[1]],
    }


def baseline_scores(split: tuple, features: torch.Tensor, settings: GcnSettings, device: str = "cpu",
                    on_progress: Progress | None = None) -> dict[str, dict[str, float]]:
    """``{name: {"auc", "ap", "auc_same_field", "ap_same_field"}}`` of every baseline on the test split of ``split``."""
    train_graph, _, test_split = split
    known = train_graph.target_index.cpu().numpy()  # the training edges of the graph being predicted
    out: dict[str, dict[str, float]] = {name: {} for name in HEURISTICS}
    for kind, (pairs, labels) in labelled_pairs(test_split).items():
        for name, scores in heuristic_scores(known, train_graph.num_nodes, pairs.cpu().numpy()).items():
            out[name].update(score_row({kind: link_scores(labels, scores)}))
    generator = torch.Generator().manual_seed(settings.seed)  # own seeding: the random-feature baseline's features
    noise = torch.randn(features.shape, generator=generator).to(features.device)
    models = {
        "gcn_random_features": (Encoder, node_inputs(noise, train_graph, settings)),
        "mlp_embeddings": (MlpEncoder, features),
    }
    for name, (encoder_cls, x) in models.items():
        _, _, _, scores = fit_and_test(encoder_cls, x, split, settings, device, on_progress, name=name)
        out[name] = score_row(scores)
    return out


TRANSITION_FIELDS = (C.INSTRUMENT, C.PITCH, C.DURATION, C.VELOCITY)  # the Markov chain's graph
NGRAM_FIELDS = (C.PITCH, C.DURATION)  # drawn from the interpolated n-gram by :class:`NgramWalker`


def markov_walker(corpus, pieces, tables, key: str = "as-is"):
    """A first-order Markov chain on the same tokens, for the walk to match or beat: the same plans, rhythm and
    articulation tables, and each field of a note drawn from how often it followed the previous note's value of
    that field in the same part (directed counts, repeats included); no link predictor. ``key="common"`` counts
    the pieces moved to the common key, as the walk's graph does with ``adjacency --key common`` (walk it with the
    graph's keys, so that each piece is placed in a key of the style's: a ``StyleGenerator`` with the walk's
    ``keys``)."""
    from musictl.transfer.adjacency import build_graph

    graph = build_graph(corpus, pieces, fields=TRANSITION_FIELDS, edges="transition", key=key)
    return RandomWalker(graph.nodes, graph.adjacency, corpus.config, tables, graph.loops, links=None, directed=True)


class NgramWalker(RandomWalker):
    """The Markov chain of :func:`markov_walker` (same graph, plans, rhythm and articulation tables, restarts and
    velocities) whose pitch and duration are drawn from interpolated n-grams (:class:`ngram.NgramModel`):
    ``p(c) ∝ P(c | the part's value two notes back, its previous value) · a(c)`` over the field's nodes,
    ``a`` the articulation weight of durations. The value two back is the part's note before the context note,
    or none (the trigram backs off to its bigram) at a part's second note and after a restart to a seed note of
    another value; without a context node the chain's own (uniform) term is used, as the Markov chain does."""

    def __init__(self, nodes, adjacency, config, tables: StyleTables, loops, ngrams: dict[int, ngram.NgramModel]):
        super().__init__(nodes, adjacency, config, tables, loops, links=None, directed=True)
        self.ngrams = ngrams
        self._program: int | None = None
        self._history: dict[int, dict[int, tuple[int, int]]] = {}  # program -> field -> (value two back, previous)

    def walk(self, seeds, settings, plan=None, on_progress=None):
        self._history = {}
        return super().walk(seeds, settings, plan, on_progress)

    def _note(self, slot, plan, taken, seeds, settings, rng, context, writer=None):
        self._program = slot.program
        row = super()._note(slot, plan, taken, seeds, settings, rng, context, writer)
        if row is not None:
            history = self._history.setdefault(slot.program, {})
            for f in self.ngrams:
                history[f] = (history.get(f, (-1, -1))[1], int(row[f]))
        return row

    def _choose(self, candidates, line, prev, settings, rng, prior=None) -> int:
        f = int(self.field[candidates[0]])
        if f not in self.ngrams or line < 0:
            return super()._choose(candidates, line, prev, settings, rng, prior)
        x = int(self.value[line])
        before, previous = self._history.get(self._program, {}).get(f, (-1, -1))
        x2 = before if previous == x else -1
        p = self.ngrams[f].rows(np.array([x2]), np.array([x]))[0][self.value[candidates]]
        if prior is not None:
            p = p * np.maximum(prior, 1e-300)
        logits = np.log(np.maximum(p, 1e-300)) / settings.temperature
        weights = np.exp(logits - logits.max())
        return int(candidates[rng.choice(len(candidates), p=weights / weights.sum())])


def ngram_walker(corpus: TokenCorpus, pieces: list, valid: list, tables: StyleTables,
                 others: list | None = None, key: str = "as-is") -> NgramWalker:
    """:class:`NgramWalker` on the transition graph of ``pieces`` (the style's training pieces), each n-gram's
    counts from them and its weights (and interval alpha) fitted on ``valid`` (the style's validation pieces,
    never the pieces a judge compares with); ``others`` (other styles' training pieces) give the pooled part.
    ``key="common"``: graph, counts and weights from every piece moved to the common key (:func:`markov_walker`)."""
    from musictl.transfer.adjacency import build_graph
    from musictl.transfer.keys import to_common_key, transpose

    if not valid:
        raise UsageError("the interpolated n-gram needs the style's validation pieces to set its weights; tokenize "
                         "with a split that gives the style some, e.g. --split 0.6,0.1,0.3")
    graph = build_graph(corpus, pieces, fields=TRANSITION_FIELDS, edges="transition", key=key)
    moved = (lambda ts: to_common_key(ts, corpus.config)[0]) if key == "common" else (lambda ts: ts)
    # the training pieces as the graph counted them (its recorded shifts: their keys are not found twice)
    train = [corpus.piece_tokens(p) if graph.keys is None else transpose(corpus.piece_tokens(p), graph.keys.shift_of(p.id))
             for p in pieces]
    held = moved([corpus.piece_tokens(p) for p in valid])
    other = moved([corpus.piece_tokens(p) for p in others or []])
    ngrams = {}
    for f in NGRAM_FIELDS:
        size = corpus.config.field_sizes[f]
        pooled = ngram.count_matrix(other, f, size) if other else None
        ngrams[f] = ngram.fit_ngram(ngram.stacked(train, f), ngram.stacked(held, f), size, pooled)[0]
    return NgramWalker(graph.nodes, graph.adjacency, corpus.config, tables, graph.loops, ngrams)


class UnigramTables(StyleTables):
    """A style's tables with the rhythm and articulation swapped for their unigrams (:func:`unigram_tables`):
    durations get no articulation weight (every code 1), so a note's duration ignores its part's next onset."""

    def duration_weights(self, gap: float) -> np.ndarray:
        return np.ones(self.config.field_sizes[C.DURATION])


def unigram_tables(tables: StyleTables) -> UnigramTables:
    """The ablation of what the walk and the Markov chain share: the same plans and per-instrument values, but each
    onset drawn from how often the style has an onset at each position (and ends a bar), not given the previous
    onset; chord sizes from their distribution over every position; each part as often at every position (its
    onsets spread evenly); no articulation (:class:`UnigramTables`)."""
    onsets = {ts: np.broadcast_to(c.sum(0), c.shape).copy() for ts, c in tables.onsets.items()}
    chords = {ts: np.broadcast_to(c.sum(0), c.shape).copy() for ts, c in tables.chords.items()}
    parts = {ts: {program: np.full(len(c), c.sum() / max(len(c), 1)) for program, c in by_program.items()}
             for ts, by_program in tables.parts.items()}
    return UnigramTables(tables.config, plans=tables.plans, onsets=onsets, chords=chords,
                         ratios=np.zeros_like(tables.ratios), values=tables.values, parts=parts,
                         repeat_share=tables.repeat_share)


COUNT_MODELS = ("Markov chain", "Markov chain, unigram tables", "interpolated n-gram")


def count_generators(generator, names: tuple[str, ...] = COUNT_MODELS) -> dict:
    """The count baselines of a style's walk (``generator``, a loaded
    :class:`~musictl.transfer.generator.StyleGenerator`), as generators of their own: the Markov chain on its
    tables, the chain on the tables' unigrams, and the chain drawing pitch and duration from the interpolated
    n-gram (weights on the style's validation pieces, the other styles' training pieces pooled). Each counts the
    style's training pieces in the key the walk's graph counts in (the common key by default) and is seeded and
    placed in a key of the style's as the walk is, so the baselines see what the walk sees."""
    from musictl.transfer.generator import StyleGenerator

    style, corpus = generator.style, generator.corpus
    key = "as-is" if generator.keys is None else "common"
    train = StyleGenerator._pieces(corpus, style)
    makers = {
        "Markov chain": lambda: markov_walker(corpus, train, generator.tables, key),
        "Markov chain, unigram tables": lambda: markov_walker(corpus, train, unigram_tables(generator.tables), key),
        "interpolated n-gram": lambda: ngram_walker(
            corpus, train, corpus.select(style=style, split="valid"), generator.tables,
            [p for s in corpus.styles if s != style for p in corpus.select(style=s, split="train")], key),
    }
    made = {}
    for name in names:
        made[name] = StyleGenerator(style, corpus, makers[name]())
        made[name].keys = generator.keys
    return made
