"""Label efficiency: does pre-training help when labels are few? Measured with musictl's command line.

    python benchmarks/label_efficiency.py                   # the whole table (hours on 2 CPU cores; resumable)
    python benchmarks/label_efficiency.py --seeds 3         # fewer fine-tuning seeds (said in the table)
    python benchmarks/label_efficiency.py --smoke           # toy size in a temporary folder: the pipeline end to end
    python benchmarks/label_efficiency.py --render          # rebuild label_efficiency.md from label_efficiency.json

Columns: melody and velocity (POP909, per note) fine-tuned on 10, 30 and all training pieces; composer
(Pianist8) and emotion (EMOPIA, on its standard MIDI-BERT split and on a split grouped by song with ``musictl
tokenize --group-by``) on 25% (per class) and all training pieces. The validation and test splits are always
whole. Rows: no pre-training (the same architecture from scratch), MLM, adversarial, each fine-tuned with
``musictl finetune-mask`` at its defaults (30 epochs, patience 5, the learning rate chosen on validation for
its start by benchmarks/finetune_lr.py: 1e-3 pre-trained, 3e-4 from scratch); and a frozen-encoder linear
probe of each (mean-pooled hidden states for piece tasks, per-note hidden states for note tasks, sklearn
LogisticRegression with C chosen on validation; the "no pre-training" probe reads a randomly initialised
encoder), beside the same probe on the raw note features, no encoder (:func:`raw_features`): the bar a
pre-trained encoder's probe must clear. Each cell: test accuracy % averaged over fine-tuning seeds (the training subset is drawn per seed)
with a 95% bootstrap interval over test pieces and seeds (benchmarks/harness/stats.py); beside it the
paired difference pre-trained minus none (same seed, same subset, same resamples) and the share of fine-tuning runs whose best
validation epoch was their last (still improving when they stopped).

Pre-training corpus: every piece of ../shared/datasets (POP909, Pianist8, EMOPIA, music21, Nottingham)
whose content (the MIDI file's bytes) is not that of a piece in any fine-tuning validation or test split,
the song-grouped EMOPIA split included; staged as symbolic links and tokenized with a split file, then
checked again on the tokens artifact (:func:`leaks`). Each pre-trained model is cached in the work folder
under a name made from its settings, each finished cell is written to the JSON at once, and a rerun skips
what is done; ``--render`` only rebuilds the Markdown. Cells run the fewest labels first (:func:`schedule`),
so a run stopped early leaves whole few-label columns; two processes may share the work by ``--columns``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import cells, commands, paths, stats, tables
from harness.data import class_of, dataset_split, labelled, piece_name, training_subset

ROOT, SHARED, RESULTS = paths.ROOT, paths.DATASETS, paths.RESULTS
__all__ = ["class_of", "training_subset"]  # from the harness, used here and by benchmarks/composer_planned.py
LABELLED = ("pop909", "pianist8", "emopia")
UNLABELLED = {"music21": SHARED / "music21", "nottingham": SHARED / "nottingham" / "midi"}
# EMOPIA's file names are Q<quadrant>_<YouTube id>_<clip>.mid; the id may hold '_' and '-': it is what lies
# between the first and the last underscore. docs/tokenize.md documents the same expression.
EMOPIA_GROUP_BY = r"^Q[1-4]_(.+)_[0-9]+\.mid$"


@dataclass(frozen=True)
class Column:
    name: str
    task: str  # finetune-mask --task
    dataset: str  # pop909, pianist8, emopia, or emopia-grouped (EMOPIA split by song)
    amounts: tuple  # training pieces: an int, a share "25%", or "all"

    @property
    def per_note(self) -> bool:
        return self.task in ("melody", "velocity")


COLUMNS = (
    Column("melody", "melody", "pop909", (10, 30, "all")),
    Column("velocity", "velocity", "pop909", (10, 30, "all")),
    Column("composer", "composer", "pianist8", ("25%", "all")),
    Column("emotion", "emotion", "emopia", ("25%", "all")),
    Column("emotion (song-grouped)", "emotion", "emopia-grouped", ("25%", "all")),
)
OBJECTIVES = ("mlm", "adversarial")
FINETUNED = ("none", *OBJECTIVES)
PROBES = ("probe none", "probe raw", *(f"probe {p}" for p in OBJECTIVES))
ROWS = (*FINETUNED, *PROBES)
ROW_NAMES = {"none": "no pre-training", "mlm": "MLM", "adversarial": "adversarial", "probe none": "probe: random encoder",
             "probe raw": "probe: raw note features, no encoder", "probe mlm": "probe: MLM encoder",
             "probe adversarial": "probe: adversarial encoder"}
QUESTION = "Does pre-training help when labels are few?"
COMPARISON = ("MLM minus no pre-training, both fine-tuned, at each column's fewest labels (melody and velocity: 10 pieces; "
              "composer and both emotion splits: 25%), paired by seed and training subset, 95% bootstrap over test pieces "
              "and seeds (the `MLM minus none` rows, first amount). A pre-trained encoder's probe must also clear the probe "
              "on raw note features (`probe: raw note features`): that, not the random encoder, is a probe's bar")
PROBE_C = (0.001, 0.01, 0.1, 1.0, 10.0)
# finetune-mask parameters kept with each run (from its manifest), so a table never mixes settings unseen
FINETUNE_SETTINGS = ("lr", "epochs", "patience", "mask_ratio", "pitch_shift", "batch_size", "global_batch_size", "weight_decay",
                     "dropout")
PRETRAIN_VALID_SHARE = 0.02
FINETUNE_CONFIG = ("finetune_args", "finetune_lr", "probe_notes")  # settings that leave the pre-trained models alone

FULL = {  # pre-training chosen by benchmarks/pretrain_sweep.py (tiny, lr 1e-3); about 32 minutes of one core each
    # (the two objectives side by side on 2 cores): an adversarial step costs about 2.5 MLM steps there (its masker
    # pass and all-notes loss, plus the freezes), so it gets fewer steps at the same budget
    "pretrain_args": "--size tiny --lr 1e-3 --warmup 0.05 --max-steps 27000 --eval-every 3000",
    "adversarial_args": "--freeze-every 1 --max-steps 11000 --eval-every 1100",
    "finetune_args": "",
    # chosen on validation by benchmarks/finetune_lr.py (finetune_lr.md): per start, as finetune-mask's default does
    "finetune_lr": {"pretrained": "1e-3", "scratch": "3e-4"},
    "max_len": 256,
    "limit": None,  # dataset -> (train, valid, test) pieces kept of its split (None: all)
    "unlabelled_limit": None,
    "grouped_split": "0.8,0.1,0.1",
    "probe_notes": 30000,
}
SMOKE = {
    "pretrain_args": "--size tiny --hidden-size 32 --layers 1 --heads 2 --field-embed-dim 8 --max-steps 8 --eval-every 4 "
                     "--batch-size 4",
    "adversarial_args": "--freeze-every 1",
    "finetune_args": "--epochs 2 --patience 1 --batch-size 4",
    "finetune_lr": FULL["finetune_lr"],
    "max_len": 64,
    "limit": {"pop909": (4, 2, 2), "pianist8": (16, 8, 8), "emopia": (8, 4, 4)},
    "unlabelled_limit": 4,
    "grouped_split": "0.5,0.25,0.25",
    "probe_notes": 2000,
}
SMOKE_AMOUNTS = {"melody": (2, "all"), "velocity": (2,), "composer": ("25%",), "emotion": ("all",),
                 "emotion (song-grouped)": ("all",)}


# ----- leak-free data ------------------------------------------------------------------------------
def content_hash(path: Path) -> str:
    """BLAKE2 of a file's bytes, as ``musictl tokenize`` records it in index.jsonl (``hash``)."""
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=12).hexdigest()


