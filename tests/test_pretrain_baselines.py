"""The baselines masked-note accuracy is compared with (musictl/bert/baselines.py, bert/pretrain.py): the
neighbours count table, the rule that a baseline reads only what the model sees, the verdicts against the
strongest baseline, and scoring only the notes whose answer is hidden."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from musictl import constants as C
from musictl.bert import baselines
from musictl.bert.baselines import ABSENT, ContextField, FieldTable, NeighbourTables
from musictl.bert.data import cut_windows, pad_batch
from musictl.bert.masking import validation_masks
from musictl.bert.pretrain import (
    BASELINES,
    PretrainSettings,
    baseline_guesses,
    best_baseline,
    best_trivial,
    count_baselines,
    evaluate,
    field_verdicts,
    learned_fields,
    pretrain,
)
from musictl.midi.tokens import TokenCorpus

VOCAB = [260, 132, 133, 132, 132, 36, 258, 53]  # the default tokenizer's field vocabularies


def notes(*values: int) -> np.ndarray:
    """A window whose 8 fields all take these values, (n, 8)."""
    return np.repeat(np.array(values, dtype=np.int64)[:, None], C.N_FIELDS, axis=1)


# ----- the count table ------------------------------------------------------------------------------
TOY = np.array([4, 5, 6, 5, 4, 5, 6, 7])  # one window: (previous, value, next) of its inner notes below


def test_neighbour_table_counts_a_toy_sequence_exactly():
    table = FieldTable.count(TOY, np.array([len(TOY)]))
    decode = lambda codes: table.values[codes].tolist()  # noqa: E731
    assert table.values.tolist() == [4, 5, 6, 7] and table.unigram == 5  # 5 three times
    # pairs of the inner notes: (4,6)->5 twice, (5,5)->6 and ->4 (a tie: the smaller), (6,4)->5, (5,7)->6
    pairs = {(int(table.values[k // 4]), int(table.values[k % 4])): (v, h, t) for k, v, h, t in
             zip(table.pair.keys, decode(table.pair.modes), table.pair.hits, table.pair.totals)}
    assert pairs == {(4, 6): (5, 2, 2), (5, 5): (4, 1, 2), (6, 4): (5, 1, 1), (5, 7): (6, 1, 1)}
    # previous: 4 -> 5 (x2); 5 -> 6, 4, 6; 6 -> 5, 7 (a tie). next: 5 <- 4, 6, 4; 6 <- 5, 5; 4 <- 5; 7 <- 6
    assert dict(zip(decode(table.previous.keys), zip(decode(table.previous.modes), table.previous.hits.tolist(),
                                                     table.previous.totals.tolist()))) == {4: (5, 2, 2), 5: (6, 2, 3), 6: (5, 1, 2)}
    assert dict(zip(decode(table.next.keys), zip(decode(table.next.modes), table.next.totals.tolist()))) == {
        4: (5, 1), 5: (4, 3), 6: (5, 2), 7: (6, 1)}


def test_neighbour_table_backs_off_pair_then_previous_then_next_then_unigram():
    table = FieldTable.count(TOY, np.array([len(TOY)]))
    cases = {
        (4, 6): 5,  # the pair
        (5, 5): 4,  # the pair, a tie broken towards the smaller value
        (5, 6): 6,  # pair never seen: the previous note's table (5 -> 6), not the next's (6 -> 5)
        (7, 4): 5,  # pair unseen, 7 never seen as a previous note: the next note's table (4 -> 5)
        (ABSENT, 7): 6,  # previous hidden: the next note's table
        (6, ABSENT): 5,  # next hidden: the previous note's table
        (ABSENT, ABSENT): 5,  # both hidden: the unigram
        (99, 98): 5,  # values never seen in training: the unigram
    }
    previous, following = np.array(list(cases)).T
    assert table.predict(previous, following).tolist() == list(cases.values())


def test_windows_are_counted_apart_and_both_counting_paths_agree(monkeypatch):
    tables = NeighbourTables.count([notes(4, 5), notes(6, 7)])
    pitch = tables.fields[C.PITCH]
    assert pitch.previous.totals.sum() == 2 and pitch.pair.totals.sum() == 0  # no note across the two windows
    assert pitch.predict(np.array([5]), np.array([ABSENT])).tolist() == [4]  # 5 -> 6 was never counted: unigram (4)
    rng = np.random.default_rng(0)
    windows = [rng.integers(4, 60, (int(rng.integers(1, 40)), C.N_FIELDS)) for _ in range(200)]
    dense = NeighbourTables.count(windows)
    monkeypatch.setattr(baselines, "DENSE_LIMIT", 0)  # every table by sorting
    sorted_ = NeighbourTables.count(windows)
    previous, following = rng.integers(-1, 62, (2, 3000, C.N_FIELDS))
    assert np.array_equal(dense.predict(previous, following), sorted_.predict(previous, following))
    for a, b in zip(dense.fields, sorted_.fields):
        for name in ("pair", "previous", "next"):
            for part in ("keys", "modes", "hits", "totals"):
                assert np.array_equal(getattr(getattr(a, name), part), getattr(getattr(b, name), part)), (name, part)


# ----- a baseline sees what the model sees -------------------------------------------------------------
def test_baselines_read_only_the_notes_the_model_sees():
    # training: (5,7) -> 6 once; 5 -> 20 twice as often as 5 -> 6; next 9 -> 20; unigram 5
    tables = count_baselines([notes(5, 6, 7), notes(5, 20, 9), notes(5, 20, 9)])
    ids = torch.from_numpy(notes(5, 6, 7, 9)).unsqueeze(0)
    mask = torch.ones(1, 4, dtype=torch.long)

    def guesses(*hidden_at):
        hidden = torch.zeros(1, 4, dtype=torch.bool)
        hidden[0, list(hidden_at)] = True
        found = baseline_guesses(ids, mask, hidden, tables, VOCAB)
        return {name: guess[:, C.PITCH].tolist() for name, guess in zip(BASELINES, found) if name != "context"}

    # one hidden note: both neighbours visible, the pair (5, 7) answers 6
    assert guesses(1) == {"unigram": [5], "window": [5], "previous": [5], "neighbours": [6]}
    # two hidden neighbours: neither may read the other. Note 1 sees 5 before it only (5 -> 20, not the
    # pair's 6); note 2 sees 9 after it only (9 -> 20); note 2's previous is hidden: the unigram (5), not 6;
    # the window's visible notes are 5 and 9 (a tie: 5), not the hidden 6 and 7
    assert guesses(1, 2) == {"unigram": [5, 5], "window": [5, 5], "previous": [5, 5], "neighbours": [20, 20]}
    expected = tables.neighbours.predict(np.array([[5] * 8, [ABSENT] * 8]), np.array([[ABSENT] * 8, [9] * 8]))
    assert torch.equal(baseline_guesses(ids, mask, torch.tensor([[False, True, True, False]]), tables, VOCAB)[3],
                       torch.from_numpy(expected))


# ----- verdicts --------------------------------------------------------------------------------------
def test_verdicts_use_the_strongest_baseline_and_name_it():
    evaluation = {"fields": {
        "pitch": {"accuracy": 0.244, "loss": 3.0, "unigram": 0.061, "window": 0.146, "previous": 0.057, "neighbours": 0.25},
        "position": {"accuracy": 0.622, "loss": 1.0, "unigram": 0.2, "window": 0.3, "previous": 0.418, "neighbours": 0.559},
        "bar": {"accuracy": 0.5, "loss": 1.0, "unigram": 0.1, "window": 0.2, "previous": 0.6},  # written before neighbours
    }}
    assert best_baseline(evaluation["fields"]["pitch"]) == ("neighbours", 0.25)
    assert best_trivial(evaluation["fields"]["bar"]) == 0.6
    assert learned_fields(evaluation) == {"pitch": -0.006, "position": 0.063, "bar": -0.1}
    lines = field_verdicts(evaluation)
    assert lines[0] == "pitch: NOT learned (model 0.244 vs neighbours 0.250; unigram 0.061, window 0.146, previous 0.057)"
    assert lines[1].startswith("position: learned (model 0.622 vs neighbours 0.559;")
    assert lines[2].startswith("bar: NOT learned (model 0.500 vs previous 0.600;")


# ----- a corpus the neighbours table gets right -------------------------------------------------------
@pytest.fixture(scope="module")
def chromatic_tokens(tmp_path_factory):
    """8 one-track pieces of 96 eighth notes whose pitch rises a semitone per note through one octave
    (60, 61, ... 71, 60, ...): a note's pitch is fixed by either neighbour's."""
    from musictl.midi.corpus import assign_splits, find_midi_files
    from musictl.midi.pipeline import tokenize_corpus
    from musictl.midi.vocab import TokenizerConfig
    from tests.midi_factory import midi_bytes

    root = tmp_path_factory.mktemp("chromatic")
    folder = root / "midi" / "chromatic"
    folder.mkdir(parents=True)
    for piece in range(8):
        melody = [(0.5 * i, 0.45, 60 + (piece + i) % 12, 80) for i in range(96)]
        (folder / f"chromatic_{piece}.mid").write_bytes(midi_bytes(melody, track_name="melody"))
    files = find_midi_files([root / "midi"])
    tokenize_corpus(files, assign_splits(files, (0.5, 0.25, 0.25), 0), root / "tokens", TokenizerConfig(), workers=1)
    return root / "tokens"


def _settings(**kw):
    base = dict(size="tiny", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, field_embed_dim=8,
                max_len=64, batch_size=4, eval_every=4, seed=3, device="cpu")
    return PretrainSettings(**{**base, **kw})


def test_a_field_the_neighbours_table_predicts_is_not_learned_after_a_short_run(chromatic_tokens, tmp_path):
    result = pretrain(chromatic_tokens, tmp_path / "bert", _settings(max_steps=8))
    pitch = (result.best_valid or result.final_valid)["fields"]["pitch"]
    assert pitch["neighbours"] >= 0.9 > pitch["previous"]  # the pair (or one neighbour) fixes the pitch; the previous is off by one
    assert pitch["accuracy"] < pitch["neighbours"]
    line = next(line for line in result.verdicts() if line.startswith("pitch:"))
    assert line.startswith("pitch: NOT learned (model ") and f"vs neighbours {pitch['neighbours']:.3f}" in line
    metrics = json.loads((tmp_path / "bert" / "metrics.json").read_text())
    assert metrics["learned"]["pitch"] < 0 and metrics["learned_against"]["pitch"] == "neighbours"
    assert set(metrics["final_valid"]["fields"]["pitch"]) == {"accuracy", "loss", *BASELINES}
    card = (tmp_path / "bert" / "README.md").read_text()
    assert "| neighbours |" in card and "NOT learned" in card


# ----- only hidden answers are scored -------------------------------------------------------------------
class InputCopier(nn.Module):
    """A 'model' that answers what its input says at each scored note: right on every note left unchanged."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(vocab_sizes=VOCAB)

    def forward(self, ids, attention_mask, selected):
        return [nn.functional.one_hot(ids[selected][:, f], v).float() for f, v in enumerate(VOCAB)]


