"""The workspace: one directory per artifact, each with a ``manifest.json``, written atomically.

Every artifact kind is named once, in :data:`KINDS` (its directory, required files and the command
that makes it). Every command reads its inputs through :func:`require` (which names the command that
makes a missing input and refuses a directory whose files do not match its manifest) and writes its
output inside :func:`staging` (a locked, temporary sibling directory that replaces the target only
when complete, so an interrupted run leaves nothing half-written). Files given with ``-o`` are
written by :func:`write_output`, which never replaces what the user did not ask to replace.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import sys
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from musictl import __version__
from musictl import constants as C
from musictl.errors import ArtifactError, UsageError

MANIFEST = "manifest.json"
_UMASK = os.umask(0)
os.umask(_UMASK)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArtifactKind:
    """One kind of artifact: where it lives in a workspace, what it must hold, who makes it."""

    kind: str
    directory: str  # relative to the workspace root; ``{name}`` for kinds with one artifact per name
    files: tuple[str, ...]  # required files besides manifest.json
    producer: str  # the command that makes it (``{name}`` filled in)
    description: str
    placeholder: str = "NAME"  # what stands for the name in a hint when it is not known (TASK, STYLE)

    @property
    def named(self) -> bool:
        return "{name}" in self.directory

    def command(self, name: str | None = None) -> str:
        return self.producer.format(name=name or self.placeholder)

    def where(self) -> str:
        """Its default place in words: ``WORKDIR/finetune/TASK``."""
        return "WORKDIR/" + self.directory.format(name=self.placeholder)


# The artifact kinds, each name spelled once: other modules use these constants (or ``KINDS``).
TOKENS, BERT, FINETUNE, EMBEDDINGS, GRAPH, GCN = "tokens", "bert", "finetune", "embeddings", "graph", "gcn"
VIOLIN_DATA, VIOLIN_LORA, VIOLIN_EVAL = "violin-data", "violin-lora", "violin-eval"
ADAPTED = "adapted"

KINDS: dict[str, ArtifactKind] = {k.kind: k for k in (
    ArtifactKind(TOKENS, "tokens", ("tokens.npy", "index.jsonl", "vocab.json"), "musictl tokenize",
                 "Octuple tokens of a MIDI corpus, with styles and splits"),
    ArtifactKind(BERT, "bert", ("config.json", "model.safetensors"), "musictl pretrain-bert",
                 "a pre-trained MidiBert"),
    ArtifactKind(FINETUNE, "finetune/{name}", ("config.json", "model.safetensors"), "musictl finetune-mask --task {name}",
                 "a MidiBert fine-tuned on one task", "TASK"),
    ArtifactKind(EMBEDDINGS, "embeddings", ("embeddings.safetensors",), "musictl embed",
                 "token and positional embeddings of a model"),
    ArtifactKind(GRAPH, "graph/{name}", ("graph.npz", "nodes.npy"), "musictl adjacency --style {name}",
                 "the token graph of one style (transitions or co-occurrence)", "STYLE"),
    ArtifactKind(GCN, "gcn/{name}", ("model.safetensors", "config.json", "node_embeddings.safetensors"),
                 "musictl train-gcn --style {name}", "a GCN link predictor of one style", "STYLE"),
    ArtifactKind(ADAPTED, "adapted/{name}", ("config.json", "metrics.json"), "musictl adapt --style {name}",
                 "a MidiBert adapted to one style's next notes (a LoRA adapter on its base model, or full weights)", "STYLE"),
    ArtifactKind(VIOLIN_DATA, "violin/data", ("metadata.jsonl",), "musictl lora-violin prepare",
                 "captioned violin clips"),
    ArtifactKind(VIOLIN_LORA, "violin/lora", ("adapter_config.json",), "musictl lora-violin train",
                 "a MusicGen LoRA adapter"),
    ArtifactKind(VIOLIN_EVAL, "violin/eval", ("eval_results.json",), "musictl lora-violin evaluate",
                 "audio metrics of base vs adapter"),
)}

# ----- hint templates: what each kind is in words, what it is made from, and the option of its maker that reads
# each input (so a wrong or missing input names a command that works). ``tests/test_hints.py`` checks every
# option here against the command line.
NOUNS = {TOKENS: "tokens of a MIDI corpus", BERT: "a pre-trained model", FINETUNE: "a fine-tuned model",
         EMBEDDINGS: "token embeddings", GRAPH: "a style graph", GCN: "a trained GCN", VIOLIN_DATA: "violin clips",
         VIOLIN_LORA: "a violin LoRA adapter", VIOLIN_EVAL: "a violin evaluation", ADAPTED: "an adapted model"}
MADE_FROM: dict[str, dict[str, str]] = {
    BERT: {TOKENS: "--tokens"},
    FINETUNE: {TOKENS: "--tokens", BERT: "--model"},
    EMBEDDINGS: {TOKENS: "--tokens", BERT: "--model"},
    GRAPH: {TOKENS: "--tokens"},
    GCN: {TOKENS: "--tokens", GRAPH: "--graph-dir", EMBEDDINGS: "--embeddings"},
    VIOLIN_LORA: {VIOLIN_DATA: "--data"},
    VIOLIN_EVAL: {VIOLIN_LORA: "--adapter", VIOLIN_DATA: "--data"},
    ADAPTED: {TOKENS: "--tokens", BERT: "--model"},
}
NAME_PARAMETERS = {FINETUNE: "task", GRAPH: "style", GCN: "style", ADAPTED: "style"}  # the manifest parameter that names a named kind

# Libraries whose versions are recorded in every manifest (those installed).
TRACKED_LIBRARIES = ("numpy", "symusic", "torch", "transformers", "peft", "torch-geometric", "accelerate", "scipy")


def workspace_root(workdir: str | Path | None = None) -> Path:
    """The workspace directory: ``workdir``, else ``$MUSICTL_WORKDIR``, else ``./musictl-work``."""
    return Path(workdir or os.environ.get(C.WORKDIR_ENV) or C.DEFAULT_WORKDIR)


def safe_name(name: str, what: str = "name") -> str:
    """A style or artifact name that can be one path component inside a workspace, or an error.

    No path separators, no ``..``, no leading dot, no control characters, not empty.
    """
    text = str(name)
    bad = (not text or text in (".", "..") or text.startswith(".") or "/" in text or "\\" in text or os.sep in text
           or any(unicodedata.category(ch).startswith("C") for ch in text))
    if bad:
        raise UsageError(f"{what} {text!r} cannot name a folder in the workspace (no path separators, '..', leading "
                         "dot or control characters); rename it")
    return text


def artifact_dir(workdir: str | Path | None, kind: str, name: str | None = None) -> Path:
    """Default location of an artifact: ``<workdir>/<kind>[/<name>]`` (``name`` validated)."""
    root = workspace_root(workdir)
    spec = KINDS.get(kind)
    if spec is not None and spec.named and name is None:
        return root / spec.directory.split("/{name}")[0]
    if spec is not None and spec.named:
        return root / spec.directory.format(name=safe_name(name, "style" if kind in (GRAPH, GCN) else "name"))
    if name:
        return root / kind / safe_name(name)
    return root / (spec.directory if spec is not None else kind)


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
    """How a manifest records one of its inputs (made relative to the artifact by :func:`write_manifest`)."""
    return {"path": str(Path(path).resolve()), "kind": manifest.kind, "fingerprint": manifest.fingerprint}


def _relative_inputs(artifact: Path, inputs: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Input paths relative to the artifact directory (so a moved or copied workspace still works),
    with the absolute path beside it for inputs that live outside the workspace."""
    out = {}
    base = Path(artifact).resolve().parent  # the staging directory is a sibling of the final one
    for role, ref in inputs.items():
        ref = dict(ref)
        path = ref.get("path")
        if path and Path(path).is_absolute():
            ref["absolute"] = path
            ref["path"] = os.path.join("..", os.path.relpath(path, base))
        out[role] = ref
    return out


