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
    python benchmarks/embedding_probe.py --render      # rebuild embedding_probe.md from embedding_probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import cells, paths, tables

RESULTS = paths.RESULTS
NEIGHBOURS = 4
QUESTION = "Do a MidiBert's contextual pitch embeddings encode pitch class the same way in every octave?"
COMPARISON = ("the pitch-class probe with a whole octave held out, contextual embeddings against random vectors of the "
              "same size (chance 0.083)")


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


def measure(args) -> dict:
    """Run the probe on ``--bert`` / ``--tokens``: the results JSON (a cell per embedding kind)."""
    pitches, found = pitch_tables(args.bert, args.tokens, args.seed)
    metrics = json.loads((args.bert / "metrics.json").read_text())
    data = {"format": cells.FORMAT, "script": "benchmarks/embedding_probe.py",
            "command": f"python benchmarks/embedding_probe.py --bert {args.bert.name} --tokens {args.tokens.name} --write",
            "machine": paths.machine(),
            "config": {"bert": paths.show(str(args.bert)), "tokens": paths.show(str(args.tokens)), "seed": args.seed},
            "cells": {}, "commands": [], "pitches": pitches.tolist(),
            "model": {k: metrics[k] for k in ("objective", "parameters", "steps")}}
    for kind, table in found.items():
        settings = {"embedding": kind}
        data["cells"][cells.cell_key(settings)] = {"settings": settings, **neighbour_shares(pitches, table),
                                                   "probe": pitch_class_probe(pitches, table)}
    return data


def render(data: dict) -> str:
    """embedding_probe.md, from the results JSON only."""
    rows = {c["settings"]["embedding"]: c for c in data["cells"].values()}
    model = data["model"]
    lines = [
        "# Do the pitch embeddings encode octaves and fifths?", "",
        *tables.planned(QUESTION, COMPARISON, exploratory=3 * len(rows) + len(rows) - 2, intervals=False),
        f"Command: `{data['command']}` (MidiBert {model['objective']}, {model['parameters']:,} parameters, {model['steps']} "
        f"steps; {len(data['pitches'])} pitches occur in the tokens). Contextual: each pitch token's mean last hidden state "
        "over the training pieces (`musictl embed`'s default); static: its input embedding; random: Gaussian vectors of the "
        "contextual size.", "",
        *tables.table(["embedding", f"{NEIGHBOURS} nearest neighbours an octave away (chance)", "a fifth or fourth away (chance)",
                       "a semitone away (chance)", "pitch-class probe, octave held out (chance 0.083)"],
                      [[kind, f"{r['octave']:.3f} ({r['octave_chance']:.3f})", f"{r['fifth']:.3f} ({r['fifth_chance']:.3f})",
                        f"{r['semitone']:.3f} ({r['semitone_chance']:.3f})", f"{r['probe']:.3f}"]
                       for kind, r in sorted(rows.items(), key=lambda item: ORDER.index(item[0]))], "lrrrr"),
    ]
    return "\n".join(lines) + "\n"


ORDER = ("static", "contextual", "random")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bert", type=Path)
    parser.add_argument("--tokens", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--render", action="store_true", help="only rebuild the .md from the JSON")
    args = parser.parse_args(argv)
    json_path = RESULTS / "embedding_probe.json"
    if args.render:
        data = cells.load(json_path)
    elif args.bert is None or args.tokens is None:
        raise SystemExit("error: --bert DIR and --tokens DIR are needed (or --render)")
    else:
        data = measure(args)
    text = render(data)
    print(text)
    if args.write or args.render:
        (RESULTS / "embedding_probe.md").write_text(text)
    if args.write and not args.render:
        cells.write(json_path, data)


if __name__ == "__main__":
    main()
