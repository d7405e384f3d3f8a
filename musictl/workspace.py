"""What a workspace holds: every artifact with its freshness, the runs that can be resumed, and the
leftovers of killed runs.

``musictl status`` renders :func:`scan`; ``musictl status --clean`` calls :func:`clean`. Both read
the artifact-kind registry (:data:`musictl.artifacts.KINDS`), so a kind registered there appears
here by itself (``PIPELINE`` only orders the next-step hint). A resumable run is the staging
directory of a training run (:func:`musictl.artifacts.resumable`) that holds a whole checkpoint. A
fine-tuned model is described by its task's entry in :data:`musictl.bert.tasks.TASKS`.

The commands ask this module what is missing before they start (:func:`require_inputs`: every missing
input and the inputs those need, in the order they are made, named in one error) and which styles a
workspace knows (:func:`check_style` with suggestions, :func:`generate_style`, :func:`known_styles` for
shell completion).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from musictl import artifacts
from musictl.bert import tasks
from musictl.bert.verdict import encoder_verdict
from musictl.errors import ArtifactError, UsageError

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
    verdict: str = ""  # bert: what the encoder learned beyond its baselines; finetune: its task and test accuracy
    warning: str = ""  # bert: set when it learned nothing, with the command that helps; finetune: an unregistered task

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ResumableRun:
    """An interrupted training run whose checkpoint can be continued."""

    kind: str
    name: str | None
    path: str  # its staging directory
    step: int | None  # None when the checkpoint is too damaged to say
    command: str  # the command that resumes it (that starts afresh, when damaged)
    damaged: str | None = None  # what is wrong with its checkpoint (artifacts.checkpoint_damage)

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
    if kind == artifacts.BERT:
        verdict = encoder_verdict(path)
        if verdict is not None:
            status.verdict = verdict.summary()
            if verdict.learned_nothing:
                status.warning = verdict.warning(artifacts.artifact_dir(path.parent, artifacts.BERT))
    if kind == artifacts.FINETUNE:
        status.verdict, status.warning = finetune_summary(path, name, manifest)
    stale = [r for r, s in status.inputs.items() if s == "stale"]
    if stale:
        status.state = "stale"
        status.detail = f"made from an older {', '.join(stale)}; remake it: {status.made_by} --overwrite"
    return status


def finetune_summary(path: Path, name: str | None, manifest: artifacts.Manifest) -> tuple[str, str]:
    """A fine-tuned model's task as its registry entry describes it, with the test accuracy (``composer (per piece:
    the file's folder name): test accuracy 0.730``), and a warning when this version registers no such task."""
    task = manifest.parameters.get("task") or name or "?"
    accuracy = manifest.metrics.get("test_accuracy")
    score = f": test accuracy {accuracy:.3f}" if isinstance(accuracy, (int, float)) else ""
    entry = tasks.TASKS.get(task)
    if entry is None:
        return f"{task}{score}", (f"{path} was fine-tuned on task '{task}', which this version does not register "
                                  f"(musictl.bert.tasks.TASKS: {', '.join(tasks.TASKS)}); it cannot be resumed or remade")
    return f"{entry.describe()}{score}", ""


def resumable_runs(root: Path) -> list[ResumableRun]:
    """Every staging directory of a registered kind that holds a whole checkpoint (``.NAME.staging/``), or a damaged one."""
    found = []
    for kind, spec in artifacts.KINDS.items():
        parent = root / (spec.directory.split("/{name}")[0] if spec.named else str(Path(spec.directory).parent))
        if not parent.is_dir():
            continue
        pattern = f".*{artifacts.STAGING_SUFFIX}" if spec.named else f".{Path(spec.directory).name}{artifacts.STAGING_SUFFIX}"
        for staging in sorted(parent.glob(pattern)):
            name = staging.name[1 : -len(artifacts.STAGING_SUFFIX)] if spec.named else None
            run = artifacts.resumable(staging.with_name(name or Path(spec.directory).name), kind, name)
            step, problem = run.step(), run.damage()
            if problem:
                found.append(ResumableRun(kind, name, str(staging), step, f"{spec.command(name)} --overwrite", problem))
            elif step is not None:
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
    gcn_styles = {a.name for a in found if a.kind == artifacts.GCN and a.state == "fresh"}
    adapted = sorted(a.name for a in found if a.kind == artifacts.ADAPTED and a.state == "fresh" and a.name in gcn_styles)
    if adapted:  # a style with both a graph and an adapted model: the transformer can choose the notes
        return f"musictl generate-rwr --style {adapted[0]} --notes-by transformer -n 16 > out.mid"
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


