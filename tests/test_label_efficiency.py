"""benchmarks/label_efficiency.py without training: pre-training never sees a fine-tuning validation or
test piece (by content, not name), subsets keep their classes, the table pairs rows by seed, and the probe on
raw note features sees what the encoder sees."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import label_efficiency as le
from harness import cells

from tests.midi_factory import style_piece


@pytest.fixture
def datasets(tmp_path) -> dict[str, Path]:
    """Two small 'datasets': pop (labelled: train/test) and folk (unlabelled), where folk holds a renamed
    copy of a pop test piece, a file named like a pop test piece with other content, and a duplicate."""
    pop, folk = tmp_path / "pop", tmp_path / "folk" / "reels"
    pop.mkdir(parents=True)
    folk.mkdir(parents=True)
    for i in range(4):
        (pop / f"{i:03d}.mid").write_bytes(style_piece("march", seed=i, bars=4))
    (folk / "tune_a.mid").write_bytes((pop / "003.mid").read_bytes())  # a test piece under another name
    (folk / "003.mid").write_bytes(style_piece("waltz", seed=7, bars=4))  # a test piece's name, other content
    (folk / "tune_b.mid").write_bytes(style_piece("blues", seed=8, bars=4))
    (folk / "tune_b_copy.mid").write_bytes((folk / "tune_b.mid").read_bytes())
    return {"pop": pop, "folk": tmp_path / "folk", "heldout": [pop / "003.mid"]}


def _tokenize(folder: Path, split_file: Path, out: Path) -> Path:
    from musictl.midi.pipeline import prepare_tokenize
    from musictl.midi.settings import TokenizeSettings

    prepare_tokenize([folder], out, TokenizeSettings(workers=1), split_file, overwrite=True).run()
    return out


def test_content_hash_is_the_tokens_index_hash(datasets, tmp_path):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["000.mid", "001.mid"], "valid": ["002.mid"], "test": ["003.mid"]}))
    tokens = _tokenize(datasets["pop"], split, tmp_path / "tokens")
    rows = [json.loads(line) for line in (tokens / "index.jsonl").read_text().splitlines()]
    assert all(row["hash"] == le.content_hash(Path(row["path"])) for row in rows)


def test_pretraining_corpus_leaves_out_heldout_content_whatever_its_name(datasets, tmp_path):
    candidates = {"pop": (datasets["pop"], le.midi_files(datasets["pop"])),
                  "folk": (datasets["folk"], le.midi_files(datasets["folk"]))}
    split_file, counts = le.stage_pretraining(candidates, datasets["heldout"], tmp_path / "corpus")
    staged = {p.relative_to(tmp_path / "corpus").as_posix() for p in (tmp_path / "corpus").rglob("*.mid")}
    assert "pop/003.mid" not in staged and "folk/reels__tune_a.mid" not in staged  # the test piece and its renamed copy
    assert "folk/reels__003.mid" in staged  # same name as a test piece, other content: kept
    assert counts["excluded_by_content"] == 2 and counts["duplicates_dropped"] == 1
    split = json.loads(split_file.read_text())
    assert sorted(split["train"] + split["valid"]) == sorted(staged) and len(split["valid"]) >= 2
    tokens = _tokenize(tmp_path / "corpus", split_file, tmp_path / "tokens")
    assert le.leaks(tokens, datasets["heldout"]) == []


def test_the_leak_check_finds_a_renamed_copy(datasets, tmp_path):
    """Tokenized without the exclusion, the folk collection's renamed copy of a test piece is caught."""
    split = tmp_path / "split.json"
    names = sorted(p.relative_to(datasets["folk"]).as_posix() for p in le.midi_files(datasets["folk"]))
    split.write_text(json.dumps({"train": names, "valid": [], "test": []}))
    tokens = _tokenize(datasets["folk"], split, tmp_path / "tokens")
    found = le.leaks(tokens, datasets["heldout"])
    assert [(Path(a).name, Path(b).name) for a, b in found] == [("tune_a.mid", "003.mid")]
    assert le.leaks(tokens, datasets["heldout"], splits=("valid",)) == []


