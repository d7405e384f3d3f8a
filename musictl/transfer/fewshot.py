"""The few-shot unseen-style protocol: does what was learned elsewhere help a style with k pieces of its own?

For a target style, each *cell* (k, seed) draws k of its training pieces (``all``: every one), builds the
style's musical transition graph from them, and scores the style's test pieces, note by note:

- **Likelihood**: the negative log-likelihood (nats) of the next note's pitch and of its duration, the next
  note of the same part, given the previous note's (the previous two notes' for the n-gram), under
  ``add_alpha`` (counts plus alpha), ``witten_bell`` (interpolated Witten-Bell over an add-one unigram),
  ``interval`` (a bigram of pitch intervals, or of duration-code steps), ``pooled`` (Witten-Bell on the
  counts of every other style's training pieces plus the k pieces), ``ngram``: the linear interpolation
  (:class:`NgramModel`) of the add-one unigram, the Witten-Bell bigram, a Witten-Bell trigram that backs off
  to that bigram (:class:`Trigram`), ``interval`` and ``pooled``, its weights fitted by EM on the validation
  pieces; and ``predictor_<features>``: Witten-Bell mixed with the link predictor's scores,
  ``(1 - mix) * WB + mix * Q`` with ``Q(c | x)`` the trained decoder's probability of the edge x-c normalised
  over the field's nodes, the predictor trained on the k pieces' graph with node features ``bert`` (the
  embeddings of a model pre-trained without this style), ``random`` (Gaussian features of the same width) or
  ``none`` (the same layers without message passing, on the BERT features: no graph). Alpha, the n-gram's
  weights and the mixing weight are chosen on the style's validation pieces (:func:`fit_field`, which is never
  given a test piece).
- **Edge recovery**: each transition (previous value -> next value, same field) that occurs in a test piece
  but never in the k training pieces is ranked against every value of its field by the model's
  probability (ties share their ranks): mean reciprocal rank and Hits@10. A pair has no second context note,
  so the n-gram ranks it with its trigram term backed off to its bigram (:meth:`NgramModel.pair_matrix`).

A cell is a plain dict (:func:`run_cell`) holding, per test piece, the NLL sums, note counts, reciprocal-rank
sums and Hits@10 counts, and the validation NLL of every method, so a summary can resample test pieces and
seeds and pair differences by seed against the best count model, which :func:`choose_baseline` picks on the
validation NLL alone (benchmarks/transfer_fewshot.py). :func:`run_fewshot` caches each cell as JSON as it
finishes and skips the cells already cached, so an interrupted run resumes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from musictl.errors import MusictlError, UsageError
from musictl.midi.tokens import Piece, TokenCorpus
from musictl.progress import Progress
from musictl.transfer.ngram import (  # noqa: F401  (re-exported: the protocol's models)
    ALPHAS,
    EM_STEPS,
    EM_TOLERANCE,
    MIXES,
    NGRAM,
    NGRAM_PARTS,
    SCORED,
    NgramModel,
    Trigram,
    add_alpha,
    choose,
    count_matrix,
    fit_field,
    fit_ngram,
    interval_model,
    mean_nll,
    mixed,
    nll_sum,
    probabilities,
    stacked,
    target_nll,
    transition_targets,
    transitions,
    triples,
    unigram,
    witten_bell,
)
from musictl.transfer.settings import GcnSettings

BASELINES = ("add_alpha", "witten_bell", "interval", "pooled")  # the single count models
FEATURES = ("bert", "random", "none")
PREDICTORS = tuple(f"predictor_{f}" for f in FEATURES)
METHODS = (*BASELINES, NGRAM, *PREDICTORS)
HITS_AT = 10
PROTOCOL = 3  # in every cache key: cells made by an earlier protocol (no n-gram, no validation NLL, no CPU seconds) are not read


@dataclass
class FewShotConfig:
    """One protocol run: which k, how many seeds, and the link predictor's (small) training budget."""

    shots: tuple[int, ...] = (1, 2, 4, 8, 0)  # 0: every training piece
    seeds: int = 3
    epochs: int = 200
    patience: int = 20
    hidden: int = 64
    out_dim: int = 32

    def __post_init__(self) -> None:
        if self.seeds < 1 or any(k < 0 for k in self.shots) or not self.shots:
            raise UsageError("few-shot: give k >= 1 (or all) and at least one seed")

    def key(self) -> str:
        """A short name of the settings (and protocol) a cached cell was made with."""
        import hashlib

        made = json.dumps({**asdict(self), "protocol": PROTOCOL}, sort_keys=True)
        return hashlib.sha1(made.encode()).hexdigest()[:10]


