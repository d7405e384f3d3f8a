"""Fine-tuning tasks: label extraction, masking, a separable toy task, predict, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from symusic import Score
from typer.testing import CliRunner

from musictl import constants as C
from musictl.bert import tasks as T
from musictl.bert.finetune import _batch
from musictl.cli import app
from musictl.midi.corpus import assign_splits, find_midi_files
from musictl.midi.encode import encode_file
from musictl.midi.pipeline import tokenize_corpus
from musictl.midi.tokens import Piece, TokenCorpus
from musictl.midi.vocab import TokenizerConfig
from tests.midi_factory import midi_bytes

runner = CliRunner()
CFG = TokenizerConfig()
TINY = ["--device", "cpu", "--max-len", "64", "--batch-size", "4"]


def pop_song(seed: int) -> bytes:
    """A POP909-like file: MELODY (high), BRIDGE (middle), PIANO (low chords)."""
    rng = np.random.default_rng(seed)
    melody = [(i * 0.5, 0.5, int(rng.integers(72, 84)), 100) for i in range(32)]
    bridge = [(i * 1.0, 1.0, int(rng.integers(60, 70)), 70) for i in range(16)]
    piano = [(i * 2.0, 2.0, p, 50) for i in range(8) for p in (40, 47, 52)]
    return midi_bytes(melody, track_name="MELODY", extra_tracks=[("BRIDGE", 0, bridge), ("PIANO", 0, piano)])


@pytest.fixture(scope="module")
def pop_tokens(tmp_path_factory):
    root = tmp_path_factory.mktemp("pop")
    (root / "pop").mkdir()
    for i in range(8):
        (root / "pop" / f"{i:03d}.mid").write_bytes(pop_song(i))
    files = find_midi_files([root / "pop"])
    tokenize_corpus(files, assign_splits(files, (0.5, 0.25, 0.25), 0), root / "tokens", CFG)
    return root


def test_velocity_classes():
    tokens = encode_file_bytes(midi_bytes([(i, 1, 60, v) for i, v in enumerate([10, 31, 32, 50, 70, 90, 127])]))
    assert T.velocity_classes(tokens, CFG).tolist() == [0, 0, 1, 2, 3, 4, 5]


def encode_file_bytes(data: bytes) -> np.ndarray:
    from musictl.midi.encode import encode_score, parse_midi

    return encode_score(parse_midi(data), CFG).tokens


def test_melody_labels_follow_track_names(pop_tokens):
    corpus = TokenCorpus.open(pop_tokens / "tokens")
    piece = corpus.pieces[0]
    labels = T.melody_labels(piece, corpus.piece_tokens(piece), CFG, T.DEFAULT_MELODY_MAP)
    pitches = corpus.piece_tokens(piece)[:, C.PITCH] - C.N_SPECIAL
    assert np.all(labels[pitches >= 72] == 0) and np.all(labels[(pitches >= 60) & (pitches < 70)] == 1)
    assert np.all(labels[pitches < 53] == 2)
    assert np.bincount(labels).tolist() == [32, 16, 24]
    assert T.melody_class("Lead melody", {}) == 0 and T.melody_class("Strings", {}) == 2
    assert T.melody_class("Vox", {"Vox": "melody"}) == 0


def test_sequence_labels(tmp_path):
    def piece(path, style="s"):
        return Piece(0, path, style, "train", 0, 1, "", 1, 1.0)

    spec = T.TaskSpec("emotion")
    assert T.piece_label(spec, piece("/x/emopia/Q3_abc_1.mid"), None) == "Q3"
    assert T.piece_label(spec, piece("/x/other.mid"), None) is None
    assert T.piece_label(T.TaskSpec("composer"), piece("/p/midi/Yiruma/a.mid"), None) == "Yiruma"
    assert T.piece_label(T.TaskSpec("style"), piece("/a.mid", "jazz"), None) == "jazz"
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\nYiruma/a.mid,calm\nb.mid,busy\n")
    mapping = T.read_label_file(csv)
    label = T.TaskSpec("label", labels_file=csv)
    assert T.piece_label(label, piece("/p/midi/Yiruma/a.mid"), mapping) == "calm"
    assert T.piece_label(label, piece("/q/b.mid"), mapping) == "busy"
    (tmp_path / "l.json").write_text(json.dumps({"c.mid": "x"}))
    assert T.read_label_file(tmp_path / "l.json") == {"c.mid": "x"}


def test_masking_never_hides_padding_nor_leaks_labels():
    windows = [encode_file_bytes(midi_bytes([(i, 1, 60 + i, 20 + 10 * i) for i in range(n)])) for n in (10, 4)]
    labels = [T.velocity_classes(w, CFG) for w in windows]
    inputs, attention, target = _batch(windows, labels, [0, 1], True, "velocity", torch.Generator().manual_seed(0), 0.3, "cpu")
    real = attention.bool()
    assert (inputs[..., C.VELOCITY][real] == C.MASK_ID).all()  # the velocity never shows
    assert (inputs[~real] == C.PAD_ID).all()  # padding stays padding
    assert (target[~real] == T.IGNORE).all()
    fully_masked = (inputs[real] == C.MASK_ID).all(-1)
    assert fully_masked.any() and (target[real][fully_masked] == T.IGNORE).all()  # no loss on masked notes


@pytest.fixture(scope="module")
def style_model(tokens_dir, tmp_path_factory):
    """A tiny style classifier fine-tuned from scratch (shared by the fast test and its slow accuracy floor)."""
    out = tmp_path_factory.mktemp("finetune") / "style"
    result = runner.invoke(app, ["finetune-mask", "--task", "style", "--tokens", str(tokens_dir), "--out", str(out),
                                 "--from-scratch", "--epochs", "6", "--patience", "6", "--lr", "1e-3", *TINY])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_tiny_finetune_beats_chance(style_model):
    metrics = json.loads((style_model / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.66 > metrics["chance_accuracy"]


def test_tiny_finetune_learns_and_predict(style_model, tokens_dir):
    out = style_model
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == ["blues", "march", "waltz"]
    losses = [row["train_loss"] for row in metrics["history"]]
    assert losses[-1] < losses[0], losses  # it learns
    assert np.array(metrics["test"]["confusion_matrix"]).sum() == metrics["pieces"]["test"]
    for name in ("config.json", "model.safetensors", "confusion.png", "README.md", "manifest.json"):
        assert (out / name).is_file()
    corpus = TokenCorpus.open(tokens_dir)
    files = [p.path for p in corpus.select(split="test")]
    result = runner.invoke(app, ["predict", "--model", str(out), *files, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == files
    assert all(abs(sum(line["probabilities"].values()) - 1) < 1e-3 for line in lines)


def test_melody_finetune_and_predict_accounts_for_every_note(pop_tokens, tmp_path):
    out = tmp_path / "melody"
    args = ["finetune-mask", "--task", "melody", "--tokens", str(pop_tokens / "tokens"), "--out", str(out), "--from-scratch",
            "--epochs", "3", *TINY]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    song = tmp_path / "new.mid"
    song.write_bytes(pop_song(99))  # never tokenized
    midi = tmp_path / "split.mid"
    result = runner.invoke(app, ["predict", "--model", str(out), str(song), "-o", str(midi), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    score = Score(str(midi))
    assert score.note_num() == encode_file(song, CFG).notes == 72
    assert {t.name.split(" (")[0] for t in score.tracks} <= set(T.MELODY_CLASSES)


def test_finetune_errors(tokens_dir, tmp_path):
    result = runner.invoke(app, ["finetune-mask", "--task", "dance", "--tokens", str(tokens_dir)])
    assert result.exit_code == 2
    result = runner.invoke(app, ["finetune-mask", "--task", "emotion", "--tokens", str(tokens_dir), "--from-scratch",
                                 "--out", str(tmp_path / "e"), *TINY])
    assert result.exit_code == 1 and "no labelled training pieces" in result.output and "24 pieces had no label" in result.output
    result = runner.invoke(app, ["finetune-mask", "--task", "style", "--tokens", str(tokens_dir), "--model",
                                 str(tmp_path / "none"), "--out", str(tmp_path / "s"), *TINY])
    assert result.exit_code == 1 and "run: musictl pretrain-bert" in result.output
    labels = tmp_path / "labels.csv"
    corpus = TokenCorpus.open(tokens_dir)
    rows = [f"{p.path},{'rare' if p.split == 'test' and p.style == 'waltz' else p.style}" for p in corpus.pieces]
    labels.write_text("\n".join(rows))
    result = runner.invoke(app, ["finetune-mask", "--task", "label", "--labels", str(labels), "--tokens", str(tokens_dir),
                                 "--from-scratch", "--out", str(tmp_path / "l"), *TINY])
    assert result.exit_code == 1 and "no training examples" in result.output


def test_pitch_shift_moves_pitched_notes_and_keeps_drums_and_the_range():
    from musictl import constants as C
    from musictl.bert.finetune import transpose

    window = np.full((4, C.N_FIELDS), C.N_SPECIAL, dtype=np.int64)
    window[:, C.PITCH] = C.N_SPECIAL + np.array([60, 64, 67, 36])
    window[3, C.INSTRUMENT] = C.N_SPECIAL + C.DRUM_PROGRAM
    shifts = set()
    for seed in range(40):
        moved = transpose(window, torch.Generator().manual_seed(seed), 5)
        delta = moved[:3, C.PITCH] - window[:3, C.PITCH]
        assert len(set(delta.tolist())) == 1 and abs(int(delta[0])) <= 5  # one shift for the window
        assert moved[3, C.PITCH] == window[3, C.PITCH]  # drums stay
        assert (np.delete(moved, C.PITCH, axis=1) == np.delete(window, C.PITCH, axis=1)).all()
        shifts.add(int(delta[0]))
    assert len(shifts) > 5
    high = window.copy()
    high[0, C.PITCH] = C.N_SPECIAL + 127
    assert all((transpose(high, torch.Generator().manual_seed(s), 5)[0, C.PITCH] <= C.N_SPECIAL + 127) for s in range(20))