def test_training_subsets_are_seeded_and_keep_every_class():
    entries = [f"{c}/{c}_{i}.mid" for c in ("Bethel", "Yiruma", "Hancock") for i in range(9 if c == "Bethel" else 3)]
    quarter = le.training_subset(entries, "25%", "pianist8", 0)
    assert {e.split("/")[0] for e in quarter} == {"Bethel", "Yiruma", "Hancock"}
    assert len(quarter) == 3 + 1 + 1  # ceil(25% of each class)
    assert le.training_subset(entries, "25%", "pianist8", 0) == quarter
    assert le.training_subset(entries, "25%", "pianist8", 1) != quarter
    ten = le.training_subset(entries, 10, "pop909", 2)
    assert len(ten) == 10 and set(ten) <= set(entries)
    assert le.training_subset(entries, "all", "pop909", 5) == entries


def _data(diffs: dict[str, float]) -> dict:
    """A label_efficiency.json with 3 seeds of every row on one column, 40 test pieces of 20 notes."""
    rng = np.random.default_rng(0)
    hard = rng.random(40)
    runs = {}
    for row in le.ROWS:
        for seed in range(3):
            right = (hard + diffs.get(row, 0) > 0.5).astype(int) * 20
            settings = {"column": "melody", "amount": 10, "row": row, "seed": seed}
            run = {"settings": settings, "pieces": [[int(r), 20] for r in right], "train_pieces": 10}
            if not row.startswith("probe"):
                run.update(best_epoch=3 if seed == 0 else 2, epochs_run=3)
            runs[cells.cell_key(settings)] = run
    return {"format": 1, "config": {"smoke": False, "grouped_split": "0.8,0.1,0.1"}, "seeds": [0, 1, 2], "cells": runs,
            "commands": [],
            "pretrain": {}, "data": {"test_pieces": {"melody": [f"midi/{i:03d}.mid" for i in range(40)]}},
            "columns": {"melody": {"task": "melody", "dataset": "pop909", "amounts": [10]}}}


def test_table_pairs_rows_with_no_pretraining_and_counts_last_epochs():
    data = _data({"mlm": 0.2, "adversarial": 0.0, "probe mlm": 0.1})
    table = le.summarise(data)
    mlm = table["melody|10|mlm"]
    assert mlm["minus_none"]["low"] > 0 and mlm["minus_none"]["pairs"] == 3
    assert table["melody|10|adversarial"]["minus_none"]["mean"] == 0
    assert table["melody|10|probe mlm"]["minus_none"]["mean"] > 0  # probes are compared with the random-encoder probe
    assert "minus_none" not in table["melody|10|none"] and "last_epoch" not in table["melody|10|probe none"]
    assert mlm["last_epoch"] == [1, 3] and mlm["cell"]["resampled"] == "pieces and seeds" and mlm["cell"]["pieces"] == 40
    data["table"] = table
    text = le.render(data)
    assert "best validation epoch was the last: 3 of 9 (33%)" in text
    assert "| MLM minus none |" in text and "| probe: MLM encoder minus random-encoder probe |" in text
    assert "## melody (melody, POP909, 40 test pieces)" in text and "| row | 10 pieces | last |" in text
    assert text.index("**Planned question:**") < text.index("| row |")  # the question before the tables
    assert "**Answer:** melody 10 pieces +" in text and "above 0 on melody 10 pieces" in text


def test_encoder_probes_are_compared_with_the_raw_feature_probe_and_a_table_without_it_still_renders():
    data = _data({"mlm": 0.2, "probe mlm": 0.1, "probe raw": 0.15})
    table = le.summarise(data)
    assert table["melody|10|probe mlm"]["minus_raw"]["mean"] < 0  # the raw features beat this encoder
    assert "minus_raw" not in table["melody|10|probe raw"] and table["melody|10|probe raw"]["minus_none"]["mean"] > 0
    data["table"] = table
    text = le.render(data)
    assert "| probe: MLM encoder minus raw-feature probe |" in text and "| probe: raw note features, no encoder |" in text
    assert "not measured in this run" not in text
    data["cells"] = {k: v for k, v in data["cells"].items() if v["settings"]["row"] != "probe raw"}  # a table made before it
    data["table"] = le.summarise(data)
    text = le.render(data)
    assert "raw-feature probe" not in text.split("## melody")[1] and "not measured in this run" in text