def choose_baseline(cells: list[dict]) -> str:
    """The best single count model (:data:`BASELINES`) of the cells of one k: the lowest validation NLL per note
    (pitch + duration), averaged over the cells (seeds). Reads each cell's ``valid_nll`` and ``valid_notes`` only:
    no test piece takes part in the choice."""
    def note_nll(method: str) -> float:
        return float(np.mean([sum(cell["valid_nll"][method][name] / max(cell["valid_notes"][name], 1)
                                  for name in SCORED) for cell in cells]))

    return min(BASELINES, key=note_nll)


# ----- the link predictor ------------------------------------------------------------------------
def predictor_scores(corpus: TokenCorpus, pieces: list[Piece], table: np.ndarray, features: str, seed: int,
                     config: FewShotConfig) -> dict[str, np.ndarray] | None:
    """``{field name: (V, V) Q}``: the trained decoder's edge probabilities between values of the field,
    normalised over the field's nodes (rows of values that are no node are 0); None when the graph of
    ``pieces`` is too small to split."""
    import torch

    from musictl.transfer.adjacency import build_graph
    from musictl.transfer.gcn import Encoder, LinkDecoder, MlpEncoder, link_probabilities
    from musictl.transfer.link_prediction import train_link_prediction

    graph = build_graph(corpus, pieces)
    x = table[graph.nodes]
    if features == "random":  # own seeding: a baseline's input features, not a training stream of a Run
        x = np.random.default_rng(seed).normal(size=x.shape) * x.std()
    settings = GcnSettings(epochs=config.epochs, patience=config.patience, hidden=config.hidden,
                           out_dim=config.out_dim, baselines=False, seed=seed, degree_features=features != "none")
    try:
        result = train_link_prediction(x, graph.undirected(), settings, score_test=False,
                                       fields=graph.node_fields(corpus.config),
                                       encoder_cls=MlpEncoder if features == "none" else Encoder)
    except MusictlError:
        return None
    decoder = LinkDecoder(settings.out_dim, settings.decoder)
    decoder.load_state_dict({k[len("decoder."):]: v for k, v in result.state.items() if k.startswith("decoder.")})
    probs = link_probabilities(decoder, torch.as_tensor(result.embeddings, dtype=torch.float))
    field_of = graph.node_fields(corpus.config)
    out = {}
    for name, f in SCORED.items():
        size = corpus.config.field_sizes[f]
        nodes = np.flatnonzero(field_of == f)
        values = graph.nodes[nodes] - corpus.config.field_offsets[f]
        q = np.zeros((size, size))
        q[np.ix_(values, values)] = probs[np.ix_(nodes, nodes)]
        out[name] = q / np.maximum(q.sum(1, keepdims=True), 1e-300)
    return out


# ----- one cell -----------------------------------------------------------------------------------
def style_pieces(corpus: TokenCorpus, style: str) -> tuple[list[Piece], list[Piece], list[Piece]]:
    """(training pool, validation pieces, test pieces) of ``style``; each must be non-empty."""
    corpus.require_style(style)
    pool, valid, test = (corpus.select(style=style, split=s) for s in ("train", "valid", "test"))
    if not (pool and valid and test):
        raise UsageError(f"few-shot needs train, valid and test pieces of {style!r} (it has {len(pool)}, {len(valid)}, "
                         f"{len(test)}); tokenize with a split that gives each some, e.g. --split 0.6,0.1,0.3")
    return pool, valid, test


def draw_shots(pool: list[Piece], k: int, seed: int) -> list[Piece]:
    """k pieces of the pool drawn by ``seed`` (k = 0 or k >= the pool: all of them)."""
    if k == 0 or k >= len(pool):
        return list(pool)
    # own seeding: which pieces are the shots is a data split; a new rule would move every published cell
    return [pool[i] for i in sorted(np.random.default_rng(seed).choice(len(pool), k, replace=False))]


