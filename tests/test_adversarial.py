"""Adversarial-MidiBERT as published: mask book, budget, targets, losses, weights, diagnostics."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from musictl import constants
from musictl.artifacts import read_state, write_state
from musictl.bert import adversarial, maskbook
from musictl.bert.adversarial import inverse_accuracy_weights, masker_loss, recovery_loss
from musictl.bert.data import pad_batch
from musictl.bert.maskbook import MaskBook
from musictl.bert.masking import corrupt_exact, share_budget
from musictl.bert.model import MidiBertConfig, MidiBertForPreTraining
from musictl.bert.objectives import make_objective
from musictl.bert.settings import PretrainSettings
from musictl.errors import ArtifactError, UsageError
from musictl.midi.vocab import TokenizerConfig

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, field_embed_dim=8, intermediate_size=64)
SPECIAL = constants.N_SPECIAL


def tiny_model(seed: int = 0) -> MidiBertForPreTraining:
    torch.manual_seed(seed)
    return MidiBertForPreTraining(MidiBertConfig.of_size("tiny", TokenizerConfig(), **TINY))


def synthetic_windows(n: int, length: int, seed: int) -> list[np.ndarray]:
    """Windows where every field is fixed by the note's position except one: notes at odd positions
    (instrument 40) have a random pitch, notes at even positions (instrument 0) a pitch fixed by
    their position. The hard notes are visible on clean input, by their instrument."""
    rng = np.random.default_rng(seed)
    index = np.arange(length)
    windows = []
    for _ in range(n):
        w = np.zeros((length, constants.N_FIELDS), dtype=np.int64)
        w[:, constants.BAR] = SPECIAL + index // 8
        w[:, constants.POSITION] = SPECIAL + (index % 8) * 8
        w[:, constants.INSTRUMENT] = SPECIAL + (index % 2) * 40
        w[:, constants.PITCH] = np.where(index % 2 == 0, SPECIAL + 60 + index % 8, SPECIAL + rng.integers(30, 90, length))
        for field, value in ((constants.DURATION, 8), (constants.VELOCITY, 20), (constants.TIME_SIGNATURE, 10), (constants.TEMPO, 20)):
            w[:, field] = SPECIAL + value
        windows.append(w)
    return windows


def window_batches(windows: list[np.ndarray], size: int):
    """(ids, attention mask, window ids) over all windows, as the loop hands them to on_epoch_end."""
    for start in range(0, len(windows), size):
        index = list(range(start, min(start + size, len(windows))))
        yield (*pad_batch([windows[i] for i in index]), torch.tensor(index))


def settings(**values) -> PretrainSettings:
    return PretrainSettings(**{"objective": "adversarial", "mask_ratio": 0.15, "seed": 0, "max_len": 32, **values})


def train(objective, model, windows, steps: int, batch: int = 16, lr: float = 3e-3) -> None:
    """A hand-written loop: shuffled batches, epoch ends with every window, AdamW."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    step, epoch = 0, 0
    while step < steps:
        order = np.random.default_rng([0, epoch]).permutation(len(windows))
        for start in range(0, len(windows), batch):
            index = order[start : start + batch]
            ids, attention_mask = pad_batch([windows[i] for i in index])
            result = objective.step(model, ids, attention_mask, torch.as_tensor(index), None, torch.Generator().manual_seed(step))
            optimizer.zero_grad()
            result.loss.backward()
            optimizer.step()
            step += 1
        objective.on_epoch_end(epoch, model, lambda: window_batches(windows, batch))
        epoch += 1


# --- the mask book ---


def test_freeze_takes_the_top_scored_share_of_maskable_notes(monkeypatch):
    monkeypatch.setattr(maskbook, "FREEZE_SHARE", (0.25, 0.25))
    monkeypatch.setattr(maskbook, "UNFREEZE_PROBABILITY", (0.0, 0.0))
    book = MaskBook(max_len=24)
    book.ensure(torch.tensor([0]), torch.tensor([[1] * 20 + [0] * 4]))
    scores = np.arange(24, dtype=float)  # padding (20..23) scores highest and must stay out
    assert book.freeze(0, scores, np.random.default_rng(0)) == 5
    assert np.flatnonzero(book.book[0, :20] == 0).tolist() == [15, 16, 17, 18, 19]
    assert book.freeze(0, scores, np.random.default_rng(0)) == 3  # 25% of the 15 still maskable
    assert np.flatnonzero(book.book[0, :20] == 0).tolist() == [12, 13, 14, 15, 16, 17, 18, 19]
    assert book.book[0, 20:].all() and book.frozen_share() == pytest.approx(8 / 20)
    monkeypatch.setattr(maskbook, "UNFREEZE_PROBABILITY", (1.0, 1.0))
    book.freeze(0, scores, np.random.default_rng(0))  # frees every frozen note, the new ones included
    assert book.frozen_share() == 0.0


