"""Near-duplicates are one unit: a transposed, re-timed copy of a piece is found from its tokens (melody
intervals), ``tokenize --dedup group`` keeps the copies in one split, ``--dedup drop`` keeps one, and short,
drum-only or unrelated pieces are never grouped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from musictl.midi.corpus import SourceFile, assign_group_splits, assign_splits, find_midi_files
from musictl.midi.dedup import (
    MIN_SHINGLES,
    SHINGLE,
    duplicate_groups,
    melody_intervals,
    near_duplicates,
    shingles,
    similar_pairs,
)
from musictl.midi.encode import encode_score, parse_midi
from musictl.midi.vocab import TokenizerConfig
from tests.midi_factory import midi_bytes

RATIOS = (0.5, 0.25, 0.25)


def tune(seed: int, n: int = 48, step: float = 0.5) -> list[tuple[float, float, int, int]]:
    """A random melody of ``n`` notes (steps of 1-4 semitones, no repeated pitch) above MIDI pitch 48."""
    rng = np.random.default_rng(seed)
    pitch, notes = 66, []
    for i in range(n):
        pitch = int(np.clip(pitch + rng.choice([-4, -3, -2, -1, 1, 2, 3, 4]), 48, 84))
        notes.append((i * step, step * 0.9, pitch, int(rng.integers(60, 100))))
    return notes


def bass_under(notes: list[tuple[float, float, int, int]]) -> list[tuple[float, float, int, int]]:
    """A bass note (pitch 36-43) on every fourth melody onset: a second voice below the melody."""
    return [(on, 1.5, 36 + i % 8, 70) for i, (on, _, _, _) in enumerate(notes) if i % 4 == 0]


def piece(notes, *, shift: int = 0, stretch: float = 1.0, tempo: float = 120.0, metre=(4, 4), bass: bool = True) -> bytes:
    """MIDI of a melody (and its bass), transposed by ``shift`` semitones, onsets and lengths times ``stretch``."""
    moved = [(on * stretch, d * stretch, p + shift, v) for on, d, p, v in notes]
    low = [(on * stretch, d * stretch, p + shift, v) for on, d, p, v in bass_under(notes)]
    return midi_bytes(moved, tempo=tempo, time_signature=metre, track_name="melody",
                      extra_tracks=[("bass", 32, low)] if bass else [])


def copy_of(notes) -> bytes:
    """A transposed (+5 semitones), re-timed (onsets and lengths x1.5, 84 instead of 120 BPM, 3/4 instead
    of 4/4) copy of ``piece(notes)``."""
    return piece(notes, shift=5, stretch=1.5, tempo=84.0, metre=(3, 4))


def tokens(data: bytes) -> np.ndarray:
    return encode_score(parse_midi(data), TokenizerConfig()).tokens


# ----- the library: what is compared --------------------------------------------------------------
def test_a_transposed_retimed_copy_is_a_near_duplicate_of_its_original():
    notes = tune(1)
    original, copy = tokens(piece(notes)), tokens(copy_of(notes))
    assert not np.array_equal(original[:, 3], copy[:, 3]) and not np.array_equal(original[:, 1], copy[:, 1])
    np.testing.assert_array_equal(melody_intervals(original), melody_intervals(copy))
    np.testing.assert_array_equal(melody_intervals(original), np.diff([p for _, _, p, _ in notes]))  # the bass is below
    assert near_duplicates([original, copy]) == [(0, 1, 1.0)]


def test_unrelated_pieces_are_not_grouped():
    pieces = [tokens(piece(tune(seed))) for seed in range(30)]
    assert near_duplicates(pieces) == []
    assert duplicate_groups(len(pieces), []) == []


def test_groups_are_connected_components_and_cross_sets_pair_only_across():
    a, b = tune(2), tune(3)
    pieces = [tokens(piece(a)), tokens(piece(b)), tokens(copy_of(a)), tokens(piece(tune(4))), tokens(copy_of(b)),
              tokens(piece(a, shift=-7, stretch=0.5))]
    pairs = near_duplicates(pieces)
    assert [(p.a, p.b) for p in pairs] == [(0, 2), (0, 5), (1, 4), (2, 5)]
    assert duplicate_groups(len(pieces), pairs) == [[0, 2, 5], [1, 4]]
    across = near_duplicates(pieces[:2], [pieces[3], pieces[2], pieces[4]])
    assert [(p.a, p.b) for p in across] == [(0, 1), (1, 2)]


def test_the_threshold_is_the_share_of_the_shorter_piece_found_in_the_other():
    notes = tune(5, n=80)
    other = tune(6, n=80)
    half = [(on, d, p, v) for on, d, p, v in notes[:44]] + [(on, d, p, v) for on, d, p, v in other[44:]]
    whole, mixed = shingles(tokens(piece(notes))), shingles(tokens(piece(half)))
    share = len(np.intersect1d(whole, mixed)) / min(len(whole), len(mixed))
    assert 0.3 < share < 0.7
    assert similar_pairs([whole, mixed], threshold=0.8) == []
    assert [(p.a, p.b) for p in similar_pairs([whole, mixed], threshold=0.3)] == [(0, 1)]
    # a short piece wholly inside a long one is its near-copy (the share of the shorter)
    part = shingles(tokens(piece(notes[20:50])))
    assert [(p.a, p.b, p.share) for p in similar_pairs([whole, part])] == [(0, 1, 1.0)]


def with_drum_part(melody: bytes, drums: bytes) -> np.ndarray:
    """Tokens of ``melody`` with the drum track of ``drums`` added."""
    from symusic import Score

    score = Score.from_midi(melody)
    score.tracks.append(Score.from_midi(drums).tracks[0])
    return encode_score(score, TokenizerConfig()).tokens


def test_short_drum_only_and_one_figure_pieces_are_never_grouped():
    notes = tune(7)
    short = tokens(piece(notes[:SHINGLE], bass=False))  # 12 notes: 11 intervals, no shingle
    assert len(shingles(short)) == 0 and len(shingles(tokens(piece(notes[:SHINGLE + 1], bass=False)))) == 1
    kit = midi_bytes([(i * 0.5, 0.25, (36, 38, 42, 46, 49)[i * 7 % 5], 90) for i in range(64)], is_drum=True)
    drum_only = tokens(kit)
    assert len(melody_intervals(drum_only)) == 0 and len(shingles(drum_only)) == 0
    # one drum part under two unrelated melodies (drums loud and high): the drums are not the melody
    drummed = [with_drum_part(piece(tune(s), bass=False), kit) for s in (8, 9)]
    assert all((t[:, 2] == 128 + 4).sum() == 64 for t in drummed)
    np.testing.assert_array_equal(melody_intervals(drummed[0]), melody_intervals(tokens(piece(tune(8), bass=False))))
    # a melody that repeats one figure (two notes) has too few distinct shingles to be anyone's copy
    figure = [(i * 0.5, 0.4, 60 + 3 * (i % 2), 80) for i in range(40)]
    holder = tune(10, n=30) + [(15 + on, d, p, v) for on, d, p, v in figure]
    one_figure, holds_it = tokens(piece(figure, bass=False)), tokens(piece(holder, bass=False))
    assert 0 < len(shingles(one_figure)) < MIN_SHINGLES
    assert near_duplicates([short, drum_only, *drummed, one_figure, holds_it, short, drum_only]) == []
    assert near_duplicates([]) == [] and near_duplicates([short]) == []


def test_rows_with_special_ids_and_empty_arrays_do_not_break_it():
    notes = tokens(piece(tune(11)))
    masked = notes.copy()
    masked[::7, 3] = 1  # MASK in the pitch field: those rows are not notes
    assert len(shingles(masked)) > 0
    assert len(shingles(np.zeros((0, 8), np.int16))) == 0
    assert len(melody_intervals(np.zeros((3, 5), np.int16))) == 0


# ----- splits that keep groups together ------------------------------------------------------------
def test_group_splits_merge_together_sets_with_regex_groups_and_change_nothing_without_them():
    files = [SourceFile(Path(f"/d/pop/{n}.mid"), "pop", f"{n}.mid") for n in
             [f"s{s}_{c}" for s in range(10) for c in range(2)] + [f"x{i}" for i in range(10)]]
    plain = assign_splits(files, RATIOS, 0)
    assert assign_group_splits(files, RATIOS, 0, None)[0] == plain
    assert assign_group_splits(files, RATIOS, 0, None, [])[0] == plain
    together = [[Path("/d/pop/x1.mid"), Path("/d/pop/s3_0.mid")], [Path("/d/pop/x2.mid"), Path("/d/pop/x7.mid")]]
    for seed in range(5):
        splits, _ = assign_group_splits(files, RATIOS, seed, r"^(s\d+)_", together)
        assert len({splits[Path(f"/d/pop/{n}.mid")] for n in ("x1", "s3_0", "s3_1")}) == 1  # through the regex group
        assert splits[Path("/d/pop/x2.mid")] == splits[Path("/d/pop/x7.mid")]
        again, _ = assign_group_splits(list(reversed(files)), RATIOS, seed, r"^(s\d+)_", list(reversed(together)))
        assert again == splits


# ----- through the command line ------------------------------------------------------------------
@pytest.fixture
def tunes(tmp_path) -> Path:
    """``tunes/``: ``a_original.mid``, its transposed re-timed copy ``b_copy.mid``, 10 unrelated tunes, a
    drum-only file and a 5-note file."""
    folder = tmp_path / "midi" / "tunes"
    folder.mkdir(parents=True)
    notes = tune(20)
    (folder / "a_original.mid").write_bytes(piece(notes))
    (folder / "b_copy.mid").write_bytes(copy_of(notes))
    for i in range(10):
        (folder / f"c{i:02d}.mid").write_bytes(piece(tune(100 + i)))
    (folder / "drums.mid").write_bytes(midi_bytes([(i * 0.5, 0.25, 36 + i % 3, 90) for i in range(40)], is_drum=True))
    (folder / "tiny.mid").write_bytes(piece(tune(30, n=5), bass=False))
    return tmp_path / "midi"


def _splits(out: Path) -> dict[str, str]:
    return {Path(json.loads(line)["path"]).name: json.loads(line)["split"] for line in (out / "index.jsonl").read_text().splitlines()}


def _a_seed_that_splits_the_pair(corpus: Path) -> int:
    files = find_midi_files([corpus])
    by_name = {f.path.name: f.path for f in files}
    for seed in range(100):
        splits = assign_splits(files, RATIOS, seed)
        if splits[by_name["a_original.mid"]] != splits[by_name["b_copy.mid"]]:
            return seed
    raise AssertionError("no seed splits the pair")


def test_dedup_group_keeps_a_copy_in_its_originals_split(invoke, tunes, tmp_path):
    seed = _a_seed_that_splits_the_pair(tunes)
    args = ("--split", ",".join(map(str, RATIOS)), "--seed", seed, "--workers", "1")
    off = invoke("tokenize", tunes, "-o", tmp_path / "off", "--dedup", "off", *args)
    assert off.exit_code == 0, off.output
    before = _splits(tmp_path / "off")
    assert before["a_original.mid"] != before["b_copy.mid"]  # the leak --dedup exists for
    manifest = json.loads((tmp_path / "off" / "manifest.json").read_text())
    assert "dedup" not in manifest["parameters"] and "dedup" not in manifest["metrics"]
    assert not (tmp_path / "off" / "duplicates.jsonl").exists()

    out = tmp_path / "group"
    result = invoke("tokenize", tunes, "-o", out, "--dedup", "group", *args)
    assert result.exit_code == 0, result.output
    after = _splits(out)
    assert after["a_original.mid"] == after["b_copy.mid"]
    moved = sum(after[n] != before[n] for n in before)
    assert moved >= 1 and set(after) == set(before)
    assert (f"near-duplicates (--dedup group, threshold 0.8): 1 group of 2 pieces; {moved} piece{'s' * (moved != 1)} "
            "moved so that each group has one split") in result.text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["dedup"] == "group" and manifest["parameters"]["dedup_threshold"] == 0.8
    report = manifest["metrics"]["dedup"]
    assert (report["groups"], report["pieces_in_groups"], report["moved"], report["dropped"]) == (1, 2, moved, 0)
    rows = [json.loads(line) for line in (out / "duplicates.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and [Path(m["path"]).name for m in rows[0]["members"]] == ["a_original.mid", "b_copy.mid"]
    assert {m["split"] for m in rows[0]["members"]} == {after["a_original.mid"]} and rows[0]["pairs"] == [[0, 1, 1.0]]
    # seeded and deterministic: the same run again gives the same artifact; the default is group
    again = invoke("tokenize", tunes, "-o", tmp_path / "again", *args)
    assert again.exit_code == 0
    for name in ("index.jsonl", "duplicates.jsonl", "tokens.npy"):
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    # the threshold is a setting: another one is other settings
    stale = invoke("tokenize", tunes, "-o", out, "--dedup-threshold", "0.9", *args)
    assert stale.exit_code == 1 and "other settings (dedup_threshold)" in stale.text
    assert invoke("tokenize", tunes, "-o", out, "--dedup-threshold", "1.5").exit_code == 2
    assert invoke("tokenize", tunes, "-o", out, "--dedup", "maybe").exit_code == 2


def test_dedup_drop_keeps_the_first_by_path_and_lists_the_other(invoke, tunes, tmp_path):
    from musictl.midi.tokens import TokenCorpus

    out = tmp_path / "drop"
    result = invoke("tokenize", tunes, "-o", out, "--dedup", "drop", "--split", "0.5,0.25,0.25", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "dropped 1 piece (kept the first of each group by path)" in result.text
    assert "dropped " + str((tunes / "tunes" / "b_copy.mid").resolve()) in result.text.replace("\n", "")
    corpus = TokenCorpus.open(out)
    names = sorted(Path(p.path).name for p in corpus.pieces)
    assert "a_original.mid" in names and "b_copy.mid" not in names and "drums.mid" in names
    assert [p.id for p in corpus.pieces] == list(range(len(corpus)))
    assert sum(p.length for p in corpus.pieces) == len(corpus.tokens)
    metrics = corpus.manifest.metrics
    assert metrics["ok"] == len(corpus) == 13 and metrics["dedup"]["dropped"] == 1
    assert sum(metrics["pieces_by_split"].values()) == 13 and metrics["files"] == 14
    row = json.loads((out / "duplicates.jsonl").read_text())
    assert [(Path(m["path"]).name, m["dropped"], m["id"] is None, m["split"] is None) for m in row["members"]] == [
        ("a_original.mid", False, False, False), ("b_copy.mid", True, True, True)]
    # the kept pieces' tokens are the same as without --dedup
    full = tmp_path / "full"
    assert invoke("tokenize", tunes, "-o", full, "--dedup", "off", "--workers", "1").exit_code == 0
    whole = TokenCorpus.open(full)
    by_path = {p.path: p for p in whole.pieces}
    assert all(np.array_equal(corpus.piece_tokens(p), whole.piece_tokens(by_path[p.path])) for p in corpus.pieces)


def test_without_near_duplicates_the_default_changes_no_byte_of_the_artifact(invoke, tmp_path):
    folder = tmp_path / "midi" / "tunes"
    folder.mkdir(parents=True)
    for i in range(8):
        (folder / f"t{i}.mid").write_bytes(piece(tune(200 + i)))
    off, default = tmp_path / "off", tmp_path / "default"
    assert invoke("tokenize", folder.parent, "-o", off, "--dedup", "off", "--workers", "1").exit_code == 0
    result = invoke("tokenize", folder.parent, "-o", default, "--workers", "1")
    assert result.exit_code == 0 and "near-duplicates (--dedup group, threshold 0.8): none" in result.text
    assert sorted(p.name for p in default.iterdir()) == sorted(p.name for p in off.iterdir())
    for name in ("tokens.npy", "index.jsonl", "vocab.json", "errors.jsonl"):
        assert (off / name).read_bytes() == (default / name).read_bytes()
    report = json.loads((default / "manifest.json").read_text())["metrics"]["dedup"]
    assert (report["groups"], report["pieces_in_groups"], report["moved"], report["dropped"]) == (0, 0, 0, 0)


def test_dedup_with_a_split_file_reports_near_copies_and_moves_nothing(invoke, tunes, tmp_path):
    split = tmp_path / "split.json"
    names = sorted(p.name for p in (tunes / "tunes").glob("c*.mid"))
    split.write_text(json.dumps({"train": ["a_original.mid", *names[:6]], "valid": names[6:], "test": ["b_copy.mid"]}))
    out = tmp_path / "tokens"
    result = invoke("tokenize", tunes, "-o", out, "--split-file", split, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "split.json: 1 of 1 test pieces are near-copies of training pieces" in result.text
    assert _splits(out)["b_copy.mid"] == "test"
    metrics = json.loads((out / "manifest.json").read_text())["metrics"]
    assert metrics["dedup"]["near_copies"] == {"valid": {"shared": 0, "files": 4}, "test": {"shared": 1, "files": 1}}
    assert metrics["dedup"]["moved"] == 0 and any("near-copies" in w for w in metrics["warnings"])


# ----- real data -----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.shared
def test_pop909_017_and_018_are_one_group(shared_datasets, tmp_path):
    from musictl.midi.pipeline import prepare_tokenize
    from musictl.midi.settings import TokenizeSettings

    root = shared_datasets / "pop909"
    out = tmp_path / "tokens"
    result = prepare_tokenize([root / "midi"], out, TokenizeSettings(workers=2), root / "splits.json", overwrite=True).run()
    groups = [sorted(Path(m["path"]).name for m in json.loads(line)["members"])
              for line in (out / "duplicates.jsonl").read_text().splitlines()]
    assert ["017.mid", "018.mid"] in groups
    assert result.dedup["near_copies"]["test"]["shared"] >= 1  # 018 (test) is a near-copy of 017 (train)
