"""Progress where no terminal is: plain periodic lines (done, rate, time left), as pip and HF print them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from musictl.console import PlainProgress, duration


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_prints_the_first_update_then_every_interval_and_the_last():
    clock = Clock()
    plain = PlainProgress("pretrain-bert", every=10, clock=clock)
    lines = []
    for step in range(1, 101):  # one step a second
        clock.now += 1
        lines.append(plain.line(step, 100, "loss 1.0"))
    printed = [line for line in lines if line]
    assert printed[0].startswith("pretrain-bert: 1/100 (1%)")
    assert len(printed) == 1 + 9 + 1  # the first, one every 10 s, the last
    assert printed[2].startswith("pretrain-bert: 21/100 (21%), 1.00/s, ETA 1m 19s") and printed[2].endswith("| loss 1.0")
    assert printed[-1].startswith("pretrain-bert: 100/100 (100%)") and "ETA" not in printed[-1]


def test_slow_steps_show_seconds_each_and_an_unknown_total_shows_the_count():
    clock = Clock()
    plain = PlainProgress("embed", every=0, clock=clock)
    plain.line(0, None)
    clock.now += 30
    assert plain.line(2, None) == "embed: 2, 15.0s each, elapsed 30s"
    assert duration(3725) == "1h 02m" and duration(65) == "1m 05s"


@pytest.mark.slow
def test_demo_with_stderr_in_a_file_writes_progress_lines(tmp_path):
    log = tmp_path / "log"
    with log.open("w") as handle:
        process = subprocess.run([sys.executable, "-m", "musictl", "demo", "--steps", "30", "--gcn-epochs", "5",
                                  "-w", str(tmp_path / "w"), "-o", str(tmp_path)], stderr=handle, stdout=subprocess.DEVNULL,
                                 cwd=tmp_path, timeout=600)
    text = log.read_text()
    assert process.returncode == 0, text
    assert "pretrain-bert: 1/30" in text and "pretrain-bert: 30/30 (100%)" in text  # inside the long stage, not only its end
    assert "embed: " in text and "done generate-rwr" in text
