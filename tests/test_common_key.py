"""Counting in a common key: the key finder's shifts, graphs that count a melody alike in any key, walks that keep
one key (key consistency as high as the style's real pieces', higher than counted as-is), placed in a key of the
style's."""

from __future__ import annotations

import numpy as np
import pytest

from musictl import constants as C
from musictl.midi.corpus import assign_splits, find_midi_files
from musictl.midi.pipeline import tokenize_corpus
from musictl.midi.tokens import TokenCorpus
from musictl.midi.vocab import TokenizerConfig
from musictl.transfer import keys
from musictl.transfer.adjacency import build_graph, load_graph, save_graph
from musictl.transfer.fidelity import key_consistency, mean_key_consistency
from musictl.transfer.generator import StyleGenerator
from musictl.transfer.settings import GraphSettings, WalkSettings
from tests.midi_factory import midi_bytes

CFG = TokenizerConfig()
MAJOR = [0, 2, 4, 5, 7, 9, 11]
MINOR = [0, 2, 3, 5, 7, 8, 10]  # natural minor: strictly diatonic
MIXOLYDIAN = [0, 2, 4, 5, 7, 9, 10]  # a major scale from its fifth degree


def tonal_piece(tonic: int, mode: str = "major", seed: int = 0, bars: int = 8, drums: bool = False) -> bytes:
    """A strictly diatonic piece: a stepwise melody in quarter notes over a bass holding the tonic each bar (so
    the key is clear), starting and ending on the tonic; ``drums`` adds a drum track."""
    scale = {"major": MAJOR, "minor": MINOR, "mixolydian": MIXOLYDIAN}[mode]
    rng = np.random.default_rng(seed)
    degree, melody = 0, []
    for beat in range(bars * 4):
        if 0 < beat < bars * 4 - 1:
            degree = int(np.clip(degree + rng.choice([-2, -1, 1, 2]), -3, 9))
        else:
            degree = 0
        octave, idx = divmod(degree, 7)
        melody.append((float(beat), 0.95, 60 + tonic + 12 * octave + scale[idx], 90))
    bass = [(4.0 * b, 3.9, 36 + tonic, 70) for b in range(bars)]
    extra = [("bass", 32, bass)]
    data = midi_bytes(melody, tempo=110, extra_tracks=extra, track_name="melody")
    if drums:
        from symusic import Note, Score, Track

        score = Score.from_midi(data)
        track = Track(name="drums", program=0, is_drum=True)
        for beat in range(bars * 4):
            track.notes.append(Note(beat * score.ticks_per_quarter, score.ticks_per_quarter // 2, 38 if beat % 2 else 36, 90))
        score.tracks.append(track)
        data = score.dumps_midi()
    return data


def _tokens(root, pieces: dict[str, dict[str, bytes]], split=(1.0, 0.0, 0.0)) -> TokenCorpus:
    for style, files in pieces.items():
        (root / "corpus" / style).mkdir(parents=True)
        for name, data in files.items():
            (root / "corpus" / style / name).write_bytes(data)
    files = find_midi_files([root / "corpus"])
    tokenize_corpus(files, assign_splits(files, split, 0), root / "tokens", CFG, workers=1)
    return TokenCorpus.open(root / "tokens")


def _encode(data: bytes, tmp_path, name="piece.mid") -> np.ndarray:
    from musictl.midi.encode import encode_file

    (tmp_path / name).write_bytes(data)
    return encode_file(tmp_path / name, CFG).tokens


def test_the_key_finder_moves_d_major_down_two_and_leaves_a_minor_and_the_drums(tmp_path):
    d_major = _encode(tonal_piece(2, "major", seed=1, drums=True), tmp_path)
    a_minor = _encode(tonal_piece(9, "minor", seed=2) , tmp_path, "a.mid")
    assert keys.piece_key(d_major, CFG) == (2, "major")
    assert keys.common_key_shift(d_major, CFG) == -2
    assert keys.piece_key(a_minor, CFG) == (9, "minor")
    assert keys.common_key_shift(a_minor, CFG) == 0  # A minor is the common key's relative minor
    moved = keys.transpose(d_major, -2)
    values, before = moved.astype(np.int64) - C.N_SPECIAL, d_major.astype(np.int64) - C.N_SPECIAL
    drums = values[:, C.INSTRUMENT] == C.DRUM_PROGRAM
    assert drums.any() and np.array_equal(values[drums, C.PITCH], before[drums, C.PITCH])  # drums never move
    assert np.array_equal(values[~drums, C.PITCH], before[~drums, C.PITCH] - 2)
    assert keys.piece_key(moved, CFG) == (0, "major")
    # the range is kept: a piece whose top note would pass 127 goes the octave the other way
    top = d_major.copy()
    top[~drums, C.PITCH] += 127 - int(before[~drums, C.PITCH].max())
    assert keys.fitting_shift(top, 5) == (-7, False)
    # a modal tune: G Mixolydian (the white keys over a G bass) reads as G major, but its scale is C major's, so the
    # shift aligns the scale (0), not the key's relative major (+5, which would put F on a black key)
    mixolydian = _encode(tonal_piece(7, "mixolydian", seed=5), tmp_path, "g.mid")
    assert keys.piece_key(mixolydian, CFG)[0] == 7
    assert keys.common_key(mixolydian, CFG).shift == 0 and keys.common_key(mixolydian, CFG).scale == "C"
    # the shifts: the smaller of up and down, a tritone down
    assert [keys.key_shift(t, m) for t, m in ((7, "major"), (4, "minor"), (5, "major"), (6, "major"))] == [5, 5, -5, -6]


def test_a_common_key_graph_counts_a_melody_alike_in_any_key(tmp_path):
    melody = tonal_piece(0, "major", seed=3)
    in_d = _encode(melody, tmp_path)
    in_d[:, C.PITCH] += np.where(in_d[:, C.INSTRUMENT] - C.N_SPECIAL != C.DRUM_PROGRAM, 2, 0)
    from musictl.midi.decode import tokens_to_midi_bytes

    corpus = _tokens(tmp_path, {"two-keys": {"c.mid": melody, "d.mid": tokens_to_midi_bytes(in_d, CFG)},
                                "twice": {"c1.mid": melody, "c2.mid": melody}})
    two_keys, twice = corpus.select(style="two-keys"), corpus.select(style="twice")
    common = build_graph(corpus, two_keys, key="common")
    same = build_graph(corpus, twice, key="common")
    assert np.array_equal(common.nodes, same.nodes)
    assert (common.adjacency != same.adjacency).nnz == 0 and np.array_equal(common.loops, same.loops)
    assert sorted(k.shift for k in common.keys.pieces.values()) == [-2, 0]
    assert common.keys.distribution() == {"C major": 1, "D major": 1}
    as_is = build_graph(corpus, two_keys, key="as-is")
    assert as_is.keys is None and len(as_is.nodes) > len(common.nodes)  # D's pitches are nodes of their own
    assert np.array_equal(build_graph(corpus, twice, key="as-is").nodes, same.nodes)  # C melody: no shift
    save_graph(common, tmp_path)
    assert load_graph(tmp_path).keys.pieces == common.keys.pieces  # key.json round-trips


def test_as_is_is_todays_graph(tokens_dir, tmp_path):
    """--key as-is writes the graph files exactly as before: build_graph without a key, byte for byte."""
    corpus = TokenCorpus.open(tokens_dir)
    pieces = corpus.select(style="waltz", split="train")
    for name, graph in (("before", build_graph(corpus, pieces)), ("as-is", build_graph(corpus, pieces, key="as-is"))):
        (tmp_path / name).mkdir()
        save_graph(graph, tmp_path / name)
    for file in sorted(p.name for p in (tmp_path / "before").iterdir()):
        assert (tmp_path / "before" / file).read_bytes() == (tmp_path / "as-is" / file).read_bytes(), file
    assert not (tmp_path / "as-is" / keys.KEY_FILE).exists()
    assert GraphSettings().key == "common"
    with pytest.raises(Exception, match="common, as-is"):
        GraphSettings(key="C")


def test_key_consistency_is_the_share_inside_the_best_diatonic_scale(tmp_path):
    assert key_consistency(_encode(tonal_piece(3, "minor", seed=4), tmp_path), CFG) == pytest.approx(1.0)
    chromatic = _encode(midi_bytes([(float(i), 1.0, 60 + i % 12, 80) for i in range(48)]), tmp_path, "c.mid")
    assert key_consistency(chromatic, CFG) == pytest.approx(7 / 12)
    assert mean_key_consistency([], CFG) is None


KEYS = [(0, "major"), (2, "major"), (5, "major"), (7, "major"), (10, "major"), (9, "minor"), (4, "minor"), (2, "minor")]


@pytest.fixture(scope="module")
def many_keys(tmp_path_factory) -> TokenCorpus:
    """One style of 16 strictly diatonic pieces in 8 keys (major and minor), half of them held out."""
    pieces = {f"p{i:02d}.mid": tonal_piece(*KEYS[i % len(KEYS)], seed=10 + i) for i in range(16)}
    return _tokens(tmp_path_factory.mktemp("keys"), {"tonal": pieces}, split=(0.5, 0.25, 0.25))


def _generator(corpus: TokenCorpus, key: str) -> StyleGenerator:
    train = corpus.select(style="tonal", split="train")
    return StyleGenerator.from_graph("tonal", corpus, build_graph(corpus, train, key=key))  # counts only


def test_walks_counted_in_a_common_key_keep_a_key(many_keys):
    corpus = many_keys
    held_out = [corpus.piece_tokens(p) for p in corpus.select(style="tonal") if p.split != "train"]
    real = mean_key_consistency(held_out, CFG)
    settings = WalkSettings(bars=8)
    common = mean_key_consistency(_generator(corpus, "common").generate_many(6, settings), CFG)
    as_is = mean_key_consistency(_generator(corpus, "as-is").generate_many(6, settings), CFG)
    assert real == pytest.approx(1.0)  # strictly diatonic pieces
    assert common >= real - 0.1
    assert common > as_is + 0.05  # counted as-is, the walk mixes the pieces' keys


def test_a_walk_is_placed_in_the_key_of_the_piece_whose_plan_it_took(many_keys):
    generator = _generator(many_keys, "common")
    recorded = {k.shift for k in generator.keys.pieces.values()}
    assert len(recorded) > 3  # the style's pieces are in several keys
    placed = set()
    for seed in range(4):
        piece = generator.generate(bars=4, seed=seed)
        assert np.array_equal(piece, generator.generate(bars=4, seed=seed))  # seeded: reproducible
        _, _, shift = generator.seed_and_key(seed)
        assert shift in recorded
        walked = generator.walker.walk(generator.seed_and_key(seed)[0], WalkSettings(bars=4, seed=seed),
                                       generator.seed(seed)[1])
        assert np.array_equal(piece, keys.place(walked, shift))  # the common-key walk, moved into that key
        values = piece.astype(np.int64) - C.N_SPECIAL
        scale = {(n - shift) % 12 for n in MAJOR}  # the plan piece's scale: C major moved back by its shift
        assert set((values[:, C.PITCH] % 12).tolist()) <= scale
        placed.add(shift)
    assert len(placed) > 1  # different seeds, different keys


def test_the_demo_table_shows_key_consistency():
    from types import SimpleNamespace

    from rich.console import Console

    from musictl.commands._tables import demo_table

    listening = {"generated": {"silence_share": 0.0, "duration_ratio": 1.0, "key_consistency": 0.93},
                 "held_out": {"silence_share": 0.0, "duration_ratio": 1.0, "key_consistency": 0.95}}
    gcn = SimpleNamespace(test_auc_same_field=None, test_auc=0.9, test_ap=0.9, best_baseline_on=lambda key: None)
    result = SimpleNamespace(seconds=1.0, bert_accuracy=0.5, steps=1, style="s", graph=SimpleNamespace(nodes=1, edges=1),
                             gcn=gcn, fidelity={"divergence_own_style": {}, "novelty": 1.0, "listening": listening},
                             midi_path="demo.mid", notes=1, bars=1, png_path="demo.png", root="ws")
    console = Console(width=200, record=True)
    console.print(demo_table(result))
    rows = [" ".join(line.replace("│", " ").split()) for line in console.export_text().splitlines()]
    assert "key consistency generated / held-out 0.93 / 0.95" in rows
