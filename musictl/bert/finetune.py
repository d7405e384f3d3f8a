"""Mask fine-tuning of MidiBert on a token or sequence task, with early stopping on validation.

During training a share of the input notes (``mask_ratio``) is replaced by MASK, re-drawn every
batch; the loss skips padding and, for token tasks, the masked notes. The test split is scored once,
with the weights of the best validation epoch, on clean input (and masked input if asked).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from musictl import artifacts
from musictl import constants as C
from musictl.bert import tasks as T
from musictl.bert.data import pad_batch, piece_windows
from musictl.bert.masking import mask_notes, random_selection
from musictl.bert.model import MidiBertConfig, MidiBertForSequenceClassification, MidiBertForTokenClassification, load_encoder
from musictl.errors import ArtifactError, UsageError
from musictl.midi.tokens import TokenCorpus

KIND = "finetune"


@dataclasses.dataclass
class FinetuneSettings:
    task: str = "composer"
    mask_ratio: float = 0.15
    from_scratch: bool = False
    max_len: int = 512
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.01
    epochs: int = 10
    patience: int = 3
    eval_masked: bool = False
    seed: int = 0
    device: str = "cpu"
    label_pattern: str = T.DEFAULT_EMOTION_PATTERN
    labels_file: str | None = None


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


def _windows(items: list[T.LabelledPiece], classes: list[str], per_note: bool, max_len: int, max_bars: int):
    windows, labels, owners = [], [], []
    for i, item in enumerate(items):
        for start, window in zip(range(0, len(item.tokens), max_len), piece_windows(item.tokens, max_len, max_bars)):
            windows.append(window)
            labels.append(item.label[start : start + max_len] if per_note else classes.index(item.label))
            owners.append(i)
    return windows, labels, owners


def _batch(windows, labels, index, per_note, task, generator, mask_ratio, device):
    ids, attention = pad_batch([windows[i] for i in index])
    if per_note:
        target = torch.full(ids.shape[:2], T.IGNORE, dtype=torch.long)
        for row, i in enumerate(index):
            target[row, : len(labels[i])] = torch.as_tensor(labels[i])
    else:
        target = torch.tensor([labels[i] for i in index])
    inputs = ids.clone()
    if task == "velocity":  # the label is the velocity: hide it
        inputs[..., C.VELOCITY][attention.bool()] = C.MASK_ID
    if mask_ratio > 0:
        selected = random_selection(attention, mask_ratio, generator)
        inputs = mask_notes(inputs, selected)
        if per_note:
            target[selected] = T.IGNORE
    return inputs.to(device), attention.to(device), target.to(device)


@torch.no_grad()
def predict_windows(model, windows, batch_size, task, device, mask_ratio=0.0, seed=0) -> list[np.ndarray]:
    """Class probabilities of every window: (len, n_classes) per window for token tasks, (n_classes,) else."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    out = []
    per_note = isinstance(model, MidiBertForTokenClassification)
    for start in range(0, len(windows), batch_size):
        index = list(range(start, min(start + batch_size, len(windows))))
        dummy = [np.zeros(len(windows[i]), dtype=np.int64) if per_note else 0 for i in range(len(windows))]
        inputs, attention, _ = _batch(windows, dummy, index, per_note, task, generator, mask_ratio, device)
        probs = torch.softmax(model(inputs, attention).float(), dim=-1).cpu().numpy()
        for row, i in enumerate(index):
            out.append(probs[row, : len(windows[i])] if per_note else probs[row])
    return out


def scores(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": round(float((y_true == y_pred).mean()), 5) if len(y_true) else 0.0,
        "macro_f1": round(float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)), 5),
        "per_class": {c: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
                          "f1": round(float(f1[i]), 4), "support": int(support[i])} for i, c in enumerate(classes)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "count": int(len(y_true)),
    }


def evaluate_split(model, windows, labels, owners, n_items, item_labels, classes, settings, device, masked=False) -> dict:
    probs = predict_windows(model, windows, settings.batch_size, settings.task, device,
                            settings.mask_ratio if masked else 0.0, settings.seed + 99)
    if isinstance(model, MidiBertForTokenClassification):
        y_true = np.concatenate([np.asarray(lab) for lab in labels]) if labels else np.zeros(0, dtype=int)
        y_pred = np.concatenate([p.argmax(-1) for p in probs]) if probs else np.zeros(0, dtype=int)
        keep = y_true != T.IGNORE
        return scores(y_true[keep], y_pred[keep], classes)
    piece_probs = np.zeros((n_items, len(classes)))
    for p, owner in zip(probs, owners):
        piece_probs[owner] += p
    y_true = np.array([classes.index(lab) for lab in item_labels])
    return scores(y_true, piece_probs.argmax(1), classes)


