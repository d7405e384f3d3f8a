"""Leak-free splits: ``tokenize --group-by REGEX`` keeps files that share group 1 (clips of one song) in one
split, close to the ratios; names it does not match are groups of their own; without it, nothing changes."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from musictl.errors import UsageError
from musictl.midi.corpus import (
    SourceFile,
    assign_group_splits,
    assign_splits,
    compile_group_by,
    group_of,
    group_overlap,
    split_entries,
)
from tests.midi_factory import style_piece

# The expression docs/tokenize.md gives for EMOPIA (and benchmarks/label_efficiency.py uses).
EMOPIA = r"^Q[1-4]_(.+)_[0-9]+\.mid$"


def _documented_regex() -> str:
    text = (Path(__file__).resolve().parents[1] / "docs" / "tokenize.md").read_text()
    found = re.search(r"--group-by '(\^[^']+)'", text)
    assert found, "docs/tokenize.md shows no --group-by example"
    return found.group(1)


def _song_id(rng: np.random.Generator) -> str:
    """A YouTube-like id: 11 characters that may hold '_' and '-' (at the start too)."""
    return "".join(rng.choice(list("abcXYZ019_-"), 11))


def emopia_like(n_songs: int = 120, seed: int = 0) -> list[SourceFile]:
    rng = np.random.default_rng(seed)
    files = []
    for _ in range(n_songs):
        song = _song_id(rng)
        for clip in range(int(rng.integers(1, 7))):
            quadrant = int(rng.integers(1, 5))  # a song's clips may carry different quadrants, as in EMOPIA
            name = f"Q{quadrant}_{song}_{clip}.mid"
            files.append(SourceFile(Path("/data/emopia") / name, "emopia", name))
    return files


def test_the_documented_emopia_regex_takes_the_id_between_first_and_last_underscore():
    assert _documented_regex() == EMOPIA
    pattern = compile_group_by(EMOPIA)
    assert group_of("Q1__8v0MFBZoco_0.mid", pattern) == "_8v0MFBZoco"
    assert group_of("Q3_3ahg_eQZhxs_12.mid", pattern) == "3ahg_eQZhxs"
    assert group_of("Q4_--2B4d4lQhs_3.mid", pattern) == "--2B4d4lQhs"
    assert group_of("sub/folder/Q2_abc_1.mid", pattern) == "abc"  # the file name, not its folders
    assert group_of("notes.txt.mid", pattern) is None


def test_every_song_stays_in_one_split_close_to_the_ratios():
    files = emopia_like()
    splits, unmatched = assign_group_splits(files, (0.8, 0.1, 0.1), 0, EMOPIA)
    assert unmatched == 0 and set(splits) == {f.path for f in files}
    pattern = compile_group_by(EMOPIA)
    by_song: dict[str, set[str]] = {}
    for f in files:
        by_song.setdefault(group_of(f.relative, pattern), set()).add(splits[f.path])
    assert all(len(s) == 1 for s in by_song.values())
    counts, n = Counter(splits.values()), len(files)
    largest = max(Counter(group_of(f.relative, pattern) for f in files).values())
    for split, share in zip(("train", "valid", "test"), (0.8, 0.1, 0.1)):
        assert abs(counts[split] - share * n) <= largest, (split, counts, n)
    # the overlap counter agrees: no valid or test clip shares a song with training clips
    overlap = group_overlap([(f.relative, splits[f.path]) for f in files], EMOPIA)
    assert overlap["test"]["shared"] == overlap["valid"]["shared"] == 0
    assert overlap["test"]["files"] == counts["test"]


def test_a_per_file_split_leaks_songs_and_the_counter_sees_it():
    files = emopia_like()
    splits = assign_splits(files, (0.8, 0.1, 0.1), 0)
    overlap = group_overlap([(f.relative, splits[f.path]) for f in files], EMOPIA)
    assert overlap["test"]["shared"] > overlap["test"]["files"] // 2


def test_grouped_split_is_seeded_and_independent_of_file_order():
    files = emopia_like()
    first, _ = assign_group_splits(files, (0.8, 0.1, 0.1), 3, EMOPIA)
    again, _ = assign_group_splits(list(reversed(files)), (0.8, 0.1, 0.1), 3, EMOPIA)
    other, _ = assign_group_splits(files, (0.8, 0.1, 0.1), 4, EMOPIA)
    assert first == again and first != other


def test_unmatched_names_are_groups_of_their_own_and_a_regex_matching_nothing_changes_nothing():
    files = emopia_like(40) + [SourceFile(Path(f"/data/emopia/take{i}.mid"), "emopia", f"take{i}.mid") for i in range(10)]
    _, unmatched = assign_group_splits(files, (0.6, 0.2, 0.2), 0, EMOPIA)
    assert unmatched == 10
    nothing, unmatched = assign_group_splits(files, (0.6, 0.2, 0.2), 0, r"^zzz(.)")
    assert unmatched == len(files) and nothing == assign_splits(files, (0.6, 0.2, 0.2), 0)


def test_a_group_across_styles_follows_most_of_its_files():
    files = [SourceFile(Path(f"/d/{style}/{song}_{i}.mid"), style, f"{song}_{i}.mid")
             for song, style, n in (("a", "pop", 3), ("a", "jazz", 1), ("b", "pop", 2), ("c", "jazz", 2)) for i in range(n)]
    splits, _ = assign_group_splits(files, (0.5, 0.25, 0.25), 0, r"^(\w)_")
    assert len({splits[f.path] for f in files if f.relative.startswith("a_")}) == 1


def test_bad_regexes_are_usage_errors():
    with pytest.raises(UsageError, match="capturing group"):
        compile_group_by(r"^Q[1-4]_")
    with pytest.raises(UsageError, match="not a regular expression"):
        compile_group_by(r"(unclosed")


def test_split_file_overlap_is_counted_by_name(tmp_path):
    split = {"train": ["Q1_song-a_0.mid", "Q1_song-a_1.mid", "Q2_b_b_0.mid"],
             "valid": ["Q1_song-a_2.mid", "Q3_c_0.mid"], "test": ["Q2_b_b_1.mid", "Q4_d_0.mid", "x.mid"]}
    path = tmp_path / "splits.json"
    path.write_text(json.dumps(split))
    assert group_overlap(split_entries(path), EMOPIA) == {"valid": {"shared": 1, "files": 2}, "test": {"shared": 1, "files": 3}}


# ----- through the command line ------------------------------------------------------------------
@pytest.fixture
def clips(tmp_path) -> Path:
    """12 songs x 1-3 clips of real MIDI, EMOPIA-named, and two files the regex does not match."""
    folder = tmp_path / "clips"
    folder.mkdir()
    for s in range(12):
        for clip in range(1 + s % 3):
            (folder / f"Q{1 + s % 4}_s{s:02d}_{clip}.mid").write_bytes(style_piece("march", seed=10 * s + clip, bars=4))
    for i in range(2):
        (folder / f"loose{i}.mid").write_bytes(style_piece("waltz", seed=500 + i, bars=4))
    return folder


def test_tokenize_group_by_keeps_songs_together_and_is_a_recorded_parameter(invoke, clips, tmp_path):
    out = tmp_path / "tokens"
    result = invoke("tokenize", clips, "-o", out, "--group-by", EMOPIA, "--split", "0.5,0.25,0.25", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "does not match 2 of 26 file names" in result.text
    rows = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    songs: dict[str, set[str]] = {}
    for row in rows:
        if (song := group_of(row["path"], compile_group_by(EMOPIA))) is not None:
            songs.setdefault(song, set()).add(row["split"])
    assert len(songs) == 12 and all(len(s) == 1 for s in songs.values())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["group_by"] == EMOPIA
    assert any("does not match 2 of 26" in w for w in manifest["metrics"]["warnings"])
    # the same settings: up to date; without --group-by (or another regex): other settings
    assert invoke("tokenize", clips, "-o", out, "--group-by", EMOPIA, "--split", "0.5,0.25,0.25").exit_code == 0
    stale = invoke("tokenize", clips, "-o", out, "--split", "0.5,0.25,0.25")
    assert stale.exit_code == 1 and "other settings (group_by)" in stale.text


def test_tokenize_without_group_by_is_unchanged(invoke, clips, tmp_path):
    """The default split and manifest parameters are exactly what they were before --group-by existed."""
    from musictl.midi.corpus import find_midi_files

    out = tmp_path / "tokens"
    assert invoke("tokenize", clips, "-o", out, "--seed", "2", "--workers", "1").exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "group_by" not in manifest["parameters"]
    files = find_midi_files([clips])
    expected = {str(f.path.resolve()): assign_splits(files, (0.8, 0.1, 0.1), 2)[f.path] for f in files}
    rows = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert {str(Path(r["path"]).resolve()): r["split"] for r in rows} == expected


def test_tokenize_group_by_with_a_split_file_reports_the_overlap(invoke, clips, tmp_path):
    names = sorted(p.name for p in clips.glob("Q*.mid"))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": names[::2], "valid": [], "test": names[1::2]}))
    result = invoke("tokenize", clips, "-o", tmp_path / "tokens", "--split-file", split, "--group-by", EMOPIA)
    assert result.exit_code == 0, result.output
    shared = group_overlap(split_entries(split), EMOPIA)["test"]["shared"]
    assert shared > 0 and f"{shared} of {len(names[1::2])} test files share a --group-by group" in result.text


def test_tokenize_rejects_a_group_by_without_a_group(invoke, clips, tmp_path):
    result = invoke("tokenize", clips, "-o", tmp_path / "tokens", "--group-by", "^Q")
    assert result.exit_code == 2 and "capturing group" in result.text
