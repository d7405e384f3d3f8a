"""Settings of pretrain-bert, finetune-mask and predict: the one place their defaults live (torch-free).

The command line reads every default, help text and range from these fields
(``musictl.commands._common.option``); the library takes the same objects. The choices of ``--task`` and
``--objective`` are the registries' (:data:`musictl.bert.tasks.TASKS`, :data:`musictl.bert.objectives.OBJECTIVES`),
read when a command is registered or a setting validated: an entry added there is a choice here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from musictl.bert import objectives, tasks
from musictl.bert.tasks import DEFAULT_EMOTION_PATTERN
from musictl.errors import UsageError
from musictl.settings import DeviceName, Precision, RunSettings, Settings, setting  # noqa: F401 (re-exported for the CLI)


def task_choices() -> Any:
    """``--task``'s choices: a ``Literal`` of the tasks registered now. commands/bert.py calls it inside its
    annotation, which ``musictl.cli.register`` evaluates, so the choices are the registry's at registration."""
    return Literal[tasks.names()]


def objective_choices() -> Any:
    """``--objective``'s choices: a ``Literal`` of the objectives registered now (see :func:`task_choices`)."""
    return Literal[objectives.names()]


def task_help() -> str:
    """``--task``'s help: every registered task with where its labels come from."""
    return tasks.help_text()


def objective_help() -> str:
    """``--objective``'s help: every registered objective with its help."""
    return objectives.help_text()


# The tasks registered when this module was imported (the built-in ones; tests read them). The CLI and the
# validation read the registry itself.
TaskName = task_choices()
Size = Literal["tiny", "mini", "small", "base"]
WeightSource = Literal["train", "valid"]
Preset = Literal["paper"]
Monitor = Literal["both", "accuracy", "loss"]
MONITOR_HELP = ("What --patience watches (musictl.training.EarlyStopping): accuracy or loss (validation; Keras' and the HF "
                "Trainer's rule: N epochs without improving by more than --min-delta), or both (Adversarial-MidiBERT's rule: "
                "accuracy and loss each N epochs without improving, accuracy ties counting as improvements). The best model "
                "is chosen by accuracy unless loss alone is monitored; a perfect validation accuracy stops the run at once.")
MIN_DELTA_HELP = "Smallest change of a monitored metric that counts as an improvement."

# Adversarial-MidiBERT's pre-training (arXiv 2407.08306 and its reference code): base size (12 layers,
# 768 hidden, 12 heads), 1024-note windows, batch 8, AdamW lr 1e-4 and weight decay 0.01, clipping 3.0,
# up to 500 epochs, stopping once validation accuracy and loss have both gone 30 epochs without improving (--monitor both).
PRESETS: dict[str, dict[str, object]] = {
    "paper": {"size": "base", "max_len": 1024, "batch_size": 8, "lr": 1e-4, "weight_decay": 0.01, "clip": 3.0, "epochs": 500,
              "patience": 30, "monitor": "both"},
}
# Fine-tuning learning rates chosen on validation (benchmarks/results/finetune_lr.md, tiny size): from a pre-trained
# model 1e-3 beat 3e-4 on composer (0.730 vs 0.649) and melody (0.743 vs 0.738); from scratch 3e-4 beat 1e-3 on
# composer (0.730 vs 0.703) and tied on melody (0.7635 vs 0.7637)
FINETUNE_LR_PRETRAINED = 1e-3
FINETUNE_LR_SCRATCH = 3e-4


