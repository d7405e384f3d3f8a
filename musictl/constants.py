"""Every default of musictl in one place, so a change of policy is a one-line diff."""

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

# Reference quantisation (MusicBERT / PianoBART).
POSITIONS_PER_BEAT = 16  # positions per quarter note
MAX_BAR_BEATS = 8  # longest bar in quarter notes (two whole notes); longer bars are split
MAX_BARS = 256  # bar field range; longer pieces continue in a new chunk with bars re-based
DURATION_LEVELS = 8  # doublings of the duration scale
DURATION_STEPS = 16  # codes per doubling (128 codes in all)
VELOCITY_BINS = 32  # velocity // 4
TEMPO_MIN = 16.0  # BPM
TEMPO_MAX = 256.0
TEMPO_BINS_PER_DOUBLING = 12
DRUM_PROGRAM = 128  # instrument value used for drum tracks

# Decoding
DECODE_TICKS_PER_BEAT = 480

# Splits
SPLITS = ("train", "valid", "test")
DEFAULT_SPLIT = (0.8, 0.1, 0.1)
UNLISTED_SPLIT = "unlisted"  # files that a --split-file does not mention

# GCN link prediction: an upper bound, early stopping ends runs sooner (324-759 epochs on the
# benchmark styles; at 300 the best epoch was still the last).
GCN_MAX_EPOCHS = 1000
DEFAULT_SEED = 0

# Guards against absurd files (each such file is reported, not tokenized).
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_NOTES_PER_FILE = 2_000_000
MIN_TICKS_PER_BEAT = 1
MAX_TICKS_PER_BEAT = 32767
