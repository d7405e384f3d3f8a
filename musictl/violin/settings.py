"""Settings of the violin stage (prepare, train, generate, evaluate): the one place each default lives.

Torch-free, so the command line can read defaults, help texts and ranges from here at ``--help``
time. Paths (inputs, outputs, the workspace) are not settings: they are given per run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from musictl.constants import DEFAULT_SEED
from musictl.errors import UsageError
from musictl.settings import RunSettings, Settings, setting

DEFAULT_BASE = "facebook/musicgen-small"
TINY = "tiny-random"
SAMPLE_RATE = 32_000  # MusicGen's EnCodec rate

# Decoder modules LoRA may adapt (in self- and cross-attention, and the MLP of each layer).
ALLOWED_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
# --lora-targets presets: the modules each adapts.
TARGET_PRESETS = {
    "attention": ("q_proj", "v_proj"),
    "attention-mlp": ("q_proj", "v_proj", "fc1", "fc2"),
}
SEED_HELP = "Random seed: the same seed gives the same result."


@dataclass
class PrepareSettings(Settings):
    """How ``lora-violin prepare`` cuts, renders and splits the clips."""

    track: Optional[str] = setting(None, "Melody = this named track [default: the highest voice].")
    seconds: float = setting(8.0, "Clip length in seconds.", min=1.0, max=30.0)
    limit: int = setting(64, "At most this many clips.", min=1)
    valid: float = setting(0.2, "Share of clips held out for validation/evaluation.", min=0.0, max=0.5)
    seed: int = setting(DEFAULT_SEED, SEED_HELP, min=0)


@dataclass
class LoraTrainSettings(RunSettings):
    """LoRA on MusicGen's decoder (peft ``LoraConfig`` terms) and its training loop (a :class:`RunSettings`)."""

    base: str = setting(DEFAULT_BASE, f"MusicGen hub id or local directory; '{TINY}' builds a small untrained one.", fixed=True)
    lora_targets: Literal["attention", "attention-mlp"] = setting(
        "attention", "Modules to adapt: attention = q_proj,v_proj; attention-mlp = q_proj,v_proj,fc1,fc2.", fixed=True)
    targets: Optional[str] = setting(
        None, f"Explicit decoder modules instead of --lora-targets, comma-separated: {','.join(ALLOWED_TARGETS)}.", fixed=True)
    rank: int = setting(16, "LoRA rank.", min=1, max=1024, fixed=True)
    alpha: float = setting(32.0, "LoRA alpha (scale = alpha / rank).", min=0.0, fixed=True)
    dropout: float = setting(0.05, "LoRA dropout.", min=0.0, max=0.9, fixed=True)
    lr: float = setting(2e-4, "AdamW learning rate.", min=0.0, max=1.0)
    weight_decay: float = setting(0.01, "AdamW weight decay of the LoRA matrices.", min=0.0, max=1.0)
    batch_size: int = setting(4, "Clips per step on each process (x processes x --grad-accum per optimizer step).", min=1)
    max_steps: int = setting(0, "Optimizer steps (0: use --epochs).", min=0)
    epochs: int = setting(3, "Passes over the training clips when --max-steps is 0.", min=1)
    drop_text: float = setting(0.2, "Share of samples trained without text (keeps guidance working).", min=0.0, max=1.0, fixed=True)
    grad_checkpointing: bool = setting(False, "Recompute decoder activations to save GPU memory.")
    eval_every: int = setting(50, "Validate and checkpoint every N steps.", min=1)
    seed: int = setting(DEFAULT_SEED, SEED_HELP, min=0, fixed=True)

    def validate(self) -> None:
        if self.lr <= 0:
            raise UsageError(f"--lr {self.lr}: must be positive")
        if self.alpha <= 0:
            raise UsageError(f"--alpha {self.alpha}: must be positive")
        self.modules()  # an unknown --targets entry is an error now, not after loading the base

    def modules(self) -> tuple[str, ...]:
        """The decoder modules to adapt: ``--targets`` when given, else the ``--lora-targets`` preset."""
        if self.targets is None:
            return TARGET_PRESETS[self.lora_targets]
        names = tuple(dict.fromkeys(t.strip() for t in self.targets.split(",") if t.strip()))
        bad = [t for t in names if t not in ALLOWED_TARGETS]
        if not names or bad:
            raise UsageError(f"--targets {self.targets}: choose from {', '.join(ALLOWED_TARGETS)} "
                             f"(or a preset: --lora-targets {' | '.join(TARGET_PRESETS)})")
        return names

    def preset(self) -> str:
        """The preset whose modules are adapted, or ``custom`` for another ``--targets`` list."""
        modules = set(self.modules())
        return next((name for name, mods in TARGET_PRESETS.items() if set(mods) == modules), "custom")



@dataclass
class GenerateSettings(Settings):
    """How ``lora-violin generate`` samples."""

    base: Optional[str] = setting(None, "MusicGen hub id or directory [default: the adapter's base].")
    seconds: float = setting(8.0, "Length of the audio.", min=0.5, max=30.0)
    guidance: float = setting(3.0, "Classifier-free guidance scale (1 = off).", min=1.0, max=50.0)
    seed: int = setting(DEFAULT_SEED, SEED_HELP, min=0)


@dataclass
class EvaluateSettings(Settings):
    """How ``lora-violin evaluate`` compares base and base + adapter."""

    base: Optional[str] = setting(None, "MusicGen hub id or directory [default: the adapter's base].")
    seconds: float = setting(8.0, "Seconds generated per held-out clip.", min=0.5, max=30.0)
    guidance: float = setting(3.0, "Classifier-free guidance scale (1 = off).", min=1.0, max=50.0)
    limit: int = setting(16, "At most this many held-out clips.", min=1)
    seed: int = setting(DEFAULT_SEED, SEED_HELP, min=0)