def test_freeze_shares_follow_the_published_ranges():
    book = MaskBook(max_len=100)
    book.ensure(torch.arange(400), torch.ones(400, 100, dtype=torch.long))
    shares = []
    for window in range(400):
        book.freeze(window, np.random.default_rng(window).random(100), maskbook.window_rng(0, 4, window))
        shares.append(1 - book.book[window].mean())
    assert min(shares) >= 0.0 and max(shares) <= 0.3
    assert np.mean(shares) == pytest.approx(0.2 * (1 - 0.05), abs=0.02)  # E[share] x (1 - E[release p])


def test_freezes_happen_every_freeze_every_epochs():
    objective = make_objective(settings(freeze_every=5))
    model, windows = tiny_model(), synthetic_windows(8, 16, 0)
    for epoch in range(5):
        objective.on_epoch_end(epoch, model, lambda: window_batches(windows, 4))
    assert [f["epoch"] for f in objective.freezes] == [4]
    assert 0.0 < objective.evaluate_extra(model, [])["frozen_share"] <= 0.3
    as_list = make_objective(settings(freeze_every=5))  # the loop passes the list of numpy windows
    for epoch in range(5):
        as_list.on_epoch_end(epoch, model, windows)
    assert np.array_equal(as_list.book.book, objective.book.book[: len(as_list.book.book)])
    for epoch in range(5, 12):
        objective.on_epoch_end(epoch, model, windows)
    assert [f["epoch"] for f in objective.freezes] == [4, 9]
    never = make_objective(settings(freeze_every=0))
    never.on_epoch_end(4, model, windows)
    assert never.freezes == []


def test_state_survives_a_round_trip_through_files(tmp_path):
    model, windows = tiny_model(), synthetic_windows(12, 24, 0)
    objective = make_objective(settings(freeze_every=1))
    train(objective, model, windows, steps=6, batch=4)
    write_state(tmp_path, "objective", objective.state_dict())  # what the loop does with a checkpoint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["objective.json", "objective.safetensors"]
    restored = make_objective(settings(freeze_every=1))
    restored.load_state_dict(read_state(tmp_path, "objective"))
    assert np.array_equal(restored.book.book, objective.book.book[: len(restored.book.book)])
    assert restored.book.frozen_share() == objective.book.frozen_share() > 0
    assert torch.equal(restored.weights, objective.weights) and restored.freezes == objective.freezes
    ids, attention_mask = pad_batch(windows[:4])
    model.eval()  # no dropout: the two steps differ only if the objectives' states do
    a, b = (o.step(model, ids, attention_mask, torch.arange(4), None, torch.Generator().manual_seed(9)) for o in (objective, restored))
    assert float(a.loss.detach()) == float(b.loss.detach()) and a.masked == b.masked
    with pytest.raises(ArtifactError, match="--objective adversarial"):
        make_objective(settings(objective="mlm")).load_state_dict(read_state(tmp_path, "objective"))
    fresh = make_objective(settings())
    fresh.load_state_dict({})  # a checkpoint without objective state: a fresh book
    assert fresh.book.frozen_share() == 0.0


# --- what one step masks ---