def leaks(pretrain_tokens: Path, heldout: list[Path], splits: tuple[str, ...] = ("train", "valid", "test"),
          threshold: float | None = None) -> list[tuple[str, str]]:
    """(pre-training piece, held-out file) pairs whose MIDI files have the same content: every piece of the
    pre-training tokens artifact in ``splits`` is hashed from its file (names play no part). With
    ``threshold``, also the pairs :func:`near_copies` finds (transposed or re-timed copies), each pair once."""
    held: dict[str, str] = {}
    for path in heldout:
        held.setdefault(content_hash(path), str(path))
    rows = [json.loads(line) for line in (Path(pretrain_tokens) / "index.jsonl").read_text().splitlines() if line.strip()]
    found = [(row["path"], held[h]) for row in rows if row["split"] in splits and (h := content_hash(Path(row["path"]))) in held]
    if threshold is not None:
        same = set(found)
        found += [(a, b) for a, b, _ in near_copies(pretrain_tokens, heldout, splits, threshold) if (a, b) not in same]
    return found


def near_copies(pretrain_tokens: Path, heldout: list[Path], splits: tuple[str, ...] = ("train", "valid", "test"),
                threshold: float | None = None) -> list[tuple[str, str, float]]:
    """(pre-training piece, held-out file, share) pairs whose melodies are near-copies, whatever their key,
    tempo or bytes: ``musictl.midi.dedup`` (the share of the shorter piece's 12-interval melody runs found in
    the other >= ``threshold``, default ``tokenize --dedup-threshold``'s). The pre-training pieces are read
    from the tokens artifact; the held-out files are encoded with its vocabulary (one that cannot be read
    has no melody and matches nothing)."""
    from musictl.errors import TokenizeError
    from musictl.midi.dedup import DEFAULT_THRESHOLD, corpus_shingles, shingles, similar_pairs
    from musictl.midi.encode import encode_score, parse_midi
    from musictl.midi.tokens import TokenCorpus

    corpus = TokenCorpus.open(Path(pretrain_tokens))
    pieces = [p for p in corpus.pieces if p.split in splits]
    held = []
    for path in heldout:
        try:
            held.append(shingles(encode_score(parse_midi(Path(path).read_bytes(), str(path)), corpus.config).tokens))
        except (TokenizeError, OSError):
            held.append(np.zeros(0, np.uint64))
    pairs = similar_pairs(corpus_shingles(corpus, pieces), held, DEFAULT_THRESHOLD if threshold is None else threshold)
    return [(pieces[a].path, str(heldout[b]), share) for a, b, share in pairs]


def stage_pretraining(candidates: dict[str, tuple[Path, list[Path]]], heldout: list[Path], folder: Path, seed: int = 0,
                      valid_share: float = PRETRAIN_VALID_SHARE) -> tuple[Path, dict]:
    """Symbolic links ``folder/DATASET/NAME`` to every candidate (``dataset: (root folder, files)``) whose
    content is no held-out file's (each content once), and a split file beside ``folder``: train, and a
    seeded ``valid_share`` (at least 2 pieces) for pre-training's own validation. Returns the split file
    and counts."""
    banned = {content_hash(p) for p in heldout}
    if folder.exists():
        shutil.rmtree(folder)
    entries, excluded, duplicates, seen = [], 0, 0, set()
    for dataset, (root, files) in sorted(candidates.items()):
        for path in sorted(files):
            digest = content_hash(path)
            if digest in banned:
                excluded += 1
            elif digest in seen:  # the same file twice (a copy in two collections): once is enough
                duplicates += 1
            else:
                seen.add(digest)
                name = f"{dataset}/{Path(path).relative_to(root).as_posix().replace('/', '__')}"
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).symlink_to(Path(path).resolve())
                entries.append(name)
    order = sorted(entries, key=lambda e: hashlib.blake2b(f"{seed}\0{e}".encode(), digest_size=8).digest())
    n_valid = max(2, round(valid_share * len(order)))
    split = {"train": sorted(order[n_valid:]), "valid": sorted(order[:n_valid]), "test": []}
    split_file = write_json(folder.parent / f"{folder.name}-split.json", split)
    return split_file, {"train": len(split["train"]), "valid": n_valid, "excluded_by_content": excluded,
                        "duplicates_dropped": duplicates,
                        "train_by_dataset": {d: sum(e.startswith(d + "/") for e in split["train"]) for d in candidates}}


def midi_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".mid", ".midi", ".kar") and p.is_file())


