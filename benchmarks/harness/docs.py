"""Blocks of the docs that a benchmark writes: the text between two HTML comment markers in a page of docs/
(the markers stay; what lies between them is the benchmark's, so no number there is typed by hand)."""

from __future__ import annotations

import sys
from pathlib import Path


def markers(name: str, script: str) -> tuple[str, str]:
    """The opening and closing markers of the block ``name`` written by ``script``."""
    return f"<!-- {name}: {script} -->", f"<!-- end of {name} -->"


def replace_block(doc: Path, name: str, script: str, body: str, write: bool = True) -> str:
    """``doc``'s text with the block ``name`` (:func:`markers`) holding ``body``; written back unless ``write`` is
    False. Each marker must be there exactly once, the opening one first (else a one-line error says so)."""
    doc = Path(doc)
    start, end = markers(name, script)
    text = doc.read_text()
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise SystemExit(f"error: {doc} needs one '{start}' before one '{end}'; restore them from git")
    text = text[: text.index(start) + len(start)] + f"\n{body.strip(chr(10))}\n" + text[text.index(end):]
    if write:
        doc.write_text(text)
        print(f"wrote {name} into {doc}", file=sys.stderr)
    return text