def test_step_never_masks_padding_or_frozen_notes(monkeypatch):
    seen = []

    def spy(ids, selected, vocab_sizes, generator):
        seen.append(selected.clone())
        return corrupt_exact(ids, selected, vocab_sizes, generator)

    monkeypatch.setattr(adversarial, "corrupt_exact", spy)
    windows = synthetic_windows(4, 40, 0)
    windows[1], windows[3] = windows[1][:25], windows[3][:9]
    ids, attention_mask = pad_batch(windows)
    objective = make_objective(settings(max_len=40))
    objective.book.ensure(torch.arange(4), attention_mask)
    objective.book.book[:, ::2] = 0  # freeze every even position
    model = tiny_model()
    for step in range(10):
        objective.step(model, ids, attention_mask, torch.arange(4), None, torch.Generator().manual_seed(step))
    for selected in seen:
        assert not (selected & ~attention_mask.bool()).any()
        assert not selected[:, ::2].any()
        assert selected.sum() > 0


def test_budget_is_the_smaller_of_the_drawn_share_and_the_cap():
    attention_mask = torch.zeros(4, 100, dtype=torch.long)
    for row, real in enumerate((100, 100, 40, 12)):
        attention_mask[row, :real] = 1
    eligible = attention_mask.bool().clone()
    eligible[1, 10:] = False  # 10 maskable notes left
    k = share_budget(eligible, attention_mask, (0.1, 0.3), 0.15, torch.Generator().manual_seed(3))
    share = 0.1 + 0.2 * torch.rand(4, generator=torch.Generator().manual_seed(3))
    maskable = eligible.sum(1).float()
    expected = torch.minimum(torch.floor(share * maskable), torch.floor(0.15 * attention_mask.sum(1).float())).long()
    assert torch.equal(k, expected)
    assert k[0] <= 15 and k[1] <= 3 and k[3] <= 1  # the 15% cap; 30% of 10 maskable; floor(0.15 x 12)


def test_corruption_uses_exact_80_10_10_counts():
    ids = torch.full((2, 50, constants.N_FIELDS), 10)
    selected = torch.zeros(2, 50, dtype=torch.bool)
    selected[0, :20] = True
    selected[1, 5:15] = True
    out, changed = corrupt_exact(ids, selected, TokenizerConfig().vocab_sizes, torch.Generator().manual_seed(0))
    masked = (out[..., 0] == constants.MASK_ID)
    assert masked.sum(1).tolist() == [16, 8]
    assert changed.sum(1).tolist() == [18, 9]  # + round(0.1 k) random notes
    assert not (changed & ~selected).any() and (out[~selected] == 10).all()
    assert (out[changed & ~masked] >= SPECIAL).all()  # random notes never use special ids


# --- losses, targets, weights ---


def test_masker_targets_are_the_hardest_and_easiest_30_percent_of_each_window():
    note_loss = torch.stack([torch.arange(10.0), torch.arange(10.0).flip(0)])  # the second window reversed
    changed = torch.ones(2, 10, dtype=torch.bool)
    changed[:, 9] = False  # the unchanged 10% never gets a target
    scores = torch.full((2, 10), 0.5, requires_grad=True)
    loss = masker_loss(scores, note_loss, changed, torch.tensor([10, 10]))
    assert float(loss.detach()) == pytest.approx((0.25 + 0.25) * 2 / 2)
    loss.backward()
    pushed_up = (scores.grad < 0).nonzero().tolist()
    pushed_down = (scores.grad > 0).nonzero().tolist()
    # each window: 3 highest-loss changed notes -> 1, 3 lowest -> 0 (the reference flipped the second window)
    assert pushed_up == [[0, 6], [0, 7], [0, 8], [1, 0], [1, 1], [1, 2]]
    assert pushed_down == [[0, 0], [0, 1], [0, 2], [1, 6], [1, 7], [1, 8]]


def test_recovery_loss_is_masked_mean_plus_all_real_notes_mean_without_padding():
    losses = torch.rand(2, 6, constants.N_FIELDS)
    attention_mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    selected = torch.zeros(2, 6, dtype=torch.bool)
    selected[0, 1] = selected[1, 4] = True
    weights = inverse_accuracy_weights(torch.linspace(0.2, 0.9, constants.N_FIELDS))
    value = recovery_loss(losses, weights, selected, attention_mask)
    expected = ((losses[selected].mean(0) + losses[attention_mask.bool()].mean(0)) * weights).sum()
    assert float(value) == pytest.approx(float(expected))
    padded = losses.clone()
    padded[0, 4:] = 1e4  # whatever the model says at padding does not count
    assert float(recovery_loss(padded, weights, selected, attention_mask)) == pytest.approx(float(value))


