"""Style fidelity of generated pieces, always against pieces the generator was not built from.

- Histogram divergences from the style's reference pieces, its test split (the graph and tables come from
  its train split, and its validation split chooses the walk's mixing weight and the n-gram baseline's weights,
  so a reference piece is never used to choose anything), and from every other style.
- Novelty: the share of generated pitch 4-grams not copied from the training pieces.
- What a listener hears first: the share of a piece's time where no note sounds, the ratio of a
  note's duration to the time until the next onset of its part (1: legato), and key consistency (the
  share of note time inside the piece's best-fitting diatonic scale), for the generated and the
  reference pieces.
- A judge: logistic regression on per-piece features, cross-validated, telling reference pieces from
  generated ones (balanced accuracy; 0.5 means it cannot tell them apart), beside its real-vs-real null: the
  same judge telling reference pieces from other reference pieces, on random splits of them. Only an accuracy
  above the null's 95th percentile says the generated pieces can be told apart, and only with 40+ pieces a
  class is either worth reading (DESIGN §9).
- What a fine-tuned style classifier says of them (``--classifier``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.distance import jensenshannon

from musictl import constants as C
from musictl.errors import UsageError
from musictl.midi.tokens import TokenCorpus
from musictl.midi.vocab import TokenizerConfig
from musictl.transfer.adjacency import style_split
from musictl.transfer.keys import pitch_class_profile, scale_shares
from musictl.transfer.tables import next_onset_gaps

NGRAM = 4
JUDGE_FOLDS = 5
NULL_DRAWS = 100  # random splits of the held-out pieces for the judge's real-vs-real null
ENOUGH_PIECES = 40  # a class: with fewer, the judge and its null are too noisy to read (DESIGN §9)


def histograms(pieces: list[np.ndarray], config: TokenizerConfig) -> dict[str, np.ndarray]:
    """Pitch-class, melodic interval (-12..12, clipped), duration-code and onset-position (within the
    bar) histograms, normalised."""
    pc, iv, du = np.zeros(12), np.zeros(25), np.zeros(config.field_sizes[C.DURATION])
    onset = np.zeros(config.field_sizes[C.POSITION])
    for tokens in pieces:
        v = tokens.astype(np.int64) - C.N_SPECIAL
        pitched = v[v[:, C.INSTRUMENT] != C.DRUM_PROGRAM]
        if len(pitched) == 0:
            continue
        pc += np.bincount(pitched[:, C.PITCH] % 12, minlength=12)
        iv += np.bincount(np.clip(np.diff(pitched[:, C.PITCH]), -12, 12) + 12, minlength=25)
        du += np.bincount(pitched[:, C.DURATION], minlength=len(du))
        onset += np.bincount(pitched[:, C.POSITION], minlength=len(onset))
    named = (("pitch_class", pc), ("interval", iv), ("duration", du), ("onset_position", onset))
    return {name: h / max(h.sum(), 1) for name, h in named}


def divergence(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, float]:
    """Jensen-Shannon divergence (base 2, 0 = identical, 1 = disjoint) per histogram."""
    return {k: round(float(jensenshannon(a[k] + 1e-12, b[k] + 1e-12, base=2) ** 2), 5) for k in a}


def pitch_ngrams(tokens: np.ndarray, n: int = NGRAM) -> set[tuple[int, ...]]:
    pitches = (tokens[:, C.PITCH].astype(np.int64) - C.N_SPECIAL).tolist()
    return {tuple(pitches[i : i + n]) for i in range(len(pitches) - n + 1)}


def piece_listening(tokens: np.ndarray, config: TokenizerConfig) -> tuple[float, np.ndarray]:
    """(the share of the piece's time, first onset to last release, where no note sounds; each note's duration
    over the time until the next onset of its part, for notes whose part plays again)."""
    from musictl.midi.decode import onsets

    values = tokens.astype(np.int64) - C.N_SPECIAL
    if len(values) == 0:
        return 0.0, np.zeros(0)
    onset = onsets(values, config)[0].astype(np.float64)
    duration = config.duration_centres[values[:, C.DURATION]]
    order = np.argsort(onset, kind="stable")
    start, reach = onset[order], np.maximum.accumulate(onset[order] + duration[order])
    silent = np.maximum(start[1:] - reach[:-1], 0.0).sum()
    span = reach[-1] - start[0]
    gap = next_onset_gaps(onset, values[:, C.INSTRUMENT])
    has = gap > 0
    return float(silent / span) if span > 0 else 0.0, duration[has] / gap[has]


def key_consistency(tokens: np.ndarray, config: TokenizerConfig) -> float | None:
    """The share of a piece's pitched (non-drum) note time, each note weighted by its duration, that lies inside
    its best-fitting diatonic scale: the best of the 12 major scales (a natural minor scale is the same pitch-class
    set as its relative major, so 12 sets cover both; so do the modes). 1: every note in one key; about 7/12 for
    pitches drawn at random. None for a piece without pitched notes."""
    profile = pitch_class_profile(tokens, config)
    return float(scale_shares(profile).max()) if profile.sum() > 0 else None


def mean_key_consistency(pieces: list[np.ndarray], config: TokenizerConfig) -> float | None:
    """:func:`key_consistency` averaged over the pieces that have pitched notes."""
    shares = [k for k in (key_consistency(t, config) for t in pieces) if k is not None]
    return round(float(np.mean(shares)), 4) if shares else None


def listening(pieces: list[np.ndarray], config: TokenizerConfig) -> dict:
    """Mean silence share of the pieces, the median duration-to-next-onset ratio over all their notes and the mean
    key consistency (:func:`key_consistency`)."""
    measured = [piece_listening(t, config) for t in pieces]
    ratios = np.concatenate([r for _, r in measured]) if measured else np.zeros(0)
    return {"pieces": len(pieces), "silence_share": round(float(np.mean([s for s, _ in measured])), 4) if measured else None,
            "duration_ratio": round(float(np.median(ratios)), 4) if len(ratios) else None,
            "key_consistency": mean_key_consistency(pieces, config)}


def piece_features(tokens: np.ndarray, config: TokenizerConfig) -> np.ndarray:
    """One piece as a vector for the judge: its pitch-class, interval, duration and onset-within-the-beat
    histograms, its silence share and median duration ratio."""
    h = histograms([tokens], config)
    values = tokens.astype(np.int64) - C.N_SPECIAL
    beat = np.bincount(values[:, C.POSITION] % config.positions_per_beat, minlength=config.positions_per_beat)
    silence, ratios = piece_listening(tokens, config)
    return np.concatenate([h["pitch_class"], h["interval"], h["duration"], beat / max(beat.sum(), 1),
                           [silence, float(np.median(ratios)) if len(ratios) else 0.0]])


def _judge_accuracy(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, int]:
    """(balanced accuracy of a standardised logistic regression telling class 1 from class 0 under stratified
    cross-validation, mean over the folds; the number of folds: up to :data:`JUDGE_FOLDS`, at most the smaller
    class's size). The one rule of the judge and of every draw of its null."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(JUDGE_FOLDS, *np.bincount(y, minlength=2))
    scores = []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x[train], y[train])
        scores.append(balanced_accuracy_score(y[test], model.predict(x[test])))
    return float(np.mean(scores)), int(folds)


