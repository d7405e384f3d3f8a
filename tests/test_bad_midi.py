"""Every kind of bad input either tokenizes correctly or is reported, and the batch goes on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from musictl.errors import TokenizeError
from musictl.midi.encode import encode_file
from musictl.midi.tokens import TokenCorpus
from musictl.midi.vocab import TokenizerConfig
from tests.broken_midi import CASES, write_broken_folder


@pytest.mark.parametrize("name", list(CASES))
def test_each_case_has_the_expected_outcome(tmp_path, name):
    data, expected = CASES[name]
    path = tmp_path / name
    path.write_bytes(data)
    if expected == "ok":
        piece = encode_file(path, TokenizerConfig())
        assert len(piece.tokens) > 0
        assert (piece.tokens < np.array(TokenizerConfig().vocab_sizes)).all()
    else:
        with pytest.raises(TokenizeError) as info:
            encode_file(path, TokenizerConfig())
        assert info.value.reason.startswith(expected)
        assert str(path) in str(info.value)


def test_batch_skips_bad_files_and_reports_them(tmp_path):
    from typer.testing import CliRunner

    from musictl.cli import app

    folder = write_broken_folder(tmp_path / "broken")
    out = tmp_path / "tokens"
    result = CliRunner().invoke(app, ["tokenize", str(folder), "--out", str(out), "--workers", "2"])
    assert result.exit_code == 0, result.output
    corpus = TokenCorpus.open(out)
    good = sorted(n for n, (_, e) in CASES.items() if e == "ok")
    assert sorted(p.path.split("/")[-1] for p in corpus.pieces) == good
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["path"].split("/")[-1] for e in errors) == sorted(set(CASES) - set(good))
    for e in errors:
        assert e["reason"].startswith(CASES[e["path"].split("/")[-1]][1])
        assert e["status"] == ("skipped" if e["reason"] == "no notes" else "failed")
    assert corpus.manifest.metrics["ok"] == len(good)


def test_nothing_tokenized_exits_1_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from musictl.cli import app

    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.mid").write_bytes(b"")
    (folder / "b.mid").write_bytes(b"not midi at all")
    out = tmp_path / "tokens"
    result = CliRunner().invoke(app, ["tokenize", str(folder), "--out", str(out)])
    assert result.exit_code == 1
    assert "none of the 2 files could be tokenized" in result.output
    assert not out.exists()
    assert not list(tmp_path.glob(".tokens*"))  # no staging leftovers
