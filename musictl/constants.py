"""Format constants of musictl: the Octuple fields, reserved ids, workspace names and file guards.

Run defaults (learning rates, epochs, splits, ...) live in each stage's `settings.py`, not here.
"""

from __future__ import annotations

# Workspace
DEFAULT_WORKDIR = "musictl-work"
WORKDIR_ENV = "MUSICTL_WORKDIR"

# MIDI files recognised when walking a folder (compared case-insensitively).
MIDI_SUFFIXES = (".mid", ".midi", ".kar")

# Octuple fields, in the order of the 8 columns of a token row.
FIELDS = ("bar", "position", "instrument", "pitch", "duration", "velocity", "time_signature", "tempo")
BAR, POSITION, INSTRUMENT, PITCH, DURATION, VELOCITY, TIME_SIGNATURE, TEMPO = range(8)
N_FIELDS = len(FIELDS)

# Special ids reserved at the start of every field's vocabulary.
SPECIALS = ("PAD", "MASK", "BOS", "EOS")
PAD_ID, MASK_ID, BOS_ID, EOS_ID = range(4)
N_SPECIAL = len(SPECIALS)

# The quantisation parameters and their defaults (MusicBERT's) are settings: musictl.midi.settings.
DRUM_PROGRAM = 128  # instrument value used for drum tracks

# Decoding
DECODE_TICKS_PER_BEAT = 480

# Splits
SPLITS = ("train", "valid", "test")  # the run default --split lives in musictl.midi.settings
UNLISTED_SPLIT = "unlisted"  # files that a --split-file does not mention

# The GCN's run defaults (GCN_MAX_EPOCHS, ...) are settings: musictl.transfer.settings.
DEFAULT_SEED = 0

# Guards against absurd files (each such file is reported, not tokenized).
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_NOTES_PER_FILE = 2_000_000
MIN_TICKS_PER_BEAT = 1
MAX_TICKS_PER_BEAT = 32767
