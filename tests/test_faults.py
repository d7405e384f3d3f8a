"""Data safety under faults: -o never destroys what was not named, locks, leftovers, names, errors.

Each test here failed on the code before these guarantees existed (see docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from musictl import artifacts
from musictl.errors import ArtifactError, UsageError

runner = CliRunner()


# ----- 1. -o FILE -----------------------------------------------------------------------------
def test_existing_file_is_not_replaced_without_overwrite(tmp_path):
    out = tmp_path / "song.mid"
    out.write_bytes(b"precious")
    with pytest.raises(ArtifactError, match="already exists; pass --overwrite"):
        artifacts.write_output(out, b"new")
    assert out.read_bytes() == b"precious"
    artifacts.write_output(out, b"new", overwrite=True)
    assert out.read_bytes() == b"new"


def test_symlink_is_followed_and_kept(tmp_path):
    target = tmp_path / "real.mid"
    target.write_bytes(b"old")
    link = tmp_path / "link.mid"
    link.symlink_to(target)
    with pytest.raises(ArtifactError):
        artifacts.write_output(link, b"new")
    artifacts.write_output(link, b"new", overwrite=True)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"new"


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_device_is_written_in_place():
    before = os.stat("/dev/null")
    artifacts.write_output(artifacts.Path("/dev/null"), b"x" * 100)
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen([sys.executable, "-c", f"import sys; sys.stdout.write(str(len(open({str(fifo)!r}, 'rb').read())))"],
                              stdout=subprocess.PIPE, text=True)
    artifacts.write_output(fifo, b"y" * 1234)
    assert reader.communicate(timeout=30)[0] == "1234"
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_an_input_is_never_an_output(tmp_path):
    source = tmp_path / "in.mid"
    source.write_bytes(b"input")
    with pytest.raises(UsageError, match="one of this command's inputs"):
        artifacts.write_output(source, b"out", overwrite=True, inputs=[source])
    link = tmp_path / "alias.mid"
    link.symlink_to(source)
    with pytest.raises(UsageError, match="one of this command's inputs"):
        artifacts.write_output(link, b"out", overwrite=True, inputs=[source])
    assert source.read_bytes() == b"input"


def test_output_keeps_file_mode(tmp_path):
    out = tmp_path / "a.bin"
    out.write_bytes(b"1")
    os.chmod(out, 0o640)
    artifacts.write_output(out, b"2", overwrite=True)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


# ----- 2. atomic artifacts, leftovers, locks ----------------------------------------------------
def test_staging_checks_before_work_and_removes_leftovers(tmp_path):
    target = tmp_path / "graph"
    leftover = tmp_path / ".graph.abc123.tmp"
    leftover.mkdir()
    (leftover / "big.bin").write_bytes(b"0" * 1000)
    with artifacts.staging(target) as tmp:
        (tmp / "x").write_text("1")
        assert not leftover.exists()  # cleaned when the next writer of the artifact starts
    assert (target / "x").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph"]


def test_staging_dirs_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with artifacts.staging(tmp_path / "art") as tmp:
            (tmp / "f").write_text("1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "art").stat().st_mode) == 0o755


_HOLD = textwrap.dedent("""
    import sys, time
    sys.argv = ["musictl", "pretrain-bert"]
    from musictl import artifacts
    with artifacts.locked(artifacts.Path({target!r})):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_second_writer_is_refused_with_the_owner(tmp_path):
    target = tmp_path / "bert"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD.format(target=str(target))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ArtifactError, match=rf"in use by pid {holder.pid} \(musictl pretrain-bert\).*wait"), \
                artifacts.staging(target):
            pass
        assert artifacts.lock_owner(target).startswith(str(holder.pid))
    finally:
        holder.kill()
        holder.wait()
    # the holder died without cleaning up: its lock is free and taken over
    assert artifacts.lock_owner(target) is None
    with artifacts.staging(target) as tmp:
        (tmp / "ok").write_text("1")
    assert not (tmp_path / ".bert.lock").exists()


# ----- 3. names and paths ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../victim", "a/b", "..", ".hidden", "", "bad\x00name", "tab\tname", "back\\slash"])
def test_unsafe_names_are_refused(tmp_path, name):
    with pytest.raises(UsageError, match="cannot name a folder"):
        artifacts.artifact_dir(tmp_path, "graph", name)


def test_safe_names_stay_inside_the_workspace(tmp_path):
    path = artifacts.artifact_dir(tmp_path, "graph", "fiddle-tunes é")
    assert path.resolve().is_relative_to(tmp_path.resolve())


def test_inputs_are_recorded_relative_to_the_artifact(tmp_path):
    with artifacts.staging(tmp_path / "w" / "tokens") as tmp:
        (tmp / "tokens.npy").write_bytes(b"1")
        tokens = artifacts.write_manifest(tmp, artifacts.Manifest(kind="notes"))
    with artifacts.staging(tmp_path / "w" / "graph" / "folk") as tmp:
        made = artifacts.write_manifest(tmp, artifacts.Manifest(
            kind="graph", inputs={"tokens": artifacts.input_ref(tmp_path / "w" / "tokens", tokens)}))
    assert made.inputs["tokens"]["path"] == "../../tokens"
    moved = tmp_path / "elsewhere"
    (tmp_path / "w").rename(moved)
    manifest = artifacts.read_manifest(moved / "graph" / "folk")
    assert artifacts.input_path(moved / "graph" / "folk", manifest, "tokens") == (moved / "tokens").resolve()


