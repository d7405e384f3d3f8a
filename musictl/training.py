"""The one run lifecycle of musictl: 1 CPU, 1 GPU or N processes (``accelerate launch``), the same code.

pretrain-bert, finetune-mask, lora-violin train and train-gcn all train through :class:`Run`, which takes the
typed :class:`musictl.settings.RunSettings` every trainer's settings extend. What it guarantees:

- **on disk** (:meth:`Run.staged`, :meth:`Run.finish`): the target is checked and locked before any
  work, the run writes into the staging directory of :func:`musictl.artifacts.resumable`
  (checkpoints, ``metrics.jsonl``, tracker ``logs/``), and the finished artifact (with ``curves.png``)
  replaces the old one only when complete. Ctrl-C and SIGTERM raise
  :class:`musictl.errors.Interrupted`, which says what was kept; a full disk is an ``OSError``
  whatever library hit it (:func:`musictl.artifacts.disk_errors`);
- **resume** (:class:`TrainerState`, :meth:`Run.save_checkpoint`, :meth:`Run.restore`): a checkpoint
  holds accelerate's state (model, optimizer, scheduler, every process's RNG states; a PEFT model's
  adapter only), ``best/`` (the best model so far), the objective's state and ``trainer_state.json``
  (step, stream position, epoch, best and last evaluation, patience marks, inputs, settings), written
  last and swapped in whole; a resumed run continues exactly, with any number of processes;
- **the data stream**: epoch after epoch of the items in an order fixed by ``(seed, epoch)``
  (:func:`epoch_permutation`), cut into micro-batches of ``batch_size``. With N processes, process
  ``r`` takes micro-batches ``r, r+N, ...`` (accelerate's shard), so the union over ranks is exactly
  the 1-process stream; a run of ``steps`` optimizer steps reads ``steps x N x grad_accum`` micro-batches;
- model, optimizer, scheduler and data loader go through ``accelerator.prepare``; the forward pass
  is the *prepared* model's (DDP synchronises gradients only through it); ``accelerator.accumulate``,
  ``clip_grad_norm_``, the scheduler stepped once per optimizer step;
- **reporting** (:meth:`Run.log`): each row goes to ``metrics.jsonl`` and, with ``--report-to``, to
  accelerate's trackers (TensorBoard, Weights & Biases), from the main process only;
- only the main process writes: :meth:`Run.on_main` runs a function there and hands its result (or
  its error) to every rank, so no rank waits forever at a barrier for a process that failed.

The loop reads top to bottom in one place, :meth:`Run.fit` (nanoGPT style); a trainer is only what
differs between trainers, with the same names in every trainer module (``bert/pretrain.py``,
``bert/finetune.py``, ``violin/train.py``, ``transfer/train_gcn.py``): ``build`` (model, optimizer), ``forward`` (the loss of a
batch), ``evaluate`` (the validation scores), ``write_artifact`` (the finished files), and one call into Run::

    run = Run(settings, clip=settings.clip)
    with run.staged(artifacts.resumable(out, KIND), resume, overwrite) as state:
        model, optimizer = build(...)
        model, optimizer = run.prepare(model, optimizer)
        run.restore()
        run.fit(state, Cadence.every(settings.eval_every, steps=total), model, optimizer, None, items, collate,
                forward=forward, evaluate=lambda: evaluate(...), row=row, early=EarlyStopping.of(settings), best=model)
        run.finish(write_artifact)

What :meth:`Run.fit` does, after every optimizer step (a step :class:`Cadence`: pre-training, LoRA) or every
epoch (an epoch cadence: fine-tuning; the full-batch GCN, one item per epoch: the graph): it advances the
:class:`TrainerState` (step, stream position, epoch; a trainer never does), calls ``on_epoch_end`` for each
epoch the stream completed, and decides whether this is an evaluation (every ``eval_every`` steps and at the
last; every epoch). There it calls ``evaluate()``, records the scores (the best so far by
:class:`EarlyStopping`'s metric, the patience marks), writes the checkpoint (``best/`` when improved) and
stops when the run is out of patience. ``row(done, state, scores)`` is the trainer's metrics row (``scores``
None between evaluations), logged at every evaluation and every ``log_every`` steps; ``on_progress(done,
total, row)`` follows every row.

``forward(model, batch)`` returns the loss tensor, or an object with a ``.loss`` tensor (kept in
``done.outputs`` for the row). It must call ``model(...)`` exactly once: put any loss computation
that needs several passes inside a module's ``forward`` (see ``musictl.bert.pretrain.ObjectiveModule``).

Evaluation: :meth:`Run.eval_loader` shards a list of items over the ranks (the last batch padded,
accelerate style) and :meth:`Run.gather` (``gather_for_metrics``) drops the padding, so a score
summed over gathered per-item rows does not depend on the number of processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musictl import artifacts
from musictl.curves import CURVES_FILE, plot_curves, scalars
from musictl.device import check_launch, resolve_device, resolve_mixed_precision
from musictl.errors import Interrupted, MusictlError, UsageError
from musictl.settings import RunSettings, Settings

log = logging.getLogger(__name__)

STATE_FILE = artifacts.STATE_FILE
METRICS_FILE = "metrics.jsonl"


# ----- parameter groups ------------------------------------------------------------------------
def no_decay(name: str, param: Any) -> bool:
    """Biases, norms and embedding tables are not decayed (BERT's and nanoGPT's convention)."""
    lowered = name.lower()
    return param.ndim < 2 or "layernorm" in lowered or "norm." in lowered or "embed" in lowered


def param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay on matrices, none on biases, norms and embeddings.

    Only trainable parameters are listed (frozen LoRA bases add nothing to the optimizer).
    """
    decay, plain = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (plain if no_decay(name, param) else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


# ----- batches (the device, the precision and the process rank: musictl/device.py) ----------------
@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """How many windows one optimizer step sees: ``per_device x processes x grad_accum``."""

    per_device: int
    processes: int
    grad_accum: int

    @property
    def global_batch(self) -> int:
        return self.per_device * self.processes * self.grad_accum

    def to_dict(self) -> dict[str, int]:
        return {"per_device_batch_size": self.per_device, "processes": self.processes,
                "grad_accum": self.grad_accum, "global_batch_size": self.global_batch}


def plan_batches(per_device: int, processes: int, grad_accum: int = 1, global_batch_size: int | None = None) -> BatchPlan:
    """The batch plan; ``global_batch_size`` (when given) sets the accumulation and must divide evenly."""
    if global_batch_size is None:
        return BatchPlan(per_device, processes, grad_accum)
    per_step = per_device * processes
    if global_batch_size % per_step:
        raise UsageError(f"--global-batch-size {global_batch_size} is not a multiple of --batch-size {per_device} x "
                         f"{processes} process(es) = {per_step}; change one of them")
    return BatchPlan(per_device, processes, global_batch_size // per_step)


# ----- the data stream -------------------------------------------------------------------------------
# Random streams: every random draw of a training run comes from ``rng`` / ``generator`` below, keyed by
# (the run's seed, the stream's name, indices that say where in the run the draw is: an epoch, a micro-batch,
# a stream position, a window). Nothing depends on what was drawn before, so a resumed run and a run on any
# number of processes draw the same. The stream names are constants beside their use:
EPOCH_ORDER = "epoch-order"  # the order of the items in each epoch (index: the epoch)


def stream_key(stream: str) -> int:
    """A stream name as a number, the same in every process and Python (CRC-32; Python's ``hash`` is salted)."""
    import zlib

    return zlib.crc32(stream.encode())


def seed_sequence(seed: int, stream: str, *index: int) -> np.random.SeedSequence:
    """numpy's SeedSequence of one stream: entropy ``seed``, spawn key ``(stream_key(stream), *index)``.

    Independent for every (seed, name, indices); a negative seed is taken modulo 2**64."""
    if any(int(i) < 0 for i in index):
        raise ValueError(f"random stream {stream!r}: indices must be non-negative, got {index}")
    return np.random.SeedSequence(int(seed) % 2**64, spawn_key=(stream_key(stream), *(int(i) for i in index)))


def rng(seed: int, stream: str, *index: int) -> np.random.Generator:
    """The numpy generator of stream ``stream`` at ``index`` of the run seeded ``seed``."""
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, stream, *index)))


