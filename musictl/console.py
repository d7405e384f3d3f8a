"""Where musictl talks: data on stdout, messages and progress bars on stderr.

The library never prints: it reports progress through :class:`musictl.progress.Progress` callbacks
and notes through the ``musictl`` logger; :func:`track` and :func:`route_library_logs` turn both
into output here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

err = Console(stderr=True, highlight=False)


def info(message: str) -> None:
    err.print(message)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}")


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 worker``, ``2 workers``."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


class _ConsoleHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            warn(message)
        else:
            err.print(f"[dim]note:[/] {message}", soft_wrap=True)


def route_library_logs() -> None:
    """Show the library's notes (INFO) and warnings on stderr, once."""
    logger = logging.getLogger("musictl")
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        logger.addHandler(_ConsoleHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False


def progress(*extra_columns) -> Progress:
    """A progress bar on stderr (hidden when stderr is not a terminal, e.g. in CI logs)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )


@contextlib.contextmanager
def track(description: str, total: int | None = None,
          describe: Callable[[Mapping[str, Any]], str] | None = None,
          log_every: Callable[[Mapping[str, Any]], str | None] | None = None) -> Iterator[Callable]:
    """A :class:`musictl.progress.Progress` callback drawing one bar on stderr.

    ``describe(row)`` gives the text beside the bar; ``log_every(row)`` a line to print when stderr is
    not a terminal (CI logs), or None to print nothing for that row.
    """
    with progress(TextColumn("{task.fields[info]}")) as bar:
        task = bar.add_task(description, total=total, info="")

        def on_progress(done: int, total: int | None, row: Mapping[str, Any] | None = None) -> None:
            bar.update(task, completed=done, total=total, info=describe(row) if (describe and row) else "")
            if log_every and row and not err.is_terminal:
                line = log_every(row)
                if line:
                    err.print(line)

        yield on_progress