# ----- the harness ---------------------------------------------------------------------------------
class Harness:
    """The run's settings, its results (the JSON: a cell per fine-tuning run and probe, the pre-training runs and
    data checks in their own sections) and the commands it ran."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.preset = dict(SMOKE if args.smoke else FULL)
        for key in ("pretrain_args", "finetune_args"):
            if getattr(args, key) is not None:
                self.preset[key] = getattr(args, key)
        if args.max_len:
            self.preset["max_len"] = args.max_len
        self.work = Path(args.work)
        self.json_path, self.md_path = Path(args.out) / "label_efficiency.json", Path(args.out) / "label_efficiency.md"
        self.columns = [c for c in COLUMNS if c.name in args.columns]
        if args.smoke:
            self.columns = [Column(c.name, c.task, c.dataset, SMOKE_AMOUNTS[c.name]) for c in self.columns]
        self.seeds = list(range(args.seeds))
        config = {"smoke": args.smoke, **{k: self.preset[k] for k in ("pretrain_args", "adversarial_args", "finetune_args",
                                                                       "finetune_lr", "max_len", "limit", "unlabelled_limit",
                                                                       "grouped_split", "probe_notes")}}
        # fine-tuning settings may change while no fine-tuning has been measured under the old ones
        self.results = cells.Results(self.json_path, "benchmarks/label_efficiency.py", config, command=harness_command(),
                                     machine=paths.machine(), fresh=args.fresh, changeable=FINETUNE_CONFIG,
                                     merged=("pretrain", "data", "columns"))
        self.data = self.results.data
        self.data["seeds"] = sorted(set(self.data.get("seeds", [])) | set(self.seeds))
        columns = {**self.data.get("columns", {}),
                   **{c.name: {"task": c.task, "dataset": c.dataset, "amounts": list(c.amounts)} for c in self.columns}}
        self.data["columns"] = {c.name: columns[c.name] for c in COLUMNS if c.name in columns}
        self.features: dict = {}

    @property
    def max_len(self) -> int:
        return int(self.preset["max_len"])

    def musictl(self, *args: str) -> float:
        """Run ``python -m musictl ARGS``, record the exact command; seconds taken."""
        return commands.musictl(self.results, *args, work=self.work, quiet=self.args.smoke)

    def show(self, text: str) -> str:
        """Paths as a reader can type them: ../shared/datasets, the work folder as WORK."""
        return paths.show(text, self.work)

    def save(self) -> None:
        """Write the JSON, merged with what another process of the same run (e.g. ``--pretrain-only``) wrote meanwhile."""
        self.results.save()


write_json = cells.write_plain


def standard_split(h: Harness, dataset: str) -> dict[str, list[str]]:
    """A labelled dataset's MIDI-BERT split (smoke: its first few entries of each split, every class in turn)."""
    return dataset_split(dataset, (h.preset["limit"] or {}).get(dataset))


def prepare_data(h: Harness) -> dict[str, tuple[Path, dict[str, list[str]]]]:
    """Tokenize each labelled dataset for fine-tuning (and EMOPIA grouped by song); per dataset its tokens
    and split (entries as finetune-mask's --split-file takes them)."""
    out = {}
    for dataset in LABELLED:
        split = standard_split(h, dataset)
        tokens = h.work / f"tokens-{dataset}"
        split_file = write_json(h.work / f"splits-{dataset}.json", split)
        inputs = [str(SHARED / dataset / "midi")] if not h.preset["limit"] else \
            [str(SHARED / dataset / "midi" / e) for s in split.values() for e in s]
        if not (tokens / "manifest.json").exists():
            h.musictl("tokenize", *inputs, "-o", str(tokens), "--split-file", str(split_file), "--overwrite")
        out[dataset] = (tokens, split)
    if any(c.dataset == "emopia-grouped" for c in COLUMNS):
        tokens = h.work / "tokens-emopia-grouped"
        inputs = [str(SHARED / "emopia" / "midi")] if not h.preset["limit"] else grouped_smoke_files()
        if not (tokens / "manifest.json").exists():
            h.musictl("tokenize", *inputs, "-o", str(tokens), "--group-by", EMOPIA_GROUP_BY, "--split", h.preset["grouped_split"],
                      "--seed", "0", "--overwrite")
        rows = [json.loads(line) for line in (tokens / "index.jsonl").read_text().splitlines() if line.strip()]
        out["emopia-grouped"] = (tokens, {s: sorted(Path(r["path"]).name for r in rows if r["split"] == s)
                                          for s in ("train", "valid", "test")})
    overlap(h, out)
    return out


def grouped_smoke_files() -> list[str]:
    """Smoke: every clip of the first 3 songs of each quadrant."""
    import re

    names = sorted(p.name for p in (SHARED / "emopia" / "midi").glob("*.mid"))
    songs: dict[str, list[str]] = {}
    for name in names:
        songs.setdefault(name[:2], [])
        song = re.match(EMOPIA_GROUP_BY, name).group(1)
        if song not in songs[name[:2]]:
            songs[name[:2]].append(song)
    keep = {s for quadrant in songs.values() for s in quadrant[:3]}
    return [str(SHARED / "emopia" / "midi" / n) for n in names if re.match(EMOPIA_GROUP_BY, n).group(1) in keep]


def overlap(h: Harness, data: dict) -> None:
    """How many EMOPIA valid/test clips share a song with training clips, in both splits."""
    from musictl.midi.corpus import group_overlap

    entries = lambda split: [(e, s) for s, names in split.items() for e in names]  # noqa: E731
    h.data["data"]["emopia_song_overlap"] = {
        "regex": EMOPIA_GROUP_BY,
        "standard": group_overlap(entries(data["emopia"][1]), EMOPIA_GROUP_BY),
        "song-grouped": group_overlap(entries(data["emopia-grouped"][1]), EMOPIA_GROUP_BY)}


def heldout_files(data: dict) -> list[Path]:
    """Every MIDI file of a fine-tuning validation or test split (any dataset, either EMOPIA split)."""
    out = []
    for dataset, (_, split) in data.items():
        folder = SHARED / ("emopia" if dataset == "emopia-grouped" else dataset) / "midi"
        out += [folder / e for s in ("valid", "test") for e in split[s]]
    return sorted(set(out))


