"""Pre-training MidiBert: build, step, evaluate, save; on 1 CPU, 1 GPU or ``accelerate launch``.

Storage (``OUT`` is ``WORKDIR/bert`` by default)::

    OUT/                       the finished artifact (never touched while a run is in progress)
        config.json, model.safetensors      the best model (by validation masked accuracy)
        checkpoints/last/                   where --resume continues: accelerate state, best/, trainer_state.json
        metrics.jsonl, metrics.json, README.md (model card), manifest.json
    .OUT.staging/              the run in progress (beside OUT): checkpoints/last/, metrics.jsonl;
                               swapped in for OUT only when complete; kept on Ctrl-C / SIGTERM for --resume
    .OUT.lock                  held by the main process for the whole run

The loop calls the objective only through the interface of ``musictl.bert.objectives.make_objective``
(``step``, ``on_epoch_end``, ``evaluate_extra``, ``state_dict`` / ``load_state_dict``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from musictl import artifacts, training
from musictl import constants as C
from musictl.bert.data import cut_windows, pad_batch
from musictl.bert.model import MidiBertConfig, MidiBertForPreTraining
from musictl.bert.objectives import field_weights, make_objective
from musictl.bert.settings import PretrainSettings
from musictl.errors import ArtifactError, Interrupted, UsageError
from musictl.hf import quiet_transformers
from musictl.midi.tokens import TokenCorpus
from musictl.progress import Progress

KIND = "bert"
STATE_FILE = training.STATE_FILE
EVAL_SEED = 7919  # validation masks: the same for every run, objective and number of processes
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
        return data


# ----- the objective ----------------------------------------------------------------------------------
def step_weights(objective_name: str, last_eval: dict | None, device) -> torch.Tensor | None:
    """Per-field loss weights from the last evaluation (mlm, hard-mining); the adversarial objective keeps its own."""
    if objective_name == "adversarial":
        return None
    return field_weights(last_eval).to(device)


class ObjectiveModule(nn.Module):
    """The model and its objective as one module, so that one call of the prepared (DDP) module does a
    whole training step's forward work, masker pass included: DDP synchronises gradients only for
    what runs inside its forward."""

    def __init__(self, model: MidiBertForPreTraining, objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, ids, attention_mask, window_ids, weights, generator):
        return self.objective.step(self.model, ids, attention_mask, window_ids, weights, generator)


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
    if checkpoint is not None:
        config = MidiBertConfig.from_pretrained(checkpoint)
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


def collate_windows(samples: list[training.Sample], batch_size: int) -> dict[str, torch.Tensor]:
    ids, attention_mask = pad_batch([s.item for s in samples])
    return {"ids": ids, "attention_mask": attention_mask, "window_ids": torch.tensor([s.index for s in samples]),
            "micro": torch.tensor(training.micro_batch_of(samples, batch_size))}


def total_steps_of(settings: PretrainSettings, train_windows: int, global_batch: int) -> int:
    return settings.max_steps or max(1, math.ceil(settings.epochs * train_windows / global_batch))


# ----- evaluate -------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(run: training.Run, model: MidiBertForPreTraining, loader, ratio: float, seed: int = EVAL_SEED) -> dict:
    """Masked-note accuracy and loss per field on the validation windows, with a fixed random mask per
    window (drawn from the window's index): the same score on any number of processes."""
    from musictl.bert.masking import corrupt, random_selection

    model.eval()
    totals = torch.zeros(2 * C.N_FIELDS + 1, dtype=torch.float64)
    for batch in loader:
        ids, mask, index = batch["ids"], batch["attention_mask"], batch["window_ids"]
        selected = torch.zeros_like(mask, dtype=torch.bool)
        corrupted = ids.clone()
        for row in range(len(ids)):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + int(index[row]))
            selected[row] = random_selection(mask[row : row + 1], ratio, generator)[0]
            corrupted[row] = corrupt(ids[row : row + 1], selected[row : row + 1], model.config.vocab_sizes, generator)[0]
        logits = model(corrupted, mask, selected)
        targets, rows = ids[selected], selected.nonzero()[:, 0]
        per_window = torch.zeros(len(ids), 2 * C.N_FIELDS + 1, device=ids.device)
        for f, lg in enumerate(logits):
            per_window[:, f].index_add_(0, rows, (lg.argmax(-1) == targets[:, f]).float())
            per_window[:, C.N_FIELDS + f].index_add_(
                0, rows, nn.functional.cross_entropy(lg.float(), targets[:, f], reduction="none"))
        per_window[:, -1] = selected.sum(1)
        totals += run.gather(per_window).sum(0).double().cpu()
    model.train()
    return evaluation_row(totals)