def test_field_weights_are_inverse_accuracy_normalised():
    accuracy = torch.tensor([0.5, 1.0, 1.0, 0.25, 1.0, 1.0, 1.0, 1.0])
    weights = inverse_accuracy_weights(accuracy)
    assert float(weights.sum()) == pytest.approx(1.0)
    assert weights.tolist() == pytest.approx([2 / 12, 1 / 12, 1 / 12, 4 / 12, 1 / 12, 1 / 12, 1 / 12, 1 / 12])
    objective = make_objective(settings(freeze_every=0))
    assert objective.weights.tolist() == pytest.approx([0.125] * 8)  # the reference's first epoch
    objective.train_hits, objective.train_notes = accuracy * 40, 40
    objective.on_epoch_end(0, None, [])
    assert objective.weights.tolist() == pytest.approx(weights.tolist())
    assert objective.train_notes == 0  # counting starts again each epoch
    from_valid = make_objective(settings(freeze_every=0, weight_source="valid"))
    from_valid.valid_accuracy = [0.25] + [1.0] * 7
    from_valid.on_epoch_end(0, None, [])
    assert from_valid.weights[0] == pytest.approx(4 / 11)
    with pytest.raises(UsageError):
        make_objective(settings(weight_source="test"))


# --- the other objectives keep their numbers ---


def test_mlm_and_hard_mining_keep_their_numbers():
    """A fixed tiny batch, model and generator: the losses each objective's step gave when pinned (a change to
    the masking, the loss or the weighting moves them)."""
    ids, attention_mask = pad_batch(synthetic_windows(3, 30, 0))
    weights = torch.linspace(0.5, 1.5, constants.N_FIELDS)
    model = tiny_model().eval()  # no dropout: the step depends only on the generator
    mlm = make_objective(settings(objective="mlm")).step(model, ids, attention_mask, torch.arange(3), weights,
                                                          torch.Generator().manual_seed(1))
    assert mlm.masked == 12
    assert (float(mlm.loss.detach()), float(mlm.recover_loss), float(mlm.accuracy)) == pytest.approx(
        (4.6975532, 4.6975532, 1 / 96), rel=1e-5)
    hard = make_objective(settings(objective="hard-mining", random_share=0.2)).step(
        model, ids, attention_mask, torch.arange(3), weights, torch.Generator().manual_seed(2))
    assert hard.masked == 12
    assert (float(hard.loss.detach()), float(hard.recover_loss), float(hard.masker_loss)) == pytest.approx(
        (5.4033446, 4.7086835, 0.6946611), rel=1e-5)
    assert make_objective(settings(objective="mlm")).evaluate_extra(model, []) == {}
    with pytest.raises(UsageError, match="hard-mining"):
        make_objective(settings(objective="electra"))


# --- the masker learns ---


@functools.cache  # the fast test and its slow floors share one run per objective
def masker_before_and_after(objective: str) -> tuple[dict, dict]:
    model = tiny_model()
    train_windows = synthetic_windows(64, 32, 1)
    valid = [pad_batch(w) for w in (synthetic_windows(8, 32, 2), synthetic_windows(8, 32, 3))]
    chosen = make_objective(settings(objective=objective, freeze_every=5, random_share=0.2))
    before = chosen.evaluate_extra(model, valid)
    train(chosen, model, train_windows, steps=200)
    return before, chosen.evaluate_extra(model, valid)


@pytest.mark.parametrize("objective", ["adversarial", "hard-mining"])
def test_masker_learns_which_notes_are_hard(objective):
    before, after = masker_before_and_after(objective)
    assert abs(before["masker_spearman"]) < 0.3  # an untrained masker knows nothing
    assert after["masker_spearman"] > before["masker_spearman"], after  # it learns
    assert after["adversarial_loss_ratio"] > 1.0, after  # the notes it picks are harder than random ones
    if objective == "adversarial":
        assert 0.1 < after["frozen_share"] < 0.9


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["adversarial", "hard-mining"])
def test_masker_learns_well(objective):
    _, after = masker_before_and_after(objective)
    assert after["masker_spearman"] > 0.4, after
    assert after["adversarial_loss_ratio"] > 1.2, after