def finetune(tokens_path: Path, model_dir: Path, out: Path, settings: FinetuneSettings, split_file: Path | None = None,
             overwrite: bool = False, on_epoch: Callable[[int, int, dict], None] | None = None,
             size: str = "tiny") -> dict:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from musictl.bert.pretrain import _quiet_transformers

    _quiet_transformers()
    spec = T.TaskSpec(settings.task, settings.label_pattern, Path(settings.labels_file) if settings.labels_file else None)
    corpus = TokenCorpus.open(tokens_path)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ArtifactError(f"{out} already exists; pass --overwrite to replace it")
    split_of = _split_of(corpus, split_file)
    by_split: dict[str, list[T.LabelledPiece]] = {}
    missing: list[str] = []
    for split in C.SPLITS:
        items, lost = T.collect(spec, corpus, [p for p in corpus.pieces if split_of[p.id] == split])
        by_split[split], missing = items, missing + lost
    if not by_split["train"]:
        raise ArtifactError(f"no labelled training pieces for --task {settings.task} in {tokens_path}"
                            + (f" ({len(missing)} pieces had no label)" if missing else ""))
    for split in ("valid", "test"):
        if not by_split[split]:
            raise ArtifactError(f"no labelled {split} pieces for --task {settings.task}; check the split (--split-file)")
    if spec.per_note:
        classes = T.MELODY_CLASSES if spec.name == "melody" else T.VELOCITY_CLASSES
    else:
        classes = sorted({i.label for i in by_split["train"]})
        unseen = sorted({i.label for s in ("valid", "test") for i in by_split[s]} - set(classes))
        if unseen:
            raise ArtifactError(f"classes {unseen} have no training examples; add training pieces or drop them")
        if len(classes) < 2:
            raise ArtifactError(f"--task {settings.task} found a single class ({classes[0]}) in the training split")

    set_seed(settings.seed)
    if settings.from_scratch:
        base = MidiBertConfig.from_pretrained(model_dir) if (Path(model_dir) / "config.json").is_file() else \
            MidiBertConfig.of_size(size, corpus.config)
        config, encoder = MidiBertConfig(**{**base.to_dict(), "tokenizer": corpus.config.describe()}), None
    else:
        if not (Path(model_dir) / "config.json").is_file():
            raise ArtifactError(f"no pre-trained MidiBert in {model_dir}; run: musictl pretrain-bert (or pass --from-scratch)")
        encoder = load_encoder(model_dir)
        encoder.check_tokens(corpus.config, str(tokens_path))
        config = copy.deepcopy(encoder.config)
    config.num_labels = len(classes)
    config.id2label = dict(enumerate(classes))
    config.label2id = {c: i for i, c in enumerate(classes)}
    config.finetune_task = settings.task
    max_len = min(settings.max_len, config.max_position_embeddings)
    cls = MidiBertForTokenClassification if spec.per_note else MidiBertForSequenceClassification
    model = cls(config)
    if encoder is not None:
        model.bert.load_state_dict(encoder.state_dict())

    data = {s: _windows(by_split[s], classes, spec.per_note, max_len, corpus.config.max_bars) for s in C.SPLITS}
    accelerator = Accelerator(cpu=settings.device == "cpu", mixed_precision="bf16" if settings.device == "cuda" else "no")
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    device = accelerator.device
    windows, labels, _ = data["train"]
    history, best, best_state, started = [], None, None, time.perf_counter()
    step = 0
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = np.random.default_rng([settings.seed, epoch]).permutation(len(windows))
        total = 0.0
        for b in range(0, len(order), settings.batch_size):
            generator = torch.Generator().manual_seed(settings.seed * 7919 + step)
            inputs, attention, target = _batch(windows, labels, order[b : b + settings.batch_size].tolist(), spec.per_note,
                                               settings.task, generator, settings.mask_ratio, device)
            logits = model(inputs, attention)
            loss = F.cross_entropy(logits.float().reshape(-1, len(classes)), target.reshape(-1), ignore_index=T.IGNORE)
            if torch.isnan(loss):  # every label of the batch masked away: nothing to learn from it
                continue
            optimizer.zero_grad()
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total += float(loss.detach())
            step += 1
        valid = evaluate_split(unwrapped, *data["valid"], len(by_split["valid"]), [i.label for i in by_split["valid"]],
                               classes, settings, device)
        row = {"epoch": epoch, "train_loss": round(total / max(1, len(order) // settings.batch_size), 5),
               "valid_accuracy": valid["accuracy"], "valid_macro_f1": valid["macro_f1"]}
        history.append(row)
        if on_epoch:
            on_epoch(epoch, settings.epochs, row)
        if best is None or valid["accuracy"] > best["valid"]["accuracy"]:
            best = {"epoch": epoch, "valid": valid}
            best_state = copy.deepcopy(unwrapped.state_dict())
        elif epoch - best["epoch"] >= settings.patience:
            break
    unwrapped.load_state_dict(best_state)
    test_items = [i.label for i in by_split["test"]]
    test = evaluate_split(unwrapped, *data["test"], len(by_split["test"]), test_items, classes, settings, device)
    metrics = {
        "task": settings.task, "classes": classes, "pretrained": not settings.from_scratch, "mask_ratio": settings.mask_ratio,
        "best_epoch": best["epoch"], "epochs_run": len(history), "seconds": round(time.perf_counter() - started, 2),
        "pieces": {s: len(by_split[s]) for s in C.SPLITS}, "unlabelled_pieces": len(missing),
        "valid": best["valid"], "test": test, "history": history,
        "chance_accuracy": round(1 / len(classes), 4),
    }
    if settings.eval_masked:
        metrics["test_masked"] = evaluate_split(unwrapped, *data["test"], len(by_split["test"]), test_items, classes, settings,
                                                device, masked=True)
    with artifacts.staging(out, overwrite) as tmp:
        unwrapped.save_pretrained(tmp)
        artifacts.atomic_write_json(tmp / "metrics.json", metrics)
        confusion_png(np.array(test["confusion_matrix"]), classes, tmp / "confusion.png", f"{settings.task}: test")
        (tmp / "README.md").write_text(_card(settings, metrics, model_dir))
        if missing:
            artifacts.write_jsonl(tmp / "unlabelled.jsonl", [{"path": m} for m in missing])
        inputs = {"tokens": artifacts.input_ref(tokens_path, corpus.manifest)}
        if not settings.from_scratch and (Path(model_dir) / artifacts.MANIFEST).is_file():
            inputs["bert"] = artifacts.input_ref(Path(model_dir), artifacts.read_manifest(Path(model_dir)))
        artifacts.write_manifest(tmp, artifacts.Manifest(
            kind=KIND, parameters={**dataclasses.asdict(settings), "split_file": str(split_file) if split_file else None},
            inputs=inputs, metrics={"test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"],
                                    "best_epoch": best["epoch"]}))
    return metrics


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


def _card(settings: FinetuneSettings, metrics: dict, model_dir: Path) -> str:
    origin = "trained from scratch (no pre-training)" if settings.from_scratch else f"fine-tuned from `{model_dir}`"
    return f"""---
library_name: transformers
tags: [midi, music, bert, musictl, {settings.task}]
---
# MidiBert for `{settings.task}`

MidiBert {origin} with mask fine-tuning (mask ratio {settings.mask_ratio}) by `musictl finetune-mask`.

- Classes: {', '.join(metrics['classes'])} (chance {metrics['chance_accuracy']:.3f})
- Pieces: train {metrics['pieces']['train']}, valid {metrics['pieces']['valid']}, test {metrics['pieces']['test']}
- Best validation epoch {metrics['best_epoch']} of {metrics['epochs_run']}

| split | accuracy | macro-F1 |
|---|---:|---:|
| valid (best epoch) | {metrics['valid']['accuracy']:.4f} | {metrics['valid']['macro_f1']:.4f} |
| test (clean input) | {metrics['test']['accuracy']:.4f} | {metrics['test']['macro_f1']:.4f} |

Predict with `musictl predict --model DIR FILE.mid`.
"""
