"""The workspace: one directory per artifact, each with a ``manifest.json``, written atomically.

Every command reads its inputs through :func:`require` (which names the command that makes a
missing input) and writes its output inside :func:`staging` (a temporary sibling directory that
replaces the target only when complete, so an interrupted run leaves nothing half-written).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from musictl import __version__
from musictl import constants as C
from musictl.errors import ArtifactError

MANIFEST = "manifest.json"
_UMASK = os.umask(0)
os.umask(_UMASK)

# Which command makes each artifact kind: the hint printed when one is missing.
PRODUCERS = {
    "tokens": "musictl tokenize",
    "bert": "musictl pretrain-bert",
    "finetune": "musictl finetune-mask --task {name}",
    "embeddings": "musictl embed",
    "graph": "musictl adjacency --style {name}",
    "gcn": "musictl train-gcn --style {name}",
    "violin-data": "musictl lora-violin prepare",
    "violin-lora": "musictl lora-violin train",
}

# Libraries whose versions are recorded in every manifest (those installed).
TRACKED_LIBRARIES = ("numpy", "symusic", "torch", "transformers", "peft", "torch-geometric", "accelerate", "scipy")


def workspace_root(workdir: str | Path | None = None) -> Path:
    """The workspace directory: ``workdir``, else ``$MUSICTL_WORKDIR``, else ``./musictl-work``."""
    return Path(workdir or os.environ.get(C.WORKDIR_ENV) or C.DEFAULT_WORKDIR)


def artifact_dir(workdir: str | Path | None, kind: str, name: str | None = None) -> Path:
    """Default location of an artifact: ``<workdir>/<kind>[/<name>]``."""
    root = workspace_root(workdir) / kind
    return root / name if name else root


@dataclass
class Manifest:
    """What an artifact is, how it was made, and from what."""

    kind: str
    parameters: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, dict[str, str]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    musictl_version: str = __version__
    created: str = ""
    libraries: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "musictl_version": self.musictl_version,
            "created": self.created,
            "fingerprint": self.fingerprint,
            "parameters": self.parameters,
            "inputs": self.inputs,
            "libraries": self.libraries,
            "metrics": self.metrics,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            kind=data["kind"],
            parameters=data.get("parameters", {}),
            inputs=data.get("inputs", {}),
            metrics=data.get("metrics", {}),
            musictl_version=data.get("musictl_version", ""),
            created=data.get("created", ""),
            libraries=data.get("libraries", {}),
            fingerprint=data.get("fingerprint", ""),
        )


def input_ref(path: Path, manifest: Manifest) -> dict[str, str]:
    """How a manifest records one of its inputs."""
    return {"path": str(path), "kind": manifest.kind, "fingerprint": manifest.fingerprint}


def fingerprint_dir(path: Path) -> str:
    """Content hash of every file in an artifact directory except its manifest."""
    digest = hashlib.blake2b(digest_size=10)
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def write_manifest(path: Path, manifest: Manifest) -> Manifest:
    """Finish an artifact: fingerprint its files and write ``manifest.json`` atomically."""
    manifest.created = manifest.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    manifest.libraries = manifest.libraries or library_versions()
    manifest.fingerprint = fingerprint_dir(path)
    atomic_write_json(path / MANIFEST, manifest.to_dict())
    return manifest


def read_manifest(path: Path) -> Manifest:
    try:
        return Manifest.from_dict(json.loads((path / MANIFEST).read_text()))
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{path / MANIFEST}: unreadable manifest ({exc}); remake the artifact") from None


def require(path: Path, kind: str, name: str | None = None) -> Manifest:
    """The manifest of an input artifact, or an error naming the command that makes it."""
    producer = PRODUCERS.get(kind, f"the command that makes '{kind}'").format(name=name or "NAME")
    if not (path / MANIFEST).is_file():
        what = f"{kind} artifact" + (f" for '{name}'" if name else "")
        raise ArtifactError(f"no {what} in {path}; run: {producer}")
    manifest = read_manifest(path)
    if manifest.kind != kind:
        raise ArtifactError(f"{path} holds a '{manifest.kind}' artifact, not '{kind}'; run: {producer}")
    return manifest


def check_input(consumer: Path, consumer_manifest: Manifest, role: str, current: Manifest) -> None:
    """Fail if ``consumer`` was made from another version of its input ``role``."""
    recorded = consumer_manifest.inputs.get(role, {}).get("fingerprint")
    if recorded and current.fingerprint and recorded != current.fingerprint:
        raise ArtifactError(
            f"{consumer} was made from a different '{role}' artifact (fingerprint {recorded}, now "
            f"{current.fingerprint}); remake it with --overwrite"
        )


@contextlib.contextmanager
def staging(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """A temporary directory that becomes ``target`` when the block ends without error.

    An existing complete ``target`` is kept unless ``overwrite``; on any error (or Ctrl-C) the
    temporary directory is removed and ``target`` is untouched.
    """
    target = Path(target)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise ArtifactError(f"{target} already exists; pass --overwrite to replace it (or choose another --out)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``, replacing it with two renames (the old copy is removed last)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(source, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old content or the new, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode())


def write_jsonl(path: Path, rows) -> None:
    """Write dict rows as JSON lines (atomically)."""
    atomic_write_bytes(path, "".join(json.dumps(row) + "\n" for row in rows).encode())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with Path(path).open() as handle:
        return [json.loads(line) for line in handle if line.strip()]
