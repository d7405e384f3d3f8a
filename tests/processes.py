"""Launching training processes from tests: ``accelerate launch`` on a free port (never the default 29500, which
two launches of a parallel test run would share)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path


def launch_line(processes: int) -> list[str]:
    """``accelerate launch --multi_gpu --num_processes N`` (docs/distributed.md), on a free port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    accelerate = Path(sys.executable).with_name("accelerate")
    head = [str(accelerate)] if accelerate.exists() else [sys.executable, "-m", "accelerate.commands.launch"]
    if head[-1] != "accelerate.commands.launch":
        head.append("launch")
    return [*head, "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", str(port), "-m", "musictl"]


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
