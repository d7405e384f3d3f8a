"""The interface every pre-training objective implements, and the plain MLM objective.

The training loop (:mod:`musictl.bert.pretrain`) builds an objective by name
(:func:`musictl.bert.objectives.make_objective`) and calls, per batch,
``objective.step(model, ids, attention_mask, window_ids, weights, generator)``; at the end of each
epoch ``objective.on_epoch_end(epoch, model, windows)``; at each evaluation
``objective.evaluate_extra(model, valid_batches)``; and it saves ``objective.state_dict()`` with its
checkpoint (:func:`musictl.artifacts.write_state`: numpy arrays + JSON, never a pickle).

``mlm``: 15% of real notes chosen at random, 80/10/10 corrupted, per-field cross-entropy on them.
The other objectives live in :mod:`musictl.bert.adversarial` (the published method) and
:mod:`musictl.bert.hard_mining` (a variant of our own).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import torch

from musictl import constants
from musictl.bert.diagnostics import unwrap
from musictl.bert.losses import field_hits, field_losses
from musictl.bert.masking import corrupt, random_selection
from musictl.errors import ArtifactError

if TYPE_CHECKING:
    from musictl.bert.settings import PretrainSettings

# Validation batches for ``evaluate_extra``: (ids, attention_mask[, window_ids]); without window ids the windows
# are numbered in order from 0 (:func:`musictl.bert.diagnostics.masker_diagnostics` draws their validation masks)
Batches = Iterable[tuple[torch.Tensor, ...]]
TrainWindows = Union[Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                     Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]]


@dataclass
class StepResult:
    loss: torch.Tensor  # what is back-propagated
    recover_loss: float
    masker_loss: float
    accuracy: float  # share of field values recovered on the masked notes
    masked: int


def mlm_step(model, ids, attention_mask, weights, ratio, generator) -> StepResult:
    """Random masking: ``ratio`` of each window's real notes, 80/10/10, weighted mean field CE on them."""
    selected = random_selection(attention_mask, ratio, generator)
    logits = model(corrupt(ids, selected, unwrap(model).config.vocab_sizes, generator), attention_mask, selected)
    targets = ids[selected]
    loss = (field_losses(logits, targets) * weights).mean()
    accuracy = float(field_hits(logits, targets).float().mean()) if len(targets) else 0.0
    return StepResult(loss, float(loss.detach()), 0.0, accuracy, int(selected.sum()))


def field_weights(evaluation: dict | None) -> torch.Tensor:
    """Loss weight per field from the last evaluation: fields recovered worse weigh more (mean 1).

    What the loop passes to ``step`` as ``weights`` (mlm and hard-mining use it; adversarial
    keeps its own 1 / accuracy weights)."""
    if not evaluation or not evaluation.get("fields"):
        return torch.ones(constants.N_FIELDS)
    errors = torch.tensor([1.0 - evaluation["fields"][name]["accuracy"] for name in constants.FIELDS]).clamp_min(0.05)
    return errors / errors.mean()


class Objective:
    """What a pre-training step masks and learns. Subclasses override ``step``; the other hooks
    default to doing nothing, so the loop calls all of them for every objective."""

    name = "objective"
    uses_loop_weights = True  # whether ``step`` takes the loop's per-field weights (the adversarial method keeps its own)

    @classmethod
    def from_settings(cls, settings: PretrainSettings) -> Objective:
        """The objective configured from the typed pre-training settings."""
        raise NotImplementedError

    def step(self, model, ids: torch.Tensor, attention_mask: torch.Tensor, window_ids: torch.Tensor,
             weights: torch.Tensor | None, generator: torch.Generator) -> StepResult:
        """One batch: ``ids`` (B, L, 8), ``attention_mask`` (B, L), ``window_ids`` (B,) training-window
        indices, ``weights`` (8,) per-field loss weights or None (equal), a CPU generator."""
        raise NotImplementedError

    def on_epoch_end(self, epoch: int, model, windows: TrainWindows) -> None:
        """After epoch ``epoch`` (0-based) ended, on every process. ``windows``: ALL training windows
        (not sharded): the list of numpy (n, 8) windows (window id = index), or an iterable of
        (ids, attention_mask, window_ids) batches, or a callable returning either."""

    def evaluate_extra(self, model, valid_batches: Batches) -> dict[str, Any]:
        """Extra numbers for this evaluation's log row and metrics.json (JSON-able)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What ``--resume`` needs: numpy arrays and JSON-able values (``musictl.artifacts.write_state``)."""
        return {"objective": self.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; an empty state (no saved objective state) changes nothing."""
        if not state:
            return
        saved = state.get("objective")
        if saved != self.name:
            raise ArtifactError(f"the checkpoint holds the state of objective {saved!r}, not {self.name!r}; "
                                f"resume with --objective {saved}")


class MlmObjective(Objective):
    """``--objective mlm``: exactly :func:`mlm_step`."""

    name = "mlm"

    def __init__(self, mask_ratio: float):
        self.mask_ratio = mask_ratio

    @classmethod
    def from_settings(cls, settings: PretrainSettings) -> MlmObjective:
        return cls(settings.mask_ratio)

    def step(self, model, ids, attention_mask, window_ids, weights, generator) -> StepResult:
        weights = torch.ones(constants.N_FIELDS, device=ids.device) if weights is None else weights
        return mlm_step(model, ids, attention_mask, weights, self.mask_ratio, generator)
