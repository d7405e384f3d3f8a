"""Progress where no terminal is: plain periodic lines (done, rate, time left), as pip and HF print them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from musictl.console import PlainProgress, duration


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_prints_every_interval_and_the_last():
    clock = Clock()
    plain = PlainProgress("pretrain-bert", every=10, clock=clock)
    lines = []
    for step in range(0, 101):  # one step a second
        lines.append(plain.line(step, 100, "loss 1.0"))
        clock.now += 1
    printed = [line for line in lines if line]
    assert len(printed) == 10  # one every 10 s; the last is one of them here
    assert printed[1].startswith("pretrain-bert: 20/100 (20%), 1.00/s, ETA 1m 20s") and printed[1].endswith("| loss 1.0")
    assert printed[-1].startswith("pretrain-bert: 100/100 (100%)") and "ETA" not in printed[-1]


def test_quick_work_prints_nothing():
    clock = Clock()
    plain = PlainProgress("generate-rwr", every=10, clock=clock)
    assert [plain.line(step, 4) for step in range(1, 5)] == [None] * 4


def test_slow_steps_show_seconds_each_and_an_unknown_total_shows_the_count():
    clock = Clock()
    plain = PlainProgress("embed", every=0, clock=clock)
    assert plain.line(0, None) == "embed: 0, elapsed 0s"
    clock.now += 30
    assert plain.line(2, None) == "embed: 2, 15.0s each, elapsed 30s"
    assert duration(3725) == "1h 02m" and duration(65) == "1m 05s"


@pytest.mark.slow
def test_demo_with_stderr_in_a_file_writes_progress_lines(tmp_path):
    log = tmp_path / "log"
    with log.open("w") as handle:
        process = subprocess.run([sys.executable, "-m", "musictl", "demo", "--steps", "30", "--gcn-epochs", "5",
                                  "-w", str(tmp_path / "w"), "-o", str(tmp_path)], stderr=handle, stdout=subprocess.DEVNULL,
                                 cwd=tmp_path, timeout=600, env={**os.environ, "MUSICTL_PROGRESS_SECONDS": "0.2"})
    text = log.read_text()
    assert process.returncode == 0, text
    assert "pretrain-bert: " in text and "pretrain-bert: 30/30 (100%)" in text  # inside the long stage, not only its end
    assert "embed: " in text and "done generate-rwr" in text
