"""Style fidelity of generated pieces: histogram divergences against each style, novelty, and what a
style classifier says of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial.distance import jensenshannon

from musictl import constants as C
from musictl.errors import UsageError
from musictl.midi.tokens import TokenCorpus
from musictl.midi.vocab import TokenizerConfig

NGRAM = 4


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


def style_fidelity(generated: list[np.ndarray], corpus: TokenCorpus, style: str) -> dict:
    """Divergences of ``generated`` from every style of the corpus, and the share of copied n-grams."""
    config = corpus.config
    gen = histograms(generated, config)
    by_style = {s: divergence(gen, histograms([corpus.piece_tokens(p) for p in corpus.select(style=s)], config))
                for s in corpus.styles}
    own = by_style[style]
    others = {s: d for s, d in by_style.items() if s != style}
    known: set[tuple[int, ...]] = set()
    for p in corpus.select(style=style):
        known |= pitch_ngrams(corpus.piece_tokens(p))
    grams = [g for t in generated for g in pitch_ngrams(t)]
    copied = sum(g in known for g in grams) / max(len(grams), 1)
    result = {
        "style": style,
        "pieces": len(generated),
        "notes": int(sum(len(t) for t in generated)),
        "divergence_own_style": own,
        "divergence_other_styles": others,
        f"copied_{NGRAM}gram_share": round(copied, 4),
        "novelty": round(1 - copied, 4),
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
