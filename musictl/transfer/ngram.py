"""Next-note count models of one field: the previous note's value (and the one before) of the same part predicts
the next note's value. Used by the few-shot protocol (:mod:`musictl.transfer.fewshot`) and by the n-gram chain of
the generation baselines (:mod:`musictl.transfer.baselines`).

``add_alpha`` (counts plus alpha), ``witten_bell`` (interpolated Witten-Bell over an add-one unigram),
``interval_model`` (a bigram of pitch intervals, or of duration-code steps) and :class:`NgramModel`, a linear
interpolation of the add-one unigram, the Witten-Bell bigram, a Witten-Bell trigram over the part's previous two
notes, the interval model and (where given) pooled counts of other styles, its weights fitted by EM on validation
transitions only (:func:`fit_ngram`). numpy only.
"""

from __future__ import annotations

import numpy as np

from musictl import constants as C
from musictl.errors import MusictlError

SCORED = {"pitch": C.PITCH, "duration": C.DURATION}
NGRAM = "ngram"  # their interpolation with a trigram, weights on validation
NGRAM_PARTS = ("unigram", "bigram", "trigram", "interval", "pooled")
ALPHAS = (0.01, 0.05, 0.2, 1.0)
MIXES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
EM_STEPS = 500  # at most; EM stops earlier when the validation NLL moves by less than EM_TOLERANCE
EM_TOLERANCE = 1e-9


# ----- transitions --------------------------------------------------------
def triples(tokens: np.ndarray, field: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the value two notes back, the previous value, the next value) of ``field`` for every note of a part that
    follows another of it; the first such note of a part has no note two back: -1 there. The first note of a
    part has no previous note and is not scored."""
    from musictl.transfer.adjacency import parts

    values = tokens.astype(np.int64) - C.N_SPECIAL
    found = []
    for rows in parts(values):
        if len(rows) > 1:
            v = values[rows, field]
            found.append((np.concatenate([[-1], v[:-2]]), v[:-1], v[1:]))
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return tuple(np.concatenate(column) for column in zip(*found))  # type: ignore[return-value]


def transition_targets(tokens: np.ndarray) -> np.ndarray:
    """The row indices of the notes that :func:`triples` scores (each note of a part after its first), in the order of
    its transitions, the same for every field: what a model that scores every note (a left-context transformer) must
    be read on to score the same notes as the count models."""
    from musictl.transfer.adjacency import parts

    found = [rows[1:] for rows in parts(tokens.astype(np.int64) - C.N_SPECIAL) if len(rows) > 1]
    return np.concatenate(found).astype(np.int64) if found else np.zeros(0, dtype=np.int64)


def target_nll(log_probs: np.ndarray, tokens: np.ndarray) -> dict[str, float]:
    """Per scored field, the NLL sum (nats) of a piece's transition targets (:func:`transition_targets`) under a
    model that gives every note's log-probabilities (``log_probs``: (notes, 8), e.g.
    :func:`musictl.bert.nextnote.piece_log_probs`): comparable with, and paired to, the count models' sums."""
    at = transition_targets(tokens)
    return {name: float(-log_probs[at, f].sum()) for name, f in SCORED.items()}


def transitions(tokens: np.ndarray, field: int) -> tuple[np.ndarray, np.ndarray]:
    """(previous values, next values) of ``field`` over consecutive notes of each part of a piece."""
    return triples(tokens, field)[1:]


