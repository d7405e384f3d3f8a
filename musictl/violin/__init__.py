"""Violin text-to-music: MIDI melodies rendered to captioned clips, MusicGen + LoRA, audio metrics."""
