"""Where musictl talks: data on stdout, messages and progress bars on stderr.

The library never prints: it reports progress through :class:`musictl.progress.Progress` callbacks
and notes through the ``musictl`` logger; :func:`track` and :func:`route_library_logs` turn both
into output here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

err = Console(stderr=True, highlight=False)


def info(message: str) -> None:
    err.print(message)


def warn(message: str) -> None:
    """``warning: ...`` on stderr as one line, however narrow the terminal (the message is plain text)."""
    err.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 worker``, ``2 workers``."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


class _ConsoleHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            warn(message)
        else:
            err.print(f"[dim]note:[/] {escape(message)}", soft_wrap=True)


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


# seconds between plain progress lines on a stream that is not a terminal (MUSICTL_PROGRESS_SECONDS to change)
PLAIN_EVERY_S = float(os.environ.get("MUSICTL_PROGRESS_SECONDS", "") or 15.0)


def duration(seconds: float) -> str:
    """``42s``, ``3m 05s``, ``1h 02m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


class PlainProgress:
    """Progress as plain lines (what is done, the rate, the time left) for a log file, CI or nohup, where a
    bar would print nothing until the end: one line every ``every`` seconds, and the last one to close
    them (work done within ``every`` seconds prints nothing). pip and the Hugging Face Trainer do the same."""

    def __init__(self, description: str, every: float = PLAIN_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.description, self.every, self.clock = description, every, clock
        self.started: tuple[float, int] | None = None
        self.last_line, self.printed = 0.0, False

    def line(self, done: int, total: int | None, text: str = "") -> str | None:
        """The line to print for this update, or None (too soon after the last)."""
        now = self.clock()
        if self.started is None:
            self.started, self.last_line = (now, done), now
        finished = total is not None and done >= total
        if now - self.last_line < self.every and not (finished and self.printed):
            return None
        self.last_line, self.printed = now, True
        t0, done0 = self.started
        rate = (done - done0) / (now - t0) if now > t0 and done > done0 else None
        parts = [f"{done}/{total} ({100 * done / total:.0f}%)" if total else str(done)]
        if rate:
            parts.append(f"{rate:.2f}/s" if rate >= 1 else f"{1 / rate:.1f}s each")
            if total and not finished:
                parts.append(f"ETA {duration((total - done) / rate)}")
        parts.append(f"elapsed {duration(now - t0)}")
        return f"{self.description}: {', '.join(parts)}" + (f" | {text}" if text else "")

    def __call__(self, done: int, total: int | None, text: str = "") -> None:
        line = self.line(done, total, text)
        if line:
            err.print(line, markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def track(description: str, total: int | None = None,
          describe: Callable[[Mapping[str, Any]], str] | None = None,
          log_every: Callable[[Mapping[str, Any]], str | None] | None = None) -> Iterator[Callable]:
    """A :class:`musictl.progress.Progress` callback drawing one bar on stderr.

    ``describe(row)`` gives the text beside the bar. When stderr is not a terminal (a log file, CI),
    :class:`PlainProgress` prints periodic lines instead, and ``log_every(row)`` a line of its own for the
    rows it chooses (e.g. each evaluation), or None to print nothing for that row.
    """
    plain = None if err.is_terminal else PlainProgress(description)
    with progress(TextColumn("{task.fields[info]}")) as bar:
        task = bar.add_task(description, total=total, info="")

        def on_progress(done: int, total: int | None, row: Mapping[str, Any] | None = None) -> None:
            text = describe(row) if (describe and row) else ""
            bar.update(task, completed=done, total=total, info=text)
            if plain is None:
                return
            line = log_every(row) if (log_every and row) else None
            if line:
                err.print(line)
            plain(done, total, "" if line else text)

        yield on_progress
