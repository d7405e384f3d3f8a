"""Pre-training MidiBert: build, step, evaluate, save; on 1 CPU, 1 GPU or ``accelerate launch``.

The run lifecycle (checks, lock, staging, checkpoints, ``--resume``, trackers, interrupts) is
:class:`musictl.training.Run`'s; the layout on disk is :func:`musictl.artifacts.resumable`'s::

    OUT/                       the finished artifact: config.json + model.safetensors (the best model by
                               validation masked accuracy), checkpoints/last/ (--resume continues it),
                               metrics.jsonl, metrics.json, curves.png, README.md (model card), manifest.json
    .OUT.staging/              the run in progress, swapped in for OUT only when complete

Every evaluation scores masked-note accuracy per field beside four baselines of the same notes
(:func:`evaluate`), each seeing only what the model sees: the field's most frequent value in the training
split (``unigram``), its most frequent value among the window's visible notes (``window``), the previous
note's value (``previous``) and the most frequent value given the previous and next notes' values,
counted on the training windows (``neighbours``, :mod:`musictl.bert.baselines`). Only notes whose answer
the model cannot see are scored: those made MASK or a random note, not the selected notes the 80/10/10
rule leaves unchanged. A field is learned when the model beats all four (:func:`best_baseline`).

The loop calls the objective only through :class:`musictl.bert.objective.Objective` (``step``,
``on_epoch_end``, ``evaluate_extra``, ``state_dict`` / ``load_state_dict``), built by name with
:func:`musictl.bert.objectives.make_objective`.
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
from torch import nn

from musictl import artifacts, training
from musictl import constants as C
from musictl.bert.baselines import ABSENT, ContextTables, NeighbourTables
from musictl.bert.data import cut_windows, pad_batch
from musictl.bert.losses import field_hits, field_losses
from musictl.bert.masking import validation_masks
from musictl.bert.model import MidiBertConfig, MidiBertForPreTraining
from musictl.bert.objective import Objective, field_weights
from musictl.bert.objectives import make_objective
from musictl.bert.settings import PretrainSettings
from musictl.errors import ArtifactError, UsageError
from musictl.hf import quiet_transformers
from musictl.midi.tokens import TokenCorpus
from musictl.progress import Progress

KIND = artifacts.BERT
MASK = "mask"  # the random stream of the training masks (index: the micro-batch, the same on any number of processes)
BASELINES = ("unigram", "window", "previous", "neighbours", "context")  # what every field is compared with (see evaluate)
LEARNING_FIELDS = ("pitch", "position", "duration")  # the fields that carry the music (instrument, metre are near constant)
log = logging.getLogger(__name__)

__all__ = ["PretrainResult", "PretrainSettings", "pretrain"]


@dataclasses.dataclass
class PretrainResult:
    """What a pre-training run did (``to_dict()`` is metrics.json)."""

    objective: str
    steps: int
    train_windows: int
    valid_windows: int
    train_pieces: int
    parameters: int
    seconds_this_run: float
    notes_per_s: float | None
    final_valid: dict
    best_valid: dict | None
    batch: dict  # per_device_batch_size, processes, grad_accum, global_batch_size, mixed_precision, device
    out: str = ""
    stopped_early: str | None = None  # why --patience ended the run before its last step
    main_process: bool = True

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("main_process")
        data.update(data.pop("batch"))
        data["learned"] = learned_fields(self.best_valid or self.final_valid)
        data["learned_against"] = learned_against(self.best_valid or self.final_valid)
        return data

    def verdicts(self) -> list[str]:
        """One line per field: the model's masked accuracy against its strongest baseline's, then the others'."""
        return field_verdicts(self.best_valid or self.final_valid)


def best_baseline(row: dict) -> tuple[str, float]:
    """The name and accuracy of a field's strongest baseline (one field's row of an evaluation's ``fields``; a row
    written before a baseline existed is compared with those it has; on a tie the first in :data:`BASELINES`)."""
    present = [(name, row[name]) for name in BASELINES if name in row]
    return max(present, key=lambda item: item[1])


def best_trivial(row: dict) -> float:
    """The accuracy of a field's strongest baseline, ``neighbours`` included (see :func:`best_baseline`)."""
    return best_baseline(row)[1]


