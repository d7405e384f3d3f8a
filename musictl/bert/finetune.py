"""Mask fine-tuning of MidiBert on a token or sequence task, with early stopping on validation.

During training a share of the input notes (``mask_ratio``) is replaced by MASK, re-drawn every
batch; the loss skips padding and, for token tasks, the masked notes. Each epoch ends with a
validation (accuracy and loss) and a checkpoint; training stops by :class:`musictl.training.EarlyStopping`
(by default once validation accuracy and loss have both gone ``--patience`` epochs without improving,
Adversarial-MidiBERT's rule; at once on a perfect validation accuracy). The test split is
scored once, with the weights of the best validation epoch, on clean input (and masked input if
asked). The run lifecycle (checks, lock, staging, checkpoints, ``--resume``, trackers, interrupts) is
:class:`musictl.training.Run`'s, on the layout of :func:`musictl.artifacts.resumable`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from musictl import artifacts, training
from musictl import constants as C
from musictl.bert import tasks
from musictl.bert.data import pad_batch, piece_windows
from musictl.bert.masking import mask_notes, random_selection
from musictl.bert.model import MidiBertConfig, MidiBertForSequenceClassification, MidiBertForTokenClassification, load_encoder
from musictl.bert.settings import FinetuneSettings
from musictl.errors import ArtifactError, UsageError
from musictl.hf import quiet_transformers
from musictl.midi.tokens import TokenCorpus
from musictl.progress import Progress

KIND = artifacts.FINETUNE
# the random streams (musictl.training.generator): keyed by --seed, the stream's name and an index
MASK = "mask"  # the training masks (index: the micro-batch, the same on any number of processes)
PITCH_SHIFT = "pitch-shift"  # the pitch-shift augmentation (index: the sample's stream position)
EVAL_MASK = "eval-mask"  # the masks of a masked evaluation (index: the window)
log = logging.getLogger(__name__)

__all__ = ["FinetuneResult", "FinetuneSettings", "finetune"]


@dataclasses.dataclass
class FinetuneResult:
    """What a fine-tuning run did (``to_dict()`` is metrics.json)."""

    task: str
    classes: list[str]
    pretrained: bool
    mask_ratio: float
    best_epoch: int
    epochs_run: int
    seconds: float
    pieces: dict[str, int]
    unlabelled_pieces: int
    valid: dict
    test: dict
    history: list[dict]
    chance_accuracy: float
    batch: dict
    test_masked: dict | None = None
    stopped_early: str | None = None  # why --patience ended the run before --epochs
    main_process: bool = True

    @property
    def best_epoch_is_last(self) -> bool:
        """Whether the run was still improving when it ended (its best epoch is its last): not converged."""
        return self.best_epoch == self.epochs_run

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("main_process")
        data.update(data.pop("batch"))
        if data["test_masked"] is None:
            data.pop("test_masked")
        data["best_epoch_is_last"] = self.best_epoch_is_last
        return data


# ----- labelled data ------------------------------------------------------------------------------------
def _split_of(corpus: TokenCorpus, split_file: Path | None) -> dict[int, str]:
    if split_file is None:
        return {p.id: p.split for p in corpus.pieces}
    try:
        data = json.loads(Path(split_file).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--split-file {split_file}: cannot read it as JSON ({exc})") from None
    lookup = {str(e): s for s in C.SPLITS for e in data.get(s, [])}
    out = {}
    for p in corpus.pieces:
        path = Path(p.path)
        keys = (f"{path.parent.name}/{path.name}", path.name)
        out[p.id] = next((lookup[k] for k in keys if k in lookup), C.UNLISTED_SPLIT)
    return out


@dataclasses.dataclass
class Split:
    """The windows of one split, their labels, and which labelled piece each window comes from."""

    items: list[tasks.LabelledPiece]
    windows: list[np.ndarray]
    labels: list
    owners: list[int]


def labelled_pieces(corpus: TokenCorpus, spec: tasks.TaskSpec, split_file: Path | None, tokens_path: Path
                    ) -> tuple[dict[str, list[tasks.LabelledPiece]], list[str], list[str]]:
    """Labelled pieces per split, the classes and the pieces without a label; errors say what to do."""
    split_of = _split_of(corpus, split_file)
    by_split, missing = {}, []
    for split in C.SPLITS:
        items, lost = tasks.collect(spec, corpus, [p for p in corpus.pieces if split_of[p.id] == split])
        by_split[split], missing = items, missing + lost
    if not by_split["train"]:
        raise ArtifactError(f"no labelled training pieces for --task {spec.name} in {tokens_path}"
                            + (f" ({len(missing)} pieces had no label)" if missing else ""))
    for split in ("valid", "test"):
        if not by_split[split]:
            raise ArtifactError(f"{tokens_path} has 0 labelled {split} pieces for --task {spec.name}: no {split} split; "
                                "use --split in musictl tokenize, a --split-file, or add pieces")
    classes = class_names(spec, by_split)
    for message in empty_class_warnings(by_split, classes, spec.per_note):
        log.warning(message)
    return by_split, classes, missing


def empty_class_warnings(by_split: dict[str, list[tasks.LabelledPiece]], classes: list[str], per_note: bool) -> list[str]:
    """One line per class that a validation or test split lacks, saying which metrics that makes meaningless."""
    def counts(items: list[tasks.LabelledPiece]) -> dict[str, int]:
        if per_note:
            labels = np.concatenate([np.asarray(i.label) for i in items]) if items else np.zeros(0, int)
            return {c: int((labels == k).sum()) for k, c in enumerate(classes)}
        return {c: sum(i.label == c for i in items) for c in classes}

    unit = "notes" if per_note else "pieces"
    train, lines = counts(by_split["train"]), []
    for split, meaning in (("valid", "early stopping and the best-epoch choice never see it"),
                           ("test", "its test recall and F1 are undefined and the test macro-F1 averages over the other "
                                    "classes")):
        absent = [c for c, n in counts(by_split[split]).items() if n == 0]
        if absent:
            names = ", ".join(f"'{c}' ({train[c]} training {unit})" for c in absent)
            lines.append(f"no {split} {unit} for class {names}: {meaning}; give it {split} {unit} with musictl tokenize "
                         "--split or a --split-file")
    return lines


def split_windows(by_split: dict[str, list[tasks.LabelledPiece]], classes: list[str], per_note: bool, max_len: int,
                  max_bars: int) -> dict[str, Split]:
    return {s: Split(by_split[s], *_windows(by_split[s], classes, per_note, max_len, max_bars)) for s in C.SPLITS}


def class_names(spec: tasks.TaskSpec, by_split: dict[str, list[tasks.LabelledPiece]]) -> list[str]:
    if spec.per_note:
        return list(spec.classes)
    classes = sorted({i.label for i in by_split["train"]})
    unseen = sorted({i.label for s in ("valid", "test") for i in by_split[s]} - set(classes))
    if unseen:
        raise ArtifactError(f"classes {unseen} have no training examples; add training pieces or drop them")
    if len(classes) < 2:
        raise ArtifactError(f"--task {spec.name} found a single class ({classes[0]}) in the training split")
    return classes


def _windows(items: list[tasks.LabelledPiece], classes: list[str], per_note: bool, max_len: int, max_bars: int):
    windows, labels, owners = [], [], []
    for i, item in enumerate(items):
        for start, window in zip(range(0, len(item.tokens), max_len), piece_windows(item.tokens, max_len, max_bars)):
            windows.append(window)
            labels.append(item.label[start : start + max_len] if per_note else classes.index(item.label))
            owners.append(i)
    return windows, labels, owners


# ----- batches ---------------------------------------------------------------------------------------------
def _batch(windows, labels, index, per_note, task, generator, mask_ratio, device):
    ids, attention = pad_batch([windows[i] for i in index])
    if per_note:
        target = torch.full(ids.shape[:2], tasks.IGNORE, dtype=torch.long)
        for row, i in enumerate(index):
            target[row, : len(labels[i])] = torch.as_tensor(labels[i])
    else:
        target = torch.tensor([labels[i] for i in index])
    inputs = ids.clone()
    hidden = tasks.hidden_field(task)  # the field the label is computed from (velocity's): it must not show
    if hidden is not None:
        inputs[..., hidden][attention.bool()] = C.MASK_ID
    if mask_ratio > 0:
        selected = random_selection(attention, mask_ratio, generator)
        inputs = mask_notes(inputs, selected)
        if per_note:
            target[selected] = tasks.IGNORE
    return inputs.to(device), attention.to(device), target.to(device)


def collate_train(samples: list[training.Sample], split: Split, per_note: bool, settings: FinetuneSettings,
                  batch_size: int) -> dict[str, torch.Tensor]:
    """One training micro-batch; its masks and shifts come from its place in the stream (any number of processes)."""
    generator = training.generator(settings.seed, MASK, training.micro_batch_of(samples, batch_size))
    windows = split.windows
    if settings.pitch_shift and not per_note:
        windows = {s.index: transpose(split.windows[s.index], training.generator(settings.seed, PITCH_SHIFT, s.position),
                                      settings.pitch_shift) for s in samples}
    inputs, attention, target = _batch(windows, split.labels, [s.index for s in samples], per_note, settings.task,
                                       generator, settings.mask_ratio, "cpu")
    return {"inputs": inputs, "attention_mask": attention, "target": target}


def transpose(window: np.ndarray, generator: torch.Generator, most: int) -> np.ndarray:
    """``window`` moved by a random whole number of semitones in [-most, most] (drums stay; a shift that
    would leave the MIDI range is not applied): pitch-shift augmentation for the piece-level tasks."""
    shift = int(torch.randint(-most, most + 1, (1,), generator=generator))
    pitched = window[:, C.INSTRUMENT] != C.N_SPECIAL + C.DRUM_PROGRAM
    pitches = window[pitched, C.PITCH] - C.N_SPECIAL + shift
    if shift == 0 or not pitched.any() or pitches.min() < 0 or pitches.max() > 127:
        return window
    moved = window.copy()
    moved[pitched, C.PITCH] += shift
    return moved


def collate_eval(samples: list[training.Sample], task: str, mask_ratio: float, seed: int) -> dict[str, torch.Tensor]:
    """Windows to score, each masked (if asked) from the :data:`EVAL_MASK` stream at its own index."""
    windows = [s.item for s in samples]
    inputs, attention, _ = _batch(windows, [0] * len(windows), list(range(len(windows))), False, task, None, 0.0, "cpu")
    if mask_ratio > 0:
        for row, sample in enumerate(samples):
            generator = training.generator(seed, EVAL_MASK, sample.index)
            selected = random_selection(attention[row : row + 1], mask_ratio, generator)
            inputs[row : row + 1] = mask_notes(inputs[row : row + 1], selected)
    return {"inputs": inputs, "attention_mask": attention, "window_ids": torch.tensor([s.index for s in samples])}


# ----- evaluate --------------------------------------------------------------------------------------------
@torch.no_grad()
def predict_windows(model, windows, batch_size, task, device, mask_ratio=0.0, seed=0, run: training.Run | None = None) -> list:
    """Class probabilities of every window: (len, n_classes) per window for token tasks, (n_classes,) else.

    With ``run`` the windows are sharded over its processes and gathered back (every rank gets all).
    """
    model.eval()
    collate = functools.partial(collate_eval, task=task, mask_ratio=mask_ratio, seed=seed)
    if run is not None:
        batches, gather = run.eval_loader(windows, collate, batch_size), run.gather
    else:
        samples = [training.Sample(i, i, w) for i, w in enumerate(windows)]
        batches = (collate(samples[i : i + batch_size]) for i in range(0, len(samples), batch_size))
        gather = _same
    per_note = isinstance(model, MidiBertForTokenClassification)
    out: list = [None] * len(windows)
    for batch in batches:
        probs = torch.softmax(model(batch["inputs"].to(device), batch["attention_mask"].to(device)).float(), dim=-1)
        probs, index = gather((probs, batch["window_ids"].to(device)))
        for p, i in zip(probs.cpu().numpy(), index.tolist()):
            out[i] = p[: len(windows[i])] if per_note else p
    return out


def _same(data):
    return data


def scores(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": round(float((y_true == y_pred).mean()), 5) if len(y_true) else 0.0,
        # over the classes the split holds or the model predicts (scikit-learn's default): a class absent from the
        # split is not scored as an F1 of 0 (empty_class_warnings says so before training)
        "macro_f1": round(float(f1_score(y_true, y_pred, average="macro", zero_division=0)), 5) if len(y_true) else 0.0,
        "per_class": {c: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
                          "f1": round(float(f1[i]), 4), "support": int(support[i])} for i, c in enumerate(classes)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "count": int(len(y_true)),
    }


def evaluate_split(run: training.Run, model, split: Split, classes: list[str], settings: FinetuneSettings,
                   masked: bool = False) -> dict:
    """Scores of one split: per note (token tasks) or per piece (its windows' probabilities averaged),
    the mean cross-entropy (``loss``), and per piece its correct and scored counts (``pieces``: what a
    bootstrap over pieces resamples)."""
    probs = predict_windows(model, split.windows, settings.batch_size, settings.task, run.device,
                            settings.mask_ratio if masked else 0.0, settings.seed, run=run)
    paths = [item.piece.path for item in split.items]
    if isinstance(model, MidiBertForTokenClassification):
        labels = [np.asarray(lab) for lab in split.labels]
        y_true = np.concatenate(labels) if labels else np.zeros(0, dtype=int)
        p_all = np.concatenate(probs) if probs else np.zeros((0, len(classes)))
        owner = np.concatenate([np.full(len(lab), o) for lab, o in zip(labels, split.owners)]) if labels else np.zeros(0, int)
        keep = y_true != tasks.IGNORE
        y_true, p_all, owner = y_true[keep], p_all[keep], owner[keep]
        y_pred = p_all.argmax(-1) if len(p_all) else np.zeros(0, dtype=int)
        true_prob = p_all[np.arange(len(y_true)), y_true] if len(y_true) else np.zeros(0)
    else:
        piece_probs = np.zeros((len(split.items), len(classes)))
        counts = np.zeros(len(split.items))
        for p, o in zip(probs, split.owners):
            piece_probs[o] += p
            counts[o] += 1
        piece_probs /= np.maximum(counts, 1)[:, None]
        y_true = np.array([classes.index(item.label) for item in split.items])
        y_pred, owner = piece_probs.argmax(1), np.arange(len(split.items))
        true_prob = piece_probs[owner, y_true]
    result = scores(y_true, y_pred, classes)
    result["loss"] = round(float(-np.log(np.clip(true_prob, 1e-9, 1.0)).mean()), 5) if len(true_prob) else 0.0
    correct = np.bincount(owner, weights=(y_true == y_pred), minlength=len(paths))
    total = np.bincount(owner, minlength=len(paths))
    result["pieces"] = [[path, int(c), int(t)] for path, c, t in zip(paths, correct, total)]
    return result


# ----- build -----------------------------------------------------------------------------------------------
def build(model_dir: Path, corpus: TokenCorpus, tokens_path: Path, classes: list[str], spec: tasks.TaskSpec,
          settings: FinetuneSettings) -> tuple[torch.nn.Module, torch.optim.Optimizer, dict]:
    """The classifier (pre-trained encoder unless --from-scratch), AdamW, and the inputs its manifest records."""
    model_dir = Path(model_dir)
    inputs = {"tokens": artifacts.input_ref(tokens_path, corpus.manifest)}
    if settings.from_scratch:
        base = MidiBertConfig.from_pretrained(model_dir) if (model_dir / "config.json").is_file() else \
            MidiBertConfig.of_size("tiny", corpus.config)
        config, encoder = MidiBertConfig(**{**base.to_dict(), "tokenizer": corpus.config.describe()}), None
    else:
        bert = artifacts.require(model_dir, artifacts.BERT)
        check_pretraining_tokens(model_dir, bert, tokens_path, corpus)
        encoder = load_encoder(model_dir)
        encoder.check_tokens(corpus.config, str(tokens_path))
        config = copy.deepcopy(encoder.config)
        inputs["bert"] = artifacts.input_ref(model_dir, bert)
    config.num_labels = len(classes)
    config.id2label = dict(enumerate(classes))
    config.label2id = {c: i for i, c in enumerate(classes)}
    config.finetune_task = settings.task
    if settings.dropout is not None:
        config.hidden_dropout_prob = config.attention_probs_dropout_prob = settings.dropout
    model = (MidiBertForTokenClassification if spec.per_note else MidiBertForSequenceClassification)(config)
    if encoder is not None:
        model.bert.load_state_dict(encoder.state_dict())
    optimizer = torch.optim.AdamW(training.param_groups(model, settings.weight_decay), lr=settings.lr)
    return model, optimizer, inputs


def check_pretraining_tokens(model_dir: Path, bert: artifacts.Manifest, tokens_path: Path, corpus: TokenCorpus) -> None:
    """A bert pre-trained on these very tokens must have been made from their current version."""
    recorded = artifacts.input_path(model_dir, bert, "tokens")
    if recorded is not None and recorded.resolve() == Path(tokens_path).resolve():
        artifacts.check_input(model_dir, bert, "tokens", corpus.manifest, command="musictl pretrain-bert")
    elif recorded is not None:
        log.info("%s was pre-trained on %s; fine-tuning it on %s", model_dir, recorded, tokens_path)


def forward(model, batch: dict[str, torch.Tensor], n_classes: int) -> torch.Tensor:
    """The loss of one micro-batch through the prepared classifier."""
    return loss_of(model(batch["inputs"], batch["attention_mask"]), batch["target"], n_classes)


def evaluate(run: training.Run, model, split: Split, classes: list[str], settings: FinetuneSettings) -> dict:
    """The validation scores of an epoch (:func:`evaluate_split` on clean input, without the per-piece counts)."""
    return {k: v for k, v in evaluate_split(run, model, split, classes, settings).items() if k != "pieces"}


def loss_of(logits: torch.Tensor, target: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Mean cross-entropy over the labelled positions (0, not NaN, when a batch has none)."""
    flat = target.reshape(-1)
    total = F.cross_entropy(logits.float().reshape(-1, n_classes), flat, ignore_index=tasks.IGNORE, reduction="sum")
    return total / (flat != tasks.IGNORE).sum().clamp_min(1)


# ----- the run -----------------------------------------------------------------------------------------------
def finetune(tokens_path: Path, model_dir: Path, out: Path, settings: FinetuneSettings, split_file: Path | None = None,
             overwrite: bool = False, resume: bool = False, on_progress: Progress | None = None) -> FinetuneResult:
    """Fine-tune, test at the best validation epoch, write ``out`` (swapped in when complete).

    ``resume`` continues an interrupted run from its last epoch's checkpoint, or a finished one with a
    larger ``--epochs``. Ctrl-C / SIGTERM raise :class:`musictl.errors.Interrupted` saying what was kept.
    """
    quiet_transformers()
    tokens_path = Path(tokens_path)
    spec = tasks.TaskSpec(settings.task, settings.label_pattern, Path(settings.labels_file) if settings.labels_file else None)
    corpus = TokenCorpus.open(tokens_path)
    run = training.Run(settings, clip=settings.clip)
    output = artifacts.resumable(out, KIND, settings.task, what=f"{settings.task} fine-tuning run")
    with run.staged(output, resume, overwrite) as state:
        by_split, classes, missing = labelled_pieces(corpus, spec, split_file, tokens_path)
        model, optimizer, inputs = build(model_dir, corpus, tokens_path, classes, spec, settings)
        max_len = min(settings.max_len, model.config.max_position_embeddings)
        data = split_windows(by_split, classes, spec.per_note, max_len, corpus.config.max_bars)
        train, per_note, n_classes = data["train"], spec.per_note, len(classes)
        model, optimizer = run.prepare(model, optimizer)
        run.restore()
        unwrapped = run.unwrap(model)
        collate = functools.partial(collate_train, split=train, per_note=per_note, settings=settings,
                                    batch_size=run.plan.per_device)

        def row(done: training.StepDone, state: training.TrainerState, valid: dict) -> dict:
            train_loss = run.reduce_mean(sum(float(loss) for loss in done.outputs) / len(done.outputs))
            return {"epoch": state.epoch, "step": state.step, "train_loss": round(train_loss, 5),
                    "valid_accuracy": valid["accuracy"], "valid_macro_f1": valid["macro_f1"], "valid_loss": valid["loss"]}

        started = time.perf_counter()
        run.fit(state, training.Cadence.per_epoch(settings.epochs), model, optimizer, None, list(range(len(train.windows))),
                collate, forward=functools.partial(forward, n_classes=n_classes),
                evaluate=lambda: evaluate(run, unwrapped, data["valid"], classes, settings), row=row,
                early=training.EarlyStopping.of(settings), best=unwrapped, history=True, on_progress=on_progress)
        unwrapped.load_state_dict(load_weights(run.best_dir()))
        test = evaluate_split(run, unwrapped, data["test"], classes, settings)
        masked = evaluate_split(run, unwrapped, data["test"], classes, settings, masked=True) if settings.eval_masked else None
        history = state.extra.get("history", [])
        result = FinetuneResult(
            task=settings.task, classes=classes, pretrained=not settings.from_scratch, mask_ratio=settings.mask_ratio,
            best_epoch=state.best["epoch"], epochs_run=len(history), seconds=round(time.perf_counter() - started, 2),
            pieces={s: len(data[s].items) for s in C.SPLITS}, unlabelled_pieces=len(missing), valid=state.best, test=test,
            history=history, chance_accuracy=round(1 / n_classes, 4), batch=run.describe(), test_masked=masked,
            stopped_early=state.stopped_early, main_process=run.is_main)
        run.finish(lambda staging: write_artifact(staging, unwrapped, result, settings, model_dir, split_file, inputs, missing))
    return result


def load_weights(directory: Path) -> dict:
    """The ``model.safetensors`` state dict of a ``save_pretrained`` directory (on the CPU: ``load_state_dict``
    copies each tensor to the model's device)."""
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / "model.safetensors"))


