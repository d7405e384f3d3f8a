"""Export the bundled corpus (musictl/data/corpus/<style>/*.mid) from the music21 package's corpus.

The works are public domain; music21 (BSD licence) ships them as MusicXML/ABC/Humdrum files.
Run once, commit the MIDI files: musictl itself never needs music21.

    pip install music21
    python scripts/export_corpus.py --per-style 40
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

# style folder -> (music21 corpus query, kind of source)
STYLES = {
    "bach-chorales": "bach",
    "palestrina": "palestrina",
    "fiddle-tunes": "ryansMammoth",
    "german-folk": "essenFolksong",
}

LICENCE = """# Bundled corpus

Small public-domain corpus used by `musictl tokenize` with no arguments and by `musictl demo`.

| style | source in the music21 corpus | pieces |
|---|---|---|
{rows}

Exported with `python scripts/export_corpus.py --per-style {per_style} --seed {seed}` from the
music21 package (version {version}), whose corpus holds public-domain works: J. S. Bach's chorales,
G. P. da Palestrina's masses, fiddle tunes from Ryan's Mammoth Collection (1883) and German folk
songs from the Essen Folksong Collection. The MIDI files are rendered by music21's MIDI writer.
"""


def scores_for(query: str, limit: int, rng: random.Random):
    """Yield (name, music21 Score) pairs from one corpus collection, seeded sample."""
    from music21 import corpus, stream

    paths = sorted(corpus.getComposer(query))
    rng.shuffle(paths)
    for path in paths:
        try:
            parsed = corpus.parse(path)
        except Exception as exc:  # some corpus files do not parse; skip them
            print(f"skip {path}: {exc}")
            continue
        items = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
        rng.shuffle(items)
        for i, score in enumerate(items[: max(1, limit // 8)] if len(items) > 1 else items):
            name = Path(str(path)).stem + (f"-{i}" if len(items) > 1 else "")
            yield name, score


def main() -> None:
    import music21

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "musictl" / "data" / "corpus")
    parser.add_argument("--per-style", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for style, query in STYLES.items():
        folder = args.out / style
        folder.mkdir(parents=True, exist_ok=True)
        written = 0
        for name, score in scores_for(query, args.per_style, random.Random(f"{args.seed}-{style}")):
            if not score.recurse().notes:
                continue
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            try:
                score.write("midi", fp=str(folder / f"{safe}.mid"))
            except Exception as exc:
                print(f"skip {name}: {exc}")
                continue
            written += 1
            if written >= args.per_style:
                break
        rows.append(f"| `{style}` | `{query}` | {written} |")
        print(f"{style}: {written} pieces")
    (args.out / "README.md").write_text(
        LICENCE.format(rows="\n".join(rows), per_style=args.per_style, seed=args.seed, version=music21.__version__)
    )


if __name__ == "__main__":
    main()