def _short(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-")


@dataclass
class PretrainSettings(RunSettings):
    """``musictl pretrain-bert``: the model size, the objective and the optimisation."""

    size: Size = setting("tiny", "tiny (64 hidden, 2 layers: CPU minutes), mini (128 x 4), small (256 x 4), "
                                 "base (12 layers, 768 hidden, 12 heads).", fixed=True)
    hidden_size: Optional[int] = setting(None, "Override the size's hidden size.", min=8, fixed=True)
    num_hidden_layers: Optional[int] = setting(None, "Override the number of layers.", min=1, flag="--layers", fixed=True)
    num_attention_heads: Optional[int] = setting(None, "Override the number of attention heads.", min=1, flag="--heads", fixed=True)
    field_embed_dim: Optional[int] = setting(None, "Override the per-field embedding size.", min=1, fixed=True)
    dropout: Optional[float] = setting(None, "Override hidden and attention dropout [default: 0.1].", min=0.0, max=0.9, fixed=True)
    objective: str = setting("adversarial", objective_help(), fixed=True)  # checked against the registry in validate()
    mask_ratio: float = setting(0.15, "Share of real notes masked per window.", min=0.01, max=0.9, fixed=True)
    random_share: float = setting(0.2, "hard-mining: share of the mask budget drawn at random.", min=0.0, max=1.0, fixed=True)
    freeze_every: int = setting(5, "adversarial: epochs between mask-book freezes (0: never).", min=0, fixed=True)
    weight_source: WeightSource = setting(
        "train", "adversarial: per-field loss weights 1 / accuracy of the last epoch's training (train) or of the last "
                 "validation (valid, as the reference code).", fixed=True)
    max_len: int = setting(512, "Notes per training window.", min=8, fixed=True)
    # 1e-3: the better of 5e-4 / 1e-3 / 2e-3 for tiny at matched compute in both pre-training sweeps
    # (benchmarks/results/pretrain_sweep.md; 5e-4 learned less per CPU second, 2e-3 without dropout was level with 1e-3)
    lr: float = setting(1e-3, "Peak learning rate (linear warm-up, then linear decay).", min=0.0)
    warmup: float = setting(0.1, "Share of steps spent warming up.", min=0.0, max=1.0)
    weight_decay: float = setting(0.01, "AdamW weight decay (not on biases, norms, embeddings).", min=0.0)
    clip: float = setting(1.0, "Gradient-norm clipping.", min=0.0)
    max_steps: Optional[int] = setting(None, "Optimizer steps (overrides --epochs).", min=1)
    epochs: int = setting(1, "Passes over the training windows.", min=1)
    eval_every: int = setting(100, "Evaluate and checkpoint every N steps.", min=1)
    patience: Optional[int] = setting(
        None, "Stop once the --monitor metric has gone N epochs without improving (checked at each evaluation) "
              "[default: run to the end].", min=1)
    monitor: Monitor = setting("accuracy", MONITOR_HELP, fixed=True)
    min_delta: float = setting(0.0, MIN_DELTA_HELP, min=0.0)
    preset: Optional[Preset] = setting(
        None, "paper: the published pre-training (base size, 1024-note windows, batch 8, lr 1e-4, weight decay 0.01, clip 3.0, "
              "500 epochs, patience 30, monitor both); any flag given overrides it.")

    def validate(self) -> None:
        objectives.lookup(self.objective)  # a registered objective

    def with_preset(self, given: set[str]) -> PretrainSettings:
        """These settings with the preset's values for every field not in ``given`` (the flags typed)."""
        if self.preset is None:
            return self
        values = {**self.to_dict(), **{k: v for k, v in PRESETS[self.preset].items() if k not in given}}
        return type(self)(**values)


@dataclass
class FinetuneSettings(RunSettings):
    """``musictl finetune-mask``: the task, its labels, mask fine-tuning and early stopping."""

    task: Optional[str] = setting(None, task_help(), fixed=True)  # checked against the registry in validate()
    label_pattern: str = setting(DEFAULT_EMOTION_PATTERN, "--task emotion: regex whose group 1 is the label, on the file name.", fixed=True)
    labels_file: Optional[str] = setting(None, "--task label: CSV path,label or JSON {path: label}.", flag="--labels", fixed=True)
    mask_ratio: float = setting(0.15, "Share of input notes masked per batch (0: plain).", min=0.0, max=0.9, fixed=True)
    from_scratch: bool = setting(False, "Do not load pre-trained weights (same architecture).", fixed=True)
    # 30 / 5: on composer (benchmarks/results/finetune_lr.md) runs found their best validation epoch at 6-12 and
    # stopped by patience at 11-17, none at its last epoch; the old 10 / 3 cut the from-scratch run before its best
    epochs: int = setting(30, "Maximum epochs (training usually stops earlier, by --patience).", min=1)
    patience: int = setting(5, "Stop once the --monitor metric has gone N epochs without improving.", min=1)
    monitor: Monitor = setting("accuracy", MONITOR_HELP, fixed=True)
    min_delta: float = setting(0.0, MIN_DELTA_HELP, min=0.0)
    eval_masked: bool = setting(False, "Also report test accuracy on masked input.")
    pitch_shift: int = setting(0, "Piece-level tasks: transpose each training window by a random shift in [-N, N] "
                                  "semitones (0: no augmentation).", min=0, max=12, fixed=True)
    max_len: int = setting(512, "Notes per window.", min=8, fixed=True)
    lr: Optional[float] = setting(None, f"AdamW learning rate [default: {_short(FINETUNE_LR_PRETRAINED)} from a pre-trained "
                                        f"model, {_short(FINETUNE_LR_SCRATCH)} with --from-scratch].", min=0.0)
    weight_decay: float = setting(0.01, "AdamW weight decay (not on biases, norms, embeddings).", min=0.0)
    clip: float = setting(1.0, "Gradient-norm clipping.", min=0.0)
    dropout: Optional[float] = setting(None, "Override the model's hidden and attention dropout [default: the model's].",
                                       min=0.0, max=0.9, fixed=True)

    def validate(self) -> None:
        if self.task is None:
            raise UsageError(f"--task is required: {tasks.summary()}")
        # a registered task, given what it needs (--task label: --labels)
        tasks.TaskSpec(self.task, self.label_pattern, Path(self.labels_file) if self.labels_file else None)
        if self.lr is None:
            self.lr = FINETUNE_LR_SCRATCH if self.from_scratch else FINETUNE_LR_PRETRAINED


@dataclass
class PredictSettings(Settings):
    """``musictl predict``: how the windows of a new file are scored."""

    max_len: int = setting(512, "Notes per window (at most the model's positions).", min=8)
    batch_size: int = setting(8, "Windows per batch.", min=1)
    device: DeviceName = setting("auto", "Where to compute: auto picks cuda when available.")


# Learning rates of `musictl adapt`: starting points, not yet chosen on a measurement (the few-shot benchmark is
# where they get measured). LoRA trains a few small matrices and the heads, so it takes the fine-tuning rate of a
# pre-trained model; full adaptation moves every weight of the encoder and starts ten times lower, the usual
# precaution against forgetting the pre-training on a handful of pieces.
ADAPT_LR_LORA = 1e-3
ADAPT_LR_FULL = 1e-4
# From random weights nothing is there to forget, and a tiny model learns next to nothing in a few dozen steps at
# 1e-4: a from-scratch run takes the LoRA rate (a starting point too).
ADAPT_LR_SCRATCH = 1e-3
STYLE_JOIN = "+"  # several styles as one name: "blues+march" (the artifact's name and its --style)


def adapt_styles(style: str | None) -> list[str]:
    """The styles a ``--style`` value names: one, or several joined by ``+`` (in the order given, once each)."""
    if not style:
        return []
    return list(dict.fromkeys(part.strip() for part in str(style).split(STYLE_JOIN) if part.strip()))


@dataclass
class AdaptSettings(RunSettings):
    """``musictl adapt``: a pre-trained MidiBert taught one style's next notes (LoRA or in full), early-stopped on the
    style's validation pieces; or several styles' (``style`` "a+b", or ``all_styles``), or from random weights."""

    style: Optional[str] = setting(None, "The style to adapt to (a folder name given to tokenize); several: repeat "
                                         "--style (or join them with +).", fixed=True)
    all_styles: bool = setting(False, "Adapt to every style of the tokens at once (their training pieces together, "
                                      "early-stopped on all their validation pieces) instead of --style.", fixed=True)
    full: bool = setting(False, "Train every weight instead of LoRA matrices (the next-note heads train either way).",
                         fixed=True)
    from_scratch: bool = setting(False, "Random weights of the --model's architecture (seeded by --seed) instead of its "
                                        "pre-trained ones; trains every weight (implies --full).", fixed=True)
    pieces: Optional[int] = setting(
        None, "Use only K of the style's training pieces, drawn with --seed (the few-shot benchmark's draw) "
              "[default: all of them].", min=1, fixed=True)
    rank: int = setting(8, "LoRA rank.", min=1, max=1024, fixed=True)
    alpha: float = setting(16.0, "LoRA alpha (scale = alpha / rank).", min=0.0, fixed=True)
    lora_dropout: float = setting(0.05, "LoRA dropout.", min=0.0, max=0.9, fixed=True)
    max_len: int = setting(256, "Notes per window (at most the model's positions); a longer piece gives several "
                                "windows, each epoch a random crop of it.", min=8, fixed=True)
    epochs: int = setting(50, "Maximum epochs (one epoch: every training window once, repeated until it fills a "
                              "batch); training usually stops earlier, by --patience.", min=1)
    patience: int = setting(5, "Stop once the validation next-note NLL has gone N epochs without improving.", min=1)
    min_delta: float = setting(0.0, "Smallest fall of the validation NLL (nats per note) that counts as an improvement.",
                               min=0.0)
    lr: Optional[float] = setting(None, f"AdamW learning rate [default: {_short(ADAPT_LR_LORA)} with LoRA, "
                                        f"{_short(ADAPT_LR_FULL)} with --full, {_short(ADAPT_LR_SCRATCH)} with "
                                        "--from-scratch].", min=0.0)
    weight_decay: float = setting(0.01, "AdamW weight decay (not on biases, norms, embeddings).", min=0.0)
    clip: float = setting(1.0, "Gradient-norm clipping.", min=0.0)

    @property
    def monitor(self) -> str:
        """What early stopping watches (musictl.training.EarlyStopping): the validation NLL, always."""
        return "loss"

    @property
    def mode(self) -> str:
        """lora | full | scratch."""
        return "scratch" if self.from_scratch else "full" if self.full else "lora"

    def validate(self) -> None:
        if self.style is None and not self.all_styles:
            raise UsageError("--style is required: the style to adapt to (musictl status lists the tokens' styles), "
                             "or --all-styles")
        if self.style is not None and self.all_styles:
            raise UsageError("give --style or --all-styles, not both")
        if self.style is not None:
            if not adapt_styles(self.style):
                raise UsageError(f"--style {self.style!r}: name a style")
            self.style = STYLE_JOIN.join(adapt_styles(self.style))
        if self.alpha <= 0:
            raise UsageError(f"--alpha {self.alpha}: must be positive")
        if self.from_scratch:
            self.full = True
        if self.lr is None:
            self.lr = ADAPT_LR_SCRATCH if self.from_scratch else ADAPT_LR_FULL if self.full else ADAPT_LR_LORA
