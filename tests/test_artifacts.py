"""The workspace contract: manifests, fingerprints, atomic writes, helpful errors."""

from __future__ import annotations

import pytest

from musictl import artifacts
from musictl.errors import ArtifactError


def _make(path, kind="notes", payload=b"data", **metrics):
    with artifacts.staging(path, overwrite=True) as tmp:
        (tmp / "payload.bin").write_bytes(payload)
        return artifacts.write_manifest(tmp, artifacts.Manifest(kind=kind, metrics=metrics))


def test_manifest_round_trip_and_fingerprint(tmp_path):
    made = _make(tmp_path / "tokens", notes=3)
    read = artifacts.require(tmp_path / "tokens", "notes")
    assert read.fingerprint == made.fingerprint == artifacts.fingerprint_dir(tmp_path / "tokens")
    assert read.metrics == {"notes": 3} and read.created and read.musictl_version
    other = _make(tmp_path / "other", payload=b"different")
    assert other.fingerprint != made.fingerprint


def test_missing_artifact_names_the_command(tmp_path):
    with pytest.raises(ArtifactError, match=r"run: musictl adjacency --style folk"):
        artifacts.require(tmp_path / "graph" / "folk", "graph", name="folk")


def test_wrong_kind_is_refused(tmp_path):
    _make(tmp_path / "x", kind="bert")
    with pytest.raises(ArtifactError, match="holds a 'bert' artifact, not 'tokens'"):
        artifacts.require(tmp_path / "x", "tokens")


def test_input_fingerprint_mismatch_is_refused(tmp_path):
    tokens = _make(tmp_path / "tokens")
    consumer = artifacts.Manifest(kind="bert", inputs={"tokens": artifacts.input_ref(tmp_path / "tokens", tokens)})
    artifacts.check_input(tmp_path / "bert", consumer, "tokens", tokens)  # same: fine
    remade = _make(tmp_path / "tokens", payload=b"remade")
    with pytest.raises(ArtifactError, match="different 'tokens' artifact"):
        artifacts.check_input(tmp_path / "bert", consumer, "tokens", remade)


def test_staging_keeps_existing_output_and_cleans_up_on_error(tmp_path):
    target = tmp_path / "art"
    _make(target)
    with pytest.raises(ArtifactError, match="--overwrite"), artifacts.staging(target):
        pass
    with pytest.raises(RuntimeError), artifacts.staging(target, overwrite=True) as tmp:
        (tmp / "half.bin").write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert (target / "payload.bin").read_bytes() == b"data"  # old output intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no temporary leftovers


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "a.json"
    artifacts.atomic_write_json(path, {"a": 1})
    artifacts.atomic_write_json(path, {"a": 2})
    assert path.read_text().strip().endswith("}") and '"a": 2' in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_workdir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("MUSICTL_WORKDIR", raising=False)
    assert str(artifacts.workspace_root()) == "musictl-work"
    monkeypatch.setenv("MUSICTL_WORKDIR", str(tmp_path))
    assert artifacts.artifact_dir(None, "graph", "folk") == tmp_path / "graph" / "folk"
    assert artifacts.artifact_dir(tmp_path / "w", "tokens") == tmp_path / "w" / "tokens"
