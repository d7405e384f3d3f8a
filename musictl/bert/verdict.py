"""Did a pre-trained encoder learn anything? Its per-field verdict, read back from the artifact.

``musictl pretrain-bert`` scores each field's masked-note accuracy beside its count baselines (unigram, window,
previous, neighbours: :mod:`musictl.bert.baselines`) and writes, per field, the margin over the strongest of them
into ``bert/metrics.json`` (``learned``: > 0 means
learned, see :func:`musictl.bert.pretrain.learned_fields`). :func:`encoder_verdict` reads it for a bert
artifact, or for an artifact made from one (embeddings, a GCN, a fine-tuned model: it follows the
manifests' inputs), so every command that builds on an encoder can warn when it learned nothing.
JSON only (no torch); it never prints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from musictl import artifacts
from musictl.errors import ArtifactError

# The input of each kind that leads back to the encoder it was made from.
ENCODER_INPUT = {artifacts.EMBEDDINGS: "model", artifacts.GCN: "embeddings", artifacts.FINETUNE: "bert"}
MIN_SUGGESTED_STEPS = 3000  # the fewest steps the remedy suggests: a next try, not a promise (docs/pretrain-bert.md)


@dataclass(frozen=True)
class Verdict:
    """What a pre-trained encoder learned: per field, its margin over the strongest baseline."""

    model: Path  # the bert artifact
    margins: dict[str, float]
    steps: int | None = None

    @property
    def learned(self) -> list[str]:
        return [name for name, margin in self.margins.items() if margin > 0]

    @property
    def learned_nothing(self) -> bool:
        return bool(self.margins) and not self.learned

    def summary(self) -> str:
        """``learned pitch, duration (2 of 8 fields)`` or ``learned no field beyond its baselines``."""
        if self.learned_nothing:
            return "learned no field beyond its baselines"
        return f"learned {', '.join(self.learned)} ({len(self.learned)} of {len(self.margins)} fields)"

    def remedy(self, default: Path | None = None) -> str:
        """The command that trains it longer (``-o`` when it is not the workspace's default model)."""
        steps = max(MIN_SUGGESTED_STEPS, 4 * (self.steps or 0))
        elsewhere = default is None or Path(default).resolve() != Path(self.model).resolve()
        return f"musictl pretrain-bert --max-steps {steps} --overwrite" + (f" -o {_shown(self.model)}" if elsewhere else "")

    def warning(self, default: Path | None = None) -> str:
        after = f" after {self.steps} steps" if self.steps is not None else ""
        return (f"{_shown(self.model)} learned no field beyond its baselines{after} (every field NOT learned), so what "
                f"is built on it carries little; train it longer: {self.remedy(default)}")


def read_verdict(model: Path) -> Verdict | None:
    """The verdict a bert artifact recorded (``metrics.json`` ``learned``, or its manifest's), or None."""
    model = Path(model)
    margins, steps = None, None
    try:
        manifest = artifacts.read_manifest(model)
        margins, steps = manifest.metrics.get("learned"), manifest.metrics.get("steps")
    except ArtifactError:
        pass
    if not isinstance(margins, dict):
        try:
            metrics = json.loads((model / "metrics.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(metrics, dict) or not isinstance(metrics.get("learned"), dict):
            return None
        margins, steps = metrics["learned"], metrics.get("steps", steps)
    try:
        return Verdict(model, {str(k): float(v) for k, v in margins.items()}, int(steps) if steps is not None else None)
    except (TypeError, ValueError):
        return None


def encoder_verdict(path: Path | str | None) -> Verdict | None:
    """The verdict of the encoder behind ``path``: a bert artifact itself, or the one an embeddings, GCN or
    fine-tuned artifact was made from (followed through the manifests). None when there is none to read
    (a Hugging Face model, a missing artifact, one made before verdicts were recorded)."""
    if path is None:
        return None
    path = Path(path)
    for _ in range(4):  # gcn -> embeddings -> (finetune ->) bert
        if not (path / artifacts.MANIFEST).is_file():
            return None
        try:
            manifest = artifacts.read_manifest(path)
        except ArtifactError:
            return None
        if manifest.kind == artifacts.BERT:
            return read_verdict(path)
        role = ENCODER_INPUT.get(manifest.kind)
        source = artifacts.input_path(path, manifest, role) if role else None
        if source is None:
            return None
        path = source
    return None


def _shown(path: Path) -> Path:
    """``path`` relative to the current folder when it lies inside it (manifests record absolute inputs)."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve())
    except (ValueError, OSError):
        return Path(path)