def prepare_pretraining(h: Harness, data: dict) -> Path:
    """The pre-training tokens: every available piece whose content is no held-out piece's, checked."""
    tokens = h.work / "tokens-pretrain"
    heldout = heldout_files(data)
    if not (tokens / "manifest.json").exists():
        candidates = {}
        for dataset in LABELLED:
            root = SHARED / dataset / "midi"
            files = midi_files(root)
            if h.preset["limit"]:  # smoke: the files of the smoke splits only
                names = {e for s in data[dataset][1].values() for e in s}
                files = [f for f in files if f.relative_to(root).as_posix() in names]
            candidates[dataset] = (root, files)
        for name, root in UNLABELLED.items():
            candidates[name] = (root, midi_files(root)[: h.preset["unlabelled_limit"] or None])
        split_file, counts = stage_pretraining(candidates, heldout, h.work / "pretrain-corpus")
        h.data["data"]["pretraining_corpus"] = counts
        h.musictl("tokenize", str(h.work / "pretrain-corpus"), "-o", str(tokens), "--split-file", str(split_file), "--overwrite")
    found = leaks(tokens, heldout)
    near = near_copies(tokens, heldout)  # transposed or re-timed copies: reported (the byte check above refuses)
    h.data["data"]["leak_check"] = {"heldout_files": len(heldout), "pretraining_pieces_checked": sum(
        1 for line in (tokens / "index.jsonl").read_text().splitlines() if line.strip()), "same_content": len(found),
        "near_copies": len({a for a, _, _ in near}), "near_copy_heldout_files": len({b for _, b, _ in near})}
    h.save()
    if near:
        print(f"note: {len({a for a, _, _ in near})} pre-training pieces are near-copies (melody, any key or tempo) of "
              f"{len({b for _, b, _ in near})} held-out files, e.g. {near[0][0]} ~ {near[0][1]} ({near[0][2]:.0%})",
              file=sys.stderr)
    if found:
        raise SystemExit(f"{len(found)} pre-training pieces have the content of a fine-tuning validation or test piece, "
                         f"e.g. {found[0][0]} = {found[0][1]}; remove {tokens} and run again")
    return tokens


def pretrain(h: Harness, objective: str, tokens: Path) -> Path:
    """The cached pre-trained model of ``objective`` (its folder name carries a hash of its settings)."""
    extra = shlex.split(h.preset["pretrain_args"]) + (shlex.split(h.preset["adversarial_args"]) if objective == "adversarial" else [])
    args = ["--objective", objective, *extra, "--max-len", str(h.max_len), "--seed", "0"]
    key = hashlib.blake2b(json.dumps([args, str(tokens)]).encode(), digest_size=5).hexdigest()
    out = h.work / "bert" / f"{objective}-{key}"
    if not (out / "manifest.json").exists():
        partial = out.exists() or (out.parent / f".{out.name}.staging").exists()
        seconds = h.musictl("pretrain-bert", "--tokens", str(tokens), "-o", str(out), *args,
                            *(["--resume"] if partial else ["--overwrite"]))
        h.data["pretrain"][objective] = {"seconds": seconds, "dir": h.show(str(out))}
    metrics = json.loads((out / "metrics.json").read_text())
    h.data["pretrain"].setdefault(objective, {"dir": h.show(str(out))}).update({
        k: metrics.get(k) for k in ("steps", "parameters", "train_pieces", "train_windows", "learned")},
        best_valid=metrics.get("best_valid") or metrics.get("final_valid"))
    h.save()
    return out


def cell_split(h: Harness, column: Column, amount, seed: int, split: dict[str, list[str]]) -> Path:
    subset = training_subset(split["train"], amount, column.dataset, seed)
    name = f"{column.dataset}-{amount}-s{seed}".replace("%", "pc")
    return write_json(h.work / "splits" / f"{name}.json", {"train": subset, "valid": split["valid"], "test": split["test"]})


def run_settings(column: Column, amount, row: str, seed: int) -> dict:
    """A cell's settings: the column, the training amount, the row, the seed."""
    return {"column": column.name, "amount": amount, "row": row, "seed": seed}


def run_key(column: Column, amount, row: str, seed: int) -> str:
    return cells.cell_key(run_settings(column, amount, row, seed))


def finetune(h: Harness, column: Column, amount, row: str, seed: int, tokens: Path, split_file: Path,
             models: dict[str, Path]) -> None:
    from musictl import artifacts

    settings = run_settings(column, amount, row, seed)
    if h.results.get(settings):
        return
    name = f"{column.name}|{amount}|{row}|{seed}"
    out = h.work / "ft" / name.replace("|", "-").replace(" ", "_").replace("(", "").replace(")", "").replace("%", "pc")
    model = models["mlm" if row == "none" else row]  # from scratch: the same architecture
    # an interrupted cell continues from its last whole checkpoint (the same weights as a run never stopped)
    partial = artifacts.checkpoint_step(artifacts.resumable(out).checkpoint) is not None
    seconds = h.musictl("finetune-mask", "--task", column.task, "--model", str(model), "--tokens", str(tokens), "-o", str(out),
                        "--split-file", str(split_file), *(["--from-scratch"] if row == "none" else []),
                        "--max-len", str(h.max_len), "--seed", str(seed), "--eval-masked",
                        "--lr", h.preset["finetune_lr"]["scratch" if row == "none" else "pretrained"],
                        *shlex.split(h.preset["finetune_args"]),
                        "--resume" if partial else "--overwrite")
    metrics = json.loads((out / "metrics.json").read_text())
    parameters = json.loads((out / "manifest.json").read_text()).get("parameters", {})
    keep_test_pieces(h, column, [piece_name(path) for path, _, _ in metrics["test"]["pieces"]])
    h.results.put(settings, {"pieces": [[c, t] for _, c, t in metrics["test"]["pieces"]],  # finetune-mask's own test scores
                             "pieces_masked": [[c, t] for _, c, t in metrics["test_masked"]["pieces"]],  # as the reference
                             "best_epoch": metrics["best_epoch"], "epochs_run": metrics["epochs_run"],
                             "train_pieces": metrics.get("pieces", {}).get("train"), "seconds": seconds,
                             "finetune_test_accuracy": metrics["test"]["accuracy"],
                             "finetune": {k: parameters[k] for k in FINETUNE_SETTINGS if k in parameters}})
    shutil.rmtree(out, ignore_errors=True)  # the scores are kept; the models are not needed again


def keep_test_pieces(h: Harness, column: Column, names: list[str]) -> None:
    saved = h.data["data"].setdefault("test_pieces", {}).setdefault(column.name, names)
    if saved != names:
        raise SystemExit(f"{column.name}: the test pieces differ from earlier runs'; pass --fresh")


