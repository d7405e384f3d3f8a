"""Apply a fine-tuned MidiBert to MIDI files that were never tokenized."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np

from musictl import artifacts
from musictl import constants as C
from musictl.bert.data import piece_windows
from musictl.bert.finetune import predict_windows
from musictl.bert.model import MidiBertForTokenClassification, load_midibert
from musictl.bert.settings import PredictSettings, TaskName
from musictl.errors import ArtifactError
from musictl.hf import quiet_transformers


def load_classifier(model_dir: Path, device: str = "auto"):
    """The fine-tuned model of a ``finetune`` artifact (checked against its manifest) and its task."""
    from musictl.training import resolve_device

    quiet_transformers()
    folder = Path(model_dir).name  # names the task in hints only when it is one (not musictl-work/bert, gcn/horror)
    artifacts.require(Path(model_dir), artifacts.FINETUNE, folder if folder in typing.get_args(TaskName) else None)
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
    """Melody: notes split into one track per predicted class. Velocity: velocities set to the centre
    of the predicted class."""
    from musictl.midi.decode import decode_tokens, tokens_to_midi_bytes

    tokens, config = result["tokens"].copy(), result["config"]
    if task == "velocity":
        centres = np.array([16, 40, 56, 72, 88, 112])[result["note_class"]]
        tokens[:, C.VELOCITY] = centres * config.velocity_bins // 128 + C.N_SPECIAL
        return tokens_to_midi_bytes(tokens, config)
    return decode_tokens(tokens, config, groups=result["note_class"], group_names=result["classes"]).dumps_midi()
