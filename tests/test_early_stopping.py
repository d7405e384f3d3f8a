"""Early stopping (musictl.training.EarlyStopping): the monitored metric, --min-delta, patience, a perfect score."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from musictl.cli import app
from musictl.training import EarlyStopping, TrainerState

runner = CliRunner()
TINY = ["--device", "cpu", "--max-len", "64", "--batch-size", "4"]


def run_rule(rule: EarlyStopping, history: list[tuple[float, float]], n_train: int = 10) -> tuple[list[bool], TrainerState]:
    """Feed one evaluation per epoch; whether the rule stops after each, and the state (best, reason)."""
    state, stops = TrainerState(), []
    for epoch, (accuracy, loss) in enumerate(history):
        state.step, state.epoch, state.position = epoch, epoch, epoch * n_train
        state.improved({"accuracy": accuracy, "loss": loss}, rule)
        stops.append(state.out_of_patience(rule, n_train))
    return stops, state


def test_accuracy_monitor_counts_ties_as_no_improvement():
    # the best accuracy is epoch 1; ties at 2 and 4 do not reset the count (Keras), so epoch 3 is 2 epochs on
    stops, state = run_rule(EarlyStopping(2, "accuracy"), [(0.5, 2.0), (0.8, 1.0), (0.8, 0.9), (0.7, 0.8), (0.8, 0.7)])
    assert stops == [False, False, False, True, True]
    assert state.best["epoch"] == 1 and "--monitor accuracy" in state.stopped_early


def test_both_is_the_published_rule_where_ties_reset_the_count():
    stops, _ = run_rule(EarlyStopping(2, "both"), [(0.5, 2.0), (0.8, 1.0), (0.8, 0.9), (0.7, 0.8), (0.8, 0.7)])
    assert stops == [False] * 5  # the loss keeps improving, and accuracy ties count as better


def test_min_delta_ignores_small_gains():
    history = [(0.50, 1.0), (0.505, 1.0), (0.51, 1.0), (0.515, 1.0)]
    assert run_rule(EarlyStopping(2, "accuracy", min_delta=0.02), history)[0] == [False, False, True, True]
    assert run_rule(EarlyStopping(2, "accuracy"), history)[0] == [False] * 4


def test_loss_monitor_chooses_the_best_model_by_loss():
    stops, state = run_rule(EarlyStopping(2, "loss"), [(0.9, 1.0), (0.5, 0.5), (0.4, 0.6), (0.95, 0.7)])
    assert state.best["epoch"] == 1 and stops == [False, False, False, True]


@pytest.mark.parametrize("monitor", ["accuracy", "both"])
def test_a_perfect_validation_accuracy_stops_at_once(monitor):
    stops, state = run_rule(EarlyStopping(30, monitor), [(0.5, 2.0), (1.0, 0.5), (1.0, 0.1)])
    assert stops == [False, True, True]
    assert state.best["epoch"] == 1 and "perfect" in state.stopped_early


def test_no_patience_never_stops_except_on_a_perfect_score():
    assert run_rule(EarlyStopping(None), [(0.5, 2.0)] * 6)[0] == [False] * 6


@pytest.mark.slow
def test_finetune_on_the_bundled_corpus_stops_within_patience_of_its_best(tmp_path):
    """The user's case: --task style on the bundled corpus, the published rule that ran on while the
    loss shrank; the run ends at a perfect validation accuracy or ``patience`` epochs after its best."""
    work = tmp_path / "w"
    assert runner.invoke(app, ["tokenize", "-w", str(work)]).exit_code == 0
    out = tmp_path / "style"
    patience = 3
    result = runner.invoke(app, ["finetune-mask", "--task", "style", "-w", str(work), "--from-scratch", "--out", str(out),
                                 "--epochs", "30", "--patience", str(patience), "--lr", "1e-3", *TINY])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    accuracies = [row["valid_accuracy"] for row in metrics["history"]]
    perfect = [i + 1 for i, a in enumerate(accuracies) if a >= 1.0]
    if perfect:
        assert metrics["epochs_run"] == perfect[0] and "perfect" in metrics["stopped_early"]
    else:
        assert metrics["epochs_run"] == metrics["best_epoch"] + patience < 30, accuracies
    assert metrics["best_epoch"] == 1 + accuracies.index(max(accuracies))


def test_finetune_stops_at_a_perfect_validation_accuracy(tokens_dir, tmp_path):
    """Three separable styles: validation accuracy reaches 1.0 and the run stops there, not 30 epochs on."""
    out = tmp_path / "style"
    result = runner.invoke(app, ["finetune-mask", "--task", "style", "--tokens", str(tokens_dir), "--out", str(out),
                                 "--from-scratch", "--epochs", "30", "--patience", "30", "--monitor", "both", "--lr", "1e-3",
                                 *TINY])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    accuracies = [row["valid_accuracy"] for row in metrics["history"]]
    assert accuracies[-1] == 1.0 and max(accuracies[:-1], default=0) < 1.0, accuracies
    assert metrics["best_epoch"] == metrics["epochs_run"] == len(accuracies) < 30
    assert "perfect" in metrics["stopped_early"] and "stopped early" in result.output


def test_a_style_without_test_pieces_is_warned_about_before_training(tokens_dir, tmp_path):
    from musictl.midi.tokens import TokenCorpus

    corpus = TokenCorpus.open(tokens_dir)
    split = {s: [] for s in ("train", "valid", "test")}
    for piece in corpus.pieces:  # every waltz test piece goes to training
        name = f"{piece.style}/{piece.path.rsplit('/', 1)[-1]}"
        split["train" if piece.style == "waltz" and piece.split == "test" else piece.split].append(name)
    (tmp_path / "split.json").write_text(json.dumps(split))
    result = runner.invoke(app, ["finetune-mask", "--task", "style", "--tokens", str(tokens_dir), "--out", str(tmp_path / "o"),
                                 "--split-file", str(tmp_path / "split.json"), "--from-scratch", "--epochs", "1", *TINY])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "no test pieces for class 'waltz'" in output and "macro-F1" in output
    assert output.index("no test pieces") < output.index("epoch 1:")  # before training, not after
    assert "no valid" not in output
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["test"]["per_class"]["waltz"]["support"] == 0
