"""Options shared by every command, and the wrapper that turns errors into one line + exit code.

Command modules import only this, typer, the torch-free ``settings`` modules and the standard
library at the top; everything heavy (torch, transformers, symusic) is imported inside the command
body so ``musictl --help`` is instant.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from musictl import constants as C
from musictl.errors import Interrupted, MusictlError
from musictl.settings import DeviceName, flag_of

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
# A flag shows no ``<bool>`` type in --help (``metavar=""``): it takes no value (``--overwrite true`` is refused by
# :func:`refuse_flag_values` where a command takes positional paths).
FLAG = ""
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output artifact or file.", metavar=FLAG)]
# The one device option of commands whose settings have no ``device`` field (``musictl.settings.DeviceName``).
DeviceOpt = Annotated[DeviceName, typer.Option("--device", help="Where to compute: auto picks cuda when available.")]
TokensOpt = Annotated[Optional[Path], typer.Option("--tokens", help="Tokens artifact [default: WORKDIR/tokens].")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Output artifact directory [default: in WORKDIR].")]


def tokens_dir(workdir: Path | None, tokens: Path | None) -> Path:
    """``--tokens``, else the workspace's tokens artifact."""
    from musictl import artifacts

    return tokens or artifacts.artifact_dir(workdir, artifacts.TOKENS)


def option(settings_cls: Any, name: str, *flags: str, **kwargs: Any) -> Any:
    """A ``typer.Option`` whose default, help text and range come from one settings field.

    ``lr: float = option(PretrainSettings, "lr")``: the dataclass is the one source of the default.
    """
    field = settings_cls.__dataclass_fields__[name]
    meta = field.metadata
    default = field.default_factory() if field.default is dataclasses.MISSING else field.default
    if isinstance(default, bool) and not flags:
        flag = flag_of(field)
        flags = (f"{flag}/--no-{flag[2:]}",)
    if isinstance(default, bool):
        kwargs.setdefault("metavar", FLAG)
    ranges = {k: meta[k] for k in ("min", "max") if meta.get(k) is not None}
    return typer.Option(default, *(flags or (flag_of(field),)), help=kwargs.pop("help", meta.get("help", "")), **ranges, **kwargs)


def debug_enabled() -> bool:
    return os.environ.get("MUSICTL_DEBUG", "").lower() in ("1", "true", "yes")


def _on_sigterm(signum, frame):  # SIGTERM is handled like Ctrl-C: the same clean-up, the same message
    raise KeyboardInterrupt


_OS_HINTS = {
    13: "check its permissions or choose another --workdir / -o",  # EACCES
    1: "check its permissions or choose another --workdir / -o",  # EPERM
    28: "the disk is full; free some space and run the command again",  # ENOSPC
    30: "the file system is read-only; choose another --workdir / -o",  # EROFS
    2: "no such file or directory",  # ENOENT
}


def os_error_message(exc: OSError) -> str:
    where = exc.filename or ""
    hint = _OS_HINTS.get(exc.errno or -1, "")
    what = exc.strerror or str(exc)
    return f"{where}: {what}" + (f"; {hint}" if hint and hint != "no such file or directory" else "") if where else \
        f"{what}" + (f"; {hint}" if hint else "")