def evaluation_row(totals: torch.Tensor) -> dict:
    count = int(totals[-1])
    if count == 0:
        return {"accuracy": 0.0, "loss": 0.0, "masked_notes": 0, "fields": {}}
    acc, loss = totals[: C.N_FIELDS] / count, totals[C.N_FIELDS : 2 * C.N_FIELDS] / count
    return {
        "accuracy": round(float(acc.mean()), 5),
        "loss": round(float(loss.mean()), 5),
        "masked_notes": count,
        "fields": {name: {"accuracy": round(float(acc[f]), 5), "loss": round(float(loss[f]), 5)} for f, name in enumerate(C.FIELDS)},
    }


def valid_batches(windows: list, batch_size: int, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """All validation windows as padded (ids, attention mask) batches, for ``objective.evaluate_extra``."""
    batches = [pad_batch(windows[i : i + batch_size]) for i in range(0, len(windows), batch_size)]
    return [(ids.to(device), mask.to(device)) for ids, mask in batches]


# ----- where the run writes ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Output:
    """The finished artifact and the staging directory its run writes into."""

    target: Path

    @property
    def staging(self) -> Path:
        return self.target.parent / f".{self.target.name}.staging"

    @property
    def checkpoint(self) -> Path:
        return self.staging / "checkpoints" / "last"

    def resume_from(self, resume: bool) -> Path | None:
        """The checkpoint ``--resume`` continues: an interrupted run's, else the finished artifact's."""
        if not resume:
            return None
        for checkpoint in (self.checkpoint, self.target / "checkpoints" / "last"):
            if (checkpoint / STATE_FILE).is_file():
                return checkpoint
        raise ArtifactError(f"--resume: nothing to resume in {self.target} (no checkpoints/last); start without --resume")

    def open(self, resume: bool, overwrite: bool) -> Path | None:
        """Set up the staging directory (the caller holds the lock); the checkpoint to resume, or None."""
        artifacts.remove_leftovers(self.target)
        shutil.rmtree(self.checkpoint.with_name(".last.tmp"), ignore_errors=True)
        source = self.resume_from(resume)
        if source is not None:
            if source != self.checkpoint:  # continue a finished run: a copy of it, the original stays whole
                shutil.rmtree(self.staging, ignore_errors=True)
                shutil.copytree(self.target, self.staging, ignore=shutil.ignore_patterns(artifacts.MANIFEST))
            return self.checkpoint
        if self.staging.exists() and not overwrite:
            raise ArtifactError(f"{self.staging} holds an interrupted run of {self.target}; pass --resume to continue it or "
                                "--overwrite to start again")
        shutil.rmtree(self.staging, ignore_errors=True)
        artifacts.make_dir(self.staging)
        return None

    def check(self, resume: bool, overwrite: bool) -> None:
        """The checks made before any work: a file in the way, an existing artifact, an unwritable folder."""
        if self.target.is_symlink() or (self.target.exists() and not self.target.is_dir()):
            raise ArtifactError(f"{self.target} exists and is not an artifact directory; choose another --out")
        if not resume and not overwrite and self.target.is_dir() and any(self.target.iterdir()):
            raise ArtifactError(f"{self.target} already holds a pre-training run; pass --overwrite to replace it (kept "
                                "until the new one is complete), or --resume with a larger --max-steps to continue training")
        artifacts.check_writable(self.target)

    def kept(self) -> str:
        """What an interrupted run leaves, in words (read from disk, so it is true)."""
        shutil.rmtree(self.checkpoint.with_name(".last.tmp"), ignore_errors=True)
        previous = f"; {self.target} is unchanged" if self.target.exists() else ""
        state = self.checkpoint / STATE_FILE
        if state.is_file():
            step = json.loads(state.read_text())["step"]
            return f"checkpoint at step {step} kept in {self.staging}; resume with --resume{previous}"
        shutil.rmtree(self.staging, ignore_errors=True)
        return f"no checkpoint had been written yet, so nothing was kept{previous}"


def save_checkpoint(run: training.Run, module, objective, output: Output, state: dict, improved: bool) -> None:
    """``checkpoints/last`` in the staging directory: accelerate state, the best model, the objective's
    state and ``trainer_state.json`` (written last), swapped in whole."""

    def write_extra(tmp: Path) -> None:
        model = run.unwrap(module).model
        model.config.save_pretrained(tmp)
        if improved or not (output.checkpoint / "best").is_dir():
            model.save_pretrained(tmp / "best")
        else:
            _link_tree(output.checkpoint / "best", tmp / "best")
        training.write_state(tmp, "objective", objective.state_dict())
        artifacts.atomic_write_json(tmp / STATE_FILE, state)

    run.save_checkpoint(output.checkpoint, write_extra)


def _link_tree(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        try:
            os.link(file, target / file.name)
        except OSError:
            shutil.copy2(file, target / file.name)


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
    tokens_path, output = Path(tokens_path), Output(Path(out))
    corpus = TokenCorpus.open(tokens_path)
    run = training.Run(training.RunConfig(settings.device, settings.mixed_precision, settings.batch_size, settings.grad_accum,
                                          settings.global_batch_size, settings.clip, settings.seed))
    run.on_main(lambda: output.check(resume, overwrite))
    source = output.resume_from(resume)
    state = json.loads((source / STATE_FILE).read_text()) if source else {
        "step": 0, "windows_seen": 0, "best": None, "last_eval": None, "tokens": artifacts.input_ref(tokens_path, corpus.manifest)}
    if source:
        state.pop("stopped_early", None)  # a resumed run stops again only if it runs out of patience again
        artifacts.check_input(output.target, artifacts.Manifest(kind=KIND, inputs={"tokens": state["tokens"]}), "tokens",
                              corpus.manifest)
    config = build_config(corpus, settings, source)
    data = build_data(corpus, tokens_path, settings.max_len)
    with run.main_context(lambda: artifacts.locked(output.target)):
        checkpoint = run.on_main(lambda: output.open(resume, overwrite))
        run.barrier()
        try:
            return _train(run, corpus, tokens_path, output, data, settings, config, state, checkpoint, on_progress)
        except BaseException as exc:
            kept = output.kept() if run.is_main else "the main process says what was kept"
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(kept if run.is_main else f"process {run.accelerator.process_index} stopped; {kept}") from None
            raise


def _train(run, corpus, tokens_path, output, data, settings, config, state, checkpoint, on_progress) -> PretrainResult:
    """Build the model, objective, optimizer and data stream; step, evaluate and checkpoint; finish."""
    model = MidiBertForPreTraining(config)
    model.check_tokens(corpus.config, str(tokens_path))
    objective = make_objective(settings)
    module = ObjectiveModule(model, objective)
    total_steps = total_steps_of(settings, len(data.train_windows), run.plan.global_batch)
    optimizer, scheduler = build_optimizer(module, settings, total_steps)
    collate = functools.partial(collate_windows, batch_size=run.plan.per_device)
    loader = run.train_loader(data.train_windows, collate, max(0, total_steps - state["step"]), start=state["windows_seen"])
    module, optimizer, scheduler, loader = run.prepare(module, optimizer, scheduler, loader)
    valid_loader = run.eval_loader(data.valid_windows, collate)
    if checkpoint:
        run.load_checkpoint(checkpoint)
        objective.load_state_dict(training.read_state(checkpoint, "objective"))
    log_file = output.staging / "metrics.jsonl"
    run.on_main(lambda: _truncate_log(log_file, state["step"]))
    weights, notes = [step_weights(settings.objective, state["last_eval"], run.device)], [0]

    def forward(prepared, batch):
        notes[0] += int(batch["attention_mask"].sum())
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + int(batch["micro"]))
        return prepared(batch["ids"], batch["attention_mask"], batch["window_ids"], weights[0], generator)

    started, n_train = time.perf_counter(), len(data.train_windows)
    for done in run.train(module, optimizer, scheduler, loader, forward, start_step=state["step"]):
        epoch_before = state["windows_seen"] // n_train
        state.update(step=done.step, windows_seen=state["windows_seen"] + run.plan.global_batch)
        for epoch in range(epoch_before, state["windows_seen"] // n_train):
            objective.on_epoch_end(epoch, run.unwrap(module).model, data.train_windows)
        row = _step_row(done, state, scheduler, notes[0] * run.num_processes, time.perf_counter() - started, n_train)
        if done.step % settings.eval_every == 0 or done.step == total_steps:
            improved = _evaluate_into(run, module, objective, valid_loader, data, settings, state, row)
            weights[0] = step_weights(settings.objective, state["last_eval"], run.device)
            run.on_main(functools.partial(_append, log_file, row))
            stop = out_of_patience(state, settings.patience, n_train)  # its marks go into the checkpoint
            save_checkpoint(run, module, objective, output, state, improved)
            if stop:
                break
        elif done.step % max(1, settings.eval_every // 10) == 0:
            run.on_main(functools.partial(_append, log_file, row))
        if on_progress is not None and run.is_main:
            on_progress(done.step, total_steps, row)
    seconds = time.perf_counter() - started
    return _finish(run, module, tokens_path, output, data, settings, state, config, seconds, notes[0])


def _step_row(done: training.StepDone, state: dict, scheduler, notes: int, elapsed: float, n_train: int) -> dict:
    """The metrics.jsonl row of one optimizer step (means over this rank's micro-batches)."""
    outs = done.outputs
    mean = lambda name: round(sum(float(getattr(o, name)) for o in outs) / len(outs), 5)  # noqa: E731
    return {"step": done.step, "epoch": state["windows_seen"] // n_train, "loss": round(sum(float(o.loss.detach()) for o in outs)
            / len(outs), 5), "recover_loss": mean("recover_loss"), "masker_loss": mean("masker_loss"), "accuracy": mean("accuracy"),
            "lr": scheduler.get_last_lr()[0], "notes_per_s": round(notes / elapsed, 1) if elapsed else None}


def _evaluate_into(run, module, objective, valid_loader, data, settings, state, row) -> bool:
    """Evaluate, record it in ``row`` and ``state``; whether it is the best so far."""
    model = run.unwrap(module).model
    row["valid"] = evaluate(run, model, valid_loader, settings.mask_ratio)
    if run.is_main:
        row["valid"].update(objective.evaluate_extra(model, valid_batches(data.valid_windows, settings.batch_size, run.device)))
        model.train()
    state["last_eval"] = row["valid"]
    improved = state["best"] is None or row["valid"]["accuracy"] > state["best"]["accuracy"]
    if improved:
        state["best"] = {"step": state["step"], **row["valid"]}
    return improved


def out_of_patience(state: dict, patience: int | None, n_train: int) -> bool:
    """Record the last evaluation against the best accuracy and loss so far; whether both have gone
    ``patience`` epochs without improving (the reference code's rule: accuracy ties count as better)."""
    valid, seen = state["last_eval"], state["windows_seen"]
    marks = state.setdefault("patience", {})
    if "accuracy" not in marks or valid["accuracy"] >= marks["accuracy"][0]:
        marks["accuracy"] = [valid["accuracy"], seen]
    if "loss" not in marks or valid["loss"] < marks["loss"][0]:
        marks["loss"] = [valid["loss"], seen]
    epochs = {name: (seen - at) / n_train for name, (_, at) in marks.items()}
    if patience is None or min(epochs.values()) < patience:
        return False
    state["stopped_early"] = (f"validation accuracy and loss have not improved for {min(epochs.values()):.1f} epochs "
                              f"(--patience {patience}) at step {state['step']}")
    return True


def _finish(run, module, tokens_path, output, data, settings, state, config, seconds, notes) -> PretrainResult:
    """Put the best model, metrics, card and manifest into the staging directory and swap it in."""
    total_notes = int(run.accelerator.reduce(torch.tensor(notes, device=run.device), "sum"))
    model = run.unwrap(module).model
    result = PretrainResult(
        objective=settings.objective, steps=state["step"], train_windows=len(data.train_windows),
        valid_windows=len(data.valid_windows), train_pieces=data.train_pieces,
        parameters=sum(p.numel() for p in model.parameters()), seconds_this_run=round(seconds, 2),
        notes_per_s=round(total_notes / seconds, 1) if seconds and total_notes else None,
        final_valid=state["last_eval"], best_valid=state["best"], batch=run.describe(), out=str(output.target),
        stopped_early=state.get("stopped_early"), main_process=run.is_main)

    def swap_in() -> None:
        best = output.checkpoint / "best"
        for name in ("config.json", "model.safetensors"):
            (output.staging / name).write_bytes((best / name).read_bytes())  # the umask's permissions
        artifacts.atomic_write_json(output.staging / "metrics.json", result.to_dict())
        (output.staging / "README.md").write_text(model_card(config, settings, result.to_dict(), tokens_path))
        artifacts.write_manifest(output.staging, artifacts.Manifest(
            kind=KIND, parameters={**settings.to_dict(), **run.describe(), "model": {k: getattr(config, k) for k in (
                "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "field_embed_dim",
                "max_position_embeddings")}},
            inputs={"tokens": state["tokens"]},
            metrics={"valid_accuracy": result.final_valid["accuracy"], "best_valid_accuracy": (result.best_valid or
                     result.final_valid)["accuracy"], "steps": result.steps, "objective": settings.objective}))
        artifacts.replace_dir(output.staging, output.target)

    run.on_main(swap_in)
    return result


def _append(path: Path, row: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """On resume, forget log lines written after the checkpoint we continue from."""
    if path.exists():
        artifacts.write_jsonl(path, [r for r in artifacts.read_jsonl(path) if r["step"] <= step])


def model_card(config: MidiBertConfig, settings: PretrainSettings, metrics: dict, tokens_path: Path) -> str:
    best = metrics["best_valid"] or metrics["final_valid"]
    share = f", random share {settings.random_share}" if settings.objective == "hard-mining" else ""
    fields = "\n".join(f"| {name} | {v['accuracy']:.3f} | {v['loss']:.3f} |" for name, v in best.get("fields", {}).items())
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

## Validation (masked notes, fixed random masks; best step {best.get('step', metrics['steps'])})
Mean accuracy {best['accuracy']:.3f}, mean loss {best['loss']:.3f}.

| field | accuracy | loss |
|---|---:|---:|
{fields}

Load with `musictl.bert.model.load_encoder(path)` or `MidiBertForPreTraining.from_pretrained(path)`.
"""
