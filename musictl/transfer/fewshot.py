"""The few-shot unseen-style protocol: does what was learned elsewhere help a style with k pieces of its own?

For a target style, each *cell* (k, seed) draws k of its training pieces (``all``: every one), builds the
style's musical transition graph from them, and scores the style's test pieces, note by note:

- **Likelihood**: the negative log-likelihood (nats) of the next note's pitch and of its duration, the next
  note of the same part, given the previous note's, under
  ``add_alpha`` (counts plus alpha), ``witten_bell`` (interpolated Witten-Bell over an add-one unigram),
  ``interval`` (a bigram of pitch intervals, or of duration-code steps), ``pooled`` (Witten-Bell on the
  counts of every other style's training pieces plus the k pieces), and ``predictor_<features>``: Witten-Bell
  mixed with the link predictor's scores, ``(1 - mix) * WB + mix * Q`` with ``Q(c | x)`` the trained decoder's
  probability of the edge x-c normalised over the field's nodes, the predictor trained on the k pieces' graph
  with node features ``bert`` (the embeddings of a model pre-trained without this style), ``random``
  (Gaussian features of the same width) or ``none`` (the same layers without message passing, on the BERT
  features: no graph). Alpha and the mixing weight are chosen on the style's validation pieces.
- **Edge recovery**: each transition (previous value -> next value, same field) that occurs in a test piece
  but never in the k training pieces is ranked against every value of its field by the model's
  probability (ties share their ranks): mean reciprocal rank and Hits@10.

A cell is a plain dict (:func:`run_cell`) holding per-test-piece sums, so :func:`summarise` can give 95%
intervals by a bootstrap over test pieces (the same resamples for every row) and differences paired by seed
and resample against the best count baseline. :func:`run_fewshot` caches each cell as JSON as it finishes
and skips the cells already cached, so an interrupted run resumes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from musictl import constants as C
from musictl.errors import MusictlError, UsageError
from musictl.midi.tokens import Piece, TokenCorpus
from musictl.progress import Progress
from musictl.transfer.settings import GcnSettings

SCORED = {"pitch": C.PITCH, "duration": C.DURATION}
BASELINES = ("add_alpha", "witten_bell", "interval", "pooled")
FEATURES = ("bert", "random", "none")
METHODS = BASELINES + tuple(f"predictor_{f}" for f in FEATURES)
ALPHAS = (0.01, 0.05, 0.2, 1.0)
MIXES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
HITS_AT = 10
BOOTSTRAP = 1000


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
        """A short name of the settings a cached cell was made with."""
        import hashlib

        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


# ----- transitions and count models --------------------------------------------------------
def transitions(tokens: np.ndarray, field: int) -> tuple[np.ndarray, np.ndarray]:
    """(previous values, next values) of ``field`` over consecutive notes of each part of a piece."""
    from musictl.transfer.adjacency import parts

    values = tokens.astype(np.int64) - C.N_SPECIAL
    pairs = [(values[rows[:-1], field], values[rows[1:], field]) for rows in parts(values) if len(rows) > 1]
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate([a for a, _ in pairs]), np.concatenate([b for _, b in pairs])


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


def witten_bell(counts: np.ndarray) -> np.ndarray:
    """Interpolated Witten-Bell: ``(N[x, c] + T(x) U(c)) / (N[x] + T(x))``, ``T(x)`` the number of distinct
    values after ``x``, ``U`` the add-one unigram of next values; ``U`` itself for an unseen ``x``."""
    unigram = (counts.sum(0) + 1.0) / (counts.sum() + counts.shape[1])
    types = (counts > 0).sum(1, keepdims=True).astype(np.float64)
    total = counts.sum(1, keepdims=True)
    p = (counts + types * unigram) / np.maximum(total + types, 1e-12)
    return np.where(total > 0, p, unigram)


def interval_model(counts: np.ndarray, alpha: float) -> np.ndarray:
    """A bigram of steps: ``P[x, c] ∝ n(c - x) + alpha``, steps counted over every ``x``."""
    size = counts.shape[0]
    step = np.subtract.outer(np.arange(size), np.arange(size)).T  # step[x, c] = c - x
    by_step = np.bincount((step + size - 1).ravel(), weights=counts.ravel(), minlength=2 * size - 1)
    weight = by_step[step + size - 1] + alpha
    return weight / weight.sum(1, keepdims=True)


def mixed(base: np.ndarray, link: np.ndarray | None, mix: float) -> np.ndarray:
    """``(1 - mix) * base + mix * link`` on the rows the link predictor knows (the rest: ``base``)."""
    if link is None or mix == 0:
        return base
    known = link.sum(1, keepdims=True) > 0
    return np.where(known, (1 - mix) * base + mix * link, base)


def mean_nll(model: np.ndarray, x: np.ndarray, c: np.ndarray) -> float:
    return float(-np.log(np.maximum(model[x, c], 1e-300)).mean()) if len(x) else 0.0


def choose(candidates: dict, x: np.ndarray, c: np.ndarray) -> tuple:
    """(the key of the model with the lowest validation NLL, that model)."""
    best = min(candidates, key=lambda k: mean_nll(candidates[k], x, c))
    return best, candidates[best]


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
    """One (k, seed) cell: the models fitted on k pieces (choices on validation), and per test piece the NLL
    sums, note counts, reciprocal-rank sums and Hits@10 of the transitions unseen in the k pieces."""
    pool, valid, test = style_pieces(corpus, style)
    shots = draw_shots(pool, k, seed)
    train_tokens = [corpus.piece_tokens(p) for p in shots]
    valid_tokens = [corpus.piece_tokens(p) for p in valid]
    predictors = {f: predictor_scores(corpus, shots, table, f, seed, config) for f in FEATURES}
    cell = {"style": style, "k": k, "seed": seed, "shots": [p.path for p in shots], "test": [p.path for p in test],
            "choices": {}, "nll": {m: {} for m in METHODS}, "notes": {}, "rr": {m: {} for m in METHODS},
            "hits": {m: {} for m in METHODS}, "new": {}}
    for name, f in SCORED.items():
        size = corpus.config.field_sizes[f]
        counts = count_matrix(train_tokens, f, size)
        vx, vc = (np.concatenate(a) for a in zip(*[transitions(t, f) for t in valid_tokens]))
        wb = witten_bell(counts)
        alpha, add = choose({a: add_alpha(counts, a) for a in ALPHAS}, vx, vc)
        step_alpha, steps = choose({a: interval_model(counts, a) for a in ALPHAS}, vx, vc)
        models = {"add_alpha": add, "witten_bell": wb, "interval": steps,
                  "pooled": witten_bell(counts + other_counts[name])}
        cell["choices"][name] = {"add_alpha": alpha, "interval": step_alpha}
        for feature, scores in predictors.items():
            q = None if scores is None else scores[name]
            mix, models[f"predictor_{feature}"] = choose({m: mixed(wb, q, m) for m in MIXES}, vx, vc)
            cell["choices"][name][f"predictor_{feature}"] = mix if q is not None else "graph too small"
        seen = counts > 0
        for method in METHODS:
            cell["nll"][method][name], cell["rr"][method][name], cell["hits"][method][name] = [], [], []
        cell["notes"][name], cell["new"][name] = [], []
        for piece in test:
            x, c = transitions(corpus.piece_tokens(piece), f)
            new = np.unique(np.stack([x, c], 1)[~seen[x, c]], axis=0) if len(x) else np.zeros((0, 2), dtype=np.int64)
            cell["notes"][name].append(len(x))
            cell["new"][name].append(len(new))
            for method, model in models.items():
                cell["nll"][method][name].append(float(-np.log(np.maximum(model[x, c], 1e-300)).sum()))
                ranks = _ranks(model, new[:, 0], new[:, 1]) if len(new) else np.zeros(0)
                cell["rr"][method][name].append(float((1 / ranks).sum()))
                cell["hits"][method][name].append(float((ranks <= HITS_AT).sum()))
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


# ----- summary ---------------------------------------------------------------------------------
def _ratio(group: list[dict], draws: np.ndarray, key: str, method: str, name: str, denominator: str) -> np.ndarray:
    """``(1 + BOOTSTRAP,)``: sum of ``key`` over sum of ``denominator`` on the test pieces as they are, then on
    each resample (rows of ``draws``), averaged over the seeds of ``group``."""
    num = np.array([c[key][method][name] for c in group])[:, draws].sum(-1)
    den = np.array([c[denominator][name] for c in group])[:, draws].sum(-1)
    return (num / np.maximum(den, 1e-12)).mean(0)


def _interval(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(values[0]), "low": float(np.percentile(values[1:], 2.5)),
            "high": float(np.percentile(values[1:], 97.5))}


def summarise(cells: list[dict], seed: int = 0) -> dict:
    """Per k: for every method, pitch / duration / note NLL (nats per note), MRR and Hits@10 of unseen
    transitions, each with a 95% bootstrap interval over test pieces (the same resamples for every row, the
    mean over seeds inside), and the difference from the best count baseline (lowest note NLL), paired by seed
    and resample. Rows with a mean below 0 beat that baseline."""
    out: dict = {}
    for k in sorted({c["k"] for c in cells}, key=lambda v: v or 1 << 30):
        group = [c for c in cells if c["k"] == k]
        n_pieces = len(group[0]["test"])
        rng = np.random.default_rng(seed)  # own seeding: the bootstrap's resamples (statistics, not training)
        draws = np.vstack([np.arange(n_pieces), rng.integers(0, n_pieces, size=(BOOTSTRAP, n_pieces))])

        stats = {}
        for method in METHODS:
            pitch = _ratio(group, draws, "nll", method, "pitch", "notes")
            duration = _ratio(group, draws, "nll", method, "duration", "notes")
            stats[method] = {"pitch_nll": pitch, "duration_nll": duration, "note_nll": pitch + duration,
                             **{f"{n}_{m}": _ratio(group, draws, key, method, n, "new") for n in SCORED
                                for m, key in (("mrr", "rr"), (f"hits{HITS_AT}", "hits"))}}
        best = min(BASELINES, key=lambda m: stats[m]["note_nll"][0])
        rows = {}
        for method in METHODS:
            rows[method] = {name: _interval(v) for name, v in stats[method].items()}
            rows[method]["note_nll_minus_best"] = _interval(stats[method]["note_nll"] - stats[best]["note_nll"])
        choices = {}
        for name in SCORED:
            choices[name] = {m: [c["choices"][name].get(m) for c in group] for m in group[0]["choices"][name]}
        out["all" if k == 0 else str(k)] = {"k": k, "seeds": len(group), "test_pieces": n_pieces,
                                             "notes": {n: int(sum(group[0]["notes"][n])) for n in SCORED},
                                             "unseen_transitions": {n: int(sum(group[0]["new"][n])) for n in SCORED},
                                             "best_baseline": best, "rows": rows, "choices": choices}
    return out


def render(summary: dict, style: str, command: str) -> str:
    """A markdown table per k (the command that made it in the header)."""
    lines = [f"### {style}", "", f"Made by `{command}`. NLL in nats per note of the test pieces (lower is better); "
             "MRR and Hits@10 rank transitions that occur in test pieces but never in the k training pieces. "
             "Mean over seeds [95% bootstrap interval over test pieces]; the last column is the note NLL minus the "
             "best count baseline's, paired by seed and resample (below 0: better).", ""]
    for key, block in summary.items():
        lines += [f"**k = {key}** ({block['seeds']} seeds, {block['test_pieces']} test pieces, "
                  f"{block['notes']['pitch']} transitions, unseen in training: {block['unseen_transitions']['pitch']} "
                  f"pitch / {block['unseen_transitions']['duration']} duration; best baseline: {block['best_baseline']})",
                  "", "| method | pitch NLL | duration NLL | pitch MRR | pitch Hits@10 | duration MRR | duration Hits@10 | "
                  "note NLL - best baseline |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for method, row in block["rows"].items():
            cells = [_cell(row[name]) for name in ("pitch_nll", "duration_nll", "pitch_mrr", f"pitch_hits{HITS_AT}",
                                                    "duration_mrr", f"duration_hits{HITS_AT}")]
            diff = row["note_nll_minus_best"]
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {diff['mean']:+.3f} [{diff['low']:+.3f}, "
                         f"{diff['high']:+.3f}] |")
        lines.append("")
    return "\n".join(lines)


def _cell(value: dict) -> str:
    return f"{value['mean']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"