# ----- scoring and the linear probe ----------------------------------------------------------------
def _windows(item, task: str, max_len: int, max_bars: int):
    from musictl import constants
    from musictl.bert.data import pad_batch, piece_windows

    windows = piece_windows(item.tokens, max_len, max_bars)
    ids, mask = pad_batch(windows)
    if task == "velocity":  # the label is the velocity: hidden, as finetune-mask does
        ids[..., constants.VELOCITY][mask.bool()] = constants.MASK_ID
    return windows, ids, mask


def encoder_of(h: Harness, row: str, seed: int, models: dict[str, Path]):
    """The frozen encoder of a probe row: pre-trained, or (``probe none``) randomly initialised with ``seed``."""
    import torch

    from musictl.bert.model import MidiBertConfig, MidiBertModel, load_encoder

    source = row.split(" ", 1)[1]
    if source != "none":
        return load_encoder(models[source])
    torch.manual_seed(seed)
    return MidiBertModel(MidiBertConfig.from_pretrained(models["mlm"])).eval()


def raw_features(tokens: np.ndarray, task: str, max_len: int, vocab_sizes, per_note: bool):
    """The raw note features a probe reads without an encoder: the one-hot fields of each note (bar left
    out: a window-relative bar number; velocity hidden as the velocity task hides it). Note tasks: per note
    its own fields and its previous and next note's within the same ``max_len`` window (what the encoder can
    see around it), a sparse (notes, 3 x width) matrix; piece tasks: the mean of the notes' one-hot fields
    (a histogram of every field), a dense (1, width) row."""
    from scipy import sparse

    from musictl import constants as C

    ids = np.array(tokens, dtype=np.int64)
    if task == "velocity":  # the label is the velocity: hidden, as finetune-mask does
        ids[:, C.VELOCITY] = C.MASK_ID
    fields = [f for f in range(C.N_FIELDS) if f != C.BAR]
    sizes = [int(vocab_sizes[f]) for f in fields]
    width = sum(sizes)
    columns = ids[:, fields] + np.cumsum([0, *sizes[:-1]])  # (notes, fields): each field's one-hot column
    n = len(ids)
    if not per_note:
        histogram = np.bincount(columns.ravel(), minlength=width).astype(np.float32)
        return histogram[None] / max(1, n)
    index, place = np.arange(n), np.arange(n) % max_len
    previous, following = index[place > 0], index[(place < max_len - 1) & (index < n - 1)]
    rows = np.concatenate([np.repeat(index, len(fields)), np.repeat(previous, len(fields)), np.repeat(following, len(fields))])
    cols = np.concatenate([columns.ravel(), (columns[previous - 1] + width).ravel(), (columns[following + 1] + 2 * width).ravel()])
    return sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, 3 * width))


def features(h: Harness, encoder, cache_key: tuple, items, task: str, max_len: int, config,
             notes_per_piece: int | None = None) -> list[tuple]:
    """Per piece (x, y): its mean hidden state (1, H) and label for piece tasks; for note tasks the hidden
    state and label of each labelled note, at most ``notes_per_piece`` of them (drawn by the piece's name,
    the same for every probe). ``encoder`` None: :func:`raw_features` instead of hidden states (sparse for
    note tasks). Kept in memory (float16) for the whole run: validation and test pieces are the same at every
    amount (tens of MB at the tiny size)."""
    import torch

    out = []
    per_note = task in ("melody", "velocity")
    for item in items:
        key = (*cache_key, notes_per_piece, item.piece.path)
        if key not in h.features:
            if encoder is None:
                notes = raw_features(item.tokens, task, max_len, config.vocab_sizes, per_note)
            else:
                windows, ids, mask = _windows(item, task, max_len, config.max_bars)
                with torch.no_grad():
                    hidden = encoder(ids, mask).last_hidden_state.float().numpy()
                notes = np.concatenate([hidden[w, : len(win)] for w, win in enumerate(windows)])
            if per_note:
                labels = np.asarray(item.label)
                keep = np.flatnonzero(labels >= 0)
                if notes_per_piece and len(keep) > notes_per_piece:
                    rng = np.random.default_rng(int(hashlib.blake2b(item.piece.path.encode(), digest_size=4).hexdigest(), 16))
                    keep = np.sort(rng.choice(keep, notes_per_piece, replace=False))
                h.features[key] = (notes[keep] if encoder is None else notes[keep].astype(np.float16), labels[keep])
            else:
                pooled = notes if encoder is None else notes.mean(0, keepdims=True).astype(np.float16)
                h.features[key] = (pooled, np.array([item.label]))
        out.append(h.features[key])
    return out


def probe(h: Harness, column: Column, amount, row: str, seed: int, tokens: Path, split_file: Path,
          models: dict[str, Path]) -> None:
    """A linear probe: standardised features (a frozen encoder's hidden states, or ``probe raw``: the raw note
    features of :func:`raw_features`), LogisticRegression with C chosen on validation accuracy (at most
    ``probe_notes`` training and validation notes, drawn with ``seed``). Sparse raw features are scaled
    without centring, which changes only the (unpenalised) intercept: the same classifier."""
    settings = run_settings(column, amount, row, seed)
    if h.results.get(settings):
        return
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from musictl.hf import quiet_transformers

    quiet_transformers()
    started = time.perf_counter()
    encoder = None if row == "probe raw" else encoder_of(h, row, seed, models)
    cache_key = (row, seed if row == "probe none" else None, str(tokens), column.task)
    limit = h.preset["probe_notes"]
    splits = {}
    for split in ("train", "valid", "test"):
        corpus, items = labelled(column.task, tokens, split_file, split)
        per_piece = max(1, 2 * limit // max(1, len(items))) if column.per_note and split != "test" else None
        splits[split] = (items, features(h, encoder, cache_key, items, column.task, h.max_len, corpus.config, per_piece))
    rng = np.random.default_rng(seed)

    def stacked(split: str):
        parts = [x for x, _ in splits[split][1]]
        x = sparse.vstack(parts).tocsr() if sparse.issparse(parts[0]) else np.concatenate(parts).astype(np.float32)
        y = np.concatenate([y for _, y in splits[split][1]])
        if len(y) > limit:
            picked = rng.choice(len(y), limit, replace=False)
            x, y = x[picked], y[picked]
        return x, y

    (x_train, y_train), (x_valid, y_valid) = stacked("train"), stacked("valid")
    if len(set(y_train.tolist())) < 2:
        raise SystemExit(f"error: {cells.cell_key(settings)}: a single class in the training subset; nothing to probe")
    scaler = StandardScaler(with_mean=not sparse.issparse(x_train)).fit(x_train)
    best = None
    for c in PROBE_C:
        fitted = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x_train), y_train)
        accuracy = float((fitted.predict(scaler.transform(x_valid)) == y_valid).mean())
        if best is None or accuracy > best[0]:
            best = (accuracy, c, fitted)
    valid_accuracy, c, fitted = best
    items, test = splits["test"]
    pieces = [[int((fitted.predict(scaler.transform(x.astype(np.float32))) == y).sum()), len(y)] for x, y in test]
    keep_test_pieces(h, column, [piece_name(i.piece.path) for i in items])
    seconds = round(time.perf_counter() - started, 1)
    source = row.split(" ", 1)[1]
    what = ("the raw note features (one-hot fields of the note and its neighbours; pieces: their histogram)"
            if source == "raw" else h.show(str(models["mlm" if source == "none" else source]))
            + (" re-initialised with the seed" if source == "none" else ""))
    h.results.record(f"# {row} ({column.name}, {amount}, seed {seed}): in-process linear probe of {what}, C={c} chosen "
                     "on validation", seconds)
    h.results.put(settings, {"pieces": pieces, "C": c, "valid_accuracy": round(valid_accuracy, 4),
                             "train_pieces": len(splits["train"][0]), "train_rows": len(y_train), "seconds": seconds})


