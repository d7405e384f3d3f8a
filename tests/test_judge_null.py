"""The generation judge beside its real-vs-real null: real pieces of one style fall inside the null, another
style's pieces land above its 95th percentile, fewer than 40 pieces a class is flagged, the null is the same for
a seed, and ``generate-rwr --evaluate`` reports it against the style's test pieces (JSON on stdout, a summary
and a warning on stderr)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from musictl.cli import app
from musictl.midi.encode import encode_score, parse_midi
from musictl.midi.vocab import TokenizerConfig
from musictl.transfer.fidelity import ENOUGH_PIECES, judge, null_sizes
from tests.midi_factory import style_piece

CFG = TokenizerConfig()
DRAWS = 20  # enough for the tests, fast
runner = CliRunner()


def _pieces(style: str, count: int, first_seed: int) -> list[np.ndarray]:
    return [encode_score(parse_midi(style_piece(style, seed, bars=8)), CFG).tokens
            for seed in range(first_seed, first_seed + count)]


@pytest.fixture(scope="module")
def waltzes() -> list[np.ndarray]:
    """80 waltzes: two samples of 40 from one style."""
    return _pieces("waltz", 2 * ENOUGH_PIECES, 1000)


def test_sizes_of_the_null_match_the_real_comparison_where_the_reference_allows():
    assert null_sizes(40, 100) == (40, 60)  # as many as were generated, and every other held-out piece
    assert null_sizes(8, 10) == (5, 5) and null_sizes(8, 8) == (4, 4)  # too few: halves
    assert null_sizes(2, 4) == (2, 2)


def test_real_pieces_of_one_style_fall_inside_the_null(waltzes):
    result = judge(waltzes[:ENOUGH_PIECES], waltzes[ENOUGH_PIECES:], CFG, seed=0, null_draws=DRAWS)
    null = result["null"]
    assert result["enough_pieces"] and "note" not in result
    assert null["draws"] == DRAWS and null["sizes"] == [20, 20]  # halves of the 40 held-out pieces
    assert 0.35 <= null["mean"] <= 0.65 and null["sd"] > 0 and null["mean"] <= null["p95"] <= 1
    assert result["percentile"] < 0.95 and result["distinguishable"] is False, result


def test_another_styles_pieces_are_told_apart(waltzes):
    marches = _pieces("march", ENOUGH_PIECES, 2000)
    result = judge(marches, waltzes[:ENOUGH_PIECES], CFG, seed=0, null_draws=DRAWS)
    assert result["accuracy"] > result["null"]["p95"] and result["percentile"] == 1.0
    assert result["distinguishable"] is True and result["enough_pieces"] is True


def test_fewer_than_40_pieces_a_class_is_flagged(waltzes):
    result = judge(waltzes[:10], waltzes[40:48], CFG, seed=0, null_draws=DRAWS)
    assert result["enough_pieces"] is False and "fewer than 40" in result["note"]
    assert result["generated"] == 10 and result["held_out"] == 8 and result["null"]["sizes"] == [4, 4]
    assert "halves" in result["null"]["what"]
    few = judge(waltzes[:3], waltzes[40:43], CFG, null_draws=DRAWS)  # 3 held-out pieces: no two groups of 2
    assert few["accuracy"] is not None and few["percentile"] is None and few["distinguishable"] is None
    assert "at least 4 held-out pieces" in few["null"]["note"]


def test_the_same_seed_gives_the_same_null(waltzes):
    first, second = (judge(waltzes[:10], waltzes[40:52], CFG, seed=3, null_draws=DRAWS) for _ in range(2))
    assert first == second
    assert judge(waltzes[:10], waltzes[40:52], CFG, seed=4, null_draws=DRAWS)["null"] != first["null"]


TINY_BERT = ["--hidden-size", "32", "--layers", "1", "--heads", "2", "--field-embed-dim", "8", "--max-len", "64",
             "--max-steps", "3", "--eval-every", "3", "--device", "cpu"]


def test_generate_rwr_evaluate_reports_the_null(style_corpus, tmp_path):
    """The reference is the style's test pieces only (its validation pieces chose the walk's mix)."""
    from musictl.midi.corpus import assign_splits, find_midi_files
    from musictl.midi.pipeline import tokenize_corpus

    ws = tmp_path / "ws"
    files = find_midi_files([style_corpus])  # 3 / 1 / 4 pieces of each style
    tokenize_corpus(files, assign_splits(files, (0.4, 0.1, 0.5), 0), ws / "tokens", TokenizerConfig(), workers=1)

    def ok(*args):
        result = runner.invoke(app, [*args, "--workdir", str(ws)])
        assert result.exit_code == 0, result.output
        return result

    ok("pretrain-bert", *TINY_BERT)
    ok("embed")
    ok("adjacency", "--style", "waltz")
    ok("train-gcn", "--style", "waltz", "--epochs", "5", "--hidden", "16", "--out-dim", "8", "--no-baselines",
       "--device", "cpu")
    result = ok("generate-rwr", "-n", "4", "--evaluate", "2")
    judged = json.loads(result.stdout)["judge"]
    assert judged["generated"] == 2 and judged["held_out"] == 4  # the waltz's test pieces, not its validation one
    assert json.loads(result.stdout)["reference"] == {"split": "test", "pieces": 4}
    assert judged["null"]["sizes"] == [2, 2] and judged["null"]["draws"] == 100
    assert {"mean", "sd", "p95", "folds", "what"} <= set(judged["null"])
    assert 0 <= judged["percentile"] <= 1 and isinstance(judged["distinguishable"], bool)
    assert judged["enough_pieces"] is False and "fewer than 40" in judged["note"]
    stderr = " ".join(result.stderr.split())
    assert f"{judged['accuracy']:.2f}, null percentile {100 * judged['percentile']:.0f}" in stderr
    assert "warning:" in stderr and "fewer than 40 a class" in stderr