def field_verdicts(evaluation: dict) -> list[str]:
    """``pitch: NOT learned (model 0.244 vs neighbours 0.250; unigram 0.061, window 0.146, previous 0.057)``
    for every field: the model against its strongest baseline, then the others."""
    lines = []
    for name, row in evaluation.get("fields", {}).items():
        if "unigram" not in row:
            continue
        best, accuracy = best_baseline(row)
        verdict = "learned" if row["accuracy"] > accuracy else "NOT learned"
        others = ", ".join(f"{b} {row[b]:.3f}" for b in BASELINES if b in row and b != best)
        lines.append(f"{name}: {verdict} (model {row['accuracy']:.3f} vs {best} {accuracy:.3f}; {others})")
    return lines


def learned_fields(evaluation: dict) -> dict[str, float]:
    """Per field, the margin of the model's accuracy over its strongest baseline (> 0: learned)."""
    return {name: round(row["accuracy"] - best_trivial(row), 5)
            for name, row in evaluation.get("fields", {}).items() if "unigram" in row}


def learned_against(evaluation: dict) -> dict[str, str]:
    """Per field, the baseline its ``learned`` margin is measured against."""
    return {name: best_baseline(row)[0] for name, row in evaluation.get("fields", {}).items() if "unigram" in row}


class ObjectiveModule(nn.Module):
    """The model and its objective as one module, so that one call of the prepared (DDP) module does a
    whole training step's forward work, masker pass included: DDP synchronises gradients only for
    what runs inside its forward. ``weights`` are the per-field loss weights of the last evaluation."""

    def __init__(self, model: MidiBertForPreTraining, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective
        self.weights: torch.Tensor | None = None
        self.notes = 0  # real notes seen by this process (throughput)

    def reweight(self, evaluation: dict | None, device) -> None:
        self.weights = field_weights(evaluation).to(device) if self.objective.uses_loop_weights else None

    def forward(self, ids, attention_mask, window_ids, generator):
        self.notes += int(attention_mask.sum())
        return self.objective.step(self.model, ids, attention_mask, window_ids, self.weights, generator)


# ----- build ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class PretrainData:
    train_windows: list
    valid_windows: list
    train_pieces: int


def build_data(corpus: TokenCorpus, tokens_path: Path, max_len: int) -> PretrainData:
    """The training and validation windows, or an error that says what to do."""
    train_pieces = corpus.select(split="train")
    if not train_pieces:
        raise ArtifactError(f"{tokens_path} has no training pieces; run: musictl tokenize with a --split that keeps a train share")
    train_windows, _ = cut_windows(corpus, train_pieces, max_len)
    valid_windows, _ = cut_windows(corpus, corpus.select(split="valid"), max_len)
    if not valid_windows:
        raise ArtifactError(f"{tokens_path} has 0 validation windows: no validation split; use --split in musictl tokenize "
                            "(e.g. --split 0.8,0.1,0.1) or add pieces")
    if len(valid_windows) < 4:
        log.warning("%s has only %d validation window(s): validation accuracy will be noisy", tokens_path, len(valid_windows))
    return PretrainData(train_windows, valid_windows, len(train_pieces))


def build_config(corpus: TokenCorpus, settings: PretrainSettings, checkpoint: Path | None) -> MidiBertConfig:
    """The model's config: the checkpoint's when resuming, else the size and overrides of ``settings``."""
    if checkpoint is not None:
        config = MidiBertConfig.from_pretrained(checkpoint / "best")
    else:
        dropout = {} if settings.dropout is None else {
            "hidden_dropout_prob": settings.dropout, "attention_probs_dropout_prob": settings.dropout}
        config = MidiBertConfig.of_size(
            settings.size, corpus.config, hidden_size=settings.hidden_size, num_hidden_layers=settings.num_hidden_layers,
            num_attention_heads=settings.num_attention_heads, field_embed_dim=settings.field_embed_dim, **dropout)
    if settings.max_len > config.max_position_embeddings:
        raise UsageError(f"--max-len {settings.max_len} is longer than the model's {config.max_position_embeddings} positions")
    return config


def build_optimizer(model: nn.Module, settings: PretrainSettings, total_steps: int):
    """AdamW over :func:`musictl.training.param_groups`, linear warm-up then linear decay."""
    from transformers import get_scheduler

    optimizer = torch.optim.AdamW(training.param_groups(model, settings.weight_decay), lr=settings.lr)
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=int(settings.warmup * total_steps),
                              num_training_steps=total_steps)
    return optimizer, scheduler


