"""Options shared by every command, and the wrapper that turns errors into one line + exit code.

Command modules import only this, typer and the standard library at the top; everything heavy
(torch, transformers, symusic) is imported inside the command body so ``musictl --help`` is instant.
"""

from __future__ import annotations

import enum
import functools
from pathlib import Path
from typing import Annotated, Optional

import typer

from musictl import constants as C
from musictl.errors import MusictlError


class Device(str, enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


Workdir = Annotated[
    Optional[Path],
    typer.Option(
        "--workdir",
        "-w",
        envvar=C.WORKDIR_ENV,
        help=f"Workspace directory holding the artifacts [default: ./{C.DEFAULT_WORKDIR}].",
        show_default=False,
    ),
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same result.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output artifact.")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="Where to compute: auto picks cuda when available.")]


def resolve_device(device: Device | str) -> str:
    """``auto`` -> ``cuda`` if a GPU is visible, else ``cpu``; ``cuda`` without one is an error."""
    import torch

    name = device.value if isinstance(device, Device) else str(device)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise MusictlError("--device cuda: no CUDA device is visible; use --device cpu or auto")
    return name


def reports_errors(func):
    """Run a command body; a :class:`MusictlError` becomes ``error: ...`` on stderr and its exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from musictl.console import err

        try:
            return func(*args, **kwargs)
        except MusictlError as exc:
            err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[bold red]interrupted[/]: no partial output was kept")
            raise typer.Exit(130) from None

    return wrapper


def emit_binary(data: bytes, out: Path | None, what: str = "MIDI") -> None:
    """Write ``data`` to ``out`` atomically, or to stdout when it is redirected.

    Binary on a terminal would garble it, so that is an error with a hint instead.
    """
    import sys

    from musictl.artifacts import atomic_write_bytes
    from musictl.console import info

    if out is not None and str(out) != "-":
        atomic_write_bytes(Path(out), data)
        info(f"wrote {out} ({len(data)} bytes)")
        return
    if sys.stdout.isatty():
        raise MusictlError(f"refusing to write binary {what} to a terminal; pass -o FILE or redirect: > out.mid")
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
