"""Messages that carry names from data (file names with brackets) print as they are, never as rich markup."""

from __future__ import annotations

import logging

from musictl.console import route_library_logs


def test_an_error_naming_a_bracketed_file_prints_the_name(invoke, tmp_path):
    missing = tmp_path / "song [live] [bold].mid"
    result = invoke("tokenize", missing, "-w", tmp_path / "w")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "song [live] [bold].mid" in result.text and result.text.startswith("error: ")


def test_library_notes_and_warnings_print_brackets(capsys):
    route_library_logs()
    logging.getLogger("musictl.test").warning("skipped a [red] piece [/]")
    logging.getLogger("musictl.test").info("read [dim]x[/dim]")
    err = capsys.readouterr().err
    assert "skipped a [red] piece [/]" in err and "read [dim]x[/dim]" in err