def test_selected_notes_left_unchanged_are_not_scored(tokens_dir):
    corpus = TokenCorpus.open(tokens_dir)
    windows, _ = cut_windows(corpus, corpus.select(split="valid"), 64)
    loader = []
    for start in range(0, len(windows), 4):
        ids, mask = pad_batch(windows[start : start + 4])
        loader.append({"ids": ids, "attention_mask": mask, "window_ids": torch.arange(start, start + len(ids))})
    run = SimpleNamespace(gather=lambda x: x)
    tables = count_baselines(cut_windows(corpus, corpus.select(split="train"), 64)[0])
    ratio = 0.5
    evaluation = evaluate(run, InputCopier(), loader, ratio, tables)

    selected = changed = 0
    for i, w in enumerate(windows):  # the same draws as evaluate's: each window's validation masks, alone in its batch
        masks = validation_masks(torch.as_tensor(w)[None], torch.ones(1, len(w), dtype=torch.long), torch.tensor([i]), ratio)
        selected, changed = selected + int(masks.selected.sum()), changed + int(masks.hidden.sum())
    assert selected > changed > 0  # some selected notes were kept as they are...
    assert evaluation["masked_notes"] == changed  # ...and only the masked and replaced ones are scored
    # copying the input would score the kept notes' share (here about 0.09); on hidden notes it scores only where
    # a random note happens to carry the right value
    assert (selected - changed) / selected > 0.05
    assert max(row["accuracy"] for row in evaluation["fields"].values()) < 0.03


