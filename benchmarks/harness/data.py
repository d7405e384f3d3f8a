"""Dataset splits, class-keeping training subsets and labelled pieces, shared by the benchmark scripts."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from harness.paths import DATASETS

# the three target styles of the transfer benchmarks: name -> (folder under the datasets, file pattern)
TRANSFER_STYLES = {
    "nottingham-jigs": ("nottingham/midi", "jigs*.mid"),
    "bach-chorales": ("music21/bach", "*.mid"),
    "irish-fiddle": ("music21/oneills1850", "*.mid"),
}


def round_robin(entries: list[str], n: int) -> list[str]:
    """The first ``n`` entries taken in turn from each class (composer folder, emotion prefix), so that a
    subset keeps every class."""
    groups: dict[str, list[str]] = {}
    for entry in entries:
        groups.setdefault(entry.split("/")[0] if "/" in entry else entry.split("_")[0], []).append(entry)
    ordered = [g[i] for i in range(max(map(len, groups.values()), default=0)) for g in groups.values() if i < len(g)]
    return ordered[:n]


def dataset_split(dataset: str, keep=None) -> dict[str, list[str]]:
    """A dataset's MIDI-BERT split (``DATASETS/<dataset>/splits.json``), or with ``keep`` = (train, valid,
    test) counts its first entries of each split, every class in turn (:func:`round_robin`)."""
    split = json.loads((DATASETS / dataset / "splits.json").read_text())
    if not keep:
        return {s: list(split[s]) for s in ("train", "valid", "test")}
    return {s: round_robin(split[s], n) for s, n in zip(("train", "valid", "test"), keep)}


def class_of(dataset: str, entry: str) -> str:
    """The label an entry's name carries (composer folder, emotion quadrant), for subsets that keep every class."""
    if dataset == "pianist8":
        return entry.split("/")[0]
    if dataset.startswith("emopia"):
        return entry.split("_")[0]
    return ""


def training_subset(entries: list[str], amount, dataset: str, seed: int) -> list[str]:
    """``amount`` training entries drawn with ``seed``: the first k of a seeded order, or a share of each
    class (rounded up, so every class stays), or all."""
    if amount == "all":
        return list(entries)
    rng = np.random.default_rng([seed, int(hashlib.blake2b(dataset.encode(), digest_size=4).hexdigest(), 16)])
    if isinstance(amount, str) and amount.endswith("%"):
        share, kept = float(amount[:-1]) / 100, []
        for name in sorted({class_of(dataset, e) for e in entries}):
            members = [e for e in entries if class_of(dataset, e) == name]
            kept += [members[i] for i in rng.permutation(len(members))[: math.ceil(share * len(members))]]
        return sorted(kept)
    return sorted(entries[i] for i in rng.permutation(len(entries))[: int(amount)])


def split_of(split_file: Path | None, corpus) -> dict[int, str]:
    """Each piece's split as finetune-mask reads it (the split file by 'folder/name' or name, else the tokens')."""
    if split_file is None:
        return {p.id: p.split for p in corpus.pieces}
    lookup = {str(e): s for s, entries in json.loads(Path(split_file).read_text()).items() for e in entries}
    keys = lambda p: (f"{Path(p.path).parent.name}/{Path(p.path).name}", Path(p.path).name)  # noqa: E731
    return {p.id: next((lookup[k] for k in keys(p) if k in lookup), "unlisted") for p in corpus.pieces}


def labelled(task: str, tokens: Path, split_file: Path | None, split: str):
    """(the tokens corpus, the labelled pieces of ``split`` for ``task``) as finetune-mask collects them."""
    from musictl.bert import tasks
    from musictl.midi.tokens import TokenCorpus

    corpus = TokenCorpus.open(tokens)
    where = split_of(split_file, corpus)
    items, _ = tasks.collect(tasks.TaskSpec(task), corpus, [p for p in corpus.pieces if where[p.id] == split])
    return corpus, items


def piece_name(path: str) -> str:
    """``folder/file`` of a piece's path: how the results JSON names a test piece."""
    return f"{Path(path).parent.name}/{Path(path).name}"
