"""The pre-training objectives by name: one registry entry each (:data:`OBJECTIVES`).

An entry (:class:`ObjectiveEntry`) is a name, its help and its class; the command line (``--objective``'s
choices and help), the settings' validation (:mod:`musictl.bert.settings`) and :func:`make_objective` read
it, so adding an objective is writing its class and adding one entry::

    objective = make_objective(PretrainSettings(objective="adversarial"))

- ``adversarial`` (:class:`~musictl.bert.adversarial.AdversarialObjective`): Adversarial-MidiBERT as
  published (mask book, top-k of masker score, MSE targets, masked + all-notes recovery loss);
- ``hard-mining`` (:class:`~musictl.bert.hard_mining.HardMiningObjective`): our own variant;
- ``mlm`` (:class:`~musictl.bert.objective.MlmObjective`): random masking, BERT's 80/10/10.

An objective is a subclass of :class:`musictl.bert.objective.Objective` whose ``name`` is its entry's and
whose ``from_settings`` reads the typed pre-training settings. An entry names its class as
``"module:Class"``, imported only when the objective is made: this module imports nothing heavy, since
``musictl --help`` reads the registry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from musictl.errors import UsageError


@dataclass(frozen=True)
class ObjectiveEntry:
    """One pre-training objective: its name (``--objective NAME``), its help, its class (``"module:Class"``)."""

    name: str
    help: str
    cls: str

    def load(self) -> type:
        """The objective's class (imported now)."""
        module, _, attribute = self.cls.partition(":")
        cls = getattr(importlib.import_module(module), attribute)
        if getattr(cls, "name", None) != self.name:  # the name its checkpoints record must be the one --resume gives
            raise TypeError(f"objective {self.name!r}: {self.cls}.name is {getattr(cls, 'name', None)!r}, not {self.name!r}")
        return cls


# The objectives by name, in the order of --help. Add one here (one entry); see docs/architecture.md.
OBJECTIVES: dict[str, ObjectiveEntry] = {entry.name: entry for entry in (
    ObjectiveEntry("adversarial", "the published masker with a mask book", "musictl.bert.adversarial:AdversarialObjective"),
    ObjectiveEntry("hard-mining", "a masker picks hard notes each step", "musictl.bert.hard_mining:HardMiningObjective"),
    ObjectiveEntry("mlm", "random masking", "musictl.bert.objective:MlmObjective"),
)}


def names() -> tuple[str, ...]:
    """The registered objectives, in order."""
    return tuple(OBJECTIVES)


def help_text() -> str:
    """Every registered objective with its help (``--objective``'s help)."""
    return "; ".join(f"{entry.name}: {entry.help}" for entry in OBJECTIVES.values()) + "."


def lookup(name: str) -> ObjectiveEntry:
    """The registered objective ``name``, or a usage error that lists them."""
    if name not in OBJECTIVES:
        raise UsageError(f"--objective {name!r}: choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def make_objective(settings: Any) -> Any:
    """The objective ``settings.objective`` names (a :class:`musictl.bert.objective.Objective`), configured from
    ``settings`` (:class:`musictl.bert.settings.PretrainSettings`)."""
    return lookup(settings.objective).load().from_settings(settings)