# ----- the table -----------------------------------------------------------------------------------
def runs_by_seed(data: dict, name: str, amount, row: str) -> dict[int, dict]:
    """The cells of (column, amount, row), by seed."""
    return {c["settings"]["seed"]: c for c in cells.select(data["cells"], column=name, amount=amount, row=row)}


def summarise(data: dict) -> dict:
    """Per column, amount and row: the cell (mean, interval over pieces and seeds, seed spread), the paired
    difference with the matching no-pre-training row (probes: with the random-encoder probe, and with the
    raw-feature probe where it was measured), and how many fine-tuning runs ended at their best epoch."""
    table: dict = {}
    for name, column in data["columns"].items():
        for amount in column["amounts"]:
            runs = {row: runs_by_seed(data, name, amount, row) for row in ROWS}
            for row, by_seed in runs.items():
                if not by_seed:
                    continue
                seeds = sorted(by_seed)
                correct = np.array([[c for c, _ in by_seed[s]["pieces"]] for s in seeds], dtype=float)
                total = np.array([t for _, t in by_seed[seeds[0]]["pieces"]], dtype=float)
                owners = list(range(len(total)))
                entry = {"cell": stats.ratio_bootstrap(correct, total, owners)}
                if all("pieces_masked" in by_seed[s] for s in seeds):  # scored on masked test input, as the reference does
                    masked = np.array([[c for c, _ in by_seed[s]["pieces_masked"]] for s in seeds], dtype=float)
                    entry["masked"] = stats.ratio_bootstrap(masked, total, owners)
                if "best_epoch" in by_seed[seeds[0]]:
                    entry["last_epoch"] = [sum(by_seed[s]["best_epoch"] == by_seed[s]["epochs_run"] for s in seeds), len(seeds)]
                bases = {"minus_none": "probe none" if row.startswith("probe") else "none"}
                if row in PROBES and row not in ("probe none", "probe raw"):
                    bases["minus_raw"] = "probe raw"
                for field, base in bases.items():
                    paired = sorted(set(by_seed) & set(runs[base]))
                    if row != base and paired:
                        other = np.array([[c for c, _ in runs[base][s]["pieces"]] for s in paired], dtype=float)
                        mine = np.array([[c for c, _ in by_seed[s]["pieces"]] for s in paired], dtype=float)
                        entry[field] = stats.paired_difference(mine, other, total, owners)
                table[f"{name}|{amount}|{row}"] = entry
    return table


def planned_cells(data: dict) -> dict[str, dict]:
    """The planned comparison, per column: MLM minus none, fine-tuned, at the column's fewest labels."""
    out = {}
    for name, column in data["columns"].items():
        entry = data["table"].get(f"{name}|{column['amounts'][0]}|mlm")
        if entry and "minus_none" in entry:
            out[f"{name} {amount_label(column['amounts'][0], None)}"] = entry["minus_none"]
    return out


def amount_label(amount, train_pieces: int | None) -> str:
    if isinstance(amount, int):
        return f"{amount} pieces"
    return f"{amount} ({train_pieces})" if train_pieces else str(amount)


