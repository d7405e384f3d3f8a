"""Do a MidiBert's pitch embeddings know octaves and fifths? Nearest neighbours and a pitch-class probe.

For the pitch tokens that occur in the tokens artifact, with a MidiBert's static input tables and its
contextual embeddings (each token's mean last hidden state over the training pieces, what `musictl
embed` writes by default), and with random vectors of the same size as the baseline:

- nearest neighbours: the share of each pitch's 4 nearest neighbours (cosine) that lie an octave away
  (+-12, +-24 semitones) or a fifth / fourth away (+-7, +-5), against what neighbours drawn at random
  among the other pitches would give;
- a linear probe: logistic regression from the embedding to the pitch class (12 classes), scored by
  cross-validation over pitches grouped by octave (a whole octave held out at a time), so it can only
  succeed if pitch class is encoded the same way in every octave; chance is 1/12.

    python benchmarks/embedding_probe.py --bert DIR --tokens DIR --write
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
NEIGHBOURS = 4


def pitch_tables(bert: Path, tokens: Path, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(the MIDI pitches that occur, {kind: (n, d) embeddings}) for static, contextual and random."""
    import torch

    from musictl import constants as C
    from musictl.midi.tokens import TokenCorpus
    from musictl.transfer.embed import contextual_midibert, static_midibert

    corpus = TokenCorpus.open(tokens)
    static, _, config = static_midibert(bert)
    contextual, counts, _, _ = contextual_midibert(bert, corpus)
    start = int(config.field_offsets[C.PITCH])
    pitches = np.array([p for p in range(128) if counts[start + p] > 0])
    rows = start + pitches
    generator = torch.Generator().manual_seed(seed)
    random = torch.randn(len(pitches), contextual.shape[1], generator=generator)
    return pitches, {"static": static[rows].numpy(), "contextual": contextual[rows].numpy(), "random": random.numpy()}


def neighbour_shares(pitches: np.ndarray, table: np.ndarray) -> dict[str, float]:
    """Share of nearest neighbours an octave / a fifth or fourth away, and what random neighbours would give."""
    unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    near = np.argsort(-similarity, axis=1)[:, :NEIGHBOURS]
    gaps = np.abs(pitches[near] - pitches[:, None])
    every = np.abs(pitches[None, :] - pitches[:, None])[~np.eye(len(pitches), dtype=bool)]
    octave, fifth = lambda g: np.isin(g, (12, 24)), lambda g: np.isin(g, (5, 7))
    return {"octave": float(octave(gaps).mean()), "octave_chance": float(octave(every).mean()),
            "fifth": float(fifth(gaps).mean()), "fifth_chance": float(fifth(every).mean()),
            "semitone": float((gaps == 1).mean()), "semitone_chance": float((every == 1).mean())}


def pitch_class_probe(pitches: np.ndarray, table: np.ndarray) -> float:
    """Accuracy of a logistic regression predicting pitch class, each octave held out in turn."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    octaves = pitches // 12
    folds = min(5, len(set(octaves.tolist())))
    right = 0
    for train, test in GroupKFold(folds).split(table, pitches % 12, octaves):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5))
        model.fit(table[train], pitches[train] % 12)
        right += int((model.predict(table[test]) == pitches[test] % 12).sum())
    return right / len(pitches)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bert", type=Path, required=True)
    parser.add_argument("--tokens", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    pitches, tables = pitch_tables(args.bert, args.tokens, args.seed)
    rows = {kind: {**neighbour_shares(pitches, table), "probe": pitch_class_probe(pitches, table)} for kind, table in tables.items()}
    metrics = json.loads((args.bert / "metrics.json").read_text())
    lines = [
        "# Do the pitch embeddings encode octaves and fifths?", "",
        f"Command: `python benchmarks/embedding_probe.py --bert {args.bert.name} --tokens {args.tokens.name} --write` "
        f"(MidiBert {metrics['objective']}, {metrics['parameters']:,} parameters, {metrics['steps']} steps; {len(pitches)} "
        "pitches occur in the tokens). Contextual: each pitch token's mean last hidden state over the training pieces "
        "(`musictl embed`'s default); static: its input embedding; random: Gaussian vectors of the contextual size.", "",
        f"| embedding | {NEIGHBOURS} nearest neighbours an octave away (chance) | a fifth or fourth away (chance) | a semitone "
        "away (chance) | pitch-class probe, octave held out (chance 0.083) |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, r in rows.items():
        lines.append(f"| {kind} | {r['octave']:.3f} ({r['octave_chance']:.3f}) | {r['fifth']:.3f} ({r['fifth_chance']:.3f}) | "
                     f"{r['semitone']:.3f} ({r['semitone_chance']:.3f}) | {r['probe']:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        (RESULTS / "embedding_probe.md").write_text(text)
        (RESULTS / "embedding_probe.json").write_text(json.dumps({"bert": str(args.bert), "pitches": pitches.tolist(),
                                                                  "rows": rows}, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