def reports_errors(func):
    """Run a command body and report failures the same way everywhere.

    A :class:`MusictlError` becomes ``error: ...`` on stderr with its exit code; an ``OSError``
    (permission denied, disk full) a one-line error naming the file; Ctrl-C and SIGTERM say what was
    kept. Anything else is a bug: one line, and the traceback with ``--debug`` or ``MUSICTL_DEBUG=1``.
    Whatever the failure, the folders the command created that are still empty (a fresh ``musictl-work/``)
    are removed again.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from rich.markup import escape

        from musictl import artifacts
        from musictl.console import err, route_library_logs

        route_library_logs()
        previous = None
        try:
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
        except ValueError:  # not the main thread (e.g. inside a test runner thread)
            previous = None
        mark, done = artifacts.created_mark(), False
        try:
            result = func(*args, **kwargs)
            done = True
            return result
        except Interrupted as exc:
            err.print(f"[bold red]interrupted[/]: {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[bold red]interrupted[/]: unfinished output was removed; existing artifacts were left as they were")
            raise typer.Exit(130) from None
        except MusictlError as exc:
            if debug_enabled():
                raise
            err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            if debug_enabled():
                raise
            err.print(f"[bold red]error:[/] {escape(os_error_message(exc))}", soft_wrap=True)
            raise typer.Exit(1) from None
        except (typer.Exit, typer.Abort, SystemExit) as exc:
            done = getattr(exc, "exit_code", getattr(exc, "code", 1)) in (0, None)
            raise
        except Exception as exc:
            if debug_enabled():
                raise
            text = str(exc).strip().splitlines()
            err.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(text[0]) if text else ''} "
                      "(run again with --debug for the traceback)", soft_wrap=True, markup=True)
            raise typer.Exit(1) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if done:
                artifacts.forget_created(mark)
            else:  # a failed command leaves no empty workspace (or -o folder) that it created
                artifacts.remove_empty_created(mark)

    return wrapper


def warn_if_untrained(path: Path | str | None, workdir: Path | None) -> None:
    """Warn (one line, with the command that helps) when the encoder behind ``path`` learned no field beyond its
    count baselines: a bert artifact, or the one an embeddings artifact was made from."""
    from musictl import artifacts
    from musictl.bert.verdict import encoder_verdict
    from musictl.console import warn

    verdict = encoder_verdict(path)
    if verdict is not None and verdict.learned_nothing:
        warn(verdict.warning(artifacts.artifact_dir(workdir, artifacts.BERT)))


FLAG_WORDS = ("true", "false", "yes", "no", "on", "off")


def refuse_flag_values(context: typer.Context, paths: list[Path] | tuple[Path, ...] | None) -> None:
    """A positional path spelt ``true``/``false``/``yes``/``no`` that does not exist is a value given to a flag
    (``--overwrite true``): a usage error that says flags take no value, not "true: no such file"."""
    from musictl.errors import UsageError

    for path in paths or ():
        word = str(path)
        if word.lower() not in FLAG_WORDS or Path(word).exists():
            continue
        given = [name for name, value in context.params.items() if isinstance(value, bool)
                 and getattr(context.get_parameter_source(name), "name", None) == "COMMANDLINE"]
        if not given:  # no flag was typed: a plain missing path, reported as such by the command
            return
        flags = [f"--{'' if context.params[name] else 'no-'}{name.replace('_', '-')}" for name in given]
        which = f"{flags[0]} is a flag and takes" if len(flags) == 1 else f"flags ({', '.join(flags)}) take"
        raise UsageError(f"'{word}' is not a file: {which} no value; write the flag alone to turn it on, leave it out "
                         "to keep it off")


def complete_style(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of ``--style``: the styles of the workspace (``--workdir``/``--tokens`` when typed first)."""
    from musictl import workspace

    try:
        styles = workspace.known_styles(ctx.params.get("workdir"), ctx.params.get("tokens"))
    except Exception:  # completion never fails loudly
        return []
    return [s for s in styles if s.lower().startswith(incomplete.lower())]


def complete_task(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Shell completion of ``--task``: every registered task, those already fine-tuned in the workspace marked so."""
    from musictl import artifacts, workspace
    from musictl.bert.tasks import TASKS

    try:
        done = set(workspace.named_artifacts(ctx.params.get("workdir"), artifacts.FINETUNE))
    except Exception:  # completion never fails loudly
        done = set()
    return [(task, "fine-tuned in the workspace" if task in done else "task")
            for task in TASKS if task.startswith(incomplete.lower())]


def emit_binary(data: bytes, out: Path | None, what: str = "MIDI", overwrite: bool = False,
                inputs: tuple | list = ()) -> None:
    """Write ``data`` to ``out`` (safely, see :func:`musictl.artifacts.write_output`), or to stdout
    when it is redirected. Binary on a terminal would garble it, so that is an error with a hint."""
    import sys

    from musictl.artifacts import write_output
    from musictl.console import info

    if out is not None and str(out) != "-":
        write_output(Path(out), data, overwrite, inputs)
        info(f"wrote {out} ({len(data)} bytes)")
        return
    if sys.stdout.isatty():
        raise MusictlError(f"refusing to write binary {what} to a terminal; pass -o FILE or redirect: > out.mid")
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


def check_binary_destination(out: Path | None, what: str = "MIDI", overwrite: bool = False, inputs: tuple | list = ()) -> None:
    """The checks of :func:`emit_binary`, made before the work starts."""
    import sys

    from musictl.artifacts import check_output

    if out is not None and str(out) != "-":
        check_output(Path(out), overwrite, inputs)
    elif sys.stdout.isatty():
        raise MusictlError(f"refusing to write binary {what} to a terminal; pass -o FILE or redirect: > out.mid")