def null_sizes(generated: int, held_out: int) -> tuple[int, int]:
    """The two groups each null draw splits the ``held_out`` reference pieces into: the first as many as the
    generated pieces and the second every other reference piece, when the reference has at least twice as many
    pieces as were generated; else its halves (the first the smaller). Smaller groups than the real comparison's
    make a wider null, so its 95th percentile is then a higher (more conservative) bar."""
    first = min(generated, held_out // 2)
    return first, held_out - first


def judge_null(features: np.ndarray, sizes: tuple[int, int], seed: int = 0, draws: int = NULL_DRAWS) -> np.ndarray:
    """The judge's accuracy on ``draws`` random splits of the reference pieces (rows of ``features``, computed
    once) into groups of ``sizes``, each draw with its own folds; seeded by ``seed``."""
    rng = np.random.default_rng([seed, len(features), *sizes])  # own seeding: statistics, the null is the same for a seed
    y = np.array([0] * sizes[0] + [1] * sizes[1])
    accuracies = np.empty(draws)
    for i in range(draws):
        order = rng.permutation(len(features))[: sum(sizes)]
        accuracies[i] = _judge_accuracy(features[order], y, int(rng.integers(2**31)))[0]
    return accuracies


def judge(generated: list[np.ndarray], real: list[np.ndarray], config: TokenizerConfig, seed: int = 0,
          null_draws: int = NULL_DRAWS) -> dict:
    """Cross-validated balanced accuracy of a logistic regression telling ``real`` pieces from ``generated`` ones
    (0.5: it cannot tell them apart; 1.0: every piece is recognised), beside its real-vs-real null (the same
    judge on ``null_draws`` random splits of ``real``, :func:`null_sizes`): ``percentile`` is the share of null
    draws at or below the accuracy, ``distinguishable`` whether the accuracy is above the null's 95th percentile,
    ``enough_pieces`` whether both classes have :data:`ENOUGH_PIECES` pieces."""
    folds = min(JUDGE_FOLDS, len(generated), len(real))
    if folds < 2:
        return {"accuracy": None, "folds": 0, "note": "needs at least 2 generated and 2 held-out pieces"}
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # hundreds of tiny fits: threads only cost time
        return _judge(generated, real, config, seed, null_draws)


def _judge(generated: list[np.ndarray], real: list[np.ndarray], config: TokenizerConfig, seed: int,
           null_draws: int) -> dict:
    x = np.stack([piece_features(t, config) for t in [*generated, *real]])  # each piece's features once
    y = np.array([0] * len(generated) + [1] * len(real))
    accuracy, folds = _judge_accuracy(x, y, seed)
    enough = min(len(generated), len(real)) >= ENOUGH_PIECES
    result = {"accuracy": round(accuracy, 4), "folds": folds, "chance": 0.5,
              "generated": len(generated), "held_out": len(real), "null": None, "percentile": None,
              "distinguishable": None, "enough_pieces": enough}
    sizes = null_sizes(len(generated), len(real))
    if min(sizes) < 2 or null_draws < 1:
        result["null"] = {"note": "needs at least 4 held-out pieces (two groups of 2) and one draw"}
    else:
        null = judge_null(x[len(generated):], sizes, seed, null_draws)
        p95 = float(np.percentile(null, 95))
        result["null"] = {
            "mean": round(float(null.mean()), 4), "sd": round(float(null.std(ddof=1)) if null_draws > 1 else 0.0, 4),
            "p95": round(p95, 4), "draws": null_draws, "sizes": list(sizes), "folds": min(JUDGE_FOLDS, *sizes),
            "what": f"the same judge telling {sizes[0]} held-out pieces from {sizes[1]} others, on random splits of "
                    f"the {len(real)} held-out pieces" + ("" if sizes[0] == len(generated) else
                                                         " (halves: too few to match the generated pieces' number)"),
        }
        result["percentile"] = round(float(np.mean(null <= accuracy + 1e-9)), 4)
        result["distinguishable"] = bool(accuracy > p95 + 1e-9)
    if not enough:
        result["note"] = (f"{len(generated)} generated vs {len(real)} held-out pieces: fewer than {ENOUGH_PIECES} a "
                          "class, so the judge and its null are too noisy to tell the generated pieces from the "
                          "style's; generate more (--evaluate N) and hold out more pieces")
    return result


def reference_pieces(corpus: TokenCorpus, style: str) -> tuple[list, list, bool]:
    """(the pieces the style's graph and tables come from, the pieces generated ones are compared with, whether
    those are held out): the reference is the style's test split, never its validation split, which chooses the
    walk's mixing weight (:meth:`RandomWalker.choose_mix`) and the n-gram baseline's weights; a style without test
    pieces is compared with its training pieces (not held out)."""
    train, held_out = style_split(corpus, style)
    test = [p for p in held_out if p.split == "test"]
    return train, test or train, bool(test)


def style_fidelity(generated: list[np.ndarray], corpus: TokenCorpus, style: str, seed: int = 0,
                   graph_saw_held_out: bool = False, null_draws: int = NULL_DRAWS) -> dict:
    """Divergences of ``generated`` from the style's reference pieces (:func:`reference_pieces`) and from every
    other style, the share of n-grams copied from the training pieces, listener metrics and the judge (see the
    module docstring). A style without test pieces is compared with its training pieces, and the report says so,
    as it does when the graph counted every piece (``graph_saw_held_out``: ``adjacency --pieces all``)."""
    config = corpus.config
    train, reference, held_out = reference_pieces(corpus, style)
    real = [corpus.piece_tokens(p) for p in reference]
    gen = histograms(generated, config)
    own = divergence(gen, histograms(real, config))
    others = {s: divergence(gen, histograms([corpus.piece_tokens(p) for p in corpus.select(style=s)], config))
              for s in corpus.styles if s != style}
    known: set[tuple[int, ...]] = set()
    for p in train:
        known |= pitch_ngrams(corpus.piece_tokens(p))
    grams = [g for t in generated for g in pitch_ngrams(t)]
    copied = sum(g in known for g in grams) / max(len(grams), 1)
    result = {
        "style": style,
        "pieces": len(generated),
        "notes": int(sum(len(t) for t in generated)),
        "reference": {"split": ("test" + (" (the graph counted them too: adjacency --pieces all)"
                                          if graph_saw_held_out else "")) if held_out
                      else "train (the style has no test pieces)", "pieces": len(reference)},
        "divergence_own_style": own,
        "divergence_other_styles": others,
        f"copied_{NGRAM}gram_share": round(copied, 4),
        "novelty": round(1 - copied, 4),
        "listening": {"generated": listening(generated, config), "held_out": listening(real, config)},
        "judge": judge(generated, real, config, seed, null_draws),
    }
    if others:
        mean_other = {k: round(float(np.mean([d[k] for d in others.values()])), 5) for k in own}
        result["divergence_other_styles_mean"] = mean_other
        result["closer_to_own_style"] = {k: own[k] < mean_other[k] for k in own}
    return result


def load_style_classifier(classifier_dir: Path, corpus: TokenCorpus, style: str):
    """A ``finetune-mask --task style`` model that can judge pieces of ``style`` made from ``corpus``'s
    tokens; anything else is refused with one line, before any piece is generated."""
    from musictl.bert.predict import load_classifier

    model, task = load_classifier(Path(classifier_dir), "cpu")
    if task != "style":
        raise UsageError(f"--classifier {classifier_dir} was fine-tuned for --task {task}; it needs --task style")
    if model.config.tokenizer_config != corpus.config:
        raise UsageError(f"--classifier {classifier_dir} was trained on tokens with other parameters than these; "
                         "fine-tune it on this tokens artifact: musictl finetune-mask --task style")
    classes = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if style not in classes:
        raise UsageError(f"--classifier {classifier_dir} knows the styles {', '.join(classes)}, not {style}")
    return model


def classifier_assignments(model, generated: list[np.ndarray], style: str) -> dict:
    """What a style classifier (:func:`load_style_classifier`) says of ``generated``: the style it assigns to
    each piece (its windows' probabilities averaged), the share assigned to ``style`` and the chance rate."""
    from musictl.bert.predict import predict_tokens

    labels = [predict_tokens(model, "style", piece)["label"] for piece in generated]
    return {"assigned": labels, "assigned_to_style": round(labels.count(style) / len(labels), 4),
            "chance": round(1 / model.config.num_labels, 4)}