def render(data: dict) -> str:
    """label_efficiency.md, from label_efficiency.json only."""
    table = data["table"]
    seeds = data.get("seeds", [])
    fmt = lambda c: tables.interval(c, spread=True) + (  # noqa: E731
        f" ({c['seeds']} seed{'s' * (c['seeds'] != 1)})" if c.get("seeds", len(seeds)) < len(seeds) else "")
    diff = lambda c: tables.interval(c, signed=True)  # noqa: E731
    config, d = data["config"], data["data"]
    finetunes = [v for v in data["cells"].values() if "best_epoch" in v]
    last = sum(v["best_epoch"] == v["epochs_run"] for v in finetunes)
    planned = planned_cells(data)
    differences = sum(field in e for e in table.values() for field in ("minus_none", "minus_raw"))
    raw = any(key.endswith("|probe raw") for key in table)
    lines = ["# Label efficiency: pre-training with few labels, measured", "",
             *tables.planned(QUESTION, COMPARISON, tables.verdict(planned), differences - len(planned)),
             f"Made by `{shown_command(data)}` (the work may be shared by "
             f"processes given disjoint `--columns`) on {data.get('machine', '?')}"
             + (" (**--smoke: toy sizes, the numbers mean nothing**)" if config.get("smoke") else "")
             + "; every number comes from benchmarks/results/label_efficiency.json, rebuilt by "
               "`python benchmarks/label_efficiency.py --render`.", "",
             f"Cells: test accuracy % (note tasks: notes pooled per piece; piece tasks: one prediction per piece from its "
             f"windows' averaged probabilities; clean test input unless the row says masked), "
             f"mean over {len(seeds)} fine-tuning seed{'s' * (len(seeds) != 1)} "
             "(the training subset is drawn per seed; a cell measured with fewer says how many) [95% bootstrap interval over "
             "test pieces and seeds, a piece's notes and windows resampled together] ±standard deviation over seeds. "
             "Differences: the row minus the same-seed, same-subset no-pre-training row (probes: minus the random-encoder "
             "probe, and minus the raw-feature probe), paired bootstrap 95% on the same resamples. "
             "`last` = fine-tuning runs whose best validation epoch was their last (still improving when they stopped).", "",
             "Probes: the random encoder is no floor (it can collapse to the majority class); the bar a pre-trained "
             "encoder's probe must clear is the same probe on the raw note features (`probe: raw note features, no "
             "encoder`: the one-hot fields of the note and of its previous and next notes in the window, velocity hidden "
             "for the velocity task, bar left out; piece tasks: the mean of the notes' one-hot fields)"
             + ("." if raw else "; **not measured in this run** (the table predates it): the encoder probes here have no "
                                "such bar, so they show nothing about pre-training.") , "",
             f"**Fine-tuning runs whose best validation epoch was the last: {last} of {len(finetunes)}"
             + (f" ({100 * last / len(finetunes):.0f}%)" if finetunes else "") + ".**", ""]
    short = sorted({key.rsplit("|", 1)[0] for key, e in table.items() if e["cell"].get("seeds", len(seeds)) < len(seeds)})
    if short:
        lines += [f"{len(short)} (task, amount) columns have fewer than {len(seeds)} seeds (said in each cell): the run stopped before them"
                  " and continues there when the command above is run again.", ""]
    lines += data_lines(d, config)
    used = {}
    for run in finetunes:
        text = ", ".join(f"{k} {v}" for k, v in run.get("finetune", {}).items())
        used[text] = used.get(text, 0) + 1
    if used:
        lines += ["Fine-tuning settings (finetune-mask's, from each run's manifest): " + "; ".join(
            f"{text or 'not recorded'}" + (f" ({n} runs)" if len(used) > 1 else "") for text, n in used.items())
            + f"; windows of {config.get('max_len')} notes. Probes: C from {list(PROBE_C)} on validation accuracy, at most "
              f"{config.get('probe_notes')} training notes.", ""]
    for name, column in data["columns"].items():
        tests = len(d.get("test_pieces", {}).get(name, []))
        lines += [f"## {name} ({column['task']}, {dataset_name(column['dataset'])}, {tests} test pieces)", ""]
        if not any(key.startswith(f"{name}|") for key in table):
            lines += ["Not run yet: the benchmark fills its cells seed by seed and continues where it stopped when the "
                      "command at the top is run again.", ""]
            continue
        amounts = column["amounts"]
        trained = {a: next((v.get("train_pieces") for v in runs_by_seed(data, name, a, "none").values()), None) for a in amounts}
        body = []
        for row in ROWS:
            entries = [table.get(f"{name}|{a}|{row}") for a in amounts]
            if not any(entries):
                continue
            ended = [e["last_epoch"] for e in entries if e and "last_epoch" in e]
            last_cell = f"{sum(k for k, _ in ended)}/{sum(n for _, n in ended)}" if ended else "-"
            body.append([ROW_NAMES[row], *(fmt(e["cell"]) if e else "-" for e in entries), last_cell])
            if any(e and "masked" in e for e in entries):
                body.append([f"{ROW_NAMES[row]}, masked test input (the reference's scoring)",
                             *(fmt(e["masked"]) if e and "masked" in e else "-" for e in entries), ""])
            for field, base in (("minus_none", "random-encoder probe" if row.startswith("probe") else "none"),
                                ("minus_raw", "raw-feature probe")):
                if any(e and field in e for e in entries):
                    body.append([f"{ROW_NAMES[row]} minus {base}", *(diff(e[field]) if e and field in e else "-" for e in entries), ""])
        lines += [*tables.table(["row", *(amount_label(a, trained[a]) for a in amounts), "last"], body), ""]
    lines += pretrain_lines(data)
    lines += tables.commands(data["commands"], note="; WORK = the --work folder")
    return "\n".join(lines)


def dataset_name(dataset: str) -> str:
    return {"pop909": "POP909", "pianist8": "Pianist8", "emopia": "EMOPIA, MIDI-BERT split",
            "emopia-grouped": "EMOPIA grouped by song with tokenize --group-by"}[dataset]


def data_lines(d: dict, config: dict) -> list[str]:
    out = []
    overlap_ = d.get("emopia_song_overlap")
    if overlap_:
        s, g = overlap_["standard"], overlap_["song-grouped"]
        out += [f"EMOPIA's song overlap (song = group 1 of `{overlap_['regex']}` on the file name): on the standard split "
                f"{s['test']['shared']} of {s['test']['files']} test clips and {s['valid']['shared']} of {s['valid']['files']} "
                f"validation clips share a song with training clips; on the song-grouped split (`tokenize --group-by`, "
                f"`--split {config.get('grouped_split')}`, seed 0) {g['test']['shared']} of {g['test']['files']} and "
                f"{g['valid']['shared']} of {g['valid']['files']}.", ""]
    corpus, check = d.get("pretraining_corpus"), d.get("leak_check")
    if corpus and check:
        by = ", ".join(f"{k} {v}" for k, v in corpus["train_by_dataset"].items())
        out += [f"Pre-training corpus: {corpus['train']} training pieces ({by}) and {corpus['valid']} validation pieces; "
                f"{corpus['excluded_by_content']} files left out because their content is that of a fine-tuning validation "
                f"or test piece. Checked on the tokens artifact: {check['same_content']} of its "
                f"{check['pretraining_pieces_checked']} pieces share content with the {check['heldout_files']} held-out files"
                + (f"; {check['near_copies']} are near-copies (the same melody in any key or tempo, `musictl.midi.dedup`) "
                   f"of {check['near_copy_heldout_files']} of them." if "near_copies" in check else "."),
                ""]
    return out


