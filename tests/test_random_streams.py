"""One rule for random streams (musictl/training.py ``rng`` / ``generator``), one per-field loss
(musictl/bert/losses.py), and validation masks that evaluation and the masker diagnostics share."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from musictl import constants as C
from musictl import training
from musictl.bert import masking, pretrain
from musictl.bert.data import pad_batch
from musictl.bert.diagnostics import masker_diagnostics
from musictl.bert.losses import field_hits, field_losses
from musictl.bert.model import MidiBertConfig, MidiBertForPreTraining
from musictl.midi.vocab import TokenizerConfig

PACKAGE = Path(__file__).resolve().parents[1] / "musictl"


# ----- the rule --------------------------------------------------------------------------------------------
def test_a_stream_is_reproducible_and_differs_by_seed_name_and_index():
    draw = lambda *key: training.rng(*key).random(4).tolist()  # noqa: E731
    assert draw(0, "mask", 3) == draw(0, "mask", 3)
    others = [draw(1, "mask", 3), draw(0, "valid-mask", 3), draw(0, "mask", 4), draw(0, "mask", 3, 0), draw(0, "mask")]
    assert all(other != draw(0, "mask", 3) for other in others)
    assert len({tuple(o) for o in others}) == len(others)
    torch_draw = lambda *key: torch.rand(4, generator=training.generator(*key)).tolist()  # noqa: E731
    assert torch_draw(0, "mask", 3) == torch_draw(0, "mask", 3)
    assert torch_draw(0, "mask", 3) != torch_draw(0, "mask", 4) != torch_draw(0, "pitch-shift", 4)
    assert draw(-1, "mask", 3) != draw(0, "mask", 3)  # a negative seed is a seed of its own
    with pytest.raises(ValueError, match="non-negative"):
        training.rng(0, "mask", -1)


def test_the_rule_is_pinned():
    """The same draws in every process and Python (no salted ``hash``): a change here moves every run's stream."""
    assert training.stream_key("epoch-order") == 1368627148  # zlib.crc32
    assert training.epoch_permutation(10, 0, 0).tolist() == [5, 6, 3, 9, 1, 7, 8, 0, 2, 4]
    assert list(training.epoch_permutation(10, 0, 0)) == list(training.rng(0, training.EPOCH_ORDER, 0).permutation(10))
    assert training.generator(0, "mask", 0).initial_seed() == 4045146078270985629
    assert training.rng(0, "mask-book", 0, 0).integers(0, 1000, 3).tolist() == [606, 252, 290]


SEEDING = {"default_rng", "manual_seed", "seed"}  # np.random.default_rng, (Generator().)manual_seed, random/np.random.seed
HELPERS = {"generator", "rng", "_own_generator"}  # training.py's functions that may seed
FORBIDDEN = re.compile(r"1_000_003|\b7919\b")  # the ad-hoc formulas of old (list seeds need a '# own seeding:' reason)


def seeding_in(node: ast.AST, function: str = "") -> list[tuple[int, str, ast.Call]]:
    """(line, enclosing function, call) of every call under ``node`` that seeds a generator."""
    found = []
    for child in ast.iter_child_nodes(node):
        name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
        if isinstance(child, ast.Call):
            func = child.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            is_seed = called != "seed" or ast.unparse(func) in ("random.seed", "np.random.seed", "numpy.random.seed")
            if called in SEEDING and is_seed:
                found.append((child.lineno, function, child))
        found += seeding_in(child, name)
    return found


def seeding_calls() -> list[tuple[Path, int, str, ast.Call]]:
    """Every call that seeds a generator in the package: (file, line, enclosing function, call)."""
    return [(path, *call) for path in sorted(PACKAGE.rglob("*.py")) for call in seeding_in(ast.parse(path.read_text()))]


def test_no_ad_hoc_seed_formula_comes_back():
    for path in PACKAGE.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not FORBIDDEN.search(line), f"{path}:{number}: derive the stream with musictl.training.rng/generator: {line}"
    for path, line, function, call in seeding_calls():
        arithmetic = [n for arg in call.args for n in ast.walk(arg) if isinstance(n, ast.BinOp)]
        assert not arithmetic or (path.name == "training.py" and function in HELPERS), (
            f"{path}:{line}: a seed computed by hand ({ast.unparse(call)}); use musictl.training.rng/generator")


def test_every_seeding_left_is_the_helper_or_says_why():
    calls = seeding_calls()
    assert calls, "the scan finds nothing: it is broken"
    in_training = {function for path, _, function, _ in calls if path.name == "training.py" and path.parent == PACKAGE}
    assert in_training <= HELPERS, in_training
    for path, line, _, call in calls:
        if path.name == "training.py" and path.parent == PACKAGE:
            continue
        lines = path.read_text().splitlines()
        nearby = "\n".join(lines[max(0, line - 5) : line])  # the call's line and the four above (a block of seedings)
        assert "own seeding:" in nearby, (f"{path.relative_to(PACKAGE.parent)}:{line}: {ast.unparse(call)} seeds outside "
                                          "musictl.training.rng/generator without a '# own seeding: why' comment")


# ----- one per-field loss ------------------------------------------------------------------------------------
def test_field_losses_agree_on_scored_notes_and_on_every_position():
    torch.manual_seed(0)
    vocab = [7, 5, 9, 4, 6, 3, 8, 5]
    logits = [torch.randn(2, 6, v) for v in vocab]
    targets = torch.stack([torch.randint(0, v, (2, 6)) for v in vocab], dim=-1)
    every = field_losses(logits, targets)
    assert every.shape == (2, 6, 8) and field_hits(logits, targets).shape == (2, 6, 8)
    selected = torch.rand(2, 6) < 0.5
    scored = field_losses([lg[selected] for lg in logits], targets[selected])
    assert torch.allclose(scored, every[selected])
    for f, lg in enumerate(logits):
        assert torch.allclose(every[..., f], F.cross_entropy(lg.transpose(1, 2), targets[..., f], reduction="none"))
    assert torch.equal(field_hits(logits, targets)[..., 3], logits[3].argmax(-1) == targets[..., 3])