# ----- what a command still needs ---------------------------------------------------------------
@dataclass(frozen=True)
class Needed:
    """An input artifact a command reads: its kind, its name (a style, a task) and where it is read from."""

    kind: str
    name: str | None
    path: Path


def _exists(path: Path) -> bool:
    """Whether an artifact is there: a manifest, or anything at all (an incomplete one, which
    :func:`musictl.artifacts.require` names as such, with the command that remakes it)."""
    path = Path(path)
    return (path / artifacts.MANIFEST).is_file() or (path.is_dir() and any(path.iterdir()))


def _default(workdir, kind: str, name: str | None) -> Path:
    return artifacts.artifact_dir(workdir, kind, name)


def _label(root: Path, path: Path) -> str:
    """``graph/folk`` for an artifact of the workspace, the path as given for any other."""
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def missing_chain(workdir, needs: list[Needed]) -> list[Needed]:
    """Every artifact still missing before ``needs`` can be read, in the order they are made: each missing need
    and, for each, the missing inputs of the command that makes it (at their places in the workspace).
    Present artifacts are not checked further here (:func:`musictl.artifacts.require` does that)."""
    found: dict[tuple[str, str | None, str], Needed] = {}
    given = {(n.kind, n.name): n.path for n in needs}  # an input of the command is read there, also by the makers

    def visit(need: Needed) -> None:
        key = (need.kind, need.name, str(need.path))
        if key in found or _exists(need.path):
            return
        for kind in artifacts.MADE_FROM.get(need.kind, {}):
            name = need.name if artifacts.KINDS[kind].named else None
            visit(Needed(kind, name, given.get((kind, name)) or _default(workdir, kind, name)))
        found[key] = need

    for need in needs:
        visit(need)
    order = {kind: i for i, kind in enumerate(PIPELINE)}
    return sorted(found.values(), key=lambda n: order.get(n.kind, len(order)))


def require_inputs(command: str, workdir, needs: list[Needed], note: str = "") -> None:
    """Fail with one line naming every missing input of ``command`` and every command that makes them, in order:
    ``train-gcn --style folk needs graph/folk and embeddings, which are missing; run: musictl pretrain-bert &&
    musictl embed && musictl adjacency --style folk``. ``note`` is added at the end (e.g. the known styles)."""
    chain = missing_chain(workdir, needs)
    if not chain:
        return
    root = artifacts.workspace_root(workdir)
    direct = [n for n in needs if not _exists(n.path)]
    names = [_label(root, n.path) if n.name or not artifacts.KINDS[n.kind].named else
             artifacts.KINDS[n.kind].directory.format(name=artifacts.KINDS[n.kind].placeholder) for n in direct]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
    given = {(n.kind, n.name): n.path for n in needs}
    # a workspace other than the one every command finds by itself (./musictl-work or $MUSICTL_WORKDIR) is named
    elsewhere = f" --workdir {workdir}" if workdir is not None and root.resolve() != \
        artifacts.workspace_root(None).resolve() else ""
    steps = []
    for n in chain:
        step = artifacts.producer_of(n.kind, n.name)
        for kind, flag in artifacts.MADE_FROM.get(n.kind, {}).items():  # its inputs, where they are not the defaults
            name = n.name if artifacts.KINDS[kind].named else None
            source = given.get((kind, name))
            if source is not None and Path(source).resolve() != _default(workdir, kind, name).resolve():
                step += f" {flag} {source}"
        if n.kind != artifacts.VIOLIN_EVAL and Path(n.path).resolve() != _default(workdir, n.kind, n.name).resolve():
            step += f" -o {n.path}"  # every maker but the evaluation's writes its artifact where -o says
        steps.append(step + elsewhere)
    verb = "is" if len(names) == 1 else "are"
    raise ArtifactError(f"{command} needs {listed}, which {verb} missing; run: {' && '.join(steps)}{note}")