def input_path(artifact: Path, manifest: Manifest, role: str) -> Path | None:
    """Where the input ``role`` of an artifact is now: relative to the artifact, else as recorded."""
    ref = manifest.inputs.get(role)
    if not ref or not ref.get("path"):
        return None
    recorded = Path(ref["path"])
    if recorded.is_absolute():
        return recorded
    near = (Path(artifact) / recorded).resolve()
    if near.exists() or not ref.get("absolute"):
        return near
    return Path(ref["absolute"])


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
    manifest.inputs = _relative_inputs(path, manifest.inputs)
    manifest.fingerprint = fingerprint_dir(path)
    atomic_write_json(path / MANIFEST, manifest.to_dict())
    return manifest


def read_manifest(path: Path) -> Manifest:
    try:
        data = json.loads((Path(path) / MANIFEST).read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return Manifest.from_dict(data)
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{Path(path) / MANIFEST}: unreadable manifest ({exc}); remake the artifact with --overwrite") from None


def producer_of(kind: str, name: str | None = None) -> str:
    spec = KINDS.get(kind)
    return spec.command(name) if spec else f"the command that makes '{kind}'"


def _noun(kind: str) -> str:
    return NOUNS.get(kind, f"a '{kind}' artifact")


def _in_its_place(path: Path, kind: str, name: str | None) -> bool:
    """Whether ``path`` is where the workspace keeps ``kind`` (``.../gcn/folk``, ``.../bert``)."""
    spec = KINDS.get(kind)
    if spec is None:
        return False
    parts = spec.directory.format(name=name or Path(path).name).split("/")
    return list(Path(path).parts[-len(parts):]) == parts


def wrong_kind(path: Path, found: Manifest, wanted: str, name: str | None = None) -> str:
    """The message for an artifact of another kind than the one a command reads, with a next step that works:
    the command that makes ``wanted`` from what was found, else where ``wanted`` lives and what makes it."""
    key = NAME_PARAMETERS.get(found.kind)
    label = found.parameters.get(key) if key else None
    article = "an" if found.kind[:1] in "aeiou" else "a"
    what = (f"{path} holds {article} '{found.kind}' artifact, not '{wanted}' ({_noun(found.kind)}"
            f"{f' of {key} {label!r}' if label else ''}, not {_noun(wanted)})")
    if _in_its_place(path, wanted, name):  # e.g. gcn/folk holds embeddings: what belongs there is remade
        return f"{what}; remake it: {producer_of(wanted, name)} --overwrite"
    flag = MADE_FROM.get(wanted, {}).get(found.kind)
    if flag:  # what was found is an input of what is wanted: the command that makes one from the other
        return f"{what}; run: {producer_of(wanted, name)} {flag} {path}"
    spec = KINDS.get(wanted)
    place = f" ({spec.where()})" if spec else ""
    return f"{what}; give {_noun(wanted)}{place} instead, or make one: {producer_of(wanted, name)}"


def _holds_artifacts(path: Path, kind: str, name: str | None) -> str | None:
    """The message for a folder of artifacts given where one artifact is read (``--model musictl-work/finetune``)."""
    inside = sorted(d for d in path.iterdir() if d.is_dir() and (d / MANIFEST).is_file())
    if not inside:
        return None
    kinds = {}
    for d in inside:
        with contextlib.suppress(ArtifactError):
            kinds[d] = read_manifest(d).kind
    fitting = [str(d) for d, k in kinds.items() if k == kind]
    if fitting:
        return f"{path} is a folder of {kind} artifacts, not one; give one of them: {', '.join(fitting)}"
    spec = KINDS.get(kind)
    place = f" ({spec.where()})" if spec else ""
    return (f"{path} is a folder of artifacts ({', '.join(sorted(set(kinds.values())))}), not '{kind}' ({_noun(kind)}); "
            f"give {_noun(kind)}{place} instead, or make one: {producer_of(kind, name)}")


def require(path: Path, kind: str, name: str | None = None, verify: bool = True) -> Manifest:
    """The manifest of an input artifact, or an error naming the command that makes it.

    With ``verify`` (the default) the artifact's required files must exist and its content must match
    the fingerprint in its manifest: a truncated, edited or half-replaced artifact is refused.
    """
    path = Path(path)
    producer = producer_of(kind, name)
    if not (path / MANIFEST).is_file():
        what = f"{kind} artifact" + (f" for '{name}'" if name else "")
        folder = _holds_artifacts(path, kind, name) if path.is_dir() else None
        if folder:
            raise ArtifactError(folder)
        if path.is_dir() and any(path.iterdir()):
            raise ArtifactError(f"{path} has no {MANIFEST}: it is incomplete (an interrupted run?); remake it: "
                                f"{producer} --overwrite")
        raise ArtifactError(f"no {what} in {path}; run: {producer}")
    manifest = read_manifest(path)
    if manifest.kind != kind:
        raise ArtifactError(wrong_kind(path, manifest, kind, name))
    if verify:
        spec = KINDS.get(kind)
        missing = [f for f in (spec.files if spec else ()) if not (path / f).exists()]
        if missing:
            raise ArtifactError(f"{path} lacks {', '.join(missing)}; remake it: {producer} --overwrite")
        if manifest.fingerprint and fingerprint_dir(path) != manifest.fingerprint:
            raise ArtifactError(f"{path}: its files do not match its manifest (changed, truncated or partly written "
                                f"since it was made); remake it: {producer} --overwrite")
    return manifest


def check_input(consumer: Path, consumer_manifest: Manifest, role: str, current: Manifest, command: str | None = None) -> None:
    """Fail if ``consumer`` was made from another version of its input ``role`` (it is stale)."""
    recorded = consumer_manifest.inputs.get(role, {}).get("fingerprint")
    if recorded and current.fingerprint and recorded != current.fingerprint:
        remake = command or producer_of(consumer_manifest.kind, Path(consumer).name)
        raise ArtifactError(
            f"{consumer} is stale: it was made from a different '{role}' artifact (fingerprint {recorded}, now "
            f"{current.fingerprint}); remake it: {remake} --overwrite"
        )


# ----- locks ---------------------------------------------------------------------------------
_HELD: dict[str, int] = {}  # artifact path -> lock file descriptor held by this process


def _lock_file(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


def command_line() -> str:
    """``musictl <command>`` of this process, for lock owners and messages."""
    argv = [a for a in sys.argv[1:] if not a.startswith("-")][:2]
    return " ".join(["musictl", *argv]) if argv else "musictl"


@contextlib.contextmanager
def locked(target: Path) -> Iterator[None]:
    """Hold the write lock of one artifact: a second writer exits at once, naming this process.

    The lock is an ``flock`` on a hidden file beside the artifact, so it is released when the process
    dies however it dies; the file records the owner (pid and command) for the message. Re-entrant
    within one process. Readers take no lock.
    """
    target = Path(target)
    key = str(target.resolve())
    if key in _HELD:
        yield
        return
    make_parents(target.parent)
    path = _lock_file(target)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            owner = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            pid, _, command = owner.partition(" ")
            raise ArtifactError(f"workspace {target.parent} is in use by pid {pid or '?'} ({command or 'musictl'}) writing "
                                f"{target.name}; wait for it to finish or use another --workdir") from None
        try:  # the holder before us may have removed the file after we opened it: lock the current one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    previous = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    if previous:  # only a process that died without releasing leaves its line behind
        log.info("took over the stale lock of %s (%s has ended)", target, f"pid {previous.partition(' ')[0]}")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {command_line()}\n".encode(), 0)
    _HELD[key] = fd
    try:
        yield
    finally:
        _HELD.pop(key, None)
        with contextlib.suppress(OSError):
            os.unlink(path)  # still locked: a process that opened it meanwhile retries on a new file
        os.close(fd)


def lock_owner(target: Path) -> str | None:
    """``"pid command"`` of the live process writing ``target``, or None."""
    path = _lock_file(Path(target))
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return os.pread(fd, 4096, 0).decode(errors="replace").strip() or "?"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# ----- staging ---------------------------------------------------------------------------------
def leftovers(target: Path) -> list[Path]:
    """Hidden temporary files and folders that killed runs writing ``target`` left beside it."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    patterns = (f".{target.name}.*.tmp", f".{target.name}.old-*")
    return sorted({p for pattern in patterns for p in target.parent.glob(pattern)})


def remove_leftovers(target: Path) -> list[Path]:
    """Remove :func:`leftovers` of ``target`` (the caller holds its lock, so none is in use)."""
    removed = []
    for path in leftovers(target):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        removed.append(path)
    if removed:
        log.info("removed %d leftover temporary item(s) of an interrupted run beside %s", len(removed), target)
    return removed


# Folders this process created to write an output into (the workspace itself, graph/, gcn/, an -o DIR): a
# failure removes those it left empty (:func:`remove_empty_created`), so a failed first command leaves no empty
# ``musictl-work/`` behind.
_CREATED: list[Path] = []


def make_parents(folder: Path) -> None:
    """``mkdir -p folder``, remembering each folder it created (outermost first)."""
    folder = Path(folder)
    missing, here = [], folder
    while not os.path.lexists(here) and here != here.parent:
        missing.append(here)
        here = here.parent
    folder.mkdir(parents=True, exist_ok=True)
    _CREATED.extend(reversed(missing))


def created_mark() -> int:
    """Where the list of created folders stands now (pass it to :func:`remove_empty_created` or :func:`forget_created`)."""
    return len(_CREATED)


def remove_empty_created(mark: int = 0) -> list[Path]:
    """Remove the folders created since ``mark`` that are still empty (innermost first): what a failure left behind.
    A folder that holds anything (an artifact, a kept checkpoint, another process's output) stays."""
    removed = []
    for folder in reversed(_CREATED[mark:]):
        try:
            folder.rmdir()
        except OSError:
            continue
        removed.append(folder)
    del _CREATED[mark:]
    return removed


def forget_created(mark: int = 0) -> None:
    """The folders created since ``mark`` now hold what was written: they are the user's, never removed."""
    del _CREATED[mark:]


def check_writable(target: Path) -> None:
    """Fail now, before any work, when ``target``'s folder cannot be created or written."""
    target = Path(target)
    parent = target.parent
    try:
        make_parents(parent)
    except OSError as exc:
        raise ArtifactError(f"cannot create {parent} ({exc.strerror}); choose another --workdir or --out") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ArtifactError(f"{parent} is not writable; fix its permissions or choose another --workdir or --out")


def check_target(target: Path, overwrite: bool, hint: str = "") -> None:
    """Refuse an existing, non-empty ``target`` unless ``overwrite``; check it can be written."""
    target = Path(target)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ArtifactError(f"{target} exists and is not an artifact directory; choose another --out")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise ArtifactError(f"{target} already exists; pass --overwrite to replace it{hint} (or choose another --out)")
    check_writable(target)


def make_dir(path: Path) -> Path:
    """``mkdir`` with the permissions the umask gives (not ``mkdtemp``'s 0700)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o777 & ~_UMASK)
    return path


@contextlib.contextmanager
def staging(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """A locked temporary directory that becomes ``target`` when the block ends without error.

    An existing complete ``target`` is kept unless ``overwrite``; on any error (or Ctrl-C, SIGTERM)
    the temporary directory is removed, ``target`` is untouched and the folders created for it that are left
    empty (a fresh workspace) are removed again. Enter it before the work starts,
    so a second writer and an unwritable target are refused at once. Leftovers of killed runs beside
    ``target`` are removed.
    """
    target = Path(target)
    mark = created_mark()
    try:
        check_target(target, overwrite)
        with locked(target):
            remove_leftovers(target)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
            os.chmod(tmp, 0o777 & ~_UMASK)
            try:
                yield tmp
                replace_dir(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except BaseException:
        remove_empty_created(mark)  # after the lock file is gone: a failed first write leaves no empty workspace
        raise
    forget_created(mark)


def replace_dir(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``, replacing it with two renames (the old copy is removed last)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(source, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----- resumable runs --------------------------------------------------------------------------
STATE_FILE = "trainer_state.json"  # written last into a checkpoint: its presence says the checkpoint is whole
STAGING_SUFFIX = ".staging"


@dataclass(frozen=True)
class Resumable:
    """Where a training run writes: the finished artifact, and the staging directory of the run in progress.

    ::

        TARGET/                     the finished artifact (never touched while a run is in progress)
            checkpoints/last/       where --resume continues a finished run (with more steps or epochs)
        .TARGET.staging/            the run in progress: checkpoints/last/ (accelerate state, best/,
                                    trainer_state.json written last), metrics.jsonl, logs/; swapped in
                                    for TARGET only when complete, kept on Ctrl-C / SIGTERM / a kill
        .TARGET.lock                held by the main process for the whole run

    ``what`` names the run in messages ("pre-training run"); ``command`` is the command that makes
    TARGET (``--resume`` is added to it in messages).
    """

    target: Path
    what: str = "training run"
    command: str = ""

    @property
    def staging(self) -> Path:
        return self.target.parent / f".{self.target.name}{STAGING_SUFFIX}"

    @property
    def checkpoint(self) -> Path:
        return self.staging / "checkpoints" / "last"

    def step(self) -> int | None:
        """The step of the interrupted run's checkpoint, or None when there is no whole one."""
        return checkpoint_step(self.checkpoint)

    def damage(self) -> str | None:
        """What is wrong with the interrupted run's checkpoint (None: whole, or none was written)."""
        return checkpoint_damage(self.checkpoint) if self.checkpoint.is_dir() else None

    def resume_command(self) -> str:
        return f"{self.command or 'the same command'} --resume"

    def resume_from(self, resume: bool) -> Path | None:
        """The checkpoint ``--resume`` continues: the interrupted run's, else the finished artifact's."""
        if not resume:
            return None
        for checkpoint in (self.checkpoint, self.target / "checkpoints" / "last"):
            if checkpoint.is_dir():
                problem = checkpoint_damage(checkpoint)
                if problem:
                    raise damaged_checkpoint(checkpoint, problem)
                return checkpoint
        raise ArtifactError(f"--resume: nothing to resume in {self.target} (no checkpoints/last); start without --resume")

    def check(self, resume: bool, overwrite: bool) -> None:
        """The checks made before any work: a file in the way, an existing artifact, an unwritable folder."""
        if self.target.is_symlink() or (self.target.exists() and not self.target.is_dir()):
            raise ArtifactError(f"{self.target} exists and is not an artifact directory; choose another --out")
        if not resume and not overwrite and self.target.is_dir() and any(self.target.iterdir()):
            raise ArtifactError(f"{self.target} already holds a {self.what}; pass --overwrite to replace it (kept until the "
                                "new one is complete), or --resume to continue it")
        check_writable(self.target)

    def open(self, resume: bool, overwrite: bool) -> Path | None:
        """Set up the staging directory (the caller holds the lock); the checkpoint to resume, or None."""
        remove_leftovers(self.target)
        shutil.rmtree(self.checkpoint.with_name(".last.tmp"), ignore_errors=True)
        source = self.resume_from(resume)
        if source is not None:
            if source != self.checkpoint:  # continue a finished run: a copy of it, the original stays whole
                shutil.rmtree(self.staging, ignore_errors=True)
                shutil.copytree(self.target, self.staging, ignore=shutil.ignore_patterns(MANIFEST))
            return self.checkpoint
        step, problem = self.step(), self.damage()
        if problem and not overwrite:  # what is left of it may still be restored: never discarded unasked
            raise damaged_checkpoint(self.checkpoint, problem)
        if step is not None and not overwrite:  # it may hold hours of training: never discarded unasked
            raise ArtifactError(f"{self.staging} holds an interrupted {self.what} at step {step}; continue it with "
                                f"{self.resume_command()}, or pass --overwrite to start again")
        if step is not None:
            log.info("removed the checkpoint of an interrupted run at step %d in %s (--overwrite)", step, self.staging)
        shutil.rmtree(self.staging, ignore_errors=True)  # without a whole checkpoint it holds nothing to resume
        make_dir(self.staging)
        return None

    def kept(self) -> str:
        """What an interrupted run leaves, in words (read from disk, so it is true)."""
        shutil.rmtree(self.checkpoint.with_name(".last.tmp"), ignore_errors=True)
        previous = f"; {self.target} is unchanged" if self.target.exists() else ""
        step = self.step()
        if step is not None:
            return f"checkpoint at step {step} kept in {self.staging}; resume with {self.resume_command()}{previous}"
        if self.damage():  # a damaged checkpoint is the user's to restore or discard (--overwrite), not ours
            return f"the damaged checkpoint in {self.checkpoint} was left as it was{previous}"
        shutil.rmtree(self.staging, ignore_errors=True)
        return f"no checkpoint had been written yet, so nothing was kept{previous}"

    def swap_in(self) -> None:
        """The complete staging directory becomes the artifact."""
        replace_dir(self.staging, self.target)


def resumable(target: Path, kind: str | None = None, name: str | None = None, what: str = "training run") -> Resumable:
    """The :class:`Resumable` layout of ``target`` (an artifact of ``kind`` made by its registered command)."""
    command = KINDS[kind].command(name) if kind in KINDS else ""
    return Resumable(Path(target), what, command)


def checkpoint_damage(checkpoint: Path) -> str | None:
    """What is wrong with a checkpoint folder, in words (None: it is whole).

    A checkpoint is written aside and swapped in whole (:meth:`musictl.training.Run.save_checkpoint`), so a
    ``checkpoints/last`` whose state file is missing, empty or unreadable, whose weights are missing or whose
    safetensors or torch files are truncated was damaged afterwards (a disk fault, a copy cut short, an edit).
    Only headers and zip directories are read: cheap even for large models.
    """
    import zipfile

    checkpoint = Path(checkpoint)
    state = checkpoint / STATE_FILE
    if not state.is_file():
        return f"{STATE_FILE} is missing"
    try:
        int(json.loads(state.read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"{STATE_FILE} is {'empty' if state.stat().st_size == 0 else 'unreadable'}"
    if not (checkpoint / "model.safetensors").is_file():
        return "model.safetensors (the weights) is missing"
    for path in sorted(checkpoint.rglob("*.safetensors")):
        problem = _safetensors_problem(path)
        if problem:
            return f"{path.relative_to(checkpoint)} {problem}"
    for path in sorted([*checkpoint.glob("*.bin"), *checkpoint.glob("*.pkl")]):  # torch.save files (zip archives)
        if path.stat().st_size == 0 or not zipfile.is_zipfile(path):
            return f"{path.name} is {'empty' if path.stat().st_size == 0 else 'truncated or unreadable'}"
    return None


def _safetensors_problem(path: Path) -> str | None:
    from safetensors import safe_open

    if path.stat().st_size == 0:
        return "is empty"
    try:
        with safe_open(str(path), "np"):
            return None
    except Exception as exc:  # SafetensorError: a bad header, or a file shorter than its header says
        return f"is truncated or unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"


def damaged_checkpoint(checkpoint: Path, problem: str) -> ArtifactError:
    """The one-line error of a damaged checkpoint, with the two ways on."""
    return ArtifactError(f"damaged checkpoint in {checkpoint}: {problem}; start afresh with --overwrite, or restore its "
                         "files and run the command again")


def checkpoint_step(checkpoint: Path) -> int | None:
    """The step recorded in a whole checkpoint, or None (no checkpoint, or one a kill left half-written)."""
    try:
        return int(json.loads((Path(checkpoint) / STATE_FILE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def disk_errors(where: Path | None = None) -> Iterator[None]:
    """Report a full disk (or quota) as the ``OSError`` it is, whatever library raised it.

    safetensors, torch and accelerate wrap ENOSPC in their own exceptions; this turns those back into
    ``OSError(ENOSPC)`` so every command ends with the same one-line disk-full message.
    """
    try:
        yield
    except OSError:
        raise
    except Exception as exc:
        text = str(exc)
        for code in (errno.ENOSPC, errno.EDQUOT):
            if os.strerror(code) in text or f"os error {code}" in text or f"errno {code}" in text.lower():
                raise OSError(code, os.strerror(code), str(where) if where else None) from exc
        raise


# ----- files the user names with -o ------------------------------------------------------------
def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(os.path.realpath(a)) == Path(os.path.realpath(b))


def check_output(path: Path, overwrite: bool = False, inputs: tuple[Path, ...] | list[Path] = ()) -> None:
    """Refuse, before any work, an ``-o`` that would replace what the user did not ask to replace.

    An input of the command is refused whatever the flags; an existing regular file (or a symlink to
    one) needs ``overwrite``; devices and FIFOs are written in place and need nothing.
    """
    path = Path(path)
    for source in inputs:
        if source is not None and Path(source).exists() and path.exists() and _same_file(path, Path(source)):
            raise UsageError(f"-o {path} is one of this command's inputs; write the result somewhere else")
    if path.is_dir():
        raise UsageError(f"-o {path} is a directory; give a file name")
    if os.path.lexists(path) and not path.exists():  # a dangling symlink
        if not overwrite:
            raise ArtifactError(f"{path} is a symlink to a missing file; pass --overwrite to write its target")
        return
    if path.exists() and stat.S_ISREG(path.stat().st_mode) and not overwrite:
        raise ArtifactError(f"{path} already exists; pass --overwrite to replace it")
    check_writable(Path(os.path.realpath(path)))


def write_output(path: Path, data: bytes, overwrite: bool = False, inputs: tuple[Path, ...] | list[Path] = ()) -> None:
    """Write ``data`` to a file the user named (``-o``), safely.

    - a new path, or an existing regular file with ``overwrite``: written atomically (temp + rename);
      through a symlink the link stays and its target is replaced;
    - a character or block device, a FIFO: opened and written in place (``-o /dev/null`` stays a device);
    - anything else existing without ``overwrite``, or one of ``inputs``: refused (:func:`check_output`).
    """
    path = Path(path)
    check_output(path, overwrite, inputs)
    if path.exists():
        mode = path.stat().st_mode
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            with open(path, "wb", buffering=0) as handle:
                handle.write(data)
            return
        if stat.S_ISSOCK(mode):
            raise UsageError(f"-o {path} is a socket; musictl cannot write a file into it")
    real = Path(os.path.realpath(path))
    keep_mode = stat.S_IMODE(real.stat().st_mode) if real.exists() else None
    atomic_write_bytes(real, data)
    if keep_mode is not None:
        os.chmod(real, keep_mode)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old content or the new, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
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
    """Rows of a JSON-lines file; a malformed line is a one-line error naming the file and line."""
    rows = []
    with Path(path).open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise ArtifactError(f"{path}:{number}: malformed JSON line ({exc}); remake the artifact with --overwrite") from None
    return rows


# ----- a checkpoint's state that is not a tensor of the model ----------------------------------------------------------
def write_state(directory: Path, name: str, state: dict[str, Any]) -> None:
    """``name.json`` (plain values) + ``name.safetensors`` (numpy arrays / tensors): never a pickle."""
    from safetensors.numpy import save_file

    arrays = {k: _as_numpy(v) for k, v in state.items() if _is_array(v)}
    plain = {k: v for k, v in state.items() if k not in arrays}
    (Path(directory) / f"{name}.json").write_text(json.dumps(plain, indent=1))
    if arrays:
        save_file(arrays, str(Path(directory) / f"{name}.safetensors"))


def read_state(directory: Path, name: str) -> dict[str, Any]:
    from safetensors.numpy import load_file

    state: dict[str, Any] = {}
    plain, arrays = Path(directory) / f"{name}.json", Path(directory) / f"{name}.safetensors"
    if plain.is_file():
        state.update(json.loads(plain.read_text()))
    if arrays.is_file():
        state.update(load_file(str(arrays)))
    return state


def _is_array(value: Any) -> bool:
    import numpy as np

    return isinstance(value, np.ndarray) or type(value).__name__ == "Tensor"


def _as_numpy(value: Any) -> Any:
    import numpy as np

    return np.ascontiguousarray(value if isinstance(value, np.ndarray) else value.detach().cpu().numpy())