def test_pretraining_computes_field_cross_entropy_in_one_place():
    for name in ("objective.py", "diagnostics.py", "pretrain.py", "adversarial.py", "hard_mining.py"):
        source = (PACKAGE / "bert" / name).read_text()
        assert re.search(r"[^_]cross_entropy\(", source) is None, f"bert/{name}: use musictl.bert.losses.field_losses"


# ----- shared validation masks -------------------------------------------------------------------------------
class Recorder(MidiBertForPreTraining):
    """A tiny MidiBert that keeps the notes every masked forward pass was asked to score."""

    def forward(self, input_ids, attention_mask=None, selected=None, **kwargs):
        if selected is not None:
            self.calls.append((input_ids.clone(), selected.clone()))
        return super().forward(input_ids, attention_mask, selected, **kwargs)


def recorder() -> Recorder:
    torch.manual_seed(0)
    model = Recorder(MidiBertConfig.of_size("tiny", TokenizerConfig(), hidden_size=32, num_hidden_layers=1,
                                            num_attention_heads=2, field_embed_dim=8, intermediate_size=64))
    model.calls = []
    return model.eval()


def windows_of_lengths(lengths: list[int]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [C.N_SPECIAL + rng.integers(0, 3, (n, C.N_FIELDS)) for n in lengths]


def per_window(calls, batches) -> dict[int, np.ndarray]:
    """Window id -> its scored notes (its real length) from recorded calls beside their (mask, window ids) batches."""
    out = {}
    for (_, selected), (mask, window_ids) in zip(calls, batches):
        for row, window in enumerate(window_ids.tolist()):
            out[window] = selected[row, : int(mask[row].sum())].numpy()
    return out


def test_evaluation_and_the_masker_diagnostics_hide_the_same_notes_of_a_window():
    windows = windows_of_lengths([20, 7, 33, 12, 26, 9, 40, 15, 3])
    ratio = 0.3
    tables = pretrain.count_baselines(windows)
    run = SimpleNamespace(gather=lambda x: x)

    def evaluated(batch_size: int):
        model, loader = recorder(), []
        for start in range(0, len(windows), batch_size):
            ids, mask = pad_batch(windows[start : start + batch_size])
            loader.append({"ids": ids, "attention_mask": mask, "window_ids": torch.arange(start, start + len(ids))})
        evaluation = pretrain.evaluate(run, model, loader, ratio, tables)
        return evaluation, per_window(model.calls, [(b["attention_mask"], b["window_ids"]) for b in loader])

    evaluation, by_eval = evaluated(4)
    _, by_eval_again = evaluated(2)  # other batches, other padding: the same masks
    assert by_eval.keys() == by_eval_again.keys() == set(range(len(windows)))
    assert all(np.array_equal(by_eval[w], by_eval_again[w]) for w in by_eval)
    assert evaluation["masked_notes"] == sum(int(m.sum()) for m in by_eval.values()) > 0

    # the diagnostics, from the loop's valid_batches (window ids given) and from plain (ids, mask) pairs (numbered
    # in order): their random notes are the evaluated ones (every other call; the others are the masker's choice)
    for batches in (pretrain.valid_batches(windows, 3, "cpu"), [pad_batch(windows[i : i + 5]) for i in range(0, 9, 5)]):
        model = recorder()
        found = masker_diagnostics(model, batches, ratio)
        starts = np.cumsum([0] + [len(b[0]) for b in batches])
        keyed = [(b[1], torch.arange(s, s + len(b[0]))) for b, s in zip(batches, starts)]
        by_diagnostics = per_window(model.calls[0::2], keyed)
        assert by_diagnostics.keys() == by_eval.keys()
        assert all(np.array_equal(by_diagnostics[w], by_eval[w]) for w in by_eval)
        assert found["diagnostic_notes"] == evaluation["masked_notes"]
        chosen = [selected.sum(1) for _, selected in model.calls[1::2]]  # the masker picks as many notes per window
        assert [c.tolist() for c in chosen] == [selected.sum(1).tolist() for _, selected in model.calls[0::2]]


def test_validation_masks_depend_on_the_window_not_on_the_run_seed_or_the_batch():
    windows = windows_of_lengths([12, 30, 5])
    ids, mask = pad_batch(windows)
    together = masking.validation_masks(ids, mask, torch.tensor([7, 8, 9]), 0.4, [260, 132, 133, 132, 132, 36, 258, 53])
    for row, window in enumerate([7, 8, 9]):
        alone = masking.validation_masks(torch.as_tensor(windows[row])[None], torch.ones(1, len(windows[row])),
                                         torch.tensor([window]), 0.4, [260, 132, 133, 132, 132, 36, 258, 53])
        n = len(windows[row])
        assert torch.equal(alone.hidden[0], together.hidden[row, :n])
        assert torch.equal(alone.corrupted[0], together.corrupted[row, :n])
        assert not together.selected[row, n:].any()  # padding is never chosen
    assert (together.hidden <= together.selected).all() and together.hidden.any()
    other = masking.validation_masks(ids, mask, torch.tensor([1, 2, 3]), 0.4)
    assert not torch.equal(other.selected, together.selected) and other.corrupted is None