def write_artifact(tmp: Path, model, result: FinetuneResult, settings: FinetuneSettings, model_dir: Path, split_file: Path | None,
          inputs: dict, missing: list[str]) -> None:
    model.save_pretrained(tmp)
    metrics = result.to_dict()
    artifacts.atomic_write_json(tmp / "metrics.json", metrics)
    confusion_png(np.array(result.test["confusion_matrix"]), result.classes, tmp / "confusion.png", f"{settings.task}: test")
    (tmp / "README.md").write_text(model_card(settings, metrics, model_dir))
    if missing:
        artifacts.write_jsonl(tmp / "unlabelled.jsonl", [{"path": m} for m in missing])
    artifacts.write_manifest(tmp, artifacts.Manifest(
        kind=KIND, parameters={**settings.to_dict(), **result.batch, "split_file": str(split_file) if split_file else None},
        inputs=inputs, metrics={"test_accuracy": result.test["accuracy"], "test_macro_f1": result.test["macro_f1"],
                                "best_epoch": result.best_epoch}))


def confusion_png(matrix: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > matrix.max() / 2 else "black", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def model_card(settings: FinetuneSettings, metrics: dict, model_dir: Path) -> str:
    origin = "trained from scratch (no pre-training)" if settings.from_scratch else f"fine-tuned from `{model_dir}`"
    return f"""---
library_name: transformers
tags: [midi, music, bert, musictl, {settings.task}]
---
# MidiBert for `{settings.task}`

MidiBert {origin} with mask fine-tuning (mask ratio {settings.mask_ratio}) by `musictl finetune-mask`.

- Classes: {', '.join(metrics['classes'])} (chance {metrics['chance_accuracy']:.3f})
- Pieces: train {metrics['pieces']['train']}, valid {metrics['pieces']['valid']}, test {metrics['pieces']['test']}
- Best validation epoch {metrics['best_epoch']} of {metrics['epochs_run']}; global batch {metrics['global_batch_size']}
  ({metrics['per_device_batch_size']} per device x {metrics['processes']} process(es) x {metrics['grad_accum']} accumulation)

| split | accuracy | macro-F1 |
|---|---:|---:|
| valid (best epoch) | {metrics['valid']['accuracy']:.4f} | {metrics['valid']['macro_f1']:.4f} |
| test (clean input) | {metrics['test']['accuracy']:.4f} | {metrics['test']['macro_f1']:.4f} |

Predict with `musictl predict --model DIR FILE.mid`.
"""
