"""Typed, documented, validated settings: the one place a default and its meaning live.

Each stage has a ``settings.py`` (``musictl.bert.settings``, ``musictl.transfer.settings``,
``musictl.violin.settings``, ``musictl.midi.settings``) with dataclasses in the style of peft's
``LoraConfig``: every field is declared with :func:`setting`, which carries its help text and its
allowed range, ``Literal`` annotations list the choices, and ``__post_init__`` validates. The
command line reads defaults and help from these fields (``musictl.commands._common.option``), so
a default is written exactly once. These modules import nothing heavy.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from musictl.errors import UsageError


def setting(default: Any = dataclasses.MISSING, help: str = "", *, min: float | None = None, max: float | None = None,
            flag: str | None = None, default_factory: Any = dataclasses.MISSING, fixed: bool = False) -> Any:
    """A settings field: its default, its help text and its allowed range (inclusive).

    ``fixed``: the value shapes what a training run builds (the model, the data, the objective), so a
    ``--resume`` must use the value the checkpoint was made with (:meth:`Settings.fixed_on_resume`).
    """
    metadata = {"help": help, "min": min, "max": max, "flag": flag, "fixed": fixed}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_of(field: dataclasses.Field) -> str:
    """The command-line flag of a field: ``--max-steps`` for ``max_steps`` unless declared otherwise."""
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _choices(annotation: Any) -> tuple | None:
    """The allowed values of a ``Literal[...]`` (or ``Literal[...] | None``) annotation."""
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(annotation):
            found = _choices(arg)
            if found:
                return found
    return None


class Settings:
    """Base of every settings dataclass: range and choice validation, ``to_dict``, defaults."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            choices = _choices(hints.get(field.name))
            if choices and value not in choices:
                raise UsageError(f"{flag_of(field)} {value!r}: choose one of {', '.join(map(str, choices))}")
            low, high = field.metadata.get("min"), field.metadata.get("max")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if low is not None and value < low:
                    raise UsageError(f"{flag_of(field)} {value}: must be at least {low}")
                if high is not None and value > high:
                    raise UsageError(f"{flag_of(field)} {value}: must be at most {high}")
        self.validate()

    def validate(self) -> None:
        """Checks that involve several fields (subclasses override)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def fixed_on_resume(cls) -> tuple[str, ...]:
        """The fields declared ``fixed``: a checkpoint continues only with the values it was made with."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("fixed"))

    @classmethod
    def default_of(cls, name: str) -> Any:
        field = cls.__dataclass_fields__[name]
        return field.default_factory() if field.default is dataclasses.MISSING else field.default

    @classmethod
    def from_values(cls, values: dict[str, Any], **overrides: Any):
        """Build from a mapping that may hold other keys too (a command's ``locals()``)."""
        names = set(cls.field_names())
        picked = {k: (v.value if hasattr(v, "value") and not isinstance(v, (int, float, str)) else v)
                  for k, v in values.items() if k in names}
        return cls(**{**picked, **overrides})


DeviceName = typing.Literal["auto", "cpu", "cuda"]
Precision = typing.Literal["no", "bf16", "fp16"]
ReportTo = typing.Literal["none", "tensorboard", "wandb", "all"]


@dataclasses.dataclass
class RunSettings(Settings):
    """How a training run uses the hardware and reports: the settings every trainer takes.

    :class:`musictl.training.Run` reads these; pre-training, fine-tuning and LoRA training extend them
    (a subclass may re-declare a field to change its default, e.g. a smaller batch).
    """

    batch_size: int = setting(8, "Windows per batch on each device (process).", min=1)
    grad_accum: int = setting(1, "Batches per optimizer step on each device.", min=1)
    global_batch_size: typing.Optional[int] = setting(
        None, "Windows per optimizer step over all processes (= batch size x processes x grad accum); "
              "sets --grad-accum [default: batch size x processes x --grad-accum].", min=1)
    mixed_precision: typing.Optional[Precision] = setting(
        None, "no, bf16 or fp16 autocast [default: bf16 on a GPU that supports it, else no].")
    report_to: ReportTo = setting(
        "none", "Also send the metrics.jsonl rows to trackers: tensorboard (event files in the artifact's logs/), wandb "
                "(offline unless WANDB_MODE says otherwise), all, or none.")
    seed: int = setting(0, "Random seed: the same seed gives the same result.", fixed=True)
    device: DeviceName = setting("auto", "Where to compute: auto picks cuda when available.")