def build(corpus: TokenCorpus, tokens_path: Path, settings: PretrainSettings, checkpoint: Path | None,
          total_steps: int) -> tuple[ObjectiveModule, torch.optim.Optimizer, Any]:
    """The model (the checkpoint's config when resuming) and its objective as one module, AdamW and its schedule."""
    model = MidiBertForPreTraining(build_config(corpus, settings, checkpoint))
    model.check_tokens(corpus.config, str(tokens_path))
    module = ObjectiveModule(model, make_objective(settings))
    optimizer, scheduler = build_optimizer(module, settings, total_steps)
    return module, optimizer, scheduler


def forward(model: ObjectiveModule, batch: dict[str, torch.Tensor], seed: int):
    """One micro-batch through the prepared :class:`ObjectiveModule`, its masks drawn from the ``mask`` stream at its
    micro-batch index: the objective's step (``.loss`` and the terms the metrics row reports)."""
    generator = training.generator(seed, MASK, int(batch["micro"]))
    return model(batch["ids"], batch["attention_mask"], batch["window_ids"], generator)


def collate_windows(samples: list[training.Sample], batch_size: int) -> dict[str, torch.Tensor]:
    ids, attention_mask = pad_batch([s.item for s in samples])
    return {"ids": ids, "attention_mask": attention_mask, "window_ids": torch.tensor([s.index for s in samples]),
            "micro": torch.tensor(training.micro_batch_of(samples, batch_size))}


def count_baselines(windows: list[np.ndarray]) -> ContextTables:
    """The count tables of the baselines (unigram, neighbours, context) over the training windows."""
    started = time.perf_counter()
    tables = ContextTables.count(windows, NeighbourTables.count(windows), C.PITCH)
    log.debug("baselines counted on %d training windows in %.1f s", len(windows), time.perf_counter() - started)
    return tables


# ----- evaluate -------------------------------------------------------------------------------------
N_SCORES = 2 + len(BASELINES)  # accuracy, loss, then each baseline's accuracy, per field


@torch.no_grad()
def evaluate(run: training.Run, model: MidiBertForPreTraining, loader, ratio: float, tables: ContextTables) -> dict:
    """Masked-note accuracy and loss per field on the validation windows, with the fixed validation masks of
    :func:`musictl.bert.masking.validation_masks` (``ratio`` of each window's real notes, 80/10/10, drawn from
    the window's index: the same notes for every run, batch and number of processes, and the notes the masker
    diagnostics hide), beside the accuracy of the baselines on the same notes. Only hidden notes are scored,
    those made MASK or a random note: a selected note left as it is has its answer in the input.
    ``masked_notes`` counts them."""
    model.eval()
    totals = torch.zeros(N_SCORES * C.N_FIELDS + 1, dtype=torch.float64)
    for batch in loader:
        ids, mask, index = batch["ids"], batch["attention_mask"], batch["window_ids"]
        masks = validation_masks(ids, mask, index, ratio, model.config.vocab_sizes)
        hidden = masks.hidden
        logits = model(masks.corrupted, mask, hidden)
        targets, rows = ids[hidden], hidden.nonzero()[:, 0]
        guesses = baseline_guesses(ids, mask, hidden, tables, model.config.vocab_sizes)
        per_window = torch.zeros(len(ids), N_SCORES * C.N_FIELDS + 1, device=ids.device)
        columns = [field_hits(logits, targets), field_losses(logits, targets), *(guess == targets for guess in guesses)]
        for k, values in enumerate(columns):  # (n_hidden, 8) each
            per_window[:, k * C.N_FIELDS : (k + 1) * C.N_FIELDS].index_add_(0, rows, values.float())
        per_window[:, -1] = hidden.sum(1)
        totals += run.gather(per_window).sum(0).double().cpu()
    model.train()
    return evaluation_row(totals)