def _ranks(model: np.ndarray, x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The rank of each ``c`` in its row ``model[x]`` (1 = most probable; ties share the mean rank)."""
    rows, target = model[x], model[x, c][:, None]
    return 1 + (rows > target).sum(1) + ((rows == target).sum(1) - 1) / 2


def run_cell(corpus: TokenCorpus, style: str, k: int, seed: int, table: np.ndarray, config: FewShotConfig,
             other_counts: dict[str, np.ndarray]) -> dict:
    """One (k, seed) cell: the models fitted on k pieces with every choice on validation (:func:`fit_field`, before
    any test piece is read), the validation NLL sum of each method, and per test piece the NLL sums, note counts,
    reciprocal-rank sums and Hits@10 of the transitions unseen in the k pieces; and ``cpu_seconds`` per method: the
    CPU time of fitting every count model of the cell (they share counts and validation choices: an upper bound for
    each) plus scoring that method's test pieces, plus, for a link-predictor mix, training its predictor."""
    import time

    pool, valid, test = style_pieces(corpus, style)
    shots = draw_shots(pool, k, seed)
    train_tokens = [corpus.piece_tokens(p) for p in shots]
    valid_tokens = [corpus.piece_tokens(p) for p in valid]
    predictors, trained = {}, {}
    for f in FEATURES:
        started = time.process_time()
        predictors[f] = predictor_scores(corpus, shots, table, f, seed, config)
        trained[f"predictor_{f}"] = time.process_time() - started
    cell = {"style": style, "k": k, "seed": seed, "shots": [p.path for p in shots], "test": [p.path for p in test],
            "choices": {}, "valid_nll": {m: {} for m in METHODS}, "valid_notes": {},
            "nll": {m: {} for m in METHODS}, "notes": {}, "rr": {m: {} for m in METHODS},
            "hits": {m: {} for m in METHODS}, "new": {}}
    fitted = {}
    cpu = dict.fromkeys(METHODS, 0.0)
    fitting = time.process_time()
    for name, f in SCORED.items():
        size = corpus.config.field_sizes[f]
        train, held = stacked(train_tokens, f), stacked(valid_tokens, f)
        links = {feature: None if scores is None else scores[name] for feature, scores in predictors.items()}
        models, cell["choices"][name] = fit_field(train, held, size, other_counts[name], links)
        cell["valid_notes"][name] = len(held[1])
        for method, model in models.items():
            cell["valid_nll"][method][name] = nll_sum(model, *held)
        fitted[name] = (models, count_matrix(train_tokens, f, size) > 0)
    fitting = time.process_time() - fitting
    for name, f in SCORED.items():  # the test pieces, only now
        models, seen = fitted[name]
        for method in METHODS:
            cell["nll"][method][name], cell["rr"][method][name], cell["hits"][method][name] = [], [], []
        cell["notes"][name], cell["new"][name] = [], []
        ranking = {m: model.pair_matrix() if isinstance(model, NgramModel) else model for m, model in models.items()}
        for piece in test:
            x2, x, c = triples(corpus.piece_tokens(piece), f)
            new = np.unique(np.stack([x, c], 1)[~seen[x, c]], axis=0) if len(x) else np.zeros((0, 2), dtype=np.int64)
            cell["notes"][name].append(len(x))
            cell["new"][name].append(len(new))
            for method, model in models.items():
                started = time.process_time()
                cell["nll"][method][name].append(nll_sum(model, x2, x, c))
                ranks = _ranks(ranking[method], new[:, 0], new[:, 1]) if len(new) else np.zeros(0)
                cell["rr"][method][name].append(float((1 / ranks).sum()))
                cell["hits"][method][name].append(float((ranks <= HITS_AT).sum()))
                cpu[method] += time.process_time() - started
    cell["cpu_seconds"] = {m: round(fitting + cpu[m] + trained.get(m, 0.0), 4) for m in METHODS}
    return cell


def other_style_counts(corpus: TokenCorpus, style: str) -> dict[str, np.ndarray]:
    """Transition counts of every other style's training pieces (what ``pooled`` adds)."""
    pieces = [corpus.piece_tokens(p) for s in corpus.styles if s != style for p in corpus.select(style=s, split="train")]
    return {name: count_matrix(pieces, f, corpus.config.field_sizes[f]) for name, f in SCORED.items()}


def run_fewshot(corpus: TokenCorpus, style: str, table: np.ndarray, config: FewShotConfig, cache: Path,
                on_progress: Progress | None = None) -> list[dict]:
    """Every (k, seed) cell of ``style``, each read from ``cache`` when it is there (made with the same config),
    else computed and written there at once."""
    from musictl import artifacts

    style_pieces(corpus, style)
    cache = Path(cache) / style / config.key()
    cache.mkdir(parents=True, exist_ok=True)
    others = None
    cells = []
    jobs = [(k, seed) for k in config.shots for seed in range(config.seeds)]
    for done, (k, seed) in enumerate(jobs, 1):
        path = cache / f"k{k or 'all'}-seed{seed}.json"
        cached = path.is_file()
        if cached:
            cell = json.loads(path.read_text())
        else:
            others = other_style_counts(corpus, style) if others is None else others
            cell = run_cell(corpus, style, k, seed, table, config, others)
            artifacts.atomic_write_json(path, cell)
        cells.append(cell)
        if on_progress:
            on_progress(done, len(jobs), {"k": k, "seed": seed, "cached": cached})
    return cells


