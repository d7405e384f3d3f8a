"""Adapting a pre-trained MidiBert to one style's next notes (LoRA through peft, or in full): ``musictl adapt``.

The pre-trained encoder (a ``bert`` artifact) becomes a causal next-note model
(:class:`musictl.bert.nextnote.MidiBertForNextNote`; its heads start as the MLM heads) and is trained on the training
pieces of one style of a tokens artifact (``--pieces K``: K of them, drawn with the seed as the few-shot benchmark
draws them), with the next-note NLL as the loss. With LoRA (the default) only rank-``--rank`` matrices beside the
attention and dense projections (``query``, ``key``, ``value``, ``dense``) and the next-note heads train (the heads
are peft's ``modules_to_save``); ``--full`` trains every weight. Each epoch (every training window once, repeated
until it fills a batch; a window of a piece longer than ``--max-len`` notes is a random crop of it, drawn from the
sample's place in the stream) ends with the style's validation pieces' next-note NLL; training stops once it has
gone ``--patience`` epochs without falling, and the weights of the lowest one are kept.

The trainer is what differs from the other trainers, under the same names: :func:`build`, :func:`forward`,
:func:`evaluate`, :func:`write_artifact`, :func:`model_card`; :func:`adapt` hands the rest to
:meth:`musictl.training.Run.fit` (checkpoints, ``--resume``, curves, ``--report-to``). The artifact
(``WORKDIR/adapted/<style>``) holds the adapter (``adapter_model.safetensors``, with a reference to its base model
resolved against the workspace) or the full weights, the validation NLL per field before and after, and a card;
:func:`load_adapted` gives the model back, ready for next-note distributions.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from musictl import artifacts, training, workspace
from musictl import constants as C
from musictl.bert import nextnote
from musictl.bert.model import load_midibert
from musictl.bert.settings import STYLE_JOIN, AdaptSettings, adapt_styles
from musictl.errors import ArtifactError, UsageError
from musictl.midi.tokens import Piece, TokenCorpus
from musictl.progress import Progress

KIND = artifacts.ADAPTED
CROP = "crop"  # the random stream of the training crops (index: the sample's stream position)
LORA_TARGETS = ("query", "key", "value", "dense")  # BERT's attention projections and its dense layers
HEADS = "next_heads"  # the module trained in full under LoRA too (peft's modules_to_save)
ADAPTER_FILE, ADAPTER_CONFIG, WEIGHTS_FILE = "adapter_model.safetensors", "adapter_config.json", "model.safetensors"
log = logging.getLogger(__name__)

__all__ = ["AdaptResult", "AdaptSettings", "adapt", "load_adapted"]


@dataclasses.dataclass
class AdaptResult:
    """What an adaptation run did (``to_dict()`` is metrics.json)."""

    style: str
    mode: str  # lora | full | scratch
    train_pieces: list[str]
    valid_pieces: list[str]
    before: dict  # validation next-note NLL before adaptation: loss (mean over fields) and fields (per field)
    after: dict  # the same at the best epoch (the weights kept)
    best_epoch: int
    epochs_run: int
    steps: int
    cpu_seconds: float  # CPU time of the training loop (validation included), over every resumed part
    seconds: float  # wall time of this part of the run
    trainable_parameters: int
    total_parameters: int
    history: list[dict]
    batch: dict
    stopped_early: str | None = None
    main_process: bool = True

    def improvement(self) -> dict[str, float]:
        """Before minus after, per field (nats per note; positive: adaptation lowered the NLL)."""
        return {name: round(self.before["fields"][name] - self.after["fields"][name], 5) for name in self.after["fields"]}

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("main_process")
        data.update(data.pop("batch"))
        data["improvement"] = self.improvement()
        return data


# ----- the style's pieces -----------------------------------------------------------------------------------------
def draw_pieces(pool: list[Piece], k: int | None, seed: int) -> list[Piece]:
    """``k`` pieces of ``pool`` drawn with ``seed``, in pool order (None or k >= the pool: all): the draw of
    :func:`musictl.transfer.fewshot.draw_shots`, so a benchmark pairs its cells with the count models'."""
    if k is None or k >= len(pool):
        return list(pool)
    # own seeding: which pieces are the shots is a data split, the few-shot protocol's
    return [pool[i] for i in sorted(np.random.default_rng(seed).choice(len(pool), k, replace=False))]


