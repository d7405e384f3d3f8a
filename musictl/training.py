"""The one training loop of musictl: 1 CPU, 1 GPU or N processes (``accelerate launch``), the same code.

pretrain-bert, finetune-mask and lora-violin train all train through :class:`Run`. What it guarantees:

- model, optimizer, scheduler and data loader go through ``accelerator.prepare``; the forward pass
  is the *prepared* model's (DDP synchronises gradients only through it);
- the training data is one **stream**: epoch after epoch of the items in an order fixed by
  ``(seed, epoch)`` (:func:`epoch_permutation`), cut into micro-batches of ``batch_size``. With N
  processes, process ``r`` takes micro-batches ``r, r+N, ...`` (accelerate's shard), so the union
  over ranks is exactly the 1-process stream and no window is seen twice; a run of ``steps``
  optimizer steps reads ``steps x N x grad_accum`` micro-batches, a whole number per rank;
- ``accelerator.accumulate`` for gradient accumulation, ``accelerator.clip_grad_norm_``, the
  scheduler stepped once per optimizer step whatever the number of processes;
- checkpoints through ``accelerator.save_state`` / ``load_state``, written to a temporary folder and
  renamed when complete (model weights are saved unwrapped, so a checkpoint of N processes resumes
  with M); the position in the stream is the caller's (``start`` of :meth:`Run.train_loader`);
- only the main process writes: :meth:`Run.on_main` runs a function there and hands its result (or
  its error) to every rank, so no rank waits forever at a barrier for a process that failed.

The loop itself reads top to bottom in the caller (nanoGPT style)::

    run = Run(RunConfig(device="auto", batch_size=8, grad_accum=1, clip=1.0, seed=0))
    loader = run.train_loader(items, collate, steps=1000, start=0)
    model, optimizer, scheduler, loader = run.prepare(model, optimizer, scheduler, loader)
    for done in run.train(model, optimizer, scheduler, loader, forward, start_step=0):
        ...  # done.step optimizer steps so far; done.outputs: forward's results for this step

``forward(model, batch)`` returns the loss tensor, or an object with a ``.loss`` tensor (kept in
``done.outputs`` for logging). It must call ``model(...)`` exactly once: put any loss computation
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
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from musictl.errors import MusictlError, UsageError

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"


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


# ----- processes, batches, precision ---------------------------------------------------------------
def process_index() -> int:
    """This process's global rank under ``accelerate launch`` / torchrun (0 when run directly)."""
    return int(os.environ.get("RANK", "0") or 0)


def is_main_process() -> bool:
    return process_index() == 0


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


