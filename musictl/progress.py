"""The one progress protocol of the library: ``on_progress(done, total, row)``.

Long-running library functions take an optional ``on_progress`` callback and call it with how much
is done (files, steps, epochs), the total (``None`` while unknown) and, where there is one, the latest
metrics row. The library never draws: the command layer turns the calls into a rich progress bar
(:func:`musictl.console.track`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Progress(Protocol):
    def __call__(self, done: int, total: int | None, row: Mapping[str, Any] | None = None, /) -> None: ...


def no_progress(done: int, total: int | None, row: Mapping[str, Any] | None = None, /) -> None:
    """The default callback: report nothing."""
