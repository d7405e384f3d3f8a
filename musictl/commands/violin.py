"""Commands of the violin pipeline (registered by :func:`register`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """No violin commands are available yet."""