def resolve_mixed_precision(requested: str | None, device_type: str) -> str:
    """``no``, ``bf16`` or ``fp16``; unset: bf16 on a GPU that supports it, else no."""
    import torch

    if requested is None:
        if device_type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "no"
    if requested == "fp16" and device_type != "cuda":
        raise UsageError("--mixed-precision fp16 needs a GPU; use bf16 or no on the CPU")
    return requested


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when visible (and not launched with ``accelerate launch --cpu``), else cpu."""
    import torch

    forced_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() and not forced_cpu else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is visible; use --device cpu or auto")
    return device


def check_launch() -> None:
    """Refuse ``accelerate launch --cpu --num_processes N>1``: accelerate 1.15 then starts ONE process
    (several CPU processes only through torchrun, ``--multi_gpu``), which would silently train alone."""
    flag = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if flag and "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ:
        raise UsageError("accelerate launch --cpu starts a single process whatever --num_processes says; for N CPU processes "
                         "run: accelerate launch --multi_gpu --num_processes N -m musictl ... --device cpu (docs/distributed.md)")


# ----- the data stream -------------------------------------------------------------------------------
def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order items are visited in one epoch: a permutation fixed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


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


# ----- the run -----------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunConfig:
    device: str = "auto"  # auto, cpu, cuda
    mixed_precision: str | None = None  # no, bf16, fp16; None: bf16 on a capable GPU, else no
    batch_size: int = 8  # per device
    grad_accum: int = 1
    global_batch_size: int | None = None  # sets grad_accum when given
    clip: float | None = 1.0
    seed: int = 0
    find_unused_parameters: bool = True  # a masker head unused by mlm, BERT's unused word table


@dataclasses.dataclass
class StepDone:
    """What :meth:`Run.train` yields after each optimizer step."""

    step: int
    outputs: list[Any]


class Run:
    """One training run on this process; see the module docstring for what it guarantees."""

    def __init__(self, config: RunConfig):
        from accelerate import Accelerator, PartialState
        from accelerate.state import AcceleratorState
        from accelerate.utils import DistributedDataParallelKwargs, set_seed

        self.config = config
        check_launch()
        device = resolve_device(config.device)
        state = PartialState(cpu=device == "cpu")
        self.plan = plan_batches(config.batch_size, state.num_processes, config.grad_accum, config.global_batch_size)
        self.mixed_precision = resolve_mixed_precision(config.mixed_precision, state.device.type)
        if state.num_processes == 1 and AcceleratorState._shared_state:  # one process, several runs (tests, benchmarks)
            AcceleratorState._reset_state()
        self.accelerator = Accelerator(
            cpu=device == "cpu", mixed_precision=self.mixed_precision, gradient_accumulation_steps=self.plan.grad_accum,
            step_scheduler_with_optimizer=False,
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.find_unused_parameters)],
        )
        self.accelerator.register_save_state_pre_hook(self._save_unwrapped)
        self.accelerator.register_load_state_pre_hook(self._load_unwrapped)
        set_seed(config.seed, device_specific=True)  # seed + rank: each process draws its own dropout masks
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
        dataset = StreamDataset(items, self.config.seed if seed is None else seed)
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

    def train(self, model, optimizer, scheduler, loader, forward: Callable[[Any, Any], Any],
              start_step: int = 0) -> Iterator[StepDone]:
        """Run the prepared ``loader`` to its end; yield after every optimizer step."""
        accelerator, step, outputs = self.accelerator, start_step, []
        model.train()
        for batch in loader:
            with accelerator.accumulate(model):
                out = forward(model, batch)
                accelerator.backward(out if hasattr(out, "backward") else out.loss)
                if accelerator.sync_gradients and self.config.clip:
                    accelerator.clip_grad_norm_(model.parameters(), self.config.clip)
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
    def save_checkpoint(self, directory: Path, write_extra: Callable[[Path], None] | None = None) -> None:
        """accelerate state (+ ``write_extra(tmp)`` on the main process) into ``directory``, atomically.

        Everything goes into a temporary sibling folder that replaces ``directory`` when complete, so
        a kill leaves the previous checkpoint whole. Write the file that says "complete" last in
        ``write_extra`` (e.g. :data:`STATE_FILE`).
        """
        from musictl.artifacts import replace_dir

        directory = Path(directory)
        tmp = directory.with_name(f".{directory.name}.tmp")
        self.on_main(lambda: (shutil.rmtree(tmp, ignore_errors=True), tmp.mkdir(parents=True)))
        self.accelerator.save_state(str(tmp))
        self.barrier()

        def finish() -> None:
            if write_extra is not None:
                write_extra(tmp)
            replace_dir(tmp, directory)

        self.on_main(finish)

    def load_checkpoint(self, directory: Path) -> None:
        """Model, optimizer, scheduler and RNG states from a checkpoint of any number of processes."""
        self.accelerator.load_state(str(directory))
        self.accelerator.step = 0  # checkpoints sit on optimizer-step boundaries

    def _save_unwrapped(self, models, weights, output_dir) -> None:
        for i, model in enumerate(models):
            weights[i] = self.unwrap(model).state_dict()

    def _load_unwrapped(self, models, input_dir) -> None:
        from safetensors.torch import load_file

        for i, model in enumerate(list(models)):
            path = Path(input_dir) / (f"model_{i}.safetensors" if i else "model.safetensors")
            if path.is_file():
                self.unwrap(model).load_state_dict(load_file(str(path), device=str(self.device)))
                models.remove(model)


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


# ----- state that is not a tensor of the model ----------------------------------------------------------
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
    return isinstance(value, np.ndarray) or type(value).__name__ == "Tensor"


def _as_numpy(value: Any) -> np.ndarray:
    return np.ascontiguousarray(value if isinstance(value, np.ndarray) else value.detach().cpu().numpy())