def stacked(pieces: list[np.ndarray], field: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`triples` of every piece, concatenated."""
    found = [triples(t, field) for t in pieces]
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return tuple(np.concatenate(column) for column in zip(*found))  # type: ignore[return-value]


def count_matrix(pieces: list[np.ndarray], field: int, size: int) -> np.ndarray:
    """``(size, size)`` counts of ``x -> c`` transitions of ``field`` over the pieces."""
    counts = np.zeros((size, size))
    for tokens in pieces:
        x, c = transitions(tokens, field)
        np.add.at(counts, (x, c), 1.0)
    return counts


def add_alpha(counts: np.ndarray, alpha: float) -> np.ndarray:
    """``P[x, c] = (N[x, c] + alpha) / (N[x] + alpha V)``."""
    return (counts + alpha) / (counts.sum(1, keepdims=True) + alpha * counts.shape[1])


def unigram(counts: np.ndarray) -> np.ndarray:
    """The add-one unigram of next values: ``(N[., c] + 1) / (N + V)``."""
    return (counts.sum(0) + 1.0) / (counts.sum() + counts.shape[1])


def witten_bell(counts: np.ndarray) -> np.ndarray:
    """Interpolated Witten-Bell: ``(N[x, c] + T(x) U(c)) / (N[x] + T(x))``, ``T(x)`` the number of distinct
    values after ``x``, ``U`` the add-one unigram of next values; ``U`` itself for an unseen ``x``."""
    lower = unigram(counts)
    types = (counts > 0).sum(1, keepdims=True).astype(np.float64)
    total = counts.sum(1, keepdims=True)
    p = (counts + types * lower) / np.maximum(total + types, 1e-12)
    return np.where(total > 0, p, lower)


def interval_model(counts: np.ndarray, alpha: float) -> np.ndarray:
    """A bigram of steps: ``P[x, c] ∝ n(c - x) + alpha``, steps counted over every ``x``."""
    size = counts.shape[0]
    step = np.subtract.outer(np.arange(size), np.arange(size)).T  # step[x, c] = c - x
    by_step = np.bincount((step + size - 1).ravel(), weights=counts.ravel(), minlength=2 * size - 1)
    weight = by_step[step + size - 1] + alpha
    return weight / weight.sum(1, keepdims=True)


class Trigram:
    """Interpolated Witten-Bell trigram over a bigram ``lower`` (``(V, V)``, rows: previous value):

        P(c | x2, x) = (N(x2, x, c) + T(x2, x) lower[x, c]) / (N(x2, x) + T(x2, x))

    ``T(x2, x)`` the number of distinct values seen after the context (x2, x); ``lower[x, c]`` itself for a
    context never seen and where there is no note two back (``x2 = -1``: the second note of a part)."""

    def __init__(self, x2: np.ndarray, x: np.ndarray, c: np.ndarray, lower: np.ndarray):
        self.lower = lower
        self.size = size = lower.shape[0]
        seen = x2 >= 0
        keys, counts = np.unique((x2[seen] * size + x[seen]) * size + c[seen], return_counts=True)
        self.keys, self.counts = keys, counts.astype(np.float64)
        self.contexts, first = np.unique(keys // size, return_index=True)
        self.totals = np.add.reduceat(self.counts, first) if len(first) else np.zeros(0)
        self.types = np.diff(np.append(first, len(keys))).astype(np.float64)

    def probability(self, x2: np.ndarray, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        lower = self.lower[x, c]
        if len(self.keys) == 0:
            return lower
        context = np.where(x2 >= 0, x2 * self.size + x, -1)
        at = np.minimum(np.searchsorted(self.contexts, context), len(self.contexts) - 1)
        known = (self.contexts[at] == context) & (x2 >= 0)
        total, types = np.where(known, self.totals[at], 0.0), np.where(known, self.types[at], 0.0)
        key = context * self.size + c
        where = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        count = np.where(known & (self.keys[where] == key), self.counts[where], 0.0)
        return np.where(known, (count + types * lower) / np.maximum(total + types, 1e-12), lower)

    def rows(self, x2: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``(n, V)``: the distribution over next values after each context."""
        n = len(x)
        grid_c = np.tile(np.arange(self.size), n)
        return self.probability(np.repeat(x2, self.size), np.repeat(x, self.size), grid_c).reshape(n, self.size)


class NgramModel:
    """``P(c | x2, x) = sum_j w_j P_j(c | x2, x)`` over named parts: ``(V, V)`` bigram matrices (rows: previous
    value; a unigram is a matrix of equal rows) and at most one :class:`Trigram`. :meth:`fit` sets the weights by
    EM on held-out transitions; they start uniform."""

    def __init__(self, parts: dict[str, np.ndarray | Trigram]):
        if not parts:
            raise MusictlError("an n-gram needs at least one part")
        self.parts = parts
        self.weights = np.full(len(parts), 1.0 / len(parts))

    @property
    def named_weights(self) -> dict[str, float]:
        return {name: float(w) for name, w in zip(self.parts, self.weights)}

    def part_probabilities(self, x2: np.ndarray, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        """``(n, parts)``: each part's probability of each transition."""
        return np.stack([p.probability(x2, x, c) if isinstance(p, Trigram) else p[x, c] for p in self.parts.values()],
                        axis=1).reshape(len(x), len(self.parts))

    def probability(self, x2: np.ndarray, x: np.ndarray, c: np.ndarray) -> np.ndarray:
        return self.part_probabilities(x2, x, c) @ self.weights

    def fit(self, x2: np.ndarray, x: np.ndarray, c: np.ndarray) -> NgramModel:
        """Weights that maximise the likelihood of the held-out transitions (x2, x, c) by EM (the likelihood is
        concave in the weights, so EM reaches its maximum); uniform when there are none."""
        if len(x) == 0:
            return self
        parts = np.maximum(self.part_probabilities(x2, x, c), 1e-300)
        weights, before = self.weights.copy(), np.inf
        for _ in range(EM_STEPS):
            mixed = parts @ weights
            nll = float(-np.log(mixed).mean())
            if before - nll < EM_TOLERANCE:
                break
            weights, before = (parts * weights / mixed[:, None]).mean(0), nll
        self.weights = weights / weights.sum()
        return self

    def rows(self, x2: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``(n, V)``: the distribution over next values after each context (x2 = -1: no note two back)."""
        out = 0.0
        for w, p in zip(self.weights, self.parts.values()):
            out = out + w * (p.rows(x2, x) if isinstance(p, Trigram) else p[x])
        return np.asarray(out)

    def pair_matrix(self) -> np.ndarray:
        """``(V, V)``: the model given the previous value only (the trigram backed off to its bigram)."""
        out = 0.0
        for w, p in zip(self.weights, self.parts.values()):
            out = out + w * (p.lower if isinstance(p, Trigram) else p)
        return np.asarray(out)


def mixed(base: np.ndarray, link: np.ndarray | None, mix: float) -> np.ndarray:
    """``(1 - mix) * base + mix * link`` on the rows the link predictor knows (the rest: ``base``)."""
    if link is None or mix == 0:
        return base
    known = link.sum(1, keepdims=True) > 0
    return np.where(known, (1 - mix) * base + mix * link, base)


def probabilities(model: np.ndarray | NgramModel, x2: np.ndarray, x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Each transition's probability under a bigram matrix (``x2`` unused) or an n-gram."""
    return model.probability(x2, x, c) if isinstance(model, NgramModel) else model[x, c]


def nll_sum(model: np.ndarray | NgramModel, x2: np.ndarray, x: np.ndarray, c: np.ndarray) -> float:
    return float(-np.log(np.maximum(probabilities(model, x2, x, c), 1e-300)).sum()) if len(x) else 0.0


def mean_nll(model: np.ndarray, x: np.ndarray, c: np.ndarray) -> float:
    return float(-np.log(np.maximum(model[x, c], 1e-300)).mean()) if len(x) else 0.0


def choose(candidates: dict, x: np.ndarray, c: np.ndarray) -> tuple:
    """(the key of the model with the lowest validation NLL, that model)."""
    best = min(candidates, key=lambda k: mean_nll(candidates[k], x, c))
    return best, candidates[best]


def fit_ngram(train: tuple[np.ndarray, np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray, np.ndarray],
              size: int, others: np.ndarray | None = None) -> tuple[NgramModel, float]:
    """(the interpolated n-gram of one field, the interval model's alpha): unigram, Witten-Bell bigram, trigram
    backing off to it, interval (alpha chosen on ``valid``) and, given ``others`` (other styles' transition
    counts), pooled; every choice and weight from the ``valid`` triples (x2, x, c), the counts from ``train``."""
    x2, x, c = train
    counts = np.zeros((size, size))
    np.add.at(counts, (x, c), 1.0)
    bigram = witten_bell(counts)
    step_alpha, steps = choose({a: interval_model(counts, a) for a in ALPHAS}, valid[1], valid[2])
    parts: dict[str, np.ndarray | Trigram] = {"unigram": np.broadcast_to(unigram(counts), (size, size)),
                                              "bigram": bigram, "trigram": Trigram(x2, x, c, bigram), "interval": steps}
    if others is not None:
        parts["pooled"] = witten_bell(counts + others)
    return NgramModel(parts).fit(*valid), step_alpha


def fit_field(train: tuple[np.ndarray, np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray, np.ndarray],
              size: int, others: np.ndarray, links: dict[str, np.ndarray | None]) -> tuple[dict, dict]:
    """Every method of one field fitted on the k pieces' triples ``train``, each choice (alpha, n-gram weights,
    mixing weight) made on the validation triples ``valid``: (models by method, the choices). ``links``: the link
    predictor's ``Q`` per feature (None: its graph was too small). Never given a test piece."""
    _, x, c = train
    counts = np.zeros((size, size))
    np.add.at(counts, (x, c), 1.0)
    _, vx, vc = valid
    wb = witten_bell(counts)
    alpha, add = choose({a: add_alpha(counts, a) for a in ALPHAS}, vx, vc)
    ngram, step_alpha = fit_ngram(train, valid, size, others)
    models: dict = {"add_alpha": add, "witten_bell": wb, "interval": ngram.parts["interval"],
                    "pooled": ngram.parts["pooled"], NGRAM: ngram}
    choices: dict = {"add_alpha": alpha, "interval": step_alpha, NGRAM: ngram.named_weights}
    for feature, q in links.items():
        mix, models[f"predictor_{feature}"] = choose({m: mixed(wb, q, m) for m in MIXES}, vx, vc)
        choices[f"predictor_{feature}"] = mix if q is not None else "graph too small"
    return models, choices
