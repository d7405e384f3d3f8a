"""MidiBert's left-context mode (musictl.bert.nextnote): each note's distribution depends on the notes before it only,
is normalised over the field's values, and a piece longer than a window is scored note by note exactly once; the
bidirectional default and its checkpoints stay as they were."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musictl import constants as C
from musictl.bert import nextnote
from musictl.bert.model import MidiBertConfig, MidiBertForPreTraining, MidiBertModel
from musictl.midi.vocab import TokenizerConfig

MAX_BARS = TokenizerConfig().max_bars


def tiny_config(**overrides) -> MidiBertConfig:
    return MidiBertConfig.of_size("tiny", TokenizerConfig(), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  field_embed_dim=8, max_position_embeddings=64, **overrides)


def notes(n: int, seed: int) -> np.ndarray:
    """``n`` random notes (real ids in every field; bars non-decreasing, as in a piece)."""
    rng = np.random.default_rng(seed)
    sizes = TokenizerConfig().field_sizes
    rows = np.stack([rng.integers(0, size, n) for size in sizes], axis=1) + C.N_SPECIAL
    rows[:, C.BAR] = np.sort(rng.integers(0, 8, n)) + C.N_SPECIAL
    return rows.astype(np.int64)


@pytest.fixture(scope="module")
def model() -> nextnote.MidiBertForNextNote:
    torch.manual_seed(0)
    pretrained = MidiBertForPreTraining(tiny_config())
    return nextnote.MidiBertForNextNote.from_encoder(pretrained).eval()


def test_a_note_s_distribution_does_not_change_when_later_notes_change(model):
    window, changed = notes(20, 1), notes(20, 1)
    changed[12:] = notes(8, 2)
    changed[12:, C.BAR] = window[11, C.BAR]  # bars stay ordered
    inputs, attention, _ = nextnote.batch([window, changed])
    with torch.no_grad():
        dists = [nextnote.log_probs(field) for field in model(inputs, attention)]  # position t: note t's distribution
    for dist in dists:
        assert torch.allclose(dist[0, :13], dist[1, :13], atol=1e-5)  # notes 0..12: given notes 0..11 only
    assert not all(torch.allclose(d[0, 13:], d[1, 13:], atol=1e-3) for d in dists)  # the later ones see the change
    before, after = nextnote.window_log_probs(model, [window, changed])
    assert np.allclose(before[:12], after[:12], atol=1e-5)  # the same notes scored under the same distributions
    ids = torch.from_numpy(np.stack([window, changed]))
    with torch.no_grad():
        hidden = model.bert(ids, causal=True).last_hidden_state  # the causal encoder itself
    assert torch.allclose(hidden[0, :12], hidden[1, :12], atol=1e-5) and not torch.allclose(hidden[0, 12:], hidden[1, 12:])


def test_the_encoder_stays_bidirectional_by_default_and_old_configs_read_as_such(model, tmp_path):
    config = tiny_config()
    assert config.causal is False
    data = config.to_dict()
    data.pop("causal")  # a config written before the option existed
    assert MidiBertConfig(**{k: v for k, v in data.items() if k != "model_type"}).causal is False
    torch.manual_seed(1)
    encoder = MidiBertModel(config).eval()
    window, changed = notes(10, 3), notes(10, 3)
    changed[7:, C.PITCH] = C.N_SPECIAL + 5
    hidden = encoder(torch.from_numpy(np.stack([window, changed]))).last_hidden_state
    assert not torch.allclose(hidden[0, :7], hidden[1, :7], atol=1e-4)  # BERT's attention: earlier notes see later ones
    pretrained = MidiBertForPreTraining(config).eval()
    pretrained.save_pretrained(tmp_path / "bert")
    again = MidiBertForPreTraining.from_pretrained(tmp_path / "bert").eval()
    ids = torch.from_numpy(window[None])
    assert all(torch.equal(a, b) for a, b in zip(pretrained(ids), again(ids)))
    assert model.config.causal is True and model.config.architectures == ["MidiBertForNextNote"]


def test_the_heads_start_as_the_mlm_heads():
    torch.manual_seed(2)
    pretrained = MidiBertForPreTraining(tiny_config())
    model = nextnote.MidiBertForNextNote.from_encoder(pretrained)
    for head, mlm in zip(model.next_heads.heads, pretrained.mlm_heads):
        assert all(torch.equal(a, b) for a, b in zip(head.state_dict().values(), mlm.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(model.bert.state_dict().values(), pretrained.bert.state_dict().values()))


def test_each_field_s_distribution_is_normalised_over_its_values(model):
    sizes = TokenizerConfig().vocab_sizes
    after = nextnote.distribution_after(model, notes(30, 4), max_len=64, max_bars=MAX_BARS)
    assert [len(d) for d in after] == list(sizes)
    for dist in after:
        assert np.all(np.isneginf(dist[: C.N_SPECIAL]))  # no mass on PAD, MASK, BOS, EOS
        assert np.exp(dist[C.N_SPECIAL :]).sum() == pytest.approx(1.0, abs=1e-5)
    first = nextnote.distribution_after(model, notes(0, 0), max_len=64, max_bars=MAX_BARS)  # the first note of a piece
    assert all(np.exp(d[C.N_SPECIAL :]).sum() == pytest.approx(1.0, abs=1e-5) for d in first)
    scored = nextnote.window_log_probs(model, [notes(30, 4)])[0]
    assert scored.shape == (30, C.N_FIELDS) and np.all(scored <= 0)
    # the log-probability of the note after a prefix is the value the window scores it at
    piece = notes(30, 4)
    assert scored[0, C.PITCH] == pytest.approx(float(first[C.PITCH][piece[0, C.PITCH]]), abs=1e-5)
    prefix_scores = nextnote.distribution_after(model, piece[:10], 64, MAX_BARS)
    assert scored[10, C.PITCH] == pytest.approx(prefix_scores[C.PITCH][piece[10, C.PITCH]], abs=1e-5)


def test_a_long_piece_is_scored_once_per_note_with_context_before_it(model):
    assert nextnote.scoring_windows(10, 16) == [(0, 0)]
    assert nextnote.scoring_windows(40, 16) == [(0, 0), (8, 16), (16, 24), (24, 32)]
    for n in (1, 15, 16, 17, 40, 100):
        spans, covered = nextnote.scoring_windows(n, 16), []
        for i, (start, first) in enumerate(spans):
            end = min(start + 16, n)
            covered += list(range(first, end))
            assert first - start == (0 if i == 0 else 8)  # half a window of context after the first
        assert covered == list(range(n)), n
    piece = notes(40, 5)
    scored = nextnote.piece_log_probs(model, [piece, piece[:10]], max_len=16, max_bars=MAX_BARS)
    assert [s.shape for s in scored] == [(40, C.N_FIELDS), (10, C.N_FIELDS)]
    window = nextnote.window_log_probs(model, [nextnote.window_at(piece, 16, 16, MAX_BARS)])[0]
    assert np.allclose(scored[0][24:32], window[8:], atol=1e-5)  # notes 24..31: the third window's, after 8 of context
    assert np.allclose(scored[0][:10], scored[1], atol=1e-5)  # the first notes: given the notes before them only
    result = nextnote.score_pieces(model, [piece, piece[:10]], 16, MAX_BARS, names=["a", "b"])
    assert result.pieces == ["a", "b"] and list(result.notes) == [40, 10]
    assert np.allclose(result.nll[0], -scored[0].sum(0)) and np.allclose(result.nll[1], -scored[1].sum(0))
    per_note = result.per_note()
    assert per_note["pitch"] == pytest.approx(-(scored[0][:, C.PITCH].sum() + scored[1][:, C.PITCH].sum()) / 50)
    assert result.mean() == pytest.approx(np.mean(list(per_note.values())))


def test_the_loss_is_the_mean_over_fields_of_the_next_note_nll(model):
    windows = [notes(12, 6), notes(7, 7)]
    inputs, attention, targets = nextnote.batch(windows)
    assert (inputs[:, 0] == C.BOS_ID).all() and torch.equal(inputs[0, 1:12], targets[0, :11])
    assert (targets[1, 7:] == C.PAD_ID).all() and attention[1].sum() == 7
    with torch.no_grad():
        loss = nextnote.loss(model(inputs, attention), targets)
    scored = nextnote.window_log_probs(model, windows)
    expected = np.mean([-np.concatenate([s[:, f] for s in scored]).mean() for f in range(C.N_FIELDS)])
    assert float(loss) == pytest.approx(expected, rel=1e-5)
