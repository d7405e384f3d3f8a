"""Walks that are music: one tempo, one metre, one ensemble, full bars in order, repeated notes kept."""

from __future__ import annotations

import numpy as np
import pytest
from symusic import Score

from musictl import constants as C
from musictl.midi.corpus import assign_splits, find_midi_files
from musictl.midi.decode import tokens_to_midi_bytes
from musictl.midi.pipeline import tokenize_corpus
from musictl.midi.tokens import TokenCorpus
from musictl.midi.vocab import TokenizerConfig
from musictl.transfer.adjacency import build_graph
from musictl.transfer.settings import WalkSettings
from musictl.transfer.tables import StyleTables, repeated_notes
from musictl.transfer.walk import RandomWalker, settle
from tests.midi_factory import midi_bytes

CFG = TokenizerConfig()


def _walker(corpus: TokenCorpus, style: str, loops: bool = True, **graph_options) -> RandomWalker:
    pieces = corpus.select(style=style)
    graph = build_graph(corpus, pieces, **graph_options)
    tables = StyleTables.from_pieces([corpus.piece_tokens(p) for p in pieces], corpus.config)
    links = np.random.default_rng(1).random((len(graph.nodes), len(graph.nodes)))
    return RandomWalker(graph.nodes, graph.adjacency, corpus.config, tables, graph.loops if loops else None, links,
                        graph.directed)


def _seeds(walker: RandomWalker, corpus: TokenCorpus, style: str) -> np.ndarray:
    return walker.seed_nodes(corpus.piece_tokens(corpus.select(style=style)[0])[:16])


