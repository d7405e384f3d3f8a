"""The tables of benchmarks/pretrain_sweep.py and benchmarks/finetune_lr.py, from their JSON alone (no training):
rows ranked by what they claim, the chosen configuration named, every command beside the table."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import finetune_lr
import pretrain_sweep


def field(accuracy: float, unigram: float, window: float, previous: float) -> dict:
    return {"accuracy": accuracy, "loss": 1.0, "unigram": unigram, "window": window, "previous": previous}


def sweep_run(name: str, pitch: float, position: float, duration: float) -> dict:
    valid = {"fields": {"pitch": field(pitch, 0.08, 0.15, 0.06), "position": field(position, 0.2, 0.3, 0.4),
                        "duration": field(duration, 0.3, 0.2, 0.38)}}
    margin = pretrain_sweep.margins(valid)
    return {"name": name, "objective": "mlm", "flags": f"--flags-of {name}", "command": f"musictl pretrain-bert {name}",
            "steps": 10, "parameters": 1000, "minutes": 1.0, "best_step": 10, "mean_accuracy": 0.5, "fields": valid["fields"],
            "margin": margin, "mean_margin": round(sum(margin.values()) / 3, 4)}


def test_sweep_margins_are_against_the_best_trivial_predictor_and_rank_the_rows():
    learned, unlearned = sweep_run("learns", 0.20, 0.45, 0.40), sweep_run("does-not", 0.10, 0.30, 0.30)
    assert learned["margin"] == {"pitch": 0.05, "position": 0.05, "duration": 0.02}
    assert unlearned["margin"]["position"] == -0.1  # the previous note's 0.4 is the best trivial predictor
    text = pretrain_sweep.render({"tokens": "T", "train_pieces": 3, "runs": {"a": unlearned, "b": learned}})
    rows = [line for line in text.splitlines() if line.startswith("| learns") or line.startswith("| does-not")]
    assert rows[0].startswith("| learns")  # best mean margin first
    assert "Chosen: **learns**" in text and "on pitch, position, duration" in text
    assert "musictl pretrain-bert learns" in text and "musictl pretrain-bert does-not" in text


def test_finetune_lr_table_names_the_best_learning_rate_per_task_and_counts_unfinished_runs():
    def run(task: str, lr: str, accuracy: float, best: int, epochs: int) -> dict:
        return {"task": task, "lr": lr, "start": "pretrained", "command": f"musictl finetune-mask --lr {lr}",
                "valid_accuracy": accuracy, "valid_loss": 1.0, "best_epoch": best, "epochs_run": epochs,
                "best_is_last": best == epochs, "train_pieces": 30, "minutes": 1.0}

    data = {"model": "WORK/bert", "epochs": 30, "patience": 5, "runs": {
        "a": run("melody", "1e-4", 0.70, 12, 17), "b": run("melody", "1e-3", 0.80, 30, 30), "c": run("composer", "3e-4", 0.5, 4, 9)}}
    text = finetune_lr.render(data)
    assert "1 of 3" in text  # the 1e-3 run ended at its best epoch: still improving
    assert "melody from pretrained: 1e-3" in text and "composer from pretrained: 3e-4" in text
    assert "30 / 30 (last)" in text
    # a pitch-shifted run is reported beside the same run without it and never chooses the learning rate
    data["runs"]["d"] = {**run("composer", "1e-3", 0.9, 4, 9), "pitch_shift": 3}
    text = finetune_lr.render(data)
    assert "composer from pretrained: 3e-4" in text
    assert "| composer | pretrained | 1e-3 | ±3 |" in text and "--pitch-shift 3" not in text  # no plain 1e-3 run to compare
    data["runs"]["e"] = run("composer", "1e-3", 0.6, 4, 9)
    assert "--pitch-shift 3 0.9000 vs 0.6000 without (+0.3000" in finetune_lr.render(data)
