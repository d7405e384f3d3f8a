"""What a workspace holds: every artifact with its freshness, the runs that can be resumed, and the
leftovers of killed runs.

``musictl status`` renders :func:`scan`; ``musictl status --clean`` calls :func:`clean`. Both read
the artifact-kind registry (:data:`musictl.artifacts.KINDS`), so a kind registered there appears
here by itself (``PIPELINE`` only orders the next-step hint). A resumable run is the staging
directory of a training run (:func:`musictl.artifacts.resumable`) that holds a whole checkpoint.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from musictl import artifacts
from musictl.errors import ArtifactError

# The order a workspace is built in, and so the order of the next-step hint.
PIPELINE = (artifacts.TOKENS, artifacts.BERT, artifacts.EMBEDDINGS, artifacts.GRAPH, artifacts.GCN, artifacts.FINETUNE,
            artifacts.VIOLIN_DATA, artifacts.VIOLIN_LORA, artifacts.VIOLIN_EVAL)


@dataclass
class ArtifactStatus:
    kind: str
    name: str | None
    path: str
    made_by: str
    created: str = ""
    size_bytes: int = 0
    inputs: dict[str, str] = field(default_factory=dict)  # role -> "fresh" | "stale" | "missing"
    state: str = "fresh"  # fresh | stale | incomplete | corrupt | in use
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ResumableRun:
    """An interrupted training run whose checkpoint can be continued."""

    kind: str
    name: str | None
    path: str  # its staging directory
    step: int
    command: str  # the command that resumes it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WorkspaceStatus:
    root: str
    artifacts: list[ArtifactStatus]
    leftovers: list[str]
    next_step: str
    resumable: list[ResumableRun] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "artifacts": [a.to_dict() for a in self.artifacts],
                "resumable": [r.to_dict() for r in self.resumable], "leftovers": self.leftovers, "next_step": self.next_step}


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def candidates(root: Path) -> list[tuple[str, str | None, Path]]:
    """(kind, name, directory) of every place an artifact of a registered kind may be."""
    found = []
    for kind, spec in artifacts.KINDS.items():
        if spec.named:
            parent = root / spec.directory.split("/{name}")[0]
            if parent.is_dir():
                found += [(kind, d.name, d) for d in sorted(parent.iterdir()) if d.is_dir() and not d.name.startswith(".")]
        elif (root / spec.directory).is_dir():
            found.append((kind, None, root / spec.directory))
    return found


def inspect(kind: str, name: str | None, path: Path) -> ArtifactStatus:
    """The state of one artifact directory: complete and matching its manifest, and fresh against its inputs."""
    status = ArtifactStatus(kind, name, str(path), artifacts.producer_of(kind, name), size_bytes=_size(path))
    owner = artifacts.lock_owner(path)
    if owner:
        status.state, status.detail = "in use", f"being written by pid {owner}"
        return status
    try:
        manifest = artifacts.require(path, kind, name)
    except ArtifactError as exc:
        status.state = "incomplete" if not (path / artifacts.MANIFEST).is_file() else "corrupt"
        status.detail = str(exc)
        return status
    status.created = manifest.created
    for role, ref in manifest.inputs.items():
        if not ref.get("kind") or ref.get("kind") not in artifacts.KINDS:
            continue
        source = artifacts.input_path(path, manifest, role)
        if source is None or not (source / artifacts.MANIFEST).is_file():
            status.inputs[role] = "missing"
            continue
        try:
            current = artifacts.read_manifest(source)
        except ArtifactError:
            status.inputs[role] = "missing"
            continue
        status.inputs[role] = "fresh" if current.fingerprint == ref.get("fingerprint") else "stale"
    if kind == "tokens":
        from musictl.midi.corpus import midi_inputs_changed

        changed = midi_inputs_changed(path)
        status.inputs["midi"] = "stale" if changed else "fresh"
        if changed:
            status.state, status.detail = "stale", f"{changed}; refresh: musictl tokenize --overwrite"
            return status
    stale = [r for r, s in status.inputs.items() if s == "stale"]
    if stale:
        status.state = "stale"
        status.detail = f"made from an older {', '.join(stale)}; remake it: {status.made_by} --overwrite"
    return status


def resumable_runs(root: Path) -> list[ResumableRun]:
    """Every staging directory of a registered kind that holds a whole checkpoint (``.NAME.staging/``)."""
    found = []
    for kind, spec in artifacts.KINDS.items():
        parent = root / (spec.directory.split("/{name}")[0] if spec.named else str(Path(spec.directory).parent))
        if not parent.is_dir():
            continue
        pattern = f".*{artifacts.STAGING_SUFFIX}" if spec.named else f".{Path(spec.directory).name}{artifacts.STAGING_SUFFIX}"
        for staging in sorted(parent.glob(pattern)):
            name = staging.name[1 : -len(artifacts.STAGING_SUFFIX)] if spec.named else None
            run = artifacts.resumable(staging.with_name(name or Path(spec.directory).name), kind, name)
            step = run.step()
            if step is not None:
                found.append(ResumableRun(kind, name, str(staging), step, run.resume_command()))
    return found


def next_step(found: list[ArtifactStatus], resumable: list[ResumableRun] = ()) -> str:
    """The command to run next: resume an interrupted run, remake the first stale or broken artifact, else
    make the first missing one."""
    if resumable:
        return resumable[0].command
    for item in found:
        if item.state in ("stale", "incomplete", "corrupt"):
            return f"{item.made_by} --overwrite" if item.kind != "tokens" or item.state != "stale" else \
                "musictl tokenize INPUT... --overwrite"
    have = {a.kind for a in found}
    for kind in PIPELINE[:5]:
        if kind not in have:
            return artifacts.producer_of(kind, "STYLE")
    return "musictl generate-rwr -n 16 > out.mid"


def scan(workdir: str | Path | None = None) -> WorkspaceStatus:
    root = artifacts.workspace_root(workdir)
    found = [inspect(kind, name, path) for kind, name, path in candidates(root)] if root.is_dir() else []
    runs = resumable_runs(root) if root.is_dir() else []
    return WorkspaceStatus(str(root), found, [str(p) for p in leftovers(root)], next_step(found, runs), runs)


def leftovers(root: Path) -> list[Path]:
    """Hidden temporary items of killed runs anywhere in the workspace whose writer is gone."""
    if not root.is_dir():
        return []
    out = []
    for pattern in (".*.tmp", ".*.old-*"):
        for path in root.rglob(pattern):
            target = _target_of(path)
            if target is not None and not _in_use(target, root):
                out.append(path)
    return sorted(set(out))


def _in_use(target: Path, root: Path) -> bool:
    """Whether a live process holds the lock of ``target`` or of an artifact that contains it."""
    for path in (target, *target.parents):
        if artifacts.lock_owner(path):
            return True
        if path == root:
            break
    return False


def _target_of(leftover: Path) -> Path | None:
    """The artifact or file a hidden temporary item belongs to: ``.NAME.xxxx.tmp`` -> ``NAME``."""
    stem = leftover.name[1:]
    if ".old-" in stem:
        return leftover.with_name(stem.split(".old-")[0])
    parts = stem.rsplit(".", 2)
    return leftover.with_name(parts[0]) if len(parts) == 3 else None


def clean(workdir: str | Path | None = None) -> list[Path]:
    """Remove the leftovers of killed runs (never an artifact, never an item a live run is writing)."""
    removed = []
    for path in leftovers(artifacts.workspace_root(workdir)):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def age(created: str) -> str:
    """``3 min ago`` for an ISO time stamp (rendering helper)."""
    if not created:
        return ""
    try:
        then = _dt.datetime.fromisoformat(created)
    except ValueError:
        return created
    seconds = (_dt.datetime.now(_dt.timezone.utc) - then).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "just now"
