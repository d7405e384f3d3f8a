"""The tables of benchmarks/pretrain_sweep.py and benchmarks/finetune_lr.py, from their JSON alone (no training):
rows ranked by what they claim, the chosen configuration named, every command beside the table; and the harness
that writes them (benchmarks/harness: resumable cells, one results format, one table writer)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import finetune_lr
import pretrain_sweep
from harness import cells, tables


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
    assert "Chosen at the matched budget: **learns**" in text and "on pitch, position, duration" in text
    assert "**Planned question:**" in text and "learns, is pitch +0.050, position +0.050, duration +0.020" in text
    assert "musictl pretrain-bert learns" in text and "musictl pretrain-bert does-not" in text


def test_finetune_lr_table_names_the_best_learning_rate_per_task_and_counts_unfinished_runs():
    def run(task: str, lr: str, accuracy: float, best: int, epochs: int, shift: int = 0) -> tuple[str, dict]:
        settings = {"task": task, "start": "pretrained", "lr": lr, "pitch_shift": shift}
        return cells.cell_key(settings), {
            "settings": settings, "command": f"musictl finetune-mask --lr {lr}", "valid_accuracy": accuracy, "valid_loss": 1.0,
            "best_epoch": best, "epochs_run": epochs, "best_is_last": best == epochs, "train_pieces": 30, "minutes": 1.0}

    data = {"format": 1, "config": {"model": "WORK/bert", "epochs": 30, "patience": 5}, "cells": dict([
        run("melody", "1e-4", 0.70, 12, 17), run("melody", "1e-3", 0.80, 30, 30), run("composer", "3e-4", 0.5, 4, 9)])}
    text = finetune_lr.render(data)
    assert text.index("**Planned question:**") < text.index("| task |")  # the question comes before the table
    assert "1 of 3" in text  # the 1e-3 run ended at its best epoch: still improving
    assert "melody from pretrained: 1e-3" in text and "composer from pretrained: 3e-4" in text
    assert "30 / 30 (last)" in text
    # a pitch-shifted run is reported beside the same run without it and never chooses the learning rate
    data["cells"].update([run("composer", "1e-3", 0.9, 4, 9, shift=3)])
    text = finetune_lr.render(data)
    assert "composer from pretrained: 3e-4" in text
    assert "| composer | pretrained | 1e-3 | ±3 |" in text and "--pitch-shift 3" not in text  # no plain 1e-3 run to compare
    data["cells"].update([run("composer", "1e-3", 0.6, 4, 9)])
    assert "--pitch-shift 3 0.9000 vs 0.6000 without (+0.3000" in finetune_lr.render(data)


def test_cell_keys_are_canonical_and_cells_are_selected_by_settings():
    assert cells.cell_key({"seed": 0, "row": "mlm", "amount": 10}) == cells.cell_key({"amount": 10, "row": "mlm", "seed": 0})
    assert cells.cell_key({"amount": 10}) != cells.cell_key({"amount": "10%"})
    found = {cells.cell_key(s): {"settings": s} for s in ({"row": "mlm", "seed": 0}, {"row": "mlm", "seed": 1}, {"row": "none", "seed": 0})}
    assert [c["settings"]["seed"] for c in cells.select(found, row="mlm")] == [0, 1]
    assert cells.select(found, row="mlm", missing=1) == []


def test_results_write_each_cell_at_once_and_resume(tmp_path):
    path = tmp_path / "bench.json"
    results = cells.Results(path, "benchmarks/x.py", {"size": (1, 2)}, command="python benchmarks/x.py")
    results.put({"seed": 0}, {"pieces": [[1, 2]]})
    saved = json.loads(path.read_text())
    assert saved["format"] == 1 and saved["config"] == {"size": [1, 2]} and saved["script"] == "benchmarks/x.py"
    assert saved["cells"]["seed=0"] == {"settings": {"seed": 0}, "pieces": [[1, 2]]}
    again = cells.Results(path, "benchmarks/x.py", {"size": [1, 2]}, command="python benchmarks/x.py")
    assert again.get({"seed": 0})["pieces"] == [[1, 2]] and again.get({"seed": 1}) is None
    assert cells.dumps(again.data).count("\n") > 3 and json.loads(cells.dumps(again.data)) == again.data


def test_results_refuse_other_settings_unless_fresh_or_changeable(tmp_path):
    path = tmp_path / "bench.json"
    cells.Results(path, "s", {"model": "a", "lr": 1}, command="c").put({"seed": 0}, {"v": 1})
    with pytest.raises(SystemExit, match=r"other settings.*model.*--fresh"):
        cells.Results(path, "s", {"model": "b", "lr": 1}, command="c")
    with pytest.raises(SystemExit, match="other settings"):  # changeable, but a cell was measured under the old value
        cells.Results(path, "s", {"model": "a", "lr": 2}, command="c", changeable=("lr",))
    dropped = cells.Results(path, "s", {"model": "a", "lr": 2}, command="c", changeable=("lr",), drop_cells=True)
    assert dropped.dropped == 1 and dropped.cells == {}
    assert cells.Results(path, "s", {"model": "b"}, command="c", fresh=True).cells == {}


def test_two_processes_of_one_run_merge_their_cells(tmp_path):
    path = tmp_path / "bench.json"
    first = cells.Results(path, "s", {"k": 1}, command="c", merged=("pretrain",))
    second = cells.Results(path, "s", {"k": 1}, command="c", merged=("pretrain",))
    first.put({"column": "melody"}, {"v": 1})
    second.data["pretrain"]["mlm"] = {"steps": 3}
    second.record("musictl pretrain-bert", 2.0)
    second.put({"column": "composer"}, {"v": 2})
    first.record("musictl finetune-mask", 1.0)
    saved = json.loads(path.read_text())
    assert sorted(saved["cells"]) == ["column=composer", "column=melody"] and saved["pretrain"] == {"mlm": {"steps": 3}}
    assert {c["command"] for c in saved["commands"]} == {"musictl pretrain-bert", "musictl finetune-mask"}
    assert not list(tmp_path.glob("*.tmp"))  # written by rename: no half-written file left


def test_load_refuses_an_old_format(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"runs": {}}))
    with pytest.raises(SystemExit, match="not in results format 1"):
        cells.load(tmp_path / "old.json")


def test_the_table_writer_aligns_and_checks_its_rows():
    assert tables.table(["row", "a"], [["x", 1]]) == ["| row | a |", "|---|---:|", "| x | 1 |"]
    assert tables.table(["row", "a"], [], "ll")[1] == "|---|---|"
    with pytest.raises(ValueError):
        tables.table(["row", "a"], [["x"]])
    assert tables.interval({"mean": 1.234, "low": -0.5, "high": 2.0, "seed_sd": 0.3}, signed=True, spread=True) == \
        "+1.2 [-0.5, +2.0] ±0.3"
    block = "\n".join(tables.planned("Q?", "a minus b", "yes", exploratory=3))
    assert block.index("Q?") < block.index("a minus b") < block.index("yes") and "3 other cells" in block