def pretrain_lines(data: dict) -> list[str]:
    """The pre-trained models: what they learned, field by field, beside each field's best trivial predictor."""
    if not data["pretrain"]:
        return []
    from musictl.bert.pretrain import best_trivial

    fields = ("pitch", "position", "duration")
    out = ["## Pre-training runs", "",
           "Validation masked accuracy at the best evaluation; per field: the model / the best trivial predictor of the same "
           "masked notes (the field's most frequent value in the training split, in the window, or the previous note's).", "",
           "| objective | steps | minutes | parameters | mean masked accuracy | " + " | ".join(fields) + " | model |",
           "|---|---:|---:|---:|---:|" + "---|" * len(fields) + "---|"]
    for objective, p in sorted(data["pretrain"].items()):
        best = p.get("best_valid") or {}
        minutes = f"{p['seconds'] / 60:.1f}" if p.get("seconds") else "-"
        cells = []
        for name in fields:
            row = best.get("fields", {}).get(name)
            if row and "unigram" in row:
                trivial = best_trivial(row)
                cells.append(f"{row['accuracy']:.3f} / {trivial:.3f} ({row['accuracy'] - trivial:+.3f})")
            else:
                cells.append("-")
        accuracy = best.get("accuracy")
        out.append(f"| {objective} | {p.get('steps')} | {minutes} | {p.get('parameters') or 0:,} | "
                   f"{'-' if accuracy is None else f'{accuracy:.3f}'} | " + " | ".join(cells) + f" | {p.get('dir')} |")
    return [*out, ""]


# ----- main ----------------------------------------------------------------------------------------
def run(h: Harness) -> dict:
    data = prepare_data(h)
    tokens = prepare_pretraining(h, data)
    if h.args.data_only:
        return h.data
    if h.args.pretrain_only:  # one objective's pre-training (two can run side by side, one core each)
        pretrain(h, h.args.pretrain_only, tokens)
        return h.data
    rows = [r for r in ROWS if r in (h.args.rows or ROWS)]
    models = {objective: pretrain(h, objective, tokens) for objective in OBJECTIVES if objective in models_needed(rows)}
    for column, amount, seed in schedule(h.columns, h.seeds):
        tokens_c, split = data[column.dataset]
        split_file = cell_split(h, column, amount, seed, split)
        for row in rows:
            if row.startswith("probe"):
                probe(h, column, amount, row, seed, tokens_c, split_file, models)
            else:
                finetune(h, column, amount, row, seed, tokens_c, split_file, models)
    return h.data


def models_needed(rows) -> set[str]:
    """The pre-trained models the rows read: their objective's; ``none`` and ``probe none`` take the MLM model's
    configuration (random weights); ``probe raw`` reads no model."""
    needed = set()
    for row in rows:
        source = row.removeprefix("probe ")
        if source != "raw":
            needed.add("mlm" if source == "none" else source)
    return needed


def schedule(columns, seeds) -> list[tuple[Column, object, int]]:
    """The order cells are measured in: the fewest labels first (where pre-training should show, and the
    cheapest runs), each amount seed by seed across the columns, "all" last; a run stopped early leaves
    whole few-label columns rather than one seed of everything."""
    tiers = max(len(c.amounts) for c in columns) if columns else 0
    tier = lambda c, i: tiers - 1 if c.amounts[i] == "all" else i  # noqa: E731  ("all" is always the last tier)
    return [(c, c.amounts[i], seed) for t in range(tiers) for seed in seeds for c in columns
            for i in range(len(c.amounts)) if tier(c, i) == t]


def harness_command() -> str:
    """This process's command line without ``--columns`` and ``--rows``."""
    return "python benchmarks/label_efficiency.py " + shlex.join(without_columns(sys.argv[1:]))


def shown_command(data: dict) -> str:
    words = shlex.split(data.get("command") or "python benchmarks/label_efficiency.py")
    return shlex.join([*words[:2], *without_columns(words[2:])])


def without_columns(argv: list[str]) -> list[str]:
    """The command line without ``--columns`` and ``--rows``: processes that share the work by columns or rows fill
    one table."""
    out, skipping = [], False
    for arg in argv:
        if arg in ("--columns", "--rows"):
            skipping = True
        elif skipping and not arg.startswith("--"):
            continue
        else:
            skipping = False
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="fine-tuning seeds per cell (0..N-1); more later extends")
    parser.add_argument("--columns", nargs="+", choices=[c.name for c in COLUMNS], default=[c.name for c in COLUMNS])
    parser.add_argument("--pretrain-args", default=None, help=f"pretrain-bert flags [default: '{FULL['pretrain_args']}']")
    parser.add_argument("--finetune-args", default=None, help="extra finetune-mask flags, e.g. '--device cuda' "
                                                              "[default: none: finetune-mask's own defaults]")
    parser.add_argument("--max-len", type=int, default=None, help=f"notes per window [default: {FULL['max_len']}]")
    parser.add_argument("--work", default=None, help="artifacts and cached pre-trained models "
                                                     "[default: $MUSICTL_BENCH_WORK or ~/.cache/musictl-bench, /label_efficiency]")
    parser.add_argument("--out", default=None, help="folder of label_efficiency.json/.md [default: benchmarks/results]")
    parser.add_argument("--fresh", action="store_true", help="forget the JSON's runs (cached models are kept)")
    parser.add_argument("--render", action="store_true", help="only rebuild the .md from the JSON")
    parser.add_argument("--smoke", action="store_true", help="toy sizes, 1 seed, into a temporary folder")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=None,
                        help="measure only these rows (e.g. 'probe raw': no pre-trained model needed) [default: every row]")
    parser.add_argument("--pretrain-only", choices=OBJECTIVES, help="only pre-train this objective's model (cached)")
    parser.add_argument("--data-only", action="store_true", help="only tokenize the datasets and the pre-training corpus "
                                                                 "(WORK/tokens-pretrain, e.g. for benchmarks/pretrain_sweep.py)")
    args = parser.parse_args(argv)
    if args.smoke:
        temporary = tempfile.mkdtemp(prefix="label-efficiency-smoke-")
        args.work, args.out, args.seeds = args.work or temporary, args.out or temporary, 1
    args.work = args.work or str(paths.work_folder("label_efficiency"))  # outside the work tree: cached models outlive a checkout
    args.out = args.out or str(RESULTS)
    json_path, md_path = Path(args.out) / "label_efficiency.json", Path(args.out) / "label_efficiency.md"
    if args.render:
        data = cells.load(json_path)
    else:
        started = time.perf_counter()
        data = run(Harness(args))
        print(f"finished in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(cells.publish(data, summarise, render, json_path, md_path))


if __name__ == "__main__":
    main()
