"""Commands of the transfer pipeline (registered by :func:`register`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """No transfer commands are available yet."""