def target_styles(corpus: TokenCorpus, tokens_path: Path, settings: AdaptSettings) -> list[str]:
    """The styles adapted to: ``--style`` (one, or several joined by +) or every style of the tokens
    (``--all-styles``); an unknown style lists the known ones."""
    if settings.all_styles:
        return list(corpus.styles)
    return [workspace.check_style(style, corpus.styles, tokens_path) for style in adapt_styles(settings.style)]


def style_pieces(corpus: TokenCorpus, tokens_path: Path, settings: AdaptSettings) -> tuple[list[Piece], list[Piece]]:
    """(training pieces, validation pieces) of the style(s): with several, their pools one after the other (the K of
    ``--pieces`` drawn from them together); an unknown style lists the known ones."""
    train, valid = [], []
    for style in target_styles(corpus, tokens_path, settings):
        pool, held = corpus.select(style=style, split="train"), corpus.select(style=style, split="valid")
        if not (pool and held):
            raise UsageError(f"adapt needs training and validation pieces of '{style}' (it has {len(pool)} and {len(held)} "
                             f"in {tokens_path}); tokenize with a split that gives each some, e.g. --split 0.6,0.2,0.2")
        train += pool
        valid += held
    return draw_pieces(train, settings.pieces, settings.seed), valid


# ----- the model ---------------------------------------------------------------------------------------------------
def base_kind(model_dir: Path) -> str:
    """The kind of artifact ``model_dir`` holds when it is one a run can start from (``adapted``), else ``bert`` (whose
    absence or damage :func:`musictl.artifacts.require` then reports)."""
    manifest = Path(model_dir) / artifacts.MANIFEST
    return KIND if manifest.is_file() and artifacts.read_manifest(Path(model_dir)).kind == KIND else artifacts.BERT


def base_model(model_dir: Path) -> nextnote.MidiBertForNextNote:
    """The next-note model the adaptation starts from: a pre-trained ``bert``'s encoder with its MLM heads as next-note
    heads, or an ``adapted`` model as it is (LoRA merged): adapting an adapted model continues it."""
    if base_kind(model_dir) == KIND:
        return load_adapted(model_dir)
    return nextnote.MidiBertForNextNote.from_encoder(load_midibert(model_dir))


def scratch_model(model_dir: Path, seed: int) -> nextnote.MidiBertForNextNote:
    """A next-note model of ``model_dir``'s architecture (config) with random weights drawn by ``seed``."""
    import copy

    from musictl.bert.model import MidiBertConfig

    config = copy.deepcopy(MidiBertConfig.from_pretrained(str(model_dir)))
    config.causal = True
    config.architectures = [nextnote.MidiBertForNextNote.__name__]
    with torch.random.fork_rng(devices=[]):  # own seeding: the initial weights, no leak into the caller's stream
        torch.manual_seed(seed)
        return nextnote.MidiBertForNextNote(config)


def lora_config(settings: AdaptSettings):
    from peft import LoraConfig

    return LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.lora_dropout,
                      target_modules=list(LORA_TARGETS), modules_to_save=[HEADS], bias="none")


def build(model_dir: Path, corpus: TokenCorpus, tokens_path: Path, settings: AdaptSettings):
    """(the model to train: the next-note model of ``model_dir``, peft-wrapped unless --full; AdamW)."""
    model = scratch_model(model_dir, settings.seed) if settings.from_scratch else base_model(model_dir)
    model.check_tokens(corpus.config, str(tokens_path))
    if not settings.full:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(settings))
    return model, torch.optim.AdamW(training.param_groups(model, settings.weight_decay), lr=settings.lr)