def test_cells_are_measured_fewest_labels_first_and_all_last():
    columns = [le.Column("melody", "melody", "pop909", (10, 30, "all")), le.Column("composer", "composer", "pianist8", ("25%", "all"))]
    order = [(c.name, amount, seed) for c, amount, seed in le.schedule(columns, [0, 1])]
    assert order[:4] == [("melody", 10, 0), ("composer", "25%", 0), ("melody", 10, 1), ("composer", "25%", 1)]
    assert order[4:6] == [("melody", 30, 0), ("melody", 30, 1)]
    assert order[6:] == [("melody", "all", 0), ("composer", "all", 0), ("melody", "all", 1), ("composer", "all", 1)]
    assert len(set(order)) == len(order) == 2 * 5


def _harness(tmp_path, **changes):
    import argparse

    args = dict(smoke=False, pretrain_args=None, finetune_args=None, max_len=None, work=str(tmp_path), out=str(tmp_path),
                columns=[c.name for c in le.COLUMNS], seeds=1, fresh=False)
    return le.Harness(argparse.Namespace(**{**args, **changes}))


def test_fine_tuning_settings_change_only_while_nothing_was_fine_tuned(tmp_path):
    h = _harness(tmp_path)
    h.save()
    assert _harness(tmp_path, finetune_args="--epochs 40").data["config"]["finetune_args"] == "--epochs 40"
    h.results.put({"column": "melody", "amount": 10, "row": "none", "seed": 0}, {"pieces": [[1, 2]]})
    with pytest.raises(SystemExit, match="other settings"):
        _harness(tmp_path, finetune_args="--epochs 40")
    pretrained = le.FULL["pretrain_args"].replace("27000", "100")
    (tmp_path / "label_efficiency.json").unlink()
    _harness(tmp_path).save()
    with pytest.raises(SystemExit, match="other settings"):  # the pre-trained models' settings are always compared
        _harness(tmp_path, pretrain_args=pretrained)



def test_a_cell_with_fewer_seeds_says_how_many():
    data = _data({"mlm": 0.2})
    del data["cells"][cells.cell_key({"column": "melody", "amount": 10, "row": "mlm", "seed": 2})]
    data["table"] = le.summarise(data)
    rows = {line.split(" |")[0]: line for line in le.render(data).splitlines() if line.startswith("| ")}
    assert rows["| MLM"].endswith("(2 seeds) | 1/2 |") and "seed" not in rows["| no pre-training"]
    assert data["table"]["melody|10|mlm"]["minus_none"]["pairs"] == 2  # paired on the seeds both rows have


def test_an_interrupted_cell_resumes_its_checkpoint(tmp_path):
    h = _harness(tmp_path)
    column = le.COLUMNS[0]
    calls = []

    def musictl(*args):
        calls.append(args)
        out = Path(args[args.index("-o") + 1])
        out.mkdir(parents=True)
        pieces = {"pieces": [["midi/001.mid", 3, 4]], "accuracy": 0.75}
        (out / "metrics.json").write_text(json.dumps({"test": pieces, "test_masked": pieces, "best_epoch": 2, "epochs_run": 5}))
        (out / "manifest.json").write_text(json.dumps({"parameters": {"lr": 1e-3}}))
        return 1.0

    h.musictl = musictl
    models = {"mlm": tmp_path / "mlm", "adversarial": tmp_path / "adversarial"}
    le.finetune(h, column, 10, "mlm", 0, tmp_path / "tokens", tmp_path / "split.json", models)
    assert "--overwrite" in calls[-1] and "--resume" not in calls[-1]
    assert calls[-1][calls[-1].index("--lr") + 1] == "1e-3"  # the rate measured for a pre-trained start
    staging = tmp_path / "ft" / ".melody-10-none-0.staging" / "checkpoints" / "last"
    staging.mkdir(parents=True)
    (staging / "trainer_state.json").write_text(json.dumps({"step": 40}))
    le.finetune(h, column, 10, "none", 0, tmp_path / "tokens", tmp_path / "split.json", models)
    assert "--resume" in calls[-1] and "--overwrite" not in calls[-1] and "--from-scratch" in calls[-1]
    assert calls[-1][calls[-1].index("--lr") + 1] == "3e-4"
    assert h.results.get({"column": "melody", "amount": 10, "row": "none", "seed": 0})["pieces"] == [[3, 4]]