@pytest.mark.parametrize("style", ["waltz", "march", "blues"])
def test_a_16_bar_piece_has_one_tempo_one_metre_and_fills_16_bars(tokens_dir, style):
    corpus = TokenCorpus.open(tokens_dir)
    walker = _walker(corpus, style)
    notes = walker.walk(_seeds(walker, corpus, style), WalkSettings(bars=16, seed=3))
    score = Score.from_midi(tokens_to_midi_bytes(notes, corpus.config))
    assert len(score.tempos) == 1 and len(score.time_signatures) == 1
    ts = score.time_signatures[0]
    style_metre = {"waltz": (3, 4), "march": (4, 4), "blues": (6, 8)}[style]
    assert (ts.numerator, ts.denominator) == style_metre  # the metre of a piece of the style
    bar_ticks = score.ticks_per_quarter * 4 * ts.numerator // ts.denominator
    starts = np.concatenate([t.notes.numpy()["time"] for t in score.tracks])
    ends = np.concatenate([t.notes.numpy()["time"] + t.notes.numpy()["duration"] for t in score.tracks])
    assert sorted(set((starts // bar_ticks).tolist())) == list(range(16))  # every bar has notes, none after bar 16
    assert ends.max() <= 16 * bar_ticks
    # one track per instrument (no overlap tracks), and no two notes of one track on one pitch at one tick
    programs = {int(v) for v in (notes[:, C.INSTRUMENT] - C.N_SPECIAL)}
    assert len(score.tracks) == len(programs) and programs <= {0, 26, 32, 56}
    for track in score.tracks:
        arr = track.notes.numpy()
        keys = list(zip(arr["time"].tolist(), arr["pitch"].tolist()))
        assert len(keys) == len(set(keys))
        for pitch in set(arr["pitch"].tolist()):  # a note ends where the next of its pitch begins
            same = np.sort(np.flatnonzero(arr["pitch"] == pitch))
            order = same[np.argsort(arr["time"][same])]
            assert (arr["time"][order][:-1] + arr["duration"][order][:-1] <= arr["time"][order][1:]).all()


def test_onsets_move_forward_within_each_bar(tokens_dir):
    corpus = TokenCorpus.open(tokens_dir)
    walker = _walker(corpus, "march")
    values = walker.walk(_seeds(walker, corpus, "march"), WalkSettings(bars=8, seed=0)) - C.N_SPECIAL
    assert (np.diff(values[:, C.BAR]) >= 0).all()
    same_bar = np.diff(values[:, C.BAR]) == 0
    assert (np.diff(values[:, C.POSITION])[same_bar] >= 0).all()
    assert len(np.unique(values[:, C.TEMPO])) == 1 and len(np.unique(values[:, C.TIME_SIGNATURE])) == 1


@pytest.fixture(scope="module")
def repeats_corpus(tmp_path_factory):
    """A style whose melodies play most notes twice in a row (a folk-like repeated-note style)."""
    root = tmp_path_factory.mktemp("repeats")
    folder = root / "corpus" / "repeats"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        pitches = np.repeat(rng.choice([55, 57, 59, 60, 62, 64, 65, 67, 69, 71, 72, 74, 76, 77], size=24), 2)  # each pitch twice
        notes = [(0.5 * k, 0.45, int(p), 80) for k, p in enumerate(pitches)]
        (folder / f"r{i}.mid").write_bytes(midi_bytes(notes, tempo=100))
    files = find_midi_files([root / "corpus"])
    tokenize_corpus(files, assign_splits(files, (1, 0, 0), 0), root / "tokens", CFG)
    return TokenCorpus.open(root / "tokens")


@pytest.mark.parametrize("edges", ["transition", "cooccurrence"])
def test_self_loops_are_kept_beside_the_graph(repeats_corpus, edges):
    graph = build_graph(repeats_corpus, repeats_corpus.pieces, window=2, edges=edges)
    assert np.all(graph.adjacency.diagonal() == 0)  # link prediction sees no self-loops
    index = {int(t): i for i, t in enumerate(graph.nodes)}
    pitch = repeats_corpus.piece_tokens(0)[0, C.PITCH] - C.N_SPECIAL
    assert graph.loops[index[int(CFG.field_offsets[C.PITCH]) + int(pitch)]] > 0  # the repeated pitch loops


def _repeat_shares(corpus: TokenCorpus) -> tuple[float, float]:
    """The share of repeated pitches in walks with the style's self-loops (mean of 4 seeds), and without them."""
    walker = _walker(corpus, "repeats")
    seeds = walker.seed_nodes(corpus.piece_tokens(0)[:16])
    shares = []
    for seed in range(4):
        same, pairs = repeated_notes(walker.walk(seeds, WalkSettings(bars=16, seed=seed)) - C.N_SPECIAL)
        shares.append(same / pairs)
    without = _walker(corpus, "repeats", loops=False)  # self-loops dropped, as graphs used to be
    same, pairs = repeated_notes(without.walk(seeds, WalkSettings(bars=16, seed=0)) - C.N_SPECIAL)
    return float(np.mean(shares)), same / pairs


def test_repeated_pitches_appear_when_the_style_has_them(repeats_corpus):
    style_share = StyleTables.from_pieces([repeats_corpus.piece_tokens(p) for p in repeats_corpus.pieces], CFG).repeat_share
    assert style_share > 0.4
    with_loops, without_loops = _repeat_shares(repeats_corpus)
    assert with_loops > without_loops  # the self-loops are what brings the repeats


@pytest.mark.slow
def test_repeated_pitches_come_close_to_the_style_share(repeats_corpus):
    with_loops, without_loops = _repeat_shares(repeats_corpus)
    assert with_loops > 0.3  # close to the style's own share
    assert without_loops < 0.1


def test_tempo_and_program_override_the_style(tokens_dir):
    corpus = TokenCorpus.open(tokens_dir)
    walker = _walker(corpus, "waltz")
    notes = walker.walk(_seeds(walker, corpus, "waltz"), WalkSettings(bars=4, seed=1, tempo=90, program=40))
    score = Score.from_midi(tokens_to_midi_bytes(notes, corpus.config))
    assert [t.program for t in score.tracks] == [40] and len(score.tempos) == 1 and abs(score.tempos[0].qpm - 90) < 3


def test_settle_ends_each_note_before_the_next_of_its_pitch_and_at_the_piece_end():
    units = int(CFG.time_signature_units[CFG.time_signature_index[(4, 4)]])
    ts = CFG.time_signature_index[(4, 4)]
    long_code = len(CFG.duration_starts) - 1
    rows = np.array([[0, 0, 0, 60, long_code, 10, ts, 30],  # runs into the next 60
                     [0, 8, 0, 60, 3, 10, ts, 30],
                     [0, 8, 0, 64, long_code, 10, ts, 30]])  # runs past the end of the one-bar piece
    settled = settle(rows, np.zeros(3, dtype=np.int64), CFG, 1)
    length = CFG.duration_starts[settled[:, C.DURATION]]
    assert length[0] <= 8 and settled[1, C.DURATION] == 3 and 8 + length[2] <= units
    assert settled[0, C.DURATION] == np.searchsorted(CFG.duration_starts, 8, side="right") - 1


def test_bars_must_be_positive():
    from musictl.errors import UsageError

    with pytest.raises(UsageError, match="--bars"):
        WalkSettings(bars=0)


@pytest.mark.parametrize("nodes", ["pitch", "duration,velocity", "position,instrument", "all"])
@pytest.mark.parametrize("edges", ["transition", "cooccurrence"])
def test_any_node_fields_walk_to_playable_midi(tokens_dir, nodes, edges):
    """Fields that are not nodes take the style's values: every subset still decodes to full bars of notes."""
    from musictl.transfer.settings import GraphSettings

    corpus = TokenCorpus.open(tokens_dir)
    walker = _walker(corpus, "march", fields=GraphSettings(nodes=nodes).fields, edges=edges)
    notes = walker.walk(_seeds(walker, corpus, "march"), WalkSettings(bars=4, seed=2))
    values = notes - C.N_SPECIAL
    assert sorted(set(values[:, C.BAR].tolist())) == [0, 1, 2, 3]
    assert set(values[:, C.INSTRUMENT].tolist()) <= {56, 32}  # the march's instruments
    score = Score.from_midi(tokens_to_midi_bytes(notes, corpus.config))
    assert score.note_num() == len(notes) and len(score.tempos) == 1 and len(score.time_signatures) == 1


def test_the_walk_mixes_the_link_predictor_with_the_counts(tokens_dir):
    corpus = TokenCorpus.open(tokens_dir)
    walker = _walker(corpus, "waltz")
    seeds = _seeds(walker, corpus, "waltz")
    with_gcn = walker.walk(seeds, WalkSettings(bars=8, seed=0, mix=0.9))
    assert not np.array_equal(with_gcn, walker.walk(seeds, WalkSettings(bars=8, seed=0, mix=0.9, gcn=False)))
    # --no-gcn is z = 0: every pair scored alike, the same walk as uniform link probabilities
    uniform = RandomWalker(walker.nodes, walker.adjacency, walker.config, walker.tables, walker.loops,
                           np.full(walker.links.shape, 0.5), walker.directed)
    assert np.array_equal(uniform.walk(seeds, WalkSettings(bars=8, seed=0, mix=0.9)),
                          walker.walk(seeds, WalkSettings(bars=8, seed=0, mix=0.9, gcn=False)))
    # mix 0: the counts alone, whatever the predictor says
    assert np.array_equal(walker.walk(seeds, WalkSettings(bars=8, seed=0, mix=0.0)),
                          uniform.walk(seeds, WalkSettings(bars=8, seed=0, mix=0.0)))


def test_durations_fill_the_time_to_the_parts_next_onset(repeats_corpus):
    """A legato style (notes last 0.45 of 0.5 beats) gives notes that end near the next onset of their part."""
    from musictl.transfer.fidelity import listening

    walker = _walker(repeats_corpus, "repeats")
    seeds = walker.seed_nodes(repeats_corpus.piece_tokens(0)[:16])
    pieces = [walker.walk(seeds, WalkSettings(bars=8, seed=s)) for s in range(3)]
    style = listening([repeats_corpus.piece_tokens(p) for p in repeats_corpus.pieces], CFG)
    generated = listening(pieces, CFG)
    assert abs(generated["duration_ratio"] - style["duration_ratio"]) < 0.1
    assert abs(generated["silence_share"] - style["silence_share"]) < 0.1
