"""docs/architecture.md stays true: its module map lists every module, and its recipe for a fine-tuning task
works as written (through predict here; through --help, the CLI and status in tests/test_registries.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "musictl"
DOC = ROOT / "docs" / "architecture.md"


def module_map() -> list[str]:
    """The paths (``musictl/midi/vocab.py``, ``musictl/midi/``) of the module map's code block."""
    text = DOC.read_text()
    section = text[text.index("## Module map"):]
    block = re.search(r"```\n(.*?)```", section, re.S).group(1)
    paths, stack = [], []
    for line in block.splitlines():
        if not line.strip():
            continue
        name = line.split()[0]
        level = (len(line) - len(line.lstrip())) // 2
        assert name.endswith((".py", "/")), f"not a module or folder: {line!r} (one line per module, no wrapped lines)"
        assert level <= len(stack), f"indented too deep: {line!r}"
        path = "".join(stack[:level]) + name
        del stack[level:]
        if name.endswith("/"):
            stack.append(name)
        paths.append(path)
    return paths


def test_the_module_map_lists_every_module_and_only_modules_that_exist():
    listed = module_map()
    actual = {str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")}
    packages = {str(p.parent.relative_to(ROOT)) + "/" for p in PACKAGE.rglob("__init__.py")}
    missing = sorted((actual | packages) - set(listed))
    assert not missing, f"docs/architecture.md's module map lacks: {missing}"
    gone = sorted(p for p in listed if not (ROOT / p).exists())
    assert not gone, f"docs/architecture.md's module map lists what does not exist: {gone}"
    assert len(listed) == len(set(listed)), "a module is listed twice"


PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def test_a_per_note_task_added_as_the_recipe_says_is_fine_tuned_and_predicted(tokens_dir, tmp_path, monkeypatch):
    """docs/architecture.md, "A fine-tuning task": one entry in TASKS, with a toy task, fine-tuned and predicted."""
    import torch
    from symusic import Score

    from musictl import constants as C
    from musictl.bert import finetune, tasks
    from musictl.bert import settings as bert_settings
    from musictl.bert.predict import load_classifier, predict_tokens, prediction_midi
    from musictl.errors import UsageError
    from musictl.midi.tokens import TokenCorpus

    torch.set_num_threads(1)
    with pytest.raises(UsageError, match="pitchclass"):  # unregistered, the settings refuse the name
        bert_settings.FinetuneSettings(task="pitchclass")
    # the one entry (hiding the pitch field its labels come from is left out: the toy task need not be hard)
    monkeypatch.setitem(tasks.TASKS, "pitchclass", tasks.Task(
        "pitchclass", "the note's pitch class", per_note=True, classes=PITCH_CLASSES,
        label=lambda piece, tokens, config, spec: (tokens[:, C.PITCH].astype(np.int64) - C.N_SPECIAL) % 12))

    settings = bert_settings.FinetuneSettings(task="pitchclass", from_scratch=True, epochs=1, patience=1, max_len=64,
                                              batch_size=4, device="cpu")
    out = tmp_path / "finetune" / "pitchclass"
    finetune.finetune(tokens_dir, tmp_path / "no-bert", out, settings)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == list(PITCH_CLASSES)
    assert np.array(metrics["test"]["confusion_matrix"]).shape == (12, 12)

    model, task = load_classifier(out, "cpu")  # predict needs no change: a per-note model writes MIDI
    corpus = TokenCorpus.open(tokens_dir)
    piece = corpus.select(split="test")[0]
    result = predict_tokens(model, task, corpus.piece_tokens(piece))
    assert task == "pitchclass" and len(result["note_class"]) == piece.length
    score = Score.from_midi(prediction_midi(result, task))
    assert score.note_num() == piece.length
    assert {t.name.split(" (")[0] for t in score.tracks} <= set(PITCH_CLASSES)