def test_the_table_names_the_command_without_the_columns_a_process_took():
    assert le.without_columns(["--seeds", "3", "--columns", "melody", "emotion (song-grouped)", "--fresh"]) == ["--seeds", "3",
                                                                                                            "--fresh"]
    assert le.without_columns(["--columns", "melody"]) == []


def test_raw_features_are_the_notes_own_fields_and_their_window_neighbours():
    from musictl import constants as C

    sizes = (10, 9, 5, 9, 7, 8, 5, 5)
    tokens = np.array([[4, 4 + i, 4, 4 + i, 4 + i % 3, 4 + i % 4, 4, 4] for i in range(5)])
    width = sum(sizes) - sizes[C.BAR]
    x = le.raw_features(tokens, "melody", 3, sizes, per_note=True).toarray()
    assert x.shape == (5, 3 * width) and np.all(x[:, :width].sum(1) == 7)  # 7 fields: bar left out
    assert np.all(x[0, width : 2 * width] == 0) and np.all(x[3, width : 2 * width] == 0)  # a window's first note
    assert np.all(x[2, 2 * width :] == 0) and np.all(x[4, 2 * width :] == 0)  # a window's last note, the piece's last
    assert np.array_equal(x[1, width : 2 * width], x[0, :width]) and np.array_equal(x[1, 2 * width :], x[2, :width])
    hidden = le.raw_features(tokens, "velocity", 3, sizes, per_note=True).toarray()
    velocity = sum(sizes[f] for f in range(C.VELOCITY) if f != C.BAR)
    assert np.all(hidden[:, velocity + C.MASK_ID] == 1)  # the velocity task's answer is hidden, as finetune-mask hides it
    histogram = le.raw_features(tokens, "composer", 3, sizes, per_note=False)
    assert histogram.shape == (1, width) and histogram.sum() == pytest.approx(7)


def _planned_cells(valid: dict, test_right: dict) -> dict:
    """composer_planned.json cells: 3 seeds, 20 test pieces; ``valid[(start, lr)]`` the validation accuracy,
    ``test_right[(start, lr)]`` how many test pieces each seed gets right (the first ones)."""
    import composer_planned as cp

    out = {}
    for start in cp.STARTS:
        for lr in cp.RATES:
            for seed in range(3):
                settings = {"start": start, "lr": lr, "seed": seed}
                right = test_right.get((start, lr), 10) + seed % 2
                out[cells.cell_key(settings)] = {
                    "settings": settings, "valid_accuracy": valid.get((start, lr), 0.5) + 0.01 * seed,
                    "test_pieces": [[int(p < right), 1] for p in range(20)], "best_epoch": 3, "epochs_run": 5}
    return out


