"""The few-shot unseen-style protocol: count models and the interpolated n-gram by hand, every choice on
validation (a cell's choices do not move when its test pieces change), and a smoke run of
``benchmarks/transfer_fewshot.py`` on the bundled corpus that writes its tables and resumes."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from musictl import constants as C
from musictl.transfer import fewshot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_count_models_are_distributions_and_match_hand_counts():
    counts = np.zeros((4, 4))
    counts[0, 1], counts[0, 2], counts[1, 1] = 3, 1, 2  # 0 -> 1 three times, 0 -> 2 once, 1 -> 1 twice
    for model in (fewshot.add_alpha(counts, 0.5), fewshot.witten_bell(counts), fewshot.interval_model(counts, 0.5)):
        assert np.allclose(model.sum(1), 1) and (model > 0).all()
    assert fewshot.add_alpha(counts, 0.5)[0, 1] == pytest.approx(3.5 / 6)
    unigram = (np.array([0, 5, 1, 0]) + 1) / (6 + 4)
    # Witten-Bell: (N(x, c) + T(x) U(c)) / (N(x) + T(x)); x = 0 was followed by 2 distinct values
    assert fewshot.witten_bell(counts)[0, 1] == pytest.approx((3 + 2 * unigram[1]) / (4 + 2))
    assert np.allclose(fewshot.witten_bell(counts)[3], unigram)  # an unseen context backs off to the unigram
    steps = fewshot.interval_model(counts, 0.0)  # steps: +1 three times, +2 once, 0 twice
    assert steps[2, 3] == pytest.approx(3 / 5)  # from 2: step 0 (2), +1 (3); +2 leaves the range
    link = np.zeros((4, 4))
    link[0] = [0, 0, 0, 1]
    mixed = fewshot.mixed(fewshot.witten_bell(counts), link, 0.5)
    assert mixed[0, 3] > 0.5 and np.allclose(mixed[1], fewshot.witten_bell(counts)[1])  # rows the predictor knows


def test_transitions_stay_within_a_part_and_ranks_share_ties():
    tokens = np.array([[0, 0, 0, 60, 3, 10, 0, 0], [0, 0, 32, 36, 9, 10, 0, 0], [0, 8, 0, 62, 3, 10, 0, 0],
                       [0, 16, 0, 64, 5, 10, 0, 0]]) + C.N_SPECIAL
    previous, following = fewshot.transitions(tokens, C.PITCH)
    assert sorted(zip(previous.tolist(), following.tolist())) == [(60, 62), (62, 64)]  # the bass note starts no pair
    model = np.array([[0.5, 0.25, 0.25], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3]])
    assert fewshot._ranks(model, np.array([0, 0, 2]), np.array([0, 1, 1])).tolist() == [1.0, 2.5, 2.0]


def test_a_model_of_every_note_is_read_on_the_count_models_targets_only():
    tokens = np.array([[0, 0, 0, 60, 3, 10, 0, 0], [0, 0, 32, 36, 9, 10, 0, 0], [0, 8, 0, 62, 3, 10, 0, 0],
                       [0, 16, 0, 64, 5, 10, 0, 0]]) + C.N_SPECIAL
    assert fewshot.transition_targets(tokens).tolist() == [2, 3]  # the bass note and each part's first are no target
    log_p = -np.arange(tokens.size, dtype=float).reshape(tokens.shape)  # a distinct value per note and field
    found = fewshot.target_nll(log_p, tokens)
    assert found == {"pitch": -(log_p[2, C.PITCH] + log_p[3, C.PITCH]),
                     "duration": -(log_p[2, C.DURATION] + log_p[3, C.DURATION])}
    for field in fewshot.SCORED.values():  # the same notes, in the same order, as the count models' transitions
        _, following = fewshot.transitions(tokens, field)
        assert following.tolist() == (tokens[fewshot.transition_targets(tokens), field] - C.N_SPECIAL).tolist()
    assert fewshot.transition_targets(tokens[:1]).tolist() == [] and fewshot.target_nll(log_p[:1], tokens[:1]) == {
        "pitch": 0.0, "duration": 0.0}


def test_trigram_backs_off_to_the_bigram_with_exact_counts():
    # one part: 0 1 2 0 1 2 0 1 3 -> triples (x2, x, c); the part's second note has no note two back (-1)
    tokens = np.zeros((9, 8), dtype=np.int64)
    tokens[:, C.PITCH] = [0, 1, 2, 0, 1, 2, 0, 1, 3]
    tokens[:, C.POSITION] = np.arange(9)
    x2, x, c = fewshot.triples(tokens + C.N_SPECIAL, C.PITCH)
    assert x2.tolist() == [-1, 0, 1, 2, 0, 1, 2, 0] and x.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    counts = np.zeros((4, 4))
    np.add.at(counts, (x, c), 1.0)
    bigram = fewshot.witten_bell(counts)
    # after 1: 2 twice, 3 once (N = 3, T = 2); the add-one unigram of next values: U(2) = (2 + 1) / (8 + 4)
    assert bigram[1, 2] == pytest.approx((2 + 2 * 3 / 12) / (3 + 2))
    trigram = fewshot.Trigram(x2, x, c, bigram)
    # after (0, 1): 2 twice, 3 once: (N(0,1,2) + T(0,1) P2(2 | 1)) / (N(0,1) + T(0,1))
    assert trigram.probability(np.array([0]), np.array([1]), np.array([2]))[0] == pytest.approx((2 + 2 * 0.5) / 5)
    # no note two back, or a context never seen: the bigram itself
    assert trigram.probability(np.array([-1, 3]), np.array([1, 1]), np.array([2, 2])).tolist() == \
        pytest.approx([bigram[1, 2]] * 2)
    rows = trigram.rows(np.array([0, -1, 3]), np.array([1, 1, 2]))
    assert np.allclose(rows.sum(1), 1) and np.allclose(rows[1], bigram[1]) and np.allclose(rows[2], bigram[2])


def test_ngram_weights_are_fitted_by_em_on_held_out_transitions():
    size = 3
    sure = np.eye(size)[[1, 2, 0]]  # x -> x + 1 (mod 3) always
    flat = np.full((size, size), 1 / size)
    model = fewshot.NgramModel({"sure": sure * 0.98 + 0.01 / 1.5, "flat": flat})
    none = np.full(12, -1)
    x = np.arange(12) % size
    follows = fewshot.NgramModel({"sure": sure * 0.98 + 0.01 / 1.5, "flat": flat}).fit(none, x, (x + 1) % size)
    assert follows.named_weights["sure"] > 0.99  # every held-out transition follows the rule
    random = model.fit(none, x, np.random.default_rng(0).integers(0, size, 12))
    assert random.named_weights["flat"] > 0.5 and sum(random.named_weights.values()) == pytest.approx(1)
    assert np.allclose(random.pair_matrix().sum(1), 1) and np.allclose(random.rows(none[:2], x[:2]).sum(1), 1)
    # EM found the maximum: moving the weights either way does not lower the held-out NLL
    c = np.random.default_rng(0).integers(0, size, 12)
    best = fewshot.nll_sum(random, none, x, c)
    step = np.array([0.05, -0.05])
    for w in (random.weights + step, random.weights - step):
        moved = fewshot.NgramModel(dict(random.parts))
        moved.weights = np.clip(w, 1e-6, 1) / np.clip(w, 1e-6, 1).sum()
        assert fewshot.nll_sum(moved, none, x, c) >= best - 1e-9


def test_the_best_count_model_is_chosen_on_validation_only():
    def cell(valid: dict[str, float]) -> dict:  # no test key at all: the choice cannot read one
        return {"valid_nll": {m: {"pitch": v, "duration": v} for m, v in valid.items()},
                "valid_notes": {"pitch": 10, "duration": 10}}

    cells = [cell({"add_alpha": 30, "witten_bell": 20, "interval": 25, "pooled": 40, "ngram": 1}),
             cell({"add_alpha": 30, "witten_bell": 26, "interval": 20, "pooled": 40, "ngram": 1})]
    assert fewshot.choose_baseline(cells) == "interval"  # mean over seeds 22.5 vs 23 (per 10 notes); no n-gram
    cells[1]["valid_nll"]["interval"] = {"pitch": 30, "duration": 30}
    assert fewshot.choose_baseline(cells) == "witten_bell"


def test_a_cells_choices_do_not_move_when_its_test_pieces_change(tokens_dir, monkeypatch):
    from musictl.midi.tokens import TokenCorpus

    corpus = TokenCorpus.open(tokens_dir)
    config = fewshot.FewShotConfig(shots=(1,), seeds=1, epochs=3, patience=2, hidden=8, out_dim=4)
    table = np.random.default_rng(0).normal(size=(int(sum(corpus.config.field_sizes)), 8))
    others = fewshot.other_style_counts(corpus, "waltz")
    first = fewshot.run_cell(corpus, "waltz", 1, 0, table, config, others)
    test = {p.id for p in corpus.select(style="waltz", split="test")}
    marches = [corpus.piece_tokens(p) for p in corpus.select(style="march")]
    real = corpus.piece_tokens
    # the style's test pieces replaced by marches: every test score moves, no choice may
    monkeypatch.setattr(corpus, "piece_tokens", lambda p: marches[p.id % len(marches)] if p.id in test else real(p))
    second = fewshot.run_cell(corpus, "waltz", 1, 0, table, config, others)
    assert second["choices"] == first["choices"] and second["valid_nll"] == first["valid_nll"]
    assert second["nll"]["ngram"] != first["nll"]["ngram"]
    weights = first["choices"]["pitch"]["ngram"]
    assert set(weights) == set(fewshot.NGRAM_PARTS) and sum(weights.values()) == pytest.approx(1)
    for name in fewshot.SCORED:  # the n-gram beats no count model on validation only by luck: it holds them all
        assert first["valid_nll"]["ngram"][name] <= min(first["valid_nll"][m][name] for m in
                                                        ("witten_bell", "interval", "pooled")) + 1e-6


@pytest.fixture(scope="module")
def bench():
    import transfer_fewshot as bench

    return bench


def _args(tmp_path: Path) -> list[str]:
    return ["--styles", "fiddle-tunes", "--shots", "1,all", "--seeds", "2", "--bert-steps", "2",
            "--fewshot-epochs", "20", "--threads", "1", "--bootstrap", "200", "--work", str(tmp_path / "work"),
            "--results", str(tmp_path / "results"), "--adapt-epochs", "2", "--adapt-patience", "1", "--unadapted-epochs", "2",
            "--adapt-max-len", "64", "--write"]


def _timeless(cells: dict) -> dict:
    """The cells without their CPU seconds (measured again when a cell is made again)."""
    return {key: {**cell, "rows": {m: {k: v for k, v in row.items() if k != "cpu_seconds"}
                                   for m, row in cell["rows"].items()}} for key, cell in cells.items()}


def test_few_shot_smoke_run_writes_every_row_and_resumes(bench, tmp_path, monkeypatch):
    bench.main(_args(tmp_path))
    page = (tmp_path / "results" / "transfer_fewshot.md").read_text()
    data = json.loads((tmp_path / "results" / "transfer_fewshot.json").read_text())
    assert "python benchmarks/transfer_fewshot.py --styles fiddle-tunes" in page  # the command beside the table
    assert page.index("**Planned question:**") < page.index("## Summary")
    assert data["format"] == 1 and data["script"] == "benchmarks/transfer_fewshot.py"
    blocks = {cell["settings"]["k"]: cell for cell in data["cells"].values()}
    assert set(blocks) == {"1", "all"} and {c["settings"]["style"] for c in data["cells"].values()} == {"fiddle-tunes"}
    for block in blocks.values():
        assert block["seeds"] == 2 and block["best_baseline"] in fewshot.BASELINES
        assert block["resampled"] == "pieces and seeds"
        assert block["best_baseline"] == min(fewshot.BASELINES, key=block["validation_note_nll"].get)
        assert set(block["rows"]) == set(fewshot.METHODS) | set(bench.TRANSFORMER)
        for method in bench.TRANSFORMER:  # the same notes as the count models: the same pieces, paired by seed
            row = block["rows"][method]
            assert row["cpu_seconds"] > 0 and "pitch_mrr" not in row and row["pitch_nll"]["mean"] > 0
            assert "note_nll_minus_scratch" in row
        assert block["rows"]["transformer_scratch"]["note_nll_minus_scratch"] == {"mean": 0, "low": 0, "high": 0}
        assert all(block["rows"][m]["cpu_seconds"] >= 0 for m in fewshot.METHODS)
        for method, row in block["rows"].items():
            ranked = () if method in bench.TRANSFORMER else ("pitch_mrr", "pitch_hits10")  # no edge recovery for those
            for name in ("pitch_nll", "duration_nll", "note_nll", *ranked):
                assert row[name]["low"] <= row[name]["mean"] + 1e-9 and row[name]["mean"] <= row[name]["high"] + 1e-9
        assert block["rows"][block["best_baseline"]]["note_nll_minus_best"]["mean"] == 0
        assert block["rows"]["ngram"]["note_nll_minus_ngram"] == {"mean": 0, "low": 0, "high": 0}
        mixes = block["choices"]["pitch"]["predictor_bert"]
        assert len(mixes) == 2 and all(m in fewshot.MIXES or m == "graph too small" for m in mixes)
    for method in fewshot.METHODS:
        assert f"| {method} |" in page
    for label in bench.LABELS.values():
        assert f"| {label} |" in page
    assert page.index(bench.QUESTION) < page.index("## The transformer") < page.index("## Summary")
    assert data["unadapted"]["fiddle-tunes"]["cpu_seconds"] > 0

    cells = list((tmp_path / "work").rglob("k*-seed*.json"))
    assert len(cells) == 4  # (k = 1, all) x 2 seeds, each cached as it finished
    calls, adapted = [], []
    real = fewshot.run_cell
    monkeypatch.setattr(fewshot, "run_cell", lambda *a, **k: calls.append(a[2:4]) or real(*a, **k))
    from musictl.bert import adapt

    real_adapt = adapt.adapt
    monkeypatch.setattr(adapt, "adapt", lambda *a, **k: adapted.append(a[3].mode) or real_adapt(*a, **k))
    cells[0].unlink()
    scores = sorted((tmp_path / "work").rglob("transformer-cells/*/lora-k1-seed0-*.json"))
    assert len(scores) == 1
    scores[0].unlink()
    runs = sorted((tmp_path / "work").rglob("transformer/fiddle-tunes/full-kall-seed1-*"))
    assert len(runs) == 1
    shutil.rmtree(runs[0])
    next(iter((tmp_path / "work").rglob("transformer-cells/*/full-kall-seed1-*.json"))).unlink()
    bench.main(_args(tmp_path))  # resumes: only the missing cell runs again, the BERT is not pre-trained again
    assert len(calls) == 1
    assert adapted == ["full"]  # the LoRA run was kept (only rescored); the removed full run is made again
    again = json.loads((tmp_path / "results" / "transfer_fewshot.json").read_text())
    assert _timeless(again["cells"]) == _timeless(data["cells"])  # the same numbers; only CPU seconds were re-measured

    # a given encoder (--bert-model): its own cells and page, labelled as an optimistic bound; the per-style ones kept
    given = next((tmp_path / "work").rglob("bert-without-fiddle-tunes/bert"))
    calls.clear()
    args = _args(tmp_path)
    args[args.index("--work") + 1] = str(tmp_path / "work-given")
    bench.main([*args, "--bert-model", str(given)])
    assert len(calls) == 4  # new cells: a different feature table must not read the held-out encoder's cells
    assert not list((tmp_path / "work-given").rglob("bert-without-*/bert"))  # no per-style encoder pre-trained for it
    page = (tmp_path / "results" / "transfer_fewshot_given.md").read_text()
    assert "optimistic bound" in page and "| fiddle-tunes | 1 |" in page
    assert json.loads((tmp_path / "results" / "transfer_fewshot.json").read_text())["cells"] == again["cells"]


def test_the_shared_corpus_holds_exactly_per_style_pieces(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import transfer_fewshot as bench

    # a run with fewer pieces a style after one with more must not keep the earlier run's extra links
    source = tmp_path / "datasets" / "src"
    source.mkdir(parents=True)
    for i in range(5):
        (source / f"p{i}.mid").write_bytes(b"MThd")
    monkeypatch.setattr(bench, "STYLES", {"style-a": ("src", "*.mid")})
    monkeypatch.setattr(bench.paths, "require_datasets", lambda: tmp_path / "datasets")

    def corpus(per_style: int) -> list[str]:
        args = SimpleNamespace(corpus="shared", work=str(tmp_path / "work"), per_style=per_style)
        return sorted(p.name for p in (bench.few_shot_corpus(args) / "style-a").iterdir())

    assert corpus(5) == [f"p{i}.mid" for i in range(5)]
    assert corpus(2) == ["p0.mid", "p1.mid"]
