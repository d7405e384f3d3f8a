"""tokenize / detokenize under faults: moved workspaces, unsafe style names, stale inputs, tiny
splits, corrupt artifacts, outputs that must not be replaced, out-of-range numbers."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from musictl import artifacts
from musictl.errors import ArtifactError
from musictl.midi.corpus import assign_splits, find_midi_files, midi_inputs_changed
from musictl.midi.export import piece_file_names, safe_stem
from musictl.midi.pipeline import tokenize_corpus
from musictl.midi.tokens import Piece, TokenCorpus
from musictl.midi.vocab import TokenizerConfig
from tests.midi_factory import style_piece, write_style_corpus


@pytest.fixture
def invoke():
    from typer.testing import CliRunner

    from musictl.cli import app

    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(app, [str(a) for a in args])
        result.text = " ".join(result.output.split())  # the console wraps long lines
        return result

    return run


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_style_corpus(tmp_path / "midi", pieces_per_style=4, bars=4)


def _tokenize(invoke, corpus, out, *extra):
    result = invoke("tokenize", corpus, "-o", out, "--workers", "1", "--split", "0.5,0.25,0.25", *extra)
    assert result.exit_code == 0, result.output
    return result


# ----- §3: paths that work from any cwd, style names that stay one folder -----------------------
def test_index_paths_are_absolute_and_survive_a_moved_workspace(invoke, tmp_path, monkeypatch):
    write_style_corpus(tmp_path / "data", pieces_per_style=2, bars=2)
    monkeypatch.chdir(tmp_path)
    assert invoke("tokenize", "data", "-w", "ws", "--workers", "1").exit_code == 0
    shutil.move(tmp_path / "ws", tmp_path / "moved")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    corpus = TokenCorpus.open(tmp_path / "moved" / "tokens")
    assert all(Path(p.path).is_absolute() and Path(p.path).is_file() for p in corpus.pieces)
    assert corpus.manifest.parameters["inputs"] == [str(tmp_path / "data")]
    result = invoke("detokenize", "waltz_00.mid", "--tokens", tmp_path / "moved" / "tokens", "-o", "w.mid")
    assert result.exit_code == 0, result.output
    assert (elsewhere / "w.mid").stat().st_size > 0
    assert midi_inputs_changed(tmp_path / "moved" / "tokens") is None


def test_a_folder_name_that_is_not_a_safe_style_is_reported_per_file(invoke, corpus, tmp_path):
    hidden = corpus / ".hidden"
    hidden.mkdir()
    (hidden / "x.mid").write_bytes(style_piece("waltz", seed=9, bars=2))
    out = tmp_path / "tokens"
    result = _tokenize(invoke, corpus, out)
    assert "failed" in result.text and ".hidden" in result.text
    errors = artifacts.read_jsonl(out / "errors.jsonl")
    assert [Path(e["path"]).name for e in errors] == ["x.mid"] and "cannot be a style" in errors[0]["reason"]
    assert ".hidden" not in TokenCorpus.open(out).styles


# ----- §4: stale inputs are caught, unchanged ones are up to date -------------------------------
def test_unchanged_inputs_are_up_to_date_and_nothing_is_rewritten(invoke, corpus, tmp_path):
    out = tmp_path / "tokens"
    _tokenize(invoke, corpus, out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    result = _tokenize(invoke, corpus, out)
    assert "up to date" in result.text
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


@pytest.mark.parametrize("change", ["added", "removed", "edited"])
def test_changed_inputs_are_named_with_the_way_to_refresh(invoke, corpus, tmp_path, change):
    out = tmp_path / "tokens"
    _tokenize(invoke, corpus, out)
    assert midi_inputs_changed(out) is None
    piece = corpus / "waltz" / "waltz_00.mid"
    if change == "added":
        (corpus / "waltz" / "new.mid").write_bytes(style_piece("waltz", seed=50, bars=2))
    elif change == "removed":
        piece.unlink()
    else:
        piece.write_bytes(style_piece("waltz", seed=51, bars=3))
        os.utime(piece, ns=(1, 1))
    before = (out / "tokens.npy").read_bytes()
    result = invoke("tokenize", corpus, "-o", out, "--workers", "1", "--split", "0.5,0.25,0.25")
    assert result.exit_code == 1
    assert change in result.text and "since these tokens were made; re-run with --overwrite" in result.text
    assert (out / "tokens.npy").read_bytes() == before
    assert change in midi_inputs_changed(out)
    assert _tokenize(invoke, corpus, out, "--overwrite").exit_code == 0
    assert midi_inputs_changed(out) is None


def test_other_settings_need_overwrite(invoke, corpus, tmp_path):
    out = tmp_path / "tokens"
    _tokenize(invoke, corpus, out)
    result = invoke("tokenize", corpus, "-o", out, "--split", "0.5,0.25,0.25", "--seed", "7")
    assert result.exit_code == 1 and "other settings (seed)" in result.text and "--overwrite" in result.text


# ----- §6: tiny splits are said out loud ----------------------------------------------------------
def test_a_style_too_small_for_its_splits_is_warned_about(invoke, tmp_path):
    corpus = write_style_corpus(tmp_path / "midi", pieces_per_style=3, bars=2)
    out = tmp_path / "tokens"
    result = invoke("tokenize", corpus, "-o", out, "--workers", "1")  # 0.8,0.1,0.1 of 3 pieces: nothing to test on
    assert result.exit_code == 0, result.output
    message = "style waltz has 3 pieces: no valid or test split; use --split or add pieces"
    assert f"warning: {message}" in result.text
    assert message in TokenCorpus.open(out).manifest.metrics["warnings"]
    quiet = invoke("tokenize", corpus, "-o", tmp_path / "t2", "--workers", "1", "--split", "1,0,0")
    assert "warning" not in quiet.text  # no share asked for, nothing to warn about


# ----- §1: detokenize -o never replaces what it was not asked to -----------------------------------
def test_detokenize_output_needs_overwrite_and_never_replaces_its_input(invoke, tokens_dir, tmp_path):
    out = tmp_path / "piece.mid"
    out.write_bytes(b"mine")
    result = invoke("detokenize", "0", "--tokens", tokens_dir, "-o", out)
    assert result.exit_code == 1 and "--overwrite" in result.text and out.read_bytes() == b"mine"
    assert invoke("detokenize", "0", "--tokens", tokens_dir, "-o", out, "--overwrite").exit_code == 0
    assert out.read_bytes()[:4] == b"MThd"
    npy = tmp_path / "walk.npy"
    import numpy as np

    np.save(npy, TokenCorpus.open(tokens_dir).piece_tokens(0))
    before = npy.read_bytes()
    result = invoke("detokenize", npy, "--tokens", tokens_dir, "-o", npy, "--overwrite")
    assert result.exit_code == 2 and "inputs" in result.text and npy.read_bytes() == before
    source = tmp_path / "source.mid"  # the piece's own source file
    corpus_dir = tmp_path / "midi" / "x"
    corpus_dir.mkdir(parents=True)
    shutil.copy(Path(TokenCorpus.open(tokens_dir).pieces[0].path), corpus_dir / "s.mid")
    tokens = tmp_path / "tokens"
    _tokenize(invoke, tmp_path / "midi", tokens)
    source = corpus_dir / "s.mid"
    before = source.read_bytes()
    result = invoke("detokenize", "s.mid", "--tokens", tokens, "-o", source, "--overwrite")
    assert result.exit_code == 2 and source.read_bytes() == before


def test_detokenize_all_writes_every_piece_and_keeps_existing_files(invoke, tokens_dir, tmp_path):
    out = tmp_path / "decoded"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = invoke("detokenize", "--all", "--tokens", tokens_dir, "-o", out, "--workers", "2")
    assert result.exit_code == 0, result.output
    corpus = TokenCorpus.open(tokens_dir)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.mid"))
    assert written == sorted(f"{p.style}/{Path(p.path).stem}.mid" for p in corpus.pieces)
    again = invoke("detokenize", "--all", "--tokens", tokens_dir, "-o", out)
    assert again.exit_code == 1 and "already exists" in again.text and "--overwrite" in again.text
    assert invoke("detokenize", "--all", "--tokens", tokens_dir, "-o", out, "--overwrite", "--workers", "1").exit_code == 0
    assert (out / "notes.txt").read_text() == "keep me"
    assert invoke("detokenize", "--all", "--tokens", tokens_dir).exit_code == 2  # -o DIR is required
    assert invoke("detokenize", "--all", "--tokens", tokens_dir, "-o", tokens_dir / "midi").exit_code == 2


def test_decoded_file_names_cannot_escape_the_folder():
    pieces = [Piece(i, path, "s", "train", 0, 1, "", 1, 0.0) for i, path in enumerate(
        ["/a/...mid", "/a/.hidden.mid", "/a/b\x00c.mid", "/a/x.mid", "/b/X.mid", "/a/étude.mid", "/a/" + "n" * 300 + ".mid"])]
    names = piece_file_names(pieces)
    assert names[:6] == ["s/piece.mid", "s/hidden.mid", "s/b_c.mid", "s/x-3.mid", "s/X-4.mid", "s/étude.mid"]
    assert all(len(Path(n).parts) == 2 and not Path(n).name.startswith(".") for n in names)
    assert safe_stem("../../etc/passwd") == "_.._etc_passwd" and safe_stem("..") == "piece"
    with pytest.raises(Exception, match="cannot name a folder"):
        piece_file_names([Piece(0, "/a/x.mid", "../victim", "train", 0, 1, "", 1, 0.0)])


# ----- §5: a corrupt artifact is a one-line error -------------------------------------------------
def _corrupt(path: Path, how: str) -> None:
    if how == "truncated tokens.npy":
        data = (path / "tokens.npy").read_bytes()
        (path / "tokens.npy").write_bytes(data[: len(data) // 2])
        return  # the manifest's fingerprint no longer matches
    if how == "malformed index line":
        with (path / "index.jsonl").open("a") as handle:
            handle.write("{not json\n")
    elif how == "index row without fields":
        with (path / "index.jsonl").open("a") as handle:
            handle.write('{"id": 99}\n')
    elif how == "style that escapes":
        rows = artifacts.read_jsonl(path / "index.jsonl")
        rows[0]["style"] = "../../victim"
        (path / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif how == "piece beyond the array":
        rows = artifacts.read_jsonl(path / "index.jsonl")
        rows[-1]["length"] += 1000
        (path / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif how == "malformed vocab.json":
        (path / "vocab.json").write_text('{"positions_per_beat": 3}')
    elif how == "tokens.npy of another shape":
        import numpy as np

        np.save(path / "tokens.npy", np.zeros((4, 3), dtype=np.int16))
    artifacts.write_manifest(path, artifacts.read_manifest(path))  # consistent fingerprint: the content itself is bad


@pytest.mark.parametrize("how", ["truncated tokens.npy", "malformed index line", "index row without fields", "style that escapes",
                                 "piece beyond the array", "malformed vocab.json", "tokens.npy of another shape"])
def test_a_corrupt_tokens_artifact_is_a_one_line_error(invoke, tokens_dir, tmp_path, how):
    broken = tmp_path / "tokens"
    shutil.copytree(tokens_dir, broken)
    _corrupt(broken, how)
    with pytest.raises(ArtifactError) as info:
        TokenCorpus.open(broken)
    assert "\n" not in str(info.value) and str(broken) in str(info.value) and "--overwrite" in str(info.value)
    result = invoke("detokenize", "0", "--tokens", broken, "-o", tmp_path / "x.mid")
    assert result.exit_code == 1 and result.output.startswith("error:") and "Traceback" not in result.output


# ----- numbers, words, help ------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["tokenize", "--workers", "-1"], ["detokenize", "0", "--workers", "-1"],
                                  ["detokenize", "0", "--program", "128"], ["tokenize", "--max-bars", "1"],
                                  ["tokenize", "--tempo-min", "0"]])
def test_out_of_range_numbers_exit_2(invoke, args):
    assert invoke(*args).exit_code == 2


def test_one_worker_is_singular_and_help_shows_the_glob(invoke, corpus, tmp_path):
    result = _tokenize(invoke, corpus, tmp_path / "tokens")
    assert "with 1 worker" in result.text and "1 workers" not in result.text
    assert "data/jazz/*.mid" in invoke("tokenize", "--help").output


def test_tokenize_corpus_reports_progress_and_a_typed_result(tmp_path, corpus):
    files = find_midi_files([corpus])
    calls = []
    result = tokenize_corpus(files, assign_splits(files, (0.5, 0.25, 0.25), 0), tmp_path / "tokens", TokenizerConfig(),
                             on_progress=lambda done, total, row: calls.append((done, total, row)))
    assert calls[-1] == (len(files), len(files), None) and [c[0] for c in calls] == list(range(1, len(files) + 1))
    metrics = result.to_dict()
    assert metrics["ok"] == len(files) and metrics["clipped_durations"] == 0
    assert metrics["pieces_by_style"]["waltz"] == {"train": 2, "valid": 1, "test": 1}
    assert TokenCorpus.open(tmp_path / "tokens").manifest.metrics == json.loads(json.dumps(metrics))