def inputs_of(model_dir: Path, corpus: TokenCorpus, tokens_path: Path) -> dict:
    """The inputs the manifest records (tokens, and as ``bert`` the model started from: a pre-trained ``bert`` or an
    ``adapted`` model), after checking the model is complete and not stale."""
    from musictl.bert.finetune import check_pretraining_tokens

    base = artifacts.require(model_dir, base_kind(model_dir))
    if base.kind == artifacts.BERT:
        check_pretraining_tokens(model_dir, base, tokens_path, corpus)
    return {"tokens": artifacts.input_ref(tokens_path, corpus.manifest), "bert": artifacts.input_ref(model_dir, base)}


# ----- batches, loss, validation ------------------------------------------------------------------------------------
def training_slots(pieces: list[np.ndarray], max_len: int) -> list[int]:
    """The items of one epoch: a piece's index once per ``max_len`` notes of it (the run repeats them until they fill
    a batch: :meth:`musictl.training.Run.fill_batch`)."""
    return [i for i, tokens in enumerate(pieces) for _ in range(max(1, -(-len(tokens) // max_len)))]


def collate_train(samples: list[training.Sample], pieces: list[np.ndarray], max_len: int, max_bars: int, seed: int
                  ) -> dict[str, torch.Tensor]:
    """A micro-batch: for each sample a crop of ``max_len`` notes of its piece, placed by the :data:`CROP` stream at
    the sample's stream position (the same on any number of processes, and on resume)."""
    windows = []
    for sample in samples:
        tokens = pieces[sample.item]
        start = int(training.rng(seed, CROP, sample.position).integers(0, max(1, len(tokens) - max_len + 1)))
        windows.append(nextnote.window_at(tokens, start, max_len, max_bars))
    inputs, attention, targets = nextnote.batch(windows)
    return {"inputs": inputs, "attention_mask": attention, "targets": targets}


def forward(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss of one micro-batch through the prepared model: the mean over fields of the next-note NLL."""
    return nextnote.loss(model(batch["inputs"], batch["attention_mask"]), batch["targets"])


def evaluate(model, pieces: list[np.ndarray], names: list[str], max_len: int, max_bars: int, batch_size: int, device
             ) -> dict:
    """The validation pieces' next-note NLL per note: ``loss`` (the mean over the fields, the training loss's scale)
    and ``fields`` (each field's)."""
    scores = nextnote.score_pieces(model, pieces, max_len, max_bars, names, batch_size, device)
    return {"loss": round(scores.mean(), 6), "fields": {k: round(v, 6) for k, v in scores.per_note().items()}}


def load_best(model, best_dir: Path) -> None:
    """The weights of the best epoch (``best/`` of the checkpoint) into ``model`` (peft: the adapter and heads)."""
    from safetensors.torch import load_file

    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(best_dir / ADAPTER_FILE)))
    else:
        model.load_state_dict(load_file(str(best_dir / WEIGHTS_FILE)))


def parameter_counts(model) -> tuple[int, int]:
    return sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters())


# ----- the run -----------------------------------------------------------------------------------------------------
def adapt(tokens_path: Path, model_dir: Path, out: Path, settings: AdaptSettings, overwrite: bool = False,
          resume: bool = False, on_progress: Progress | None = None) -> AdaptResult:
    """Adapt the pre-trained MidiBert in ``model_dir`` to ``settings.style`` and write ``out`` (swapped in complete).

    ``resume`` continues an interrupted run from its last epoch's checkpoint, or a finished one with a larger
    ``--epochs``. Ctrl-C / SIGTERM raise :class:`musictl.errors.Interrupted` saying what was kept.
    """
    from musictl.hf import quiet_transformers

    quiet_transformers()
    tokens_path, model_dir = Path(tokens_path), Path(model_dir)
    corpus = TokenCorpus.open(tokens_path)
    train_pieces, valid_pieces = style_pieces(corpus, tokens_path, settings)
    style = STYLE_JOIN.join(target_styles(corpus, tokens_path, settings))
    inputs = inputs_of(model_dir, corpus, tokens_path)
    run = training.Run(settings, clip=settings.clip)
    output = artifacts.resumable(out, KIND, artifacts.safe_name(style, "style"), what=f"adapt run of {style}")
    with run.staged(output, resume, overwrite, inputs=inputs) as state:
        if run.resumed_from:  # the checkpoint continues only on the inputs it was made from
            recorded = artifacts.Manifest(kind=KIND, inputs=state.inputs)
            for role, manifest in (("tokens", corpus.manifest), ("bert", artifacts.read_manifest(model_dir))):
                artifacts.check_input(output.target, recorded, role, manifest, artifacts.producer_of(KIND, style))
        model, optimizer = build(model_dir, corpus, tokens_path, settings)
        max_len = min(settings.max_len, model.config.max_position_embeddings)
        max_bars = corpus.config.max_bars
        train_tokens = [corpus.piece_tokens(p) for p in train_pieces]
        valid_tokens, valid_names = [corpus.piece_tokens(p) for p in valid_pieces], [p.path for p in valid_pieces]
        trainable, total = parameter_counts(model)
        model, optimizer = run.prepare(model, optimizer)
        run.restore()
        unwrapped = run.unwrap(model)
        score = functools.partial(evaluate, unwrapped, valid_tokens, valid_names, max_len, max_bars, settings.batch_size,
                                  run.device)
        if "before" not in state.extra:
            state.extra["before"] = score()
        slots = run.fill_batch(training_slots(train_tokens, max_len))
        collate = functools.partial(collate_train, pieces=train_tokens, max_len=max_len, max_bars=max_bars, seed=settings.seed)
        cpu_before, cpu_start, started = state.extra.get("cpu_seconds", 0.0), time.process_time(), time.perf_counter()

        def row(done: training.StepDone, state: training.TrainerState, valid: dict) -> dict:
            state.extra["cpu_seconds"] = round(cpu_before + time.process_time() - cpu_start, 3)
            train_loss = run.reduce_mean(sum(float(loss) for loss in done.outputs) / len(done.outputs))
            return {"epoch": state.epoch, "step": state.step, "train_loss": round(train_loss, 6),
                    "valid_loss": valid["loss"], "valid": {"fields": valid["fields"]}}

        run.fit(state, training.Cadence.per_epoch(settings.epochs), model, optimizer, None, slots, collate,
                forward=forward, evaluate=score, row=row, early=training.EarlyStopping.of(settings), best=unwrapped,
                history=True, on_progress=on_progress)
        load_best(unwrapped, run.best_dir())
        history = state.extra.get("history", [])
        best = {"loss": state.best["loss"], "fields": state.best["fields"]}
        result = AdaptResult(
            style=style, mode=settings.mode, train_pieces=[p.path for p in train_pieces],
            valid_pieces=valid_names, before=state.extra["before"], after=best, best_epoch=state.best["epoch"],
            epochs_run=len(history), steps=state.step, cpu_seconds=state.extra.get("cpu_seconds", 0.0),
            seconds=round(time.perf_counter() - started, 2), trainable_parameters=trainable, total_parameters=total,
            history=history, batch=run.describe(), stopped_early=state.stopped_early, main_process=run.is_main)
        run.finish(lambda staging: write_artifact(staging, unwrapped, result, settings, state.inputs))
    return result


def write_artifact(tmp: Path, model, result: AdaptResult, settings: AdaptSettings, inputs: dict) -> None:
    """The adapter and the next-note model's config (LoRA) or the full model, metrics.json, the card, the manifest."""
    model.save_pretrained(tmp)
    if hasattr(model, "peft_config"):
        model.get_base_model().config.save_pretrained(tmp)  # what the adapter sits on: vocabulary, causal, sizes
    metrics = result.to_dict()
    artifacts.atomic_write_json(tmp / "metrics.json", metrics)
    (tmp / "README.md").write_text(model_card(settings, metrics))
    fields = ("pitch", "duration")
    artifacts.write_manifest(tmp, artifacts.Manifest(
        kind=KIND, parameters={**settings.to_dict(), "style": result.style, "mode": result.mode, **result.batch},
        inputs=inputs,
        metrics={"mode": result.mode, "train_pieces": len(result.train_pieces), "steps": result.steps,
                 "best_epoch": result.best_epoch, "cpu_seconds": result.cpu_seconds,
                 "valid_nll_before": {f: result.before["fields"][f] for f in fields},
                 "valid_nll_after": {f: result.after["fields"][f] for f in fields}}))


def model_card(settings: AdaptSettings, metrics: dict) -> str:
    how = ("from random weights of the base's architecture (every weight)" if settings.from_scratch else
           "in full (every weight)" if settings.full else
           f"with LoRA (rank {settings.rank}, alpha {settings.alpha:g}, on {', '.join(LORA_TARGETS)}; the next-note heads "
           "trained in full)")
    rows = "\n".join(f"| {name} | {metrics['before']['fields'][name]:.4f} | {metrics['after']['fields'][name]:.4f} |"
                     for name in C.FIELDS)
    return f"""---
library_name: {"transformers" if settings.full else "peft"}
tags: [midi, music, bert, musictl, next-note, {metrics['style']}]
---
# MidiBert adapted to `{metrics['style']}`

A pre-trained MidiBert turned into a left-context next-note model (causal attention, one head per field) by
`musictl adapt`, trained {how}.

- Training pieces: {len(metrics['train_pieces'])}; validation pieces (early stopping): {len(metrics['valid_pieces'])}
- Best epoch {metrics['best_epoch']} of {metrics['epochs_run']}; {metrics['steps']} steps; {metrics['cpu_seconds']:.1f} CPU seconds

Validation next-note NLL (nats per note; each note given only the notes before it):

| field | before | after |
|---|---:|---:|
{rows}

Load: `from musictl.bert.adapt import load_adapted; model = load_adapted(THIS_DIR)`, then
`musictl.bert.nextnote.score_pieces` or `distribution_after`.
"""


# ----- loading -------------------------------------------------------------------------------------------------------
def load_adapted(path: str | Path, device: str = "cpu", merge: bool = True) -> nextnote.MidiBertForNextNote:
    """The adapted next-note model of an ``adapted`` artifact, in eval mode on ``device``: LoRA merged into the base
    weights (``merge``) or kept as a peft model. A missing, damaged or stale file is a one-line error saying what to do."""
    from musictl.hf import quiet_transformers

    quiet_transformers()
    path = Path(path)
    if not (path / artifacts.MANIFEST).is_file():
        artifacts.require(path, KIND)  # the error that names what is there and what makes an adapted model
    found = artifacts.read_manifest(path)
    style = found.parameters.get("style") if found.kind == KIND else None
    manifest = artifacts.require(path, KIND, style)
    remake = f"{artifacts.producer_of(KIND, style)} --overwrite"
    full = bool(manifest.parameters.get("full"))
    needed = (WEIGHTS_FILE,) if full else (ADAPTER_FILE, ADAPTER_CONFIG)
    for name in needed:
        if not (path / name).is_file():
            raise ArtifactError(f"{path} lacks {name}; remake it: {remake}")
    from safetensors import SafetensorError

    try:
        if full:
            model = nextnote.MidiBertForNextNote.from_pretrained(str(path))
        else:
            from peft import PeftModel

            model = PeftModel.from_pretrained(base_model(adapted_base(path, manifest, style)), str(path))
            if merge:
                model = model.merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"{path}: cannot load the adapted model ({first}); remake it: {remake}") from None
    return model.to(device).eval()


def adapted_base(path: Path, manifest: artifacts.Manifest, style: str | None) -> Path:
    """The pre-trained model a LoRA adapter sits on, found relative to the adapter, checked complete and unchanged."""
    base = artifacts.input_path(path, manifest, "bert")
    if base is None:
        raise ArtifactError(f"{path} records no base model; remake it: {artifacts.producer_of(KIND, style)} --overwrite")
    if not (base / artifacts.MANIFEST).is_file():
        raise ArtifactError(f"the base model of {path} is missing ({base}); put it back, or adapt again from another: "
                            f"{artifacts.producer_of(KIND, style)} --model DIR --overwrite")
    current = artifacts.require(base, base_kind(base))
    artifacts.check_input(path, manifest, "bert", current, artifacts.producer_of(KIND, style))
    return base