def generator(seed: int, stream: str, *index: int):
    """The (CPU) torch generator of stream ``stream`` at ``index`` of the run seeded ``seed``."""
    import torch

    return torch.Generator().manual_seed(int(seed_sequence(seed, stream, *index).generate_state(1, np.uint64)[0]))


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order items are visited in one epoch: a permutation fixed by (seed, epoch)."""
    return rng(seed, EPOCH_ORDER, epoch).permutation(n)


@dataclasses.dataclass(frozen=True)
class Sample:
    """One item of the stream: its position in the stream, its index in the items, the item."""

    position: int
    index: int
    item: Any


class StreamDataset:
    """Items visited epoch after epoch in :func:`epoch_permutation` order, indexed by stream position."""

    def __init__(self, items: Sequence[Any], seed: int):
        if not len(items):
            raise ValueError("no items to train on")
        self.items, self.seed = items, seed
        self._epoch, self._order = -1, None

    def index_at(self, position: int) -> int:
        epoch, offset = divmod(position, len(self.items))
        if epoch != self._epoch:
            self._epoch, self._order = epoch, epoch_permutation(len(self.items), self.seed, epoch)
        return int(self._order[offset])

    def __getitem__(self, position: int) -> Sample:
        index = self.index_at(position)
        return Sample(position, index, self.items[index])


class StreamBatches:
    """Micro-batches ``start .. start + count - 1`` of the stream (lists of stream positions)."""

    drop_last = False

    def __init__(self, batch_size: int, start: int, count: int):
        self.batch_size, self.start, self.count = batch_size, start, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[list[int]]:
        for micro in range(self.start, self.start + self.count):
            yield list(range(micro * self.batch_size, (micro + 1) * self.batch_size))


def micro_batch_of(samples: Sequence[Sample], batch_size: int) -> int:
    """The stream index of a micro-batch (the same whatever the number of processes): seeds its masks."""
    return samples[0].position // batch_size


# ----- when a run stops early -------------------------------------------------------------------------------
PERFECT_ACCURACY = 1.0


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """When a run stops before its last step: the rule every trainer's ``--patience`` uses.

    As in Keras' ``EarlyStopping`` and the HF Trainer's callback, a monitored validation metric must
    improve by more than ``min_delta`` within ``patience`` epochs. ``monitor``:

    - ``accuracy`` or ``loss``: that metric alone (the best model is chosen by it too);
    - ``both``: Adversarial-MidiBERT's rule (its reference code): stop once accuracy *and* loss have
      each gone ``patience`` epochs without improving, each counted from its own best; an accuracy tie
      counts as an improvement; the best model is chosen by accuracy.

    Whatever the monitor, a run whose best model is chosen by accuracy stops at a perfect validation
    accuracy: no later evaluation could be chosen over it. ``patience=None`` never stops on patience.
    """

    patience: int | None = None
    monitor: str = "both"
    min_delta: float = 0.0

    @classmethod
    def of(cls, settings: Any) -> EarlyStopping:
        """The rule of a trainer's settings (``patience``, ``monitor``, ``min_delta``)."""
        return cls(settings.patience, getattr(settings, "monitor", "both"), getattr(settings, "min_delta", 0.0))

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("accuracy", "loss") if self.monitor == "both" else (self.monitor,)

    @property
    def selects_by(self) -> str:
        """The metric the best model is chosen by."""
        return "loss" if self.monitor == "loss" else "accuracy"

    def better(self, metric: str, value: float, best: float, strict: bool = False) -> bool:
        """Whether ``value`` improves on ``best`` (by more than ``min_delta``; an accuracy tie counts under
        ``both`` unless ``strict``, which choosing the best model is)."""
        if metric == "loss":
            return value < best - self.min_delta
        if self.monitor == "both" and not strict:
            return value >= best + self.min_delta
        return value > best + self.min_delta

    def reason_to_stop(self, valid: dict, epochs_without: dict[str, float], step: int) -> str | None:
        """Why to stop after the evaluation ``valid`` (None: go on); ``epochs_without`` per monitored metric."""
        if self.selects_by == "accuracy" and valid.get("accuracy", 0.0) >= PERFECT_ACCURACY:
            return f"validation accuracy is perfect (1.0) at step {step}: no later evaluation can be chosen over it"
        if self.patience is None or min(epochs_without.values()) < self.patience:
            return None
        delta = f", --min-delta {self.min_delta:g}" if self.min_delta else ""
        what = "accuracy and loss have" if self.monitor == "both" else f"{self.monitor} has"
        return (f"validation {what} not improved for {min(epochs_without.values()):.1f} epochs "
                f"(--patience {self.patience}, --monitor {self.monitor}{delta}) at step {step}")


