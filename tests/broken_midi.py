"""A folder of broken and odd MIDI files, each with the outcome a user should get."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from tests.midi_factory import midi_bytes


def _chunk(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack(">I", len(data)) + data


def _header(fmt: int = 0, tracks: int = 1, division: int = 480) -> bytes:
    return _chunk(b"MThd", struct.pack(">HHH", fmt, tracks, division))


def _track(events: bytes) -> bytes:
    return _chunk(b"MTrk", events + b"\x00\xff\x2f\x00")


GOOD = midi_bytes([(0, 1, 60, 80), (1, 1, 62, 80), (2, 2, 64, 90)])
NOTE = b"\x00\x90\x3c\x40\x83\x60\x80\x3c\x00"

# name -> (bytes, expected: "ok" or the start of the reported reason)
CASES: dict[str, tuple[bytes, str]] = {
    "empty.mid": (b"", "empty file"),
    "truncated.mid": (GOOD[: len(GOOD) // 2], "unreadable MIDI"),
    "random.mid": (np.random.default_rng(0).bytes(300), "not a MIDI file (binary"),
    "text.mid": (b"This is a text file, renamed to .mid.\n" * 5, "not a MIDI file (text"),
    "header_only.mid": (_header(0, 0), "no notes"),
    "no_notes.mid": (_header() + _track(b"\x00\xff\x51\x03\x07\xa1\x20"), "no notes"),
    "never_ended.MID": (_header() + _track(b"\x00\x90\x3c\x40\x83\x60\x90\x3e\x40"), "no notes"),
    "zero_ticks_per_beat.mid": (_header(0, 1, 0) + _track(NOTE), "absurd ticks per beat"),
    "smpte_division.mid": (_header(0, 1, 0xE728) + _track(NOTE), "unreadable MIDI"),
    "absurd_onset.mid": (_header(0, 1, 1) + _track(b"\xff\xff\xff\x7f\x90\x3c\x40\x01\x80\x3c\x00"), "absurd length"),
    # these are odd but valid: they must tokenize
    "drums_only.mid": (midi_bytes([(i * 0.5, 0.25, 36, 100) for i in range(8)], is_drum=True), "ok"),
    "zero_length.midi": (_header() + _track(b"\x00\x90\x3c\x40\x00\x80\x3c\x00\x00\x90\x3e\x40\x83\x60\x80\x3e\x00"), "ok"),
    "running_status.kar": (_header() + _track(b"\x00\x90\x3c\x40\x83\x60\x3c\x00\x00\x3e\x40\x83\x60\x3e\x00"), "ok"),
    "huge_duration.mid": (_header() + _track(b"\x00\x90\x3c\x40\xff\xff\xff\x7f\x80\x3c\x00"), "ok"),
    "tpq_9600.mid": (midi_bytes([(0, 1, 60, 80), (0.5, 0.5, 67, 70)], tpq=9600), "ok"),
    "type1_two_tracks.mid": (midi_bytes([(0, 1, 60, 80)], extra_tracks=[("bass", 33, [(0, 2, 36, 70)])]), "ok"),
}


def write_broken_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, (data, _) in CASES.items():
        (root / name).write_bytes(data)
    return root