def baseline_guesses(ids: torch.Tensor, mask: torch.Tensor, hidden: torch.Tensor, tables: ContextTables,
                     vocab_sizes: list[int]) -> list[torch.Tensor]:
    """What each baseline says for every hidden note, (n_hidden, 8) each, in :data:`BASELINES` order. They read
    only what the model can: the window's visible notes (real and not hidden). ``unigram``: the training split's
    most frequent value; ``window``: the most frequent value of the window's visible notes; ``previous``: the
    previous note's value; ``neighbours``: the training windows' most frequent value given the previous and next
    notes' values (:class:`musictl.bert.baselines.NeighbourTables`); ``context``: the neighbours' distribution
    tilted by the classes of the window's visible notes (:class:`musictl.bert.baselines.ContextTables`: for pitch,
    the window's pitch-class histogram). A neighbour that is hidden, padding or outside the window is absent:
    ``previous`` then takes the unigram's value, ``neighbours`` and ``context`` back off."""
    n, device = int(hidden.sum()), ids.device
    unigram = torch.from_numpy(tables.neighbours.unigram).to(device)
    visible = mask.bool() & ~hidden
    where = hidden.nonzero()
    rows, cols = where[:, 0], where[:, 1]
    modes = []
    for f in range(C.N_FIELDS):
        counts = torch.zeros(len(ids), vocab_sizes[f], device=device)
        counts.scatter_add_(1, ids[..., f].clamp(0, vocab_sizes[f] - 1), visible.float())
        modes.append(torch.where(counts.sum(1) > 0, counts.argmax(1), unigram[f]))
    window_guess = torch.stack(modes, dim=-1)[rows]  # (n, 8)
    absent = torch.full((len(ids), 1, C.N_FIELDS), ABSENT, dtype=ids.dtype, device=device)
    shown = torch.where(visible.unsqueeze(-1), ids, torch.full_like(ids, ABSENT))
    previous = torch.cat([absent, shown[:, :-1]], dim=1)[rows, cols]  # (n, 8); ABSENT where the model cannot see it
    following = torch.cat([shown[:, 1:], absent], dim=1)[rows, cols]
    previous_guess = torch.where(previous == ABSENT, unigram.expand(n, C.N_FIELDS), previous)
    previous, following = previous.cpu().numpy(), following.cpu().numpy()
    neighbours_guess = torch.from_numpy(tables.neighbours.predict(previous, following)).to(device)
    window_classes = []
    for f in range(C.N_FIELDS):  # per hidden note, the class counts of its window's visible notes
        class_of = torch.from_numpy(tables.class_of(f, vocab_sizes[f])).to(device)
        classes = class_of[ids[..., f].clamp(0, vocab_sizes[f] - 1)]
        counted = visible & (classes >= 0)
        per_window = torch.zeros(len(ids), int(class_of.max()) + 2, device=device)
        per_window.scatter_add_(1, classes.clamp(min=0), counted.float())
        window_classes.append(per_window[rows].cpu().numpy())
    context_guess = torch.from_numpy(tables.predict(previous, following, window_classes)).to(device)
    return [unigram.expand(n, C.N_FIELDS), window_guess, previous_guess, neighbours_guess, context_guess]


def evaluation_row(totals: torch.Tensor) -> dict:
    count = int(totals[-1])
    if count == 0:
        return {"accuracy": 0.0, "loss": 0.0, "masked_notes": 0, "fields": {}}
    scores = (totals[:-1] / count).view(N_SCORES, C.N_FIELDS)
    acc, loss = scores[0], scores[1]
    return {
        "accuracy": round(float(acc.mean()), 5),
        "loss": round(float(loss.mean()), 5),
        "masked_notes": count,
        "fields": {name: {"accuracy": round(float(acc[f]), 5), "loss": round(float(loss[f]), 5),
                          **{t: round(float(scores[2 + k, f]), 5) for k, t in enumerate(BASELINES)}}
                   for f, name in enumerate(C.FIELDS)},
    }


def valid_batches(windows: list, batch_size: int, device) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """All validation windows as padded (ids, attention mask, window ids) batches, for ``objective.evaluate_extra``
    (the window ids key their validation masks, as in :func:`evaluate`)."""
    batches = []
    for start in range(0, len(windows), batch_size):
        ids, mask = pad_batch(windows[start : start + batch_size])
        batches.append((ids.to(device), mask.to(device), torch.arange(start, start + len(ids))))
    return batches