# ----- where a run stands --------------------------------------------------------------------------------
@dataclasses.dataclass
class TrainerState:
    """Where a run stands, beside its tensors: ``trainer_state.json`` of a checkpoint (written last).

    Model, optimizer, scheduler and the RNG states of every process are accelerate's (``save_state``);
    everything else a trainer needs to continue exactly is here. ``position`` counts the items of the
    training stream consumed so far (``global_batch`` per optimizer step), so a resumed run reads the
    stream on from there with any number of processes.
    """

    step: int = 0
    position: int = 0
    epoch: int = 0  # whole epochs completed (epoch-based trainers)
    best: dict | None = None  # the best evaluation so far (its row, with the step or epoch it was made at)
    last_eval: dict | None = None
    patience: dict[str, list] = dataclasses.field(default_factory=dict)  # metric -> [best value, position reached]
    stopped_early: str | None = None
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)  # manifest refs of the inputs, checked on resume
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)  # the settings the run was started with
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # a trainer's own plain values

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def read(cls, checkpoint: Path) -> TrainerState:
        data = json.loads((Path(checkpoint) / STATE_FILE).read_text())
        if "windows_seen" in data:  # a pre-training checkpoint written before TrainerState: its stream position
            data.setdefault("position", data["windows_seen"])
            data.setdefault("inputs", {"tokens": data["tokens"]} if "tokens" in data else {})
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def improved(self, row: dict, rule: EarlyStopping | None = None) -> bool:
        """Record ``row`` as the last evaluation; whether it beats the best so far on the metric ``rule``
        selects by (validation accuracy unless it monitors the loss alone), and becomes it."""
        rule = rule or EarlyStopping()
        self.last_eval = row
        if self.best is None or rule.better(rule.selects_by, row[rule.selects_by], self.best[rule.selects_by], strict=True):
            self.best = {"step": self.step, "epoch": self.epoch, **row}
            return True
        return False

    def out_of_patience(self, rule: EarlyStopping, items_per_epoch: int) -> bool:
        """Record the last evaluation against the best of each monitored metric so far; whether the run
        should stop now (:class:`EarlyStopping` says when). Sets :attr:`stopped_early` to the reason."""
        valid, seen, marks = self.last_eval, self.position, self.patience
        for metric in rule.metrics:
            if metric not in marks or rule.better(metric, valid[metric], marks[metric][0]):
                marks[metric] = [valid[metric], seen]
        self.stopped_early = rule.reason_to_stop(valid, {m: (seen - marks[m][1]) / items_per_epoch for m in rule.metrics},
                                                 self.step)
        return self.stopped_early is not None

    def check_resume(self, settings: Settings, checkpoint: Path) -> None:
        """Refuse to continue a checkpoint made with other values of the settings declared ``fixed`` (they shape
        the model, the data or the objective it holds; :meth:`musictl.settings.Settings.fixed_on_resume`)."""
        now = settings.to_dict()
        changed = [k for k in settings.fixed_on_resume() if k in self.settings and self.settings[k] != now.get(k)]
        if changed:
            def flag(key: str, value: Any) -> str:
                return f"--{key.replace('_', '-')} {value}"

            was = ", ".join(flag(k, self.settings[k]) for k in changed)
            asked = ", ".join(flag(k, now.get(k)) for k in changed)
            raise UsageError(f"the checkpoint in {checkpoint} was made with {was}, not {asked}: these shape what it holds; "
                             "resume with the values it was made with, or start again with --overwrite")


