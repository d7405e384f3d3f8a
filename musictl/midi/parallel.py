"""Ordered parallel map over files, for tokenizing and decoding whole corpora."""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any


class ordered_map:
    """``with ordered_map(func, jobs, workers, init, args) as results:`` the results of ``func`` over
    ``jobs`` in order, computed in this process (one worker or one job) or by a forked pool that is
    always cleaned up (terminated on an error or Ctrl-C). ``init(*args)`` runs once per process."""

    def __init__(self, func: Callable, jobs: Sequence, workers: int, init: Callable[..., None], args: tuple = ()):
        self.func, self.jobs, self.workers, self.init, self.args, self.pool = func, jobs, max(1, workers), init, args, None

    def __enter__(self) -> Iterator[Any]:
        if self.workers == 1 or len(self.jobs) < 2:
            self.init(*self.args)
            return map(self.func, self.jobs)
        context = multiprocessing.get_context("fork")
        self.pool = context.Pool(min(self.workers, len(self.jobs)), initializer=_worker_init, initargs=(self.init, *self.args))
        chunk = max(1, min(64, len(self.jobs) // (self.workers * 8)))
        return self.pool.imap(self.func, self.jobs, chunksize=chunk)

    def __exit__(self, exc_type, *_) -> None:
        if self.pool is not None:
            if exc_type is None:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()


def _worker_init(init: Callable[..., None], *args: Any) -> None:
    """A pool worker never prints: Ctrl-C is the parent's to handle (it terminates the pool), and the
    parent's SIGTERM handler (which raises KeyboardInterrupt for a clean-up message) is not inherited,
    so ``terminate()`` ends a worker silently instead of with a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    init(*args)