# ----- the run ----------------------------------------------------------------------------------------
def pretrain(
    tokens_path: Path,
    out: Path,
    settings: PretrainSettings,
    resume: bool = False,
    overwrite: bool = False,
    on_progress: Progress | None = None,
) -> PretrainResult:
    """Pre-train MidiBert on the training split of a tokens artifact (see the module docstring for storage).

    Everything is checked before the output is touched; the old artifact stays whole until the new one
    is complete. Ctrl-C / SIGTERM raise :class:`musictl.errors.Interrupted` saying what was kept.
    """
    quiet_transformers()
    tokens_path = Path(tokens_path)
    corpus = TokenCorpus.open(tokens_path)
    data = build_data(corpus, tokens_path, settings.max_len)
    tables = count_baselines(data.train_windows)
    run = training.Run(settings, clip=settings.clip)
    output = artifacts.resumable(out, KIND, what="pre-training run")
    with run.staged(output, resume, overwrite, inputs={"tokens": artifacts.input_ref(tokens_path, corpus.manifest)}) as state:
        if run.resumed_from:
            artifacts.check_input(output.target, artifacts.Manifest(kind=KIND, inputs=state.inputs), "tokens", corpus.manifest)
        n_train = len(data.train_windows)
        total_steps = settings.max_steps or run.steps_for_epochs(n_train, settings.epochs)
        module, optimizer, scheduler = build(corpus, tokens_path, settings, run.resumed_from, total_steps)
        objective, config = module.objective, module.model.config
        module, optimizer, scheduler = run.prepare(module, optimizer, scheduler)
        collate = functools.partial(collate_windows, batch_size=run.plan.per_device)
        valid_loader = run.eval_loader(data.valid_windows, collate)
        run.restore(("objective", objective))
        core = run.unwrap(module)
        core.reweight(state.last_eval, run.device)

        def validation() -> dict:
            """The scores of :func:`evaluate` and the objective's own; the next steps' field weights follow them."""
            scores = evaluate(run, core.model, valid_loader, settings.mask_ratio, tables)
            if run.is_main:
                scores.update(objective.evaluate_extra(core.model, valid_batches(data.valid_windows, settings.batch_size,
                                                                                 run.device)))
                core.model.train()
            core.reweight(scores, run.device)
            return scores

        def row(done: training.StepDone, state: training.TrainerState, scores: dict | None) -> dict:
            notes_per_s = core.notes * run.num_processes / done.seconds
            return step_row(done, state, scheduler, notes_per_s) | ({"valid": scores} if scores is not None else {})

        started = time.perf_counter()
        run.fit(state, training.Cadence.every(settings.eval_every, total_steps, log_every=max(1, settings.eval_every // 10)),
                module, optimizer, scheduler, data.train_windows, collate, forward=functools.partial(forward, seed=settings.seed),
                evaluate=validation, row=row, early=training.EarlyStopping.of(settings), best=core.model,
                on_epoch_end=lambda epoch: objective.on_epoch_end(epoch, core.model, data.train_windows),
                objects_with_state=[("objective", objective)], on_progress=on_progress)
        seconds = time.perf_counter() - started
        total_notes = int(run.accelerator.reduce(torch.tensor(core.notes, device=run.device), "sum"))
        result = PretrainResult(
            objective=settings.objective, steps=state.step, train_windows=n_train, valid_windows=len(data.valid_windows),
            train_pieces=data.train_pieces, parameters=sum(p.numel() for p in core.model.parameters()),
            seconds_this_run=round(seconds, 2), notes_per_s=round(total_notes / seconds, 1) if seconds and total_notes else None,
            final_valid=state.last_eval, best_valid=state.best, batch=run.describe(), out=str(output.target),
            stopped_early=state.stopped_early, main_process=run.is_main)
        run.finish(functools.partial(write_artifact, run=run, config=config, settings=settings, result=result,
                                     state=state, tokens_path=tokens_path))
    return result


def step_row(done: training.StepDone, state: training.TrainerState, scheduler, notes_per_s: float) -> dict:
    """The metrics.jsonl row of one optimizer step (means over this rank's micro-batches)."""
    outs = done.outputs

    def mean(name: str) -> float:
        return round(sum(float(getattr(o, name)) for o in outs) / len(outs), 5)

    return {"step": done.step, "epoch": state.epoch, "loss": round(sum(float(o.loss.detach()) for o in outs) / len(outs), 5),
            "recover_loss": mean("recover_loss"), "masker_loss": mean("masker_loss"), "accuracy": mean("accuracy"),
            "lr": scheduler.get_last_lr()[0], "notes_per_s": round(notes_per_s, 1)}


def write_artifact(staging: Path, run: training.Run, config: MidiBertConfig, settings: PretrainSettings,
                   result: PretrainResult, state: training.TrainerState, tokens_path: Path) -> None:
    """The best model, metrics, card and manifest, into the staging directory (main process)."""
    best = run.best_dir()
    for name in ("config.json", "model.safetensors"):
        (staging / name).write_bytes((best / name).read_bytes())  # the umask's permissions
    artifacts.atomic_write_json(staging / "metrics.json", result.to_dict())
    (staging / "README.md").write_text(model_card(config, settings, result.to_dict(), tokens_path))
    artifacts.write_manifest(staging, artifacts.Manifest(
        kind=KIND, parameters={**settings.to_dict(), **run.describe(), "model": {k: getattr(config, k) for k in (
            "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "field_embed_dim",
            "max_position_embeddings")}},
        inputs=state.inputs,
        metrics={"valid_accuracy": result.final_valid["accuracy"], "best_valid_accuracy": (result.best_valid or
                 result.final_valid)["accuracy"], "steps": result.steps, "objective": settings.objective}))


def model_card(config: MidiBertConfig, settings: PretrainSettings, metrics: dict, tokens_path: Path) -> str:
    best = metrics["best_valid"] or metrics["final_valid"]
    share = f", random share {settings.random_share}" if settings.objective == "hard-mining" else ""
    learned, against = metrics.get("learned", {}), metrics.get("learned_against", {})

    def verdict(name: str) -> str:
        if name not in learned:
            return "-"
        return f"{'learned' if learned[name] > 0 else 'NOT learned'} ({learned[name]:+.3f} vs {against.get(name, 'best')})"

    fields = "\n".join(f"| {name} | {v['accuracy']:.3f} | {v['loss']:.3f} | "
                       + " | ".join(f"{v.get(b, float('nan')):.3f}" for b in BASELINES) + f" | {verdict(name)} |"
                       for name, v in best.get("fields", {}).items())
    return f"""---
library_name: transformers
tags: [midi, music, bert, musictl]
---
# MidiBert ({settings.objective} pre-training)

A MidiBert encoder (BERT over Octuple notes) pre-trained with `musictl pretrain-bert` on the training
split of `{tokens_path}` ({metrics['train_pieces']} pieces, {metrics['train_windows']} windows of up to
{settings.max_len} notes).

- Objective: `{settings.objective}` (mask ratio {settings.mask_ratio}{share})
- Size: {config.num_hidden_layers} layers, hidden {config.hidden_size}, {config.num_attention_heads} heads,
  {config.field_embed_dim}-d field embeddings, {metrics['parameters']:,} parameters
- Steps: {metrics['steps']}, global batch {metrics['global_batch_size']} ({metrics['per_device_batch_size']} per device x
  {metrics['processes']} process(es) x {metrics['grad_accum']} accumulation), lr {settings.lr}, seed {settings.seed},
  mixed precision {metrics['mixed_precision']}
- Tokenizer vocabulary: `{config.tokenizer_config.vocab_id}` (parameters in config.json)

## Validation (hidden notes, fixed random masks; best step {best.get('step', metrics['steps'])})
Mean accuracy {best['accuracy']:.3f}, mean loss {best['loss']:.3f}, over {best.get('masked_notes', 0):,} hidden notes (made
MASK or a random note; the selected notes the 80/10/10 rule leaves unchanged are not scored).

Baselines of the same notes, each reading only what the model can see: the field's most frequent value
in the training split (unigram), among the window's visible notes (window), the previous note's value
(previous), and the most frequent value given the previous and next notes' values, counted on the
training windows (neighbours). A field is learned when its accuracy beats all four.

| field | accuracy | loss | unigram | window | previous | neighbours | verdict |
|---|---:|---:|---:|---:|---:|---:|---|
{fields}

Load with `musictl.bert.model.load_encoder(path)` or `MidiBertForPreTraining.from_pretrained(path)`.
"""
