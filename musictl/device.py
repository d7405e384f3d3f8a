"""Where this process computes: the device, the precision, its rank among launched processes.

:func:`resolve_device` is the one place ``--device auto`` becomes ``cpu`` or ``cuda``: commands pass the
name they were given to the library, and each library entry point that computes (``training.Run``,
``bert.predict.load_classifier``, ``transfer.pipeline.train_gcn``, the violin stage's generate and
evaluate) resolves it here. Torch is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import os

from musictl.errors import UsageError


def _cpu_forced() -> bool:
    """Whether ``accelerate launch --cpu`` started this process (it sets ``ACCELERATE_USE_CPU``)."""
    return os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")


def process_index() -> int:
    """This process's global rank under ``accelerate launch`` / torchrun (0 when run directly)."""
    return int(os.environ.get("RANK", "0") or 0)


def is_main_process() -> bool:
    """Whether this is the process that writes and reports (rank 0, or the only one)."""
    return process_index() == 0


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when visible (and not launched with ``accelerate launch --cpu``), else cpu; ``cuda``
    without a visible GPU is an error; ``cpu`` stays."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() and not _cpu_forced() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is visible; use --device cpu or auto")
    return device


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


def check_launch() -> None:
    """Refuse ``accelerate launch --cpu --num_processes N>1``: accelerate 1.15 then starts ONE process
    (several CPU processes only through torchrun, ``--multi_gpu``), which would silently train alone."""
    if _cpu_forced() and "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ:
        raise UsageError("accelerate launch --cpu starts a single process whatever --num_processes says; for N CPU processes "
                         "run: accelerate launch --multi_gpu --num_processes N -m musictl ... --device cpu (docs/distributed.md)")