def test_the_planned_composer_test_chooses_each_rate_on_validation_and_reads_test_once():
    import composer_planned as cp

    valid = {("none", "3e-4"): 0.6, ("adversarial", "1e-3"): 0.7, ("mlm", "3e-3"): 0.65}
    # the rates not chosen have the best test scores: a choice that looked at test would pick them
    test_right = {("none", "3e-4"): 8, ("none", "3e-3"): 20, ("adversarial", "1e-3"): 12, ("adversarial", "3e-4"): 20,
                  ("mlm", "3e-3"): 9, ("mlm", "1e-3"): 20}
    data = {"format": 1, "cells": _planned_cells(valid, test_right)}
    table = cp.summarise(data)
    assert {s: c["lr"] for s, c in table["chosen"].items()} == {"none": "3e-4", "mlm": "3e-3", "adversarial": "1e-3"}
    assert table["rows"]["none"]["mean"] == pytest.approx(100 * (8 * 3 + 1) / 60, abs=0.01)
    adversarial = table["minus_none"]["adversarial"]
    assert adversarial["mean"] == pytest.approx(20, abs=0.01) and adversarial["pairs"] == 3
    assert adversarial["per_pair"] == [20, 20, 20] and 0 < adversarial["low"] < 20 < adversarial["high"]
    assert table["minus_none"]["mlm"]["mean"] == pytest.approx(5, abs=0.01)
    choice = cp.choose_rates({"none": {"3e-4": {0: 0.5, 1: 0.7}, "1e-3": {0: 0.6}, "3e-3": {0: 0.55, 1: 0.9}}})
    assert choice["none"]["lr"] == "1e-3" and choice["none"]["seeds"] == [0]  # only the seeds every rate has
    assert cp.choose_rates({"none": {"3e-4": {0: 0.5}, "1e-3": {}, "3e-3": {0: 0.5}}}) == {}


def test_the_planned_composer_page_opens_with_its_question_and_answer():
    import composer_planned as cp

    data = {"format": 1, "command": "python benchmarks/composer_planned.py", "machine": "m", "commands": [], "pretrain": {},
            "config": {"smoke": False, "finetune_args": "", "max_len": 256}, "data": {"test_pieces": ["a"] * 20},
            "cells": _planned_cells({("adversarial", "1e-3"): 0.7}, {("adversarial", "1e-3"): 13})}
    data["table"] = cp.summarise(data)
    text = cp.render(data)
    assert text.index("**Planned question:**") < text.index("**Answer:** adversarial minus none +") < text.index("| start |")
    assert "1 other cell measured" in text and "| adversarial | planned |" in text and "| mlm | exploratory |" in text


def test_the_planned_composer_test_tunes_on_the_first_seeds_and_shards_split_every_phase(tmp_path):
    import composer_planned as cp

    plan = cp.tuning_cells([0, 1, 2])
    assert len(plan) == 27 and {seed for seed, _, _ in plan} == {0, 1, 2}
    halves = [cp.shard(plan, (1, 2)), cp.shard(plan, (2, 2))]
    assert sorted(halves[0] + halves[1]) == sorted(plan) and not set(halves[0]) & set(halves[1])
    assert cp.unsharded(["--seeds", "4", "--shard", "2/2", "--shard=1/2"]) == ["--seeds", "4"]
    for bad in ("0/2", "3/2", "a/b", "2"):
        with pytest.raises(argparse.ArgumentTypeError):
            cp.parse_shard(bad)
    # a shard waits for the tuning cells another shard writes into the same JSON, then chooses on validation
    config = {"k": 1}
    mine = cells.Results(tmp_path / "r.json", "s", config, command="c")
    other = cells.Results(tmp_path / "r.json", "s", config, command="c")
    for seed, start, lr in plan:
        writer = mine if (seed, start, lr) in halves[0] else other
        if writer is mine:
            writer.put({"start": start, "lr": lr, "seed": seed}, {"valid_accuracy": 0.9 if lr == "3e-3" else 0.5})
    context = argparse.Namespace(results=mine)
    polls = []

    def finish_other(seconds):
        polls.append(seconds)
        for seed, start, lr in halves[1]:
            other.put({"start": start, "lr": lr, "seed": seed}, {"valid_accuracy": 0.9 if lr == "3e-3" else 0.5})

    original = cp.time.sleep
    cp.time.sleep = finish_other
    try:
        chosen = cp.wait_for_rates(context, [0, 1, 2], poll=7)
    finally:
        cp.time.sleep = original
    assert polls == [7] and {s: c["lr"] for s, c in chosen.items()} == {s: "3e-3" for s in cp.STARTS}
    assert all(c["seeds"] == [0, 1, 2] for c in chosen.values())
    later = {"settings": {"start": "none", "lr": "3e-4", "seed": 5}, "valid_accuracy": 1.0}
    assert cp.validation_accuracies({"x": later}, seeds=[0, 1, 2])["none"]["3e-4"] == {}
