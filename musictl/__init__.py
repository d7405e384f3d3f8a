"""musictl: machine learning on music from the command line.

Pipelines: tokenize MIDI into Octuple tokens; pre-train and fine-tune MidiBert; cross-style
generation through token graphs; violin text-to-music with LoRA on MusicGen.
"""

__version__ = "0.1.0"
