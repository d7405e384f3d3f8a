"""The command line: help everywhere, exit codes, stdout/stderr, tokenize and detokenize."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import typer
from symusic import Score
from typer.testing import CliRunner

from musictl import __version__
from musictl.cli import app
from musictl.midi.tokens import TokenCorpus

runner = CliRunner()


def _all_command_paths(typer_app: typer.Typer, prefix=()):
    for info in typer_app.registered_commands:
        yield (*prefix, info.name or info.callback.__name__.replace("_", "-"))
    for group in typer_app.registered_groups:
        yield from _all_command_paths(group.typer_instance, (*prefix, group.name))


COMMANDS = list(_all_command_paths(app))


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"musictl {__version__}"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


def test_help_does_not_import_heavy_libraries():
    code = "import sys, musictl.cli; print(sorted(m for m in ('torch', 'transformers', 'symusic', 'torch_geometric') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "musictl", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"musictl {__version__}"


def test_bad_arguments_exit_2(tmp_path):
    assert runner.invoke(app, ["tokenize", str(tmp_path / "missing")]).exit_code == 2
    assert runner.invoke(app, ["tokenize", "--split", "0.5,0.5"]).exit_code == 2
    assert runner.invoke(app, ["tokenize", "--velocity-bins", "0"]).exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2


def test_tokenize_styles_splits_and_index(style_corpus, tmp_path):
    out = tmp_path / "tokens"
    result = runner.invoke(app, ["tokenize", str(style_corpus), "--out", str(out), "--seed", "3", "--workers", "1"])
    assert result.exit_code == 0, result.output
    corpus = TokenCorpus.open(out)
    assert corpus.styles == ["blues", "march", "waltz"]
    assert len(corpus) == 24
    for style in corpus.styles:  # exact proportions per style: 8 files -> 6/1/1
        counts = [len(corpus.select(split=s, style=style)) for s in ("train", "valid", "test")]
        assert counts == [6, 1, 1]
    # the index describes the array exactly
    offsets = [p.offset for p in corpus.pieces]
    assert offsets == sorted(offsets) and corpus.pieces[-1].offset + corpus.pieces[-1].length == len(corpus.tokens)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "tokens" and manifest["metrics"]["notes"] == len(corpus.tokens)
    assert manifest["parameters"]["tokenizer"]["vocab_id"] == corpus.config.vocab_id
    assert "numpy" in manifest["libraries"]


def test_tokenize_is_deterministic_and_parallel_equals_serial(style_corpus, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert runner.invoke(app, ["tokenize", str(style_corpus), "-o", str(a), "--workers", "1"]).exit_code == 0
    assert runner.invoke(app, ["tokenize", str(style_corpus), "-o", str(b), "--workers", "2"]).exit_code == 0
    assert (a / "tokens.npy").read_bytes() == (b / "tokens.npy").read_bytes()
    assert (a / "index.jsonl").read_text() == (b / "index.jsonl").read_text()


def test_seed_changes_the_split(style_corpus, tmp_path):
    def splits(seed):
        out = tmp_path / f"s{seed}"
        runner.invoke(app, ["tokenize", str(style_corpus), "-o", str(out), "--seed", str(seed), "--workers", "1"])
        return [p.split for p in TokenCorpus.open(out).pieces]

    assert splits(1) != splits(2)


def test_split_file(style_corpus, tmp_path):
    split_file = tmp_path / "splits.json"
    split_file.write_text(json.dumps({"train": ["waltz/waltz_00.mid"], "valid": ["march_01.mid"], "test": ["nope.mid"]}))
    out = tmp_path / "tokens"
    result = runner.invoke(app, ["tokenize", str(style_corpus), "-o", str(out), "--split-file", str(split_file)])
    assert result.exit_code == 0, result.output
    by_name = {p.path.split("/")[-1]: p.split for p in TokenCorpus.open(out).pieces}
    assert by_name["waltz_00.mid"] == "train" and by_name["march_01.mid"] == "valid"
    assert by_name["blues_00.mid"] == "unlisted"
    assert "1 entries" in result.output


def test_existing_output_is_kept_without_overwrite(style_corpus, tmp_path):
    out = tmp_path / "tokens"
    assert runner.invoke(app, ["tokenize", str(style_corpus / "waltz"), "-o", str(out)]).exit_code == 0
    before = (out / "tokens.npy").read_bytes()
    result = runner.invoke(app, ["tokenize", str(style_corpus), "-o", str(out)])
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert (out / "tokens.npy").read_bytes() == before
    assert runner.invoke(app, ["tokenize", str(style_corpus), "-o", str(out), "--overwrite"]).exit_code == 0
    assert len(TokenCorpus.open(out)) == 24


def test_workdir_env_and_bundled_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICTL_WORKDIR", str(tmp_path / "ws"))
    result = runner.invoke(app, ["tokenize", "--workers", "2"])
    assert result.exit_code == 0, result.output
    corpus = TokenCorpus.open(tmp_path / "ws" / "tokens")
    assert len(corpus.styles) >= 4 and len(corpus) >= 100
    assert corpus.manifest.metrics["failed"] == 0


def test_detokenize_piece_and_token_file(tokens_dir, tmp_path):
    corpus = TokenCorpus.open(tokens_dir)
    out = tmp_path / "piece.mid"
    result = runner.invoke(app, ["detokenize", "waltz_03.mid", "--tokens", str(tokens_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    piece = corpus.find("waltz_03.mid")
    assert Score(str(out)).note_num() == piece.length
    npy = tmp_path / "walk.npy"
    np.save(npy, corpus.piece_tokens(piece))
    result = runner.invoke(app, ["detokenize", str(npy), "--tokens", str(tokens_dir)])  # CliRunner stdout is not a tty
    assert result.exit_code == 0
    assert result.stdout_bytes.startswith(b"MThd")
    assert Score.from_midi(result.stdout_bytes).note_num() == piece.length


def test_detokenize_errors(tokens_dir, tmp_path):
    result = runner.invoke(app, ["detokenize", "no_such_piece.mid", "--tokens", str(tokens_dir)])
    assert result.exit_code == 1 and "matches no piece" in result.output
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full((3, 8), 9999))
    result = runner.invoke(app, ["detokenize", str(bad), "--tokens", str(tokens_dir)])
    assert result.exit_code == 1 and "outside" in result.output
    result = runner.invoke(app, ["detokenize", "0", "--tokens", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "run: musictl tokenize" in result.output


def test_symlinked_folders_are_followed(style_corpus, tmp_path):
    root = tmp_path / "links"
    root.mkdir()
    (root / "three-four").symlink_to(style_corpus / "waltz", target_is_directory=True)
    out = tmp_path / "tokens"
    assert runner.invoke(app, ["tokenize", str(root), "-o", str(out)]).exit_code == 0
    corpus = TokenCorpus.open(out)
    assert corpus.styles == ["three-four"] and len(corpus) == 8