# ----- the run -----------------------------------------------------------------------------------------
@dataclasses.dataclass
class StepDone:
    """What :meth:`Run.train` yields after each optimizer step, and what :meth:`Run.fit` hands a trainer's ``row``:
    the step reached, this rank's forward outputs since the last row (one per micro-batch; under an epoch
    cadence the epoch's detached losses) and the seconds since the loop began."""

    step: int
    outputs: list[Any]
    seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class Cadence:
    """How long a run trains and when :meth:`Run.fit` evaluates and checkpoints: every ``eval_every`` optimizer
    steps and after the last of ``steps`` (:meth:`every`: pre-training, LoRA), or at the end of each of ``epochs``
    epochs (:meth:`per_epoch`: fine-tuning). Between evaluations a metrics row is logged every ``log_every`` steps."""

    steps: int = 0
    eval_every: int = 0
    log_every: int = 1
    epochs: int = 0

    @classmethod
    def every(cls, eval_every: int, steps: int, log_every: int = 1) -> Cadence:
        return cls(steps=steps, eval_every=eval_every, log_every=log_every)

    @classmethod
    def per_epoch(cls, epochs: int) -> Cadence:
        return cls(epochs=epochs)

    @property
    def by_epoch(self) -> bool:
        return self.epochs > 0

    def evaluates(self, step: int) -> bool:
        return self.by_epoch or step % self.eval_every == 0 or step == self.steps

    def logs(self, step: int) -> bool:
        return self.by_epoch or step % self.log_every == 0


def loss_of(output: Any) -> Any:
    """The loss tensor of a ``forward`` output (the tensor itself, or its ``.loss``)."""
    return output if hasattr(output, "backward") else output.loss