# ----- styles -----------------------------------------------------------------------------------
def tokens_styles(tokens: Path) -> list[str]:
    """The styles of a tokens artifact (its index), or [] when there is none (read without opening the tokens)."""
    index = Path(tokens) / "index.jsonl"
    styles: set[str] = set()
    try:
        with index.open() as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    if isinstance(row, dict) and isinstance(row.get("style"), str):
                        styles.add(row["style"])
    except (OSError, ValueError):
        return []
    return sorted(styles)


def named_artifacts(workdir, kind: str) -> list[str]:
    """The names under a named kind's folder (``gcn/<style>``) that hold a finished artifact (a manifest)."""
    parent = _default(workdir, kind, None)
    if not parent.is_dir():
        return []
    return sorted(d.name for d in parent.iterdir() if d.is_dir() and not d.name.startswith(".")
                  and (d / artifacts.MANIFEST).is_file())


def known_styles(workdir=None, tokens: Path | None = None) -> list[str]:
    """Every style the workspace knows: its tokens' styles, and those with a graph or a GCN (shell completion)."""
    found = set(tokens_styles(tokens or _default(workdir, artifacts.TOKENS, None)))
    for kind in (artifacts.GRAPH, artifacts.GCN):
        found.update(named_artifacts(workdir, kind))
    return sorted(found)


def check_style(style: str, known: list[str], where: Path | str) -> str:
    """``style`` when it is one of ``known``, else an error that suggests the nearest (case aside, then by
    spelling) and lists them: ``no style 'Horror' in musictl-work/tokens; did you mean 'horror'? (known styles:
    folk, horror)``."""
    if style in known:
        return style
    same = [k for k in known if k.lower() == style.lower()]
    near = same or [k for k in known if k.lower() in difflib.get_close_matches(style.lower(), [x.lower() for x in known],
                                                                                  n=1, cutoff=0.6)]
    listed = f"known styles: {', '.join(known)}" if known else "it has no styles"
    if near:
        raise ArtifactError(f"no style '{style}' in {where}; did you mean '{near[0]}'? ({listed})")
    raise ArtifactError(f"no style '{style}' in {where} ({listed}); pass one of them to --style")


def generate_style(workdir, style: str | None = None, tokens: Path | None = None) -> str:
    """The style ``generate-rwr`` walks, after checking its inputs exist: ``style`` (a known one, else a
    suggestion), else the one style with a trained GCN; several trained styles are an error asking for one."""
    tokens = Path(tokens or _default(workdir, artifacts.TOKENS, None))
    in_tokens = tokens_styles(tokens) if _exists(tokens) else []
    if style is not None:
        if in_tokens:
            style = check_style(style, in_tokens, tokens)
        name = artifacts.safe_name(style, "style")
        require_inputs(f"generate-rwr --style {style}", workdir, [Needed(artifacts.TOKENS, None, tokens),
                                                                  Needed(artifacts.GCN, name, _default(workdir, artifacts.GCN, name))])
        return style
    trained = named_artifacts(workdir, artifacts.GCN)
    if len(trained) == 1:
        return trained[0]
    if trained:
        raise UsageError(f"{len(trained)} styles have a trained GCN in {_default(workdir, artifacts.GCN, None)} "
                         f"({', '.join(trained)}); choose one: --style {trained[0]}")
    name = in_tokens[0] if len(in_tokens) == 1 else None
    note = f" (known styles: {', '.join(in_tokens)})" if len(in_tokens) > 1 else ""
    require_inputs("generate-rwr", workdir, [Needed(artifacts.TOKENS, None, tokens),
                                             Needed(artifacts.GCN, name, _default(workdir, artifacts.GCN, name))], note)
    raise ArtifactError(f"no trained GCN in {_default(workdir, artifacts.GCN, None)}; run: musictl train-gcn --style STYLE")
