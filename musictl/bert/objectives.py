"""The pre-training objectives by name: ``--objective mlm | adversarial | hard-mining``.

Each is a :class:`musictl.bert.objective.Objective` built from the typed pre-training settings::

    objective = make_objective(PretrainSettings(objective="adversarial"))

- ``mlm`` (:class:`~musictl.bert.objective.MlmObjective`): random masking, BERT's 80/10/10;
- ``adversarial`` (:class:`~musictl.bert.adversarial.AdversarialObjective`): Adversarial-MidiBERT as
  published (mask book, top-k of masker score, MSE targets, masked + all-notes recovery loss);
- ``hard-mining`` (:class:`~musictl.bert.hard_mining.HardMiningObjective`): our own variant.

A new objective is a subclass of ``Objective`` with ``name`` and ``from_settings``, added to
:data:`OBJECTIVES` and to ``Objective`` (the ``Literal``) in :mod:`musictl.bert.settings`.
"""

from __future__ import annotations

from musictl.bert.adversarial import AdversarialObjective
from musictl.bert.hard_mining import HardMiningObjective
from musictl.bert.objective import MlmObjective, Objective
from musictl.bert.settings import PretrainSettings
from musictl.errors import UsageError

OBJECTIVES: dict[str, type[Objective]] = {cls.name: cls for cls in (MlmObjective, AdversarialObjective, HardMiningObjective)}


def make_objective(settings: PretrainSettings) -> Objective:
    """The objective ``settings.objective`` names, configured from ``settings``."""
    try:
        cls = OBJECTIVES[settings.objective]
    except KeyError:
        raise UsageError(f"--objective {settings.objective!r}: choose one of {', '.join(OBJECTIVES)}") from None
    return cls.from_settings(settings)
