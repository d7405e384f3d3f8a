"""Hugging Face helpers shared by every stage: quiet logging, local-or-hub loading, saving with a card."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from musictl.errors import ArtifactError


def quiet_transformers() -> None:
    """Silence transformers' info logs, progress bars and deprecation warnings (musictl reports itself)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|accelerate)\..*")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def looks_like_path(ref: str | Path) -> bool:
    """A reference that names a place on disk rather than a hub id (``org/name`` or ``name``)."""
    text = str(ref)
    return isinstance(ref, Path) or text.startswith((".", "/", "~")) or os.sep + os.sep in text or text.count("/") > 1


def from_pretrained(cls: Any, ref: str | Path, what: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained(ref)`` for a local directory or a hub id, with a one-line error.

    A local path that does not exist fails at once (no hub round trip). A hub id is looked up in the
    local cache first; only when that misses and the hub is not switched off is the network tried.
    """
    path = Path(str(ref)).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ArtifactError(f"{ref}: not a model directory")
        try:
            return cls.from_pretrained(str(path), **kwargs)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{ref}: cannot load the {what} ({_first_line(exc)}); remake or re-download it") from None
    if looks_like_path(ref):
        raise ArtifactError(f"no {what} at {ref}: no such directory")
    try:
        return cls.from_pretrained(str(ref), local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise ArtifactError(f"{ref} is neither a local directory nor in the Hugging Face cache, and the hub is offline "
                            f"(HF_HUB_OFFLINE); download it where the hub is reachable and pass its directory")
    if not hub_reachable():
        raise ArtifactError(f"{ref} is neither a local directory nor in the Hugging Face cache, and the hub cannot be "
                            "reached; download it where the hub is reachable and pass its directory")
    try:
        return cls.from_pretrained(str(ref), **kwargs)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot load the {what} '{ref}' from the Hugging Face hub ({_first_line(exc)}); "
                            "pass a local model directory instead") from None


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the hub, so a machine without network fails at once instead of retrying
    for half a minute. Behind a proxy (``HTTPS_PROXY``) the hub is assumed reachable."""
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def save_with_card(model: Any, directory: Path, card: str) -> None:
    """``save_pretrained`` plus a model card (README.md), the Hugging Face way."""
    model.save_pretrained(str(directory))
    (Path(directory) / "README.md").write_text(card)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
