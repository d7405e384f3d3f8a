"""Apply a fine-tuned MidiBert to MIDI files that were never tokenized."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musictl import artifacts
from musictl.bert import tasks
from musictl.bert.data import piece_windows
from musictl.bert.finetune import predict_windows
from musictl.bert.model import MidiBertForTokenClassification, load_midibert
from musictl.bert.settings import PredictSettings
from musictl.errors import ArtifactError
from musictl.hf import quiet_transformers


def load_classifier(model_dir: Path, device: str = "auto"):
    """The fine-tuned model of a ``finetune`` artifact (checked against its manifest) and its task."""
    from musictl.device import resolve_device

    quiet_transformers()
    folder = Path(model_dir).name  # names the task in hints only when it is one (not musictl-work/bert, gcn/horror)
    artifacts.require(Path(model_dir), artifacts.FINETUNE, folder if folder in tasks.TASKS else None)
    model = load_midibert(model_dir, producer="musictl finetune-mask --task TASK")
    task = getattr(model.config, "finetune_task", None)
    if task is None:
        raise ArtifactError(f"{model_dir} is not a fine-tuned model; run: musictl finetune-mask --task TASK")
    return model.eval().to(resolve_device(device)), task


def predict_file(model, task: str, path: Path, settings: PredictSettings | None = None) -> dict:
    """Per-note classes (token tasks) or the piece's class probabilities (sequence tasks)."""
    from musictl.midi.encode import encode_file

    return predict_tokens(model, task, encode_file(path, model.config.tokenizer_config).tokens, settings)


def predict_tokens(model, task: str, tokens: np.ndarray, settings: PredictSettings | None = None) -> dict:
    """:func:`predict_file` for a piece already tokenized with the model's tokenizer parameters."""
    settings = settings or PredictSettings()
    config = model.config.tokenizer_config
    max_len = min(settings.max_len, model.config.max_position_embeddings)
    windows = piece_windows(tokens, max_len, config.max_bars)
    device = next(model.parameters()).device
    probs = predict_windows(model, windows, settings.batch_size, task, device)
    classes = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if isinstance(model, MidiBertForTokenClassification):
        return {"tokens": tokens, "config": config, "classes": classes,
                "note_class": np.concatenate([p.argmax(-1) for p in probs])}
    mean = np.mean(probs, axis=0)
    return {"tokens": tokens, "classes": classes, "label": classes[int(mean.argmax())],
            "probabilities": {c: round(float(p), 4) for c, p in zip(classes, mean)}}


def prediction_midi(result: dict, task: str) -> bytes:
    """A per-note prediction as MIDI, as the task's registry entry writes it (``Task.to_midi``): by default the notes
    split into one track per predicted class; ``velocity`` sets each note's velocity to its class's centre. A task
    this version does not register gets the default."""
    entry = tasks.TASKS.get(task)
    to_midi = entry.to_midi if entry is not None else tasks.tracks_midi
    return to_midi(result["tokens"].copy(), result["config"], result["note_class"], result["classes"])
