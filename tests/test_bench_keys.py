"""benchmarks/keys.py's page from its JSON alone (no run): the planned answer counts the styles within the margin and
names the ones outside it, and the docs block replaces only what lies between its markers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import keys
from harness import cells, docs


def report_cell(style: str, method: str, generated: float, held_out: float) -> tuple[dict, dict]:
    return {"style": style, "method": method}, {
        "report": f"WORK/reports/{style}-{method}.json", "pieces": 16, "reference": {"split": "test", "pieces": 8},
        "key_consistency": generated, "held_out_key_consistency": held_out, "pitch_class_js": 0.02, "interval_js": 0.05,
        "silence_share": 0.0, "duration_ratio": 1.0, "judge": {"accuracy": 0.6, "null_p95": 0.8, "distinguishable": False},
        "walk": {"mix": 0.05}}


def run_data(styles: dict[str, dict[str, float]], held_out: float = 0.95) -> dict:
    data = {"format": 1, "script": keys.SCRIPT, "command": "python benchmarks/keys.py --write", "machine": "test",
            "config": {"styles": list(styles), "split": keys.SPLIT, "seed": 0, "margin": 0.05, "smoke": False,
                       "pop909_songs": 60, "threads": 1, **keys.FULL},
            "cells": {}, "commands": []}
    for style, methods in styles.items():
        for method, value in methods.items():
            settings, cell = report_cell(style, method, value, held_out)
            data["cells"][cells.cell_key(settings)] = {"settings": settings, **cell}
    return data


def test_answer_counts_styles_and_names_failures():
    data = run_data({"bach-chorales": {"common": 0.93, "as-is": 0.80, "transformer": 0.99},
                     "pop909": {"common": 0.89, "as-is": 0.70, "transformer": 0.96}})
    table = keys.summarise(data)
    answer = table["answer"]
    assert answer["common"]["passed"] == ["bach-chorales"] and answer["common"]["failed"] == {"pop909": -0.06}
    assert answer["transformer"]["passed"] == ["bach-chorales", "pop909"] and not answer["yes"]
    text = keys.answer_text(table, 0.05)
    assert text.startswith("**no**") and "1 of 2 styles" in text and "pop909 -0.060" in text
    assert "as-is" not in text  # the as-is walk is exploratory: it never enters the answer


def test_answer_yes_needs_every_style_and_pop909():
    data = run_data({"palestrina": {"common": 0.94, "transformer": 0.97}, "pop909": {"common": 0.96, "transformer": 0.9}})
    assert keys.answer_text(keys.summarise(data), 0.05).startswith("**yes**")
    missing = run_data({"palestrina": {"common": 0.94}, "pop909": {"common": 0.96, "transformer": 0.95}})
    assert keys.summarise(missing)["answer"]["transformer"]["missing"] == ["palestrina"]
    assert keys.answer_text(keys.summarise(missing), 0.05).startswith("**no**")
    bundled = run_data({"palestrina": {"common": 0.94, "transformer": 0.97}})
    assert keys.answer_text(keys.summarise(bundled), 0.05).startswith("**not answered**")


def test_doc_block_replaces_only_between_markers(tmp_path, monkeypatch):
    data = run_data({"fiddle-tunes": {"common": 0.99, "as-is": 0.81, "transformer": 0.97}}, held_out=1.0)
    data["table"] = keys.summarise(data)
    doc = tmp_path / "generate-rwr.md"
    start, end = docs.markers(keys.DOC_BLOCK, keys.SCRIPT)
    doc.write_text(f"before\n{start}\nold table\n{end}\nafter\n")
    monkeypatch.setattr(keys, "DOC", doc)
    keys.write_doc(data)
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("\nafter\n") and "old table" not in text
    assert "| fiddle-tunes | 1.000 (8) | 0.990 (-0.010) | 0.810 (-0.190) | 0.970 (-0.030) |" in text
    assert "Written by `python benchmarks/keys.py --write`" in text


def test_a_docs_block_keeps_its_markers_and_refuses_a_page_without_them(tmp_path):
    doc = tmp_path / "page.md"
    start, end = docs.markers("a table", "benchmarks/x.py")
    doc.write_text(f"intro\n{start}\nold\n{end}\nrest {start[:4]}\n")
    docs.replace_block(doc, "a table", "benchmarks/x.py", "new\n")
    assert doc.read_text() == f"intro\n{start}\nnew\n{end}\nrest {start[:4]}\n"
    docs.replace_block(doc, "a table", "benchmarks/x.py", "newer")  # again: the block is replaced, not appended to
    assert doc.read_text().count("new") == 1 and "newer" in doc.read_text()
    for broken in (f"{start}\nno end\n", f"{end}\n{start}\n", f"{start}\n{start}\n{end}\n", "nothing\n"):
        doc.write_text(broken)
        with pytest.raises(SystemExit, match=r"^error: .* needs one"):
            docs.replace_block(doc, "a table", "benchmarks/x.py", "x")
        assert doc.read_text() == broken