# ----- the window-aware baseline ---------------------------------------------------------------------
def test_context_baseline_reads_the_windows_key():
    # training: after 10 and before 12 comes 11 or 13 equally often (11 is the smaller: the neighbours' guess);
    # the window-aware guess follows the window's visible pitch classes: a window full of 13s (and their octaves)
    # says 13, one full of 11s says 11
    windows = [notes(10, 11, 12), notes(10, 13, 12)] * 3
    tables = count_baselines(windows)
    ids = torch.from_numpy(np.stack([notes(13, 25, 10, 0, 12, 13), notes(11, 23, 10, 0, 12, 11)]))
    ids[:, 3] = ids[:, 2]
    ids[:, 3, C.PITCH] = 4  # a placeholder under the hidden note
    mask = torch.ones(2, 6, dtype=torch.long)
    hidden = torch.zeros(2, 6, dtype=torch.bool)
    hidden[:, 3] = True
    found = dict(zip(BASELINES, baseline_guesses(ids, mask, hidden, tables, VOCAB)))
    assert found["neighbours"][:, C.PITCH].tolist() == [11, 11]
    assert found["context"][:, C.PITCH].tolist() == [13, 11]


def test_context_distribution_backs_off_and_normalises():
    values = np.array([3, 4, 5, 3, 4, 6, 3, 4, 5])
    table = ContextField.count(values, np.array([3, 3, 3]), pitch=True)
    both = table.distribution(np.array([3, 3, ABSENT, ABSENT, 9]), np.array([5, ABSENT, 5, ABSENT, 9]))
    assert np.allclose(both.sum(-1), 1.0)
    seen = list(table.values)
    assert both[0].argmax() == seen.index(4)  # 3 _ 5: always 4
    assert both[4].tolist() == both[3].tolist()  # unseen values on both sides: as if absent (the unigram)