class Run:
    """One training run on this process, from its checks to its artifact; see the module docstring."""

    def __init__(self, settings: RunSettings, *, clip: float | None = None, find_unused_parameters: bool = True):
        from accelerate import Accelerator, PartialState
        from accelerate.state import AcceleratorState
        from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed

        self.settings, self.clip = settings, clip or None
        check_launch()
        device = resolve_device(settings.device)
        state = PartialState(cpu=device == "cpu")
        self.plan = plan_batches(settings.batch_size, state.num_processes, settings.grad_accum, settings.global_batch_size)
        self.mixed_precision = resolve_mixed_precision(settings.mixed_precision, state.device.type)
        if state.num_processes == 1 and AcceleratorState._shared_state:  # one process, several runs (tests, benchmarks)
            AcceleratorState._reset_state()
        self.trackers = trackers_of(settings.report_to)
        self.accelerator = Accelerator(
            cpu=device == "cpu", mixed_precision=self.mixed_precision, gradient_accumulation_steps=self.plan.grad_accum,
            step_scheduler_with_optimizer=False, log_with=self.trackers or None,
            project_config=ProjectConfiguration(project_dir="."),  # set to the artifact's staging by :meth:`staged`
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)],
        )
        self.accelerator.register_save_state_pre_hook(self._save_unwrapped)
        self.accelerator.register_load_state_pre_hook(self._load_unwrapped)
        set_seed(settings.seed, device_specific=True)  # seed + rank: each process draws its own dropout masks
        self.out: artifacts.Resumable | None = None
        self.resumed_from: Path | None = None
        if not self.is_main:
            logging.getLogger("musictl").setLevel(logging.WARNING)  # notes once, from the main process

    # --- where we are
    @property
    def device(self):
        return self.accelerator.device

    @property
    def num_processes(self) -> int:
        return self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def describe(self) -> dict[str, Any]:
        """For metrics.json: the batch plan, the number of processes, the precision, the device type."""
        return {**self.plan.to_dict(), "mixed_precision": self.mixed_precision, "device": self.device.type}

    # --- the lifecycle: checks, lock, staging, resume, interrupts
    @contextlib.contextmanager
    def staged(self, out: artifacts.Resumable, resume: bool = False, overwrite: bool = False,
               inputs: dict[str, Any] | None = None) -> Iterator[TrainerState]:
        """The run's whole stay on disk: yields its :class:`TrainerState` (fresh, or the checkpoint's).

        Before any work: the target, ``--overwrite`` / ``--resume`` and the folder's permissions are
        checked and the artifact's lock is taken (a second writer is refused). The run writes into
        ``out.staging`` (checkpoints, metrics.jsonl, tracker logs); :meth:`finish` swaps it in. Ctrl-C
        and SIGTERM become :class:`musictl.errors.Interrupted`, which says what was kept; a full disk
        is an ``OSError`` whatever library hit it. A checkpoint made with other values of the settings
        declared ``fixed`` (they shape what it holds) is refused.
        """
        self.on_main(lambda: out.check(resume, overwrite))
        with self.main_context(lambda: artifacts.locked(out.target)):
            source = self.on_main(lambda: out.open(resume, overwrite))
            self.barrier()
            self.out, self.resumed_from = out, source
            state = TrainerState.read(source) if source else TrainerState(inputs=dict(inputs or {}),
                                                                          settings=self.settings.to_dict())
            state.stopped_early = None  # a resumed run stops again only if it runs out of patience again
            self.on_main(lambda: self._truncate_log(state.step))
            try:
                if source:
                    state.check_resume(self.settings, source)
                with artifacts.disk_errors(out.staging):
                    self._start_trackers(out)
                    yield state
            except KeyboardInterrupt:
                kept = out.kept() if self.is_main else "the main process says what was kept"
                raise Interrupted(kept if self.is_main else f"process {self.accelerator.process_index} stopped; {kept}") from None
            except BaseException:
                if self.is_main:
                    out.kept()  # a staging directory without a whole checkpoint holds nothing to resume: removed
                raise
            finally:
                self._end_trackers()

    def restore(self, *objects_with_state: Any) -> None:
        """Load the checkpoint the run continues (model, optimizer, scheduler, RNG states; then each
        extra object's ``load_state_dict`` from its ``<name>.json/.safetensors``). Call after :meth:`prepare`."""
        import pickle

        if self.resumed_from is None:
            return
        try:
            self.accelerator.load_state(str(self.resumed_from))
            self.accelerator.step = 0  # checkpoints sit on optimizer-step boundaries
            for name, obj in objects_with_state:
                obj.load_state_dict(artifacts.read_state(self.resumed_from, name))
        except (RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as exc:  # not OSError: a full disk stays one
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise artifacts.damaged_checkpoint(
                self.resumed_from, f"its state does not fit the model and optimizer these settings build ({first})") from None

    def log(self, row: dict[str, Any]) -> None:
        """One metrics.jsonl row (main process) and the same values to the trackers (``--report-to``)."""
        def write() -> None:
            with (self.out.staging / METRICS_FILE).open("a") as handle:
                handle.write(json.dumps(row) + "\n")

        self.on_main(write)
        if self.trackers:
            step = row.get("step", row.get("epoch"))
            self.accelerator.log(scalars(row), step=step)

    def save_checkpoint(self, state: TrainerState, model: Any = None, improved: bool | None = None,
                        objects_with_state: Sequence[tuple[str, Any]] = ()) -> None:
        """``checkpoints/last`` in the staging directory, swapped in whole: accelerate state, the best model
        (``best/``: ``model`` saved when ``improved``, else the previous best kept), each object's state,
        and ``trainer_state.json`` last. A kill at any moment leaves the previous checkpoint whole."""
        checkpoint = self.out.checkpoint

        def write_extra(tmp: Path) -> None:
            if model is not None and improved is not None:
                if improved or not (checkpoint / "best").is_dir():
                    self.unwrap(model).save_pretrained(tmp / "best")
                else:
                    _link_tree(checkpoint / "best", tmp / "best")
            for name, obj in objects_with_state:
                artifacts.write_state(tmp, name, obj.state_dict())
            artifacts.atomic_write_json(tmp / STATE_FILE, state.to_dict())

        with artifacts.disk_errors(checkpoint):
            self._save_state(checkpoint, write_extra)

    def best_dir(self) -> Path:
        """The best model of the run so far (``best/`` of the last checkpoint)."""
        return self.out.checkpoint / "best"

    def finish(self, write: Callable[[Path], None]) -> None:
        """On the main process: ``write(staging)`` (model, metrics.json, card, manifest), ``curves.png``
        from metrics.jsonl, then the staging directory replaces the artifact."""
        def swap_in() -> None:
            with artifacts.disk_errors(self.out.staging):
                rows = artifacts.read_jsonl(self.out.staging / METRICS_FILE) if (self.out.staging / METRICS_FILE).is_file() else []
                plot_curves(rows, self.out.staging / CURVES_FILE)
                write(self.out.staging)  # the manifest last: it fingerprints every file
                self.out.swap_in()

        self._end_trackers()  # their files are closed before the manifest fingerprints them
        self.on_main(swap_in)

    def _truncate_log(self, step: int) -> None:
        """On resume, forget log lines written after the checkpoint the run continues from."""
        path = self.out.staging / METRICS_FILE
        if path.exists():
            artifacts.write_jsonl(path, [r for r in artifacts.read_jsonl(path) if r.get("step", r.get("epoch", 0)) <= step])

    def _end_trackers(self) -> None:
        if self.accelerator.trackers:
            self.accelerator.end_training()
            self.accelerator.trackers = []

    def _start_trackers(self, out: artifacts.Resumable) -> None:
        if not self.trackers:
            return
        if "wandb" in self.trackers:
            os.environ.setdefault("WANDB_MODE", "offline")  # no network here; ``wandb sync`` uploads later
            os.environ.setdefault("WANDB_DIR", str(out.staging / "logs"))
        self.accelerator.project_configuration.project_dir = str(out.staging)
        self.accelerator.project_configuration.logging_dir = str(out.staging)  # trackers write into staging/logs
        config = {k: v for k, v in self.settings.to_dict().items() if isinstance(v, (int, float, str, bool))}
        self.accelerator.init_trackers("logs")
        for tracker in self.accelerator.trackers:
            if tracker.name == "tensorboard":
                _tensorboard_hparams(tracker.writer, config)
            else:
                tracker.store_init_configuration(config)

    # --- data
    def train_loader(self, items: Sequence[Any], collate: Callable[[list[Sample]], Any], steps: int, start: int = 0,
                     seed: int | None = None):
        """``steps`` optimizer steps of the training stream from stream position ``start`` (not yet prepared).

        ``start`` counts items (``global_batch`` per step done so far) and must be a multiple of the
        per-device batch size. ``collate`` gets a list of :class:`Sample` (one micro-batch of this rank).
        """
        from torch.utils.data import DataLoader

        if start % self.plan.per_device:
            raise UsageError(f"cannot continue at window {start} of the stream with --batch-size {self.plan.per_device}: "
                             "resume with a batch size that divides it")
        per_step = self.plan.processes * self.plan.grad_accum
        batches = StreamBatches(self.plan.per_device, start // self.plan.per_device, steps * per_step)
        dataset = StreamDataset(items, self.settings.seed if seed is None else seed)
        return DataLoader(dataset, batch_sampler=batches, collate_fn=collate, generator=_own_generator())

    def eval_loader(self, items: Sequence[Any], collate: Callable[[list[Sample]], Any], batch_size: int | None = None):
        """``items`` in order, sharded over the ranks and prepared (use with :meth:`gather`)."""
        from torch.utils.data import DataLoader

        dataset = [Sample(i, i, item) for i, item in enumerate(items)]
        loader = DataLoader(dataset, batch_size=batch_size or self.plan.per_device, shuffle=False, collate_fn=collate,
                            generator=_own_generator())
        return self.accelerator.prepare_data_loader(loader)

    def gather(self, data: Any) -> Any:
        """Per-item rows of every rank (padding of the last batch dropped): ``gather_for_metrics``."""
        return self.accelerator.gather_for_metrics(data)

    # --- training
    def prepare(self, *objects: Any) -> Any:
        return self.accelerator.prepare(*objects)

    def unwrap(self, model: Any) -> Any:
        return self.accelerator.unwrap_model(model)

    def steps_per_epoch(self, items: int) -> int:
        """Optimizer steps that see ``items`` stream items at least once (the last step reads on into the next epoch)."""
        return -(-items // self.plan.global_batch)

    def fill_batch(self, items: list) -> list:
        """``items`` repeated until they fill at least one optimizer step's global batch (a stream of a few pieces
        still makes whole steps)."""
        return items * max(1, -(-self.plan.global_batch // max(1, len(items))))

    def steps_for_epochs(self, items: int, epochs: float) -> int:
        """Optimizer steps of ``epochs`` (possibly fractional) passes over ``items`` stream items, at least 1."""
        return max(1, math.ceil(epochs * items / self.plan.global_batch))

    # --- the loop of every trainer
    def fit(self, state: TrainerState, cadence: Cadence, model, optimizer, scheduler, items: Sequence[Any],
            collate: Callable[[list[Sample]], Any], *, forward: Callable[[Any, Any], Any], evaluate: Callable[[], dict],
            row: Callable[[StepDone, TrainerState, dict | None], dict], early: EarlyStopping | None = None,
            best: Any = None, on_epoch_end: Callable[[int], None] | None = None,
            objects_with_state: Sequence[tuple[str, Any]] = (), history: bool = False,
            on_progress: Callable[..., None] | None = None) -> None:
        """Train the prepared ``model`` on the stream of ``items`` from where ``state`` stands to the end of ``cadence``.

        After each step (each epoch under an epoch cadence): the state advanced (:meth:`_advance`); at an
        evaluation ``evaluate()``'s scores recorded, with ``best`` (the model whose best weights ``best/``
        keeps) chosen and patience checked by ``early``, or only recorded as the last evaluation when
        ``best`` is None; the row (``row(done, state, scores)``) logged (kept in ``state.extra["history"]``
        with ``history``), the checkpoint written (with each of ``objects_with_state``); the run stops
        early when out of patience. See the module docstring.
        """
        rule = early or EarlyStopping()
        for done in self._advance(state, cadence, model, optimizer, scheduler, items, collate, forward, on_epoch_end):
            evaluating = cadence.evaluates(done.step)
            scores = evaluate() if evaluating else None
            metrics = row(done, state, scores)
            improved = None
            if evaluating and best is not None:
                improved = state.improved(scores, rule)
                state.out_of_patience(rule, len(items))  # sets state.stopped_early; its marks go into the checkpoint
            elif evaluating:
                state.last_eval = scores
            if evaluating and history:
                state.extra["history"] = [*state.extra.get("history", []), metrics]
            if evaluating or cadence.logs(done.step):
                self.log(metrics)
            if evaluating:
                self.save_checkpoint(state, best, improved, objects_with_state)
            if on_progress is not None and self.is_main:
                done_so_far, total = (state.epoch, cadence.epochs) if cadence.by_epoch else (done.step, cadence.steps)
                on_progress(done_so_far, total, metrics)
            if state.stopped_early:
                break

    def _advance(self, state: TrainerState, cadence: Cadence, model, optimizer, scheduler, items: Sequence[Any],
                 collate, forward, on_epoch_end) -> Iterator[StepDone]:
        """The optimizer steps left, with ``state`` (step, stream position, epoch) advanced after each: yields each
        step (a step cadence; ``on_epoch_end(epoch)`` first for each epoch of the stream it completed), or each
        epoch (an epoch cadence: one data loader per epoch, the epoch's detached losses as the outputs)."""
        n, started = len(items), time.perf_counter()
        passes = [self.steps_per_epoch(n)] * max(0, cadence.epochs - state.epoch) if cadence.by_epoch else \
            [max(0, cadence.steps - state.step)]
        for steps in passes:
            loader = self.prepare(self.train_loader(items, collate, steps, start=state.position))
            losses: list[Any] = []
            for done in self.train(model, optimizer, scheduler, loader, forward, start_step=state.step):
                epoch_before = state.position // n
                state.step, state.position = done.step, state.position + self.plan.global_batch
                done.seconds = time.perf_counter() - started
                if cadence.by_epoch:
                    losses += [loss_of(out).detach() for out in done.outputs]
                    continue
                state.epoch = state.position // n
                for epoch in range(epoch_before, state.epoch):
                    if on_epoch_end is not None:
                        on_epoch_end(epoch)
                yield done
            if cadence.by_epoch:
                state.epoch += 1
                yield StepDone(state.step, losses, time.perf_counter() - started)

    def train(self, model, optimizer, scheduler, loader, forward: Callable[[Any, Any], Any],
              start_step: int = 0) -> Iterator[StepDone]:
        """Run the prepared ``loader`` to its end; yield after every optimizer step."""
        accelerator, step, outputs = self.accelerator, start_step, []
        model.train()
        for batch in loader:
            with accelerator.accumulate(model):
                out = forward(model, batch)
                accelerator.backward(loss_of(out))
                if accelerator.sync_gradients and self.clip:
                    accelerator.clip_grad_norm_(model.parameters(), self.clip)
                optimizer.step()
                if accelerator.sync_gradients and scheduler is not None and not optimizer.step_was_skipped:
                    scheduler.step()
                optimizer.zero_grad()
            outputs.append(out)
            if accelerator.sync_gradients:
                step += 1
                yield StepDone(step, outputs)
                outputs = []
                model.train()  # the caller may have evaluated

    def reduce_mean(self, value: float) -> float:
        """The mean of a number over the processes."""
        import torch

        return float(self.accelerator.reduce(torch.tensor(float(value), device=self.device), "mean"))

    # --- the main process writes, every rank agrees
    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()

    def on_main(self, func: Callable[[], Any]) -> Any:
        """``func()`` on the main process; its result, or its error, reaches every rank."""
        if self.num_processes == 1:
            return func()
        from accelerate.utils import broadcast_object_list

        outcome: list[Any] = [None]
        error: BaseException | None = None
        if self.is_main:
            try:
                outcome = [("ok", func())]
            except BaseException as exc:  # handed to every rank, then re-raised
                error = exc
                outcome = [("error", type(exc).__name__, str(exc), isinstance(exc, MusictlError), getattr(exc, "exit_code", 1))]
        broadcast_object_list(outcome)
        if error is not None:
            raise error
        if outcome[0][0] == "error":
            raise _remote_error(*outcome[0][1:])
        return outcome[0][1]

    @contextlib.contextmanager
    def main_context(self, factory: Callable[[], Any]) -> Iterator[Any]:
        """Enter ``factory()`` (a context manager: a lock, a staging directory) on the main process only."""
        with contextlib.ExitStack() as stack:
            entered: list[Any] = [None]

            def enter() -> None:
                entered[0] = stack.enter_context(factory())

            self.on_main(enter)
            yield entered[0]

    # --- checkpoints
    def _save_state(self, directory: Path, write_extra: Callable[[Path], None] | None = None) -> None:
        """accelerate state (+ ``write_extra(tmp)`` on the main process) into ``directory``, atomically."""
        directory = Path(directory)
        tmp = directory.with_name(f".{directory.name}.tmp")
        with signals_deferred():  # Ctrl-C / SIGTERM wait until the checkpoint is whole (old or new, never half)
            self.on_main(lambda: (shutil.rmtree(tmp, ignore_errors=True), tmp.mkdir(parents=True)))
            self.accelerator.save_state(str(tmp))
            self.barrier()

            def finish() -> None:
                if write_extra is not None:
                    write_extra(tmp)
                artifacts.replace_dir(tmp, directory)

            self.on_main(finish)

    def _save_unwrapped(self, models, weights, output_dir) -> None:
        """Weights without DDP's wrapper, so N processes' checkpoint resumes on M; a PEFT model keeps only
        its adapter (the frozen base is not copied into every checkpoint)."""
        for i, model in enumerate(models):
            model = self.unwrap(model)
            if hasattr(model, "peft_config"):
                from peft import get_peft_model_state_dict

                weights[i] = get_peft_model_state_dict(model)
            else:
                weights[i] = model.state_dict()

    def _load_unwrapped(self, models, input_dir) -> None:
        from safetensors.torch import load_file

        for i, model in enumerate(list(models)):
            path = Path(input_dir) / (f"model_{i}.safetensors" if i else "model.safetensors")
            if path.is_file():
                model_unwrapped = self.unwrap(model)
                weights = load_file(str(path))  # on the CPU: loading copies each tensor to the model's device
                if hasattr(model_unwrapped, "peft_config"):
                    from peft import set_peft_model_state_dict

                    set_peft_model_state_dict(model_unwrapped, weights)
                else:
                    model_unwrapped.load_state_dict(weights)
                models.remove(model)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block (main thread only; elsewhere a no-op)."""
    import signal

    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    except (AttributeError, ValueError, OSError):
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _tensorboard_hparams(writer: Any, config: dict[str, Any]) -> None:
    """The settings as TensorBoard hyper-parameters in the run's own event file: accelerate's tracker (through
    ``SummaryWriter.add_hparams``) would open a second run named by a timestamp that holds only them."""
    from torch.utils.tensorboard.summary import hparams

    for summary in hparams(config, {}):
        writer.file_writer.add_summary(summary)
    writer.flush()


def trackers_of(report_to: str) -> list[str]:
    """The accelerate trackers of ``--report-to`` (their packages checked now, not after an hour of training)."""
    names = {"none": [], "all": ["tensorboard", "wandb"]}.get(report_to, [report_to])
    for name in names:
        module = "tensorboard" if name == "tensorboard" else "wandb"
        try:
            __import__(module)
        except ImportError:
            raise UsageError(f"--report-to {report_to}: the {module} package is not installed; pip install {module}, "
                             "or use --report-to none") from None
    return names


def _link_tree(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        try:
            os.link(file, target / file.name)
        except OSError:
            shutil.copy2(file, target / file.name)


def _own_generator():
    """A DataLoader draws its workers' base seed when an iterator starts: from this, not from the global
    RNG, so that starting a loader after ``load_state`` does not shift dropout (resume stays exact)."""
    import torch

    return torch.Generator().manual_seed(0)


def _remote_error(name: str, message: str, is_musictl: bool, exit_code: int) -> BaseException:
    if name == "KeyboardInterrupt":
        return KeyboardInterrupt()
    if is_musictl:
        error = MusictlError(message)
        error.exit_code = exit_code
        return error
    return RuntimeError(f"the main process failed: {name}: {message}")