def test_corrupt_artifact_is_refused_in_one_line(tmp_path):
    with artifacts.staging(tmp_path / "graph" / "folk") as tmp:
        (tmp / "graph.npz").write_bytes(b"0" * 100)
        (tmp / "nodes.npy").write_bytes(b"1" * 10)
        artifacts.write_manifest(tmp, artifacts.Manifest(kind="graph"))
    (tmp_path / "graph" / "folk" / "graph.npz").write_bytes(b"0" * 50)  # truncated
    with pytest.raises(ArtifactError, match=r"do not match its manifest.*musictl adjacency --style folk --overwrite") as exc:
        artifacts.require(tmp_path / "graph" / "folk", "graph", "folk")
    assert "\n" not in str(exc.value)
    (tmp_path / "graph" / "folk" / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable manifest"):
        artifacts.require(tmp_path / "graph" / "folk", "graph", "folk")
    (tmp_path / "graph" / "folk" / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="incomplete"):
        artifacts.require(tmp_path / "graph" / "folk", "graph", "folk")


# ----- 5. one-line errors ----------------------------------------------------------------------
def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "musictl", *args], capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_unwritable_workspace_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("I am a file, not a folder")
    result = _cli("tokenize", "--workdir", str(blocker / "w"))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = _cli("--debug", "tokenize", "--workdir", str(blocker / "w"))
    assert result.returncode != 0 and "Traceback" in result.stderr


# ----- status ----------------------------------------------------------------------------------
@pytest.fixture
def workspace(tmp_path, style_corpus):
    from musictl.cli import app

    work = tmp_path / "w"
    ok = runner.invoke(app, ["tokenize", str(style_corpus), "--workdir", str(work), "--workers", "1"])
    assert ok.exit_code == 0, ok.output
    ok = runner.invoke(app, ["adjacency", "--style", "waltz", "--workdir", str(work)])
    assert ok.exit_code == 0, ok.output
    return work


def _status(work, *extra):
    from musictl.cli import app

    result = runner.invoke(app, ["status", "--json", "--workdir", str(work), *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_status_fresh_stale_missing_and_next_step(workspace, style_corpus, tmp_path):
    from musictl.cli import app

    report = _status(workspace)
    states = {(a["kind"], a["name"]): a for a in report["artifacts"]}
    assert states[("tokens", None)]["state"] == "fresh" and states[("tokens", None)]["inputs"] == {"midi": "fresh"}
    assert states[("graph", "waltz")]["state"] == "fresh" and states[("graph", "waltz")]["inputs"] == {"tokens": "fresh"}
    assert report["next_step"] == "musictl pretrain-bert"
    # remaking the tokens makes the graph stale
    result = runner.invoke(app, ["tokenize", str(style_corpus), "--workdir", str(workspace), "--workers", "1",
                                 "--split", "0.6,0.2,0.2", "--overwrite"])
    assert result.exit_code == 0, result.output
    report = _status(workspace)
    graph = next(a for a in report["artifacts"] if a["kind"] == "graph")
    assert graph["state"] == "stale" and graph["inputs"] == {"tokens": "stale"}
    assert report["next_step"] == "musictl adjacency --style waltz --overwrite"
    # an artifact directory without its manifest (a killed run) is incomplete
    (workspace / "graph" / "waltz" / "manifest.json").unlink()
    graph = next(a for a in _status(workspace)["artifacts"] if a["kind"] == "graph")
    assert graph["state"] == "incomplete"
    # the table on stderr names the same
    result = runner.invoke(app, ["status", "--workdir", str(workspace)])
    assert result.exit_code == 0 and "incomplete" in result.output and "next:" in result.output


def test_status_sees_changed_midi(tmp_path):
    from musictl.cli import app
    from tests.midi_factory import write_style_corpus

    corpus = write_style_corpus(tmp_path / "corpus")
    work = tmp_path / "w"
    assert runner.invoke(app, ["tokenize", str(corpus), "--workdir", str(work), "--workers", "1"]).exit_code == 0
    next(corpus.rglob("*.mid")).unlink()
    tokens = next(a for a in _status(work)["artifacts"] if a["kind"] == "tokens")
    assert tokens["state"] == "stale" and tokens["inputs"] == {"midi": "stale"} and "removed" in tokens["detail"]


def test_status_of_an_empty_workspace(tmp_path):
    report = _status(tmp_path / "nothing")
    assert report["artifacts"] == [] and report["next_step"] == "musictl tokenize"


def test_status_clean_removes_only_leftovers(workspace):
    leftover = workspace / ".tokens.k1ll3d.tmp"
    leftover.mkdir()
    (leftover / "tokens.raw").write_bytes(b"0" * 4096)
    inner = workspace / "graph" / "waltz" / ".graph.npz.x1y2.tmp"
    inner.write_bytes(b"partial")
    assert sorted(_status(workspace)["leftovers"]) == sorted([str(leftover), str(inner)])
    report = _status(workspace, "--clean")
    assert report["leftovers"] == [] and not leftover.exists() and not inner.exists()
    assert {a["state"] for a in report["artifacts"]} == {"fresh"}  # no artifact touched
