"""``musictl pretrain-bert``, ``finetune-mask``, ``predict`` and ``adapt``: parse, call one library function, render.

Every default, help text and range comes from ``musictl.bert.settings``. ``--task`` and ``--objective`` take their
choices and help from the registries (``musictl.bert.tasks.TASKS``, ``musictl.bert.objectives.OBJECTIVES``): their
annotations call ``task_choices()`` / ``objective_choices()``, and with ``from __future__ import annotations`` an
annotation is evaluated when ``musictl.cli.register`` adds the command, so a registered entry is a choice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from musictl.bert.settings import (
    AdaptSettings,
    FinetuneSettings,
    Monitor,
    Precision,
    PredictSettings,
    Preset,
    PretrainSettings,
    Size,
    WeightSource,
    objective_choices,
    objective_help,
    task_choices,
    task_help,
)
from musictl.commands._common import (
    FLAG,
    Overwrite,
    TokensOpt,
    Workdir,
    complete_style,
    complete_task,
    emit_binary,
    option,
    refuse_flag_values,
    reports_errors,
    warn_if_untrained,
)
from musictl.settings import DeviceName, ReportTo

SETTINGS = {
    "pretrain-bert": (PretrainSettings,),
    "finetune-mask": (FinetuneSettings,),
    "predict": (PredictSettings,),
    "adapt": (AdaptSettings,),
}


@reports_errors
def pretrain_bert(
    context: typer.Context,
    tokens: TokensOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output directory [default: WORKDIR/bert].")] = None,
    objective: Annotated[objective_choices(), typer.Option(help=objective_help())] = PretrainSettings.default_of("objective"),
    size: Size = option(PretrainSettings, "size"),
    hidden_size: Optional[int] = option(PretrainSettings, "hidden_size"),
    num_hidden_layers: Optional[int] = option(PretrainSettings, "num_hidden_layers"),
    num_attention_heads: Optional[int] = option(PretrainSettings, "num_attention_heads"),
    field_embed_dim: Optional[int] = option(PretrainSettings, "field_embed_dim"),
    dropout: Optional[float] = option(PretrainSettings, "dropout"),
    mask_ratio: float = option(PretrainSettings, "mask_ratio"),
    random_share: float = option(PretrainSettings, "random_share"),
    freeze_every: int = option(PretrainSettings, "freeze_every"),
    weight_source: WeightSource = option(PretrainSettings, "weight_source"),
    max_len: int = option(PretrainSettings, "max_len"),
    batch_size: int = option(PretrainSettings, "batch_size"),
    grad_accum: int = option(PretrainSettings, "grad_accum"),
    global_batch_size: Optional[int] = option(PretrainSettings, "global_batch_size"),
    lr: float = option(PretrainSettings, "lr"),
    warmup: float = option(PretrainSettings, "warmup"),
    weight_decay: float = option(PretrainSettings, "weight_decay"),
    clip: float = option(PretrainSettings, "clip"),
    max_steps: Optional[int] = option(PretrainSettings, "max_steps"),
    epochs: int = option(PretrainSettings, "epochs"),
    eval_every: int = option(PretrainSettings, "eval_every"),
    patience: Optional[int] = option(PretrainSettings, "patience"),
    monitor: Monitor = option(PretrainSettings, "monitor"),
    min_delta: float = option(PretrainSettings, "min_delta"),
    mixed_precision: Optional[Precision] = option(PretrainSettings, "mixed_precision"),
    report_to: ReportTo = option(PretrainSettings, "report_to"),
    preset: Optional[Preset] = option(PretrainSettings, "preset"),
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint (of an interrupted or finished run).",
                                         metavar=FLAG)] = False,
    seed: int = option(PretrainSettings, "seed"),
    device: DeviceName = option(PretrainSettings, "device"),
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Pre-train MidiBert on the training split of the tokens artifact.

    Writes WORKDIR/bert (the best model, checkpoints/last for --resume, metrics, a model card) when the
    run is complete; until then it trains in .bert.staging beside it and an existing model stays whole.
    Several GPUs or nodes: accelerate launch --multi_gpu --num_processes 8 -m musictl pretrain-bert ...
    (docs/distributed.md).

    Example: musictl pretrain-bert --objective adversarial --size tiny --max-steps 300
    """
    from musictl import artifacts
    from musictl.bert.pretrain import best_baseline, pretrain
    from musictl.console import err, track

    settings = PretrainSettings.from_values(locals()).with_preset(typed_options(context))
    tokens_path = tokens or artifacts.artifact_dir(workdir, artifacts.TOKENS)
    out_dir = out or artifacts.artifact_dir(workdir, artifacts.BERT)

    def fields(valid: dict) -> str:
        shown = [(name, valid["fields"][name]) for name in ("pitch", "position", "duration") if name in valid.get("fields", {})]
        return "".join(f" {name} {v['accuracy']:.2f}/{best_baseline(v)[1]:.2f} ({best_baseline(v)[0]})" for name, v in shown)

    def describe(row) -> str:
        valid = f" valid acc {row['valid']['accuracy']:.3f}{fields(row['valid'])}" if "valid" in row else ""
        return f"loss {row['loss']:.3f} acc {row['accuracy']:.3f} {row['notes_per_s'] or 0:,.0f} notes/s{valid}"

    def log_line(row) -> str | None:
        if "valid" not in row:
            return None
        return f"step {row['step']}: loss {row['loss']:.4f} valid acc {row['valid']['accuracy']:.3f} (field model/strongest baseline:" \
               f"{fields(row['valid'])})"

    with track("pretrain-bert", describe=describe, log_every=log_line) as on_progress:
        result = pretrain(tokens_path, out_dir, settings, resume=resume, overwrite=overwrite, on_progress=on_progress)
    if not result.main_process:
        return
    best = result.best_valid or result.final_valid
    err.print(
        f"[green]done[/]: {result.steps} steps (global batch {result.batch['global_batch_size']} over "
        f"{result.batch['processes']} process(es)), valid masked accuracy {result.final_valid['accuracy']:.3f} "
        f"(best {best['accuracy']:.3f}), {result.notes_per_s or 0:,.0f} notes/s"
    )
    if result.stopped_early:
        err.print(f"stopped early: {result.stopped_early}")
    for line in result.verdicts():
        err.print(f"  {line}", markup=False)
    print(out_dir)


def typed_options(context: typer.Context) -> set[str]:
    """The options given on the command line (or by environment variable), not left at their default."""
    given = ("COMMANDLINE", "ENVIRONMENT")
    return {name for name in context.params if getattr(context.get_parameter_source(name), "name", None) in given}


@reports_errors
def finetune_mask(
    task: Annotated[task_choices(), typer.Option(help=task_help(), autocompletion=complete_task)],
    model: Annotated[Optional[Path], typer.Option(help="Pre-trained MidiBert [default: WORKDIR/bert].")] = None,
    tokens: TokensOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output [default: WORKDIR/finetune/TASK].")] = None,
    split_file: Annotated[
        Optional[Path], typer.Option(help="JSON train/valid/test lists of file names (else the tokens' splits).")
    ] = None,
    labels_file: Optional[Path] = option(FinetuneSettings, "labels_file"),
    label_pattern: str = option(FinetuneSettings, "label_pattern"),
    mask_ratio: float = option(FinetuneSettings, "mask_ratio"),
    from_scratch: bool = option(FinetuneSettings, "from_scratch"),
    epochs: int = option(FinetuneSettings, "epochs"),
    patience: int = option(FinetuneSettings, "patience"),
    monitor: Monitor = option(FinetuneSettings, "monitor"),
    min_delta: float = option(FinetuneSettings, "min_delta"),
    eval_masked: bool = option(FinetuneSettings, "eval_masked"),
    pitch_shift: int = option(FinetuneSettings, "pitch_shift"),
    max_len: int = option(FinetuneSettings, "max_len"),
    batch_size: int = option(FinetuneSettings, "batch_size"),
    grad_accum: int = option(FinetuneSettings, "grad_accum"),
    global_batch_size: Optional[int] = option(FinetuneSettings, "global_batch_size"),
    lr: Optional[float] = option(FinetuneSettings, "lr"),
    weight_decay: float = option(FinetuneSettings, "weight_decay"),
    clip: float = option(FinetuneSettings, "clip"),
    dropout: Optional[float] = option(FinetuneSettings, "dropout"),
    mixed_precision: Optional[Precision] = option(FinetuneSettings, "mixed_precision"),
    report_to: ReportTo = option(FinetuneSettings, "report_to"),
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint (of an interrupted run, or of a finished "
                                              "one with a larger --epochs).", metavar=FLAG)] = False,
    seed: int = option(FinetuneSettings, "seed"),
    device: DeviceName = option(FinetuneSettings, "device"),
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Fine-tune MidiBert with mask fine-tuning on an understanding task; test at the best validation epoch.

    Example: musictl finetune-mask --task composer --split-file ../shared/datasets/pianist8/splits.json
    """
    from musictl import artifacts, workspace
    from musictl.bert.finetune import finetune
    from musictl.console import info, track

    settings = FinetuneSettings.from_values(locals(), labels_file=str(labels_file) if labels_file else None)
    out_dir = out or artifacts.artifact_dir(workdir, artifacts.FINETUNE, task)
    tokens = tokens or artifacts.artifact_dir(workdir, artifacts.TOKENS)
    model = model or artifacts.artifact_dir(workdir, artifacts.BERT)
    needs = [workspace.Needed(artifacts.TOKENS, None, tokens)]
    if not settings.from_scratch:
        needs.append(workspace.Needed(artifacts.BERT, None, model))
        warn_if_untrained(model, workdir)
    workspace.require_inputs(f"finetune-mask --task {task}", workdir, needs)

    def log_line(row) -> str:
        return (f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}, valid accuracy {row['valid_accuracy']:.4f}, "
                f"valid loss {row['valid_loss']:.4f}")

    with track(f"finetune {task}", epochs, describe=log_line, log_every=log_line) as on_progress:
        result = finetune(tokens, model, out_dir, settings, split_file, overwrite, resume, on_progress)
    if not result.main_process:
        return
    if result.unlabelled_pieces:
        info(f"{result.unlabelled_pieces} pieces had no label and were left out (listed in {out_dir / 'unlabelled.jsonl'})")
    info(f"[green]test[/] accuracy {result.test['accuracy']:.4f}, macro-F1 {result.test['macro_f1']:.4f} "
         f"(best epoch {result.best_epoch} of {result.epochs_run}, chance {result.chance_accuracy:.3f})")
    if result.stopped_early:
        info(f"stopped early: {result.stopped_early}")
    elif result.best_epoch_is_last:
        info(f"the best epoch was the last: validation was still improving; continue with --resume --epochs "
             f"{2 * settings.epochs}")
    print(out_dir)


@reports_errors
def predict(
    context: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="MIDI files (need not be tokenized).")],
    model: Annotated[Path, typer.Option(help="A finetune-mask output directory (WORKDIR/finetune/TASK).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Token tasks: the output MIDI (one input file).")] = None,
    max_len: int = option(PredictSettings, "max_len"),
    batch_size: int = option(PredictSettings, "batch_size"),
    device: DeviceName = option(PredictSettings, "device"),
    overwrite: Overwrite = False,
) -> None:
    """Predict with a fine-tuned model: a MIDI split into melody/bridge/accompaniment tracks (or with
    predicted velocities), or one JSON line per file with the label and class probabilities.

    Example: musictl predict --model musictl-work/finetune/melody song.mid -o melody.mid
    """
    import json

    from musictl.bert.model import MidiBertForTokenClassification
    from musictl.bert.predict import load_classifier, predict_file, prediction_midi
    from musictl.commands._common import check_binary_destination
    from musictl.console import warn
    from musictl.errors import MusictlError, TokenizeError, UsageError

    refuse_flag_values(context, files)
    settings = PredictSettings.from_values(locals())
    classifier, task = load_classifier(model, settings.device)
    if isinstance(classifier, MidiBertForTokenClassification):  # a per-note task: its output is MIDI
        if len(files) != 1:
            raise UsageError(f"--task {task} models write one MIDI file: give one input file")
        check_binary_destination(out, overwrite=overwrite, inputs=files)
        result = predict_file(classifier, task, files[0], settings)
        emit_binary(prediction_midi(result, task), out, overwrite=overwrite, inputs=files)
        return
    failed = 0
    for path in files:
        try:
            result = predict_file(classifier, task, path, settings)
        except TokenizeError as exc:
            warn(str(exc))
            failed += 1
            continue
        print(json.dumps({"file": str(path), "label": result["label"], "probabilities": result["probabilities"]}), flush=True)
    if failed == len(files):
        raise MusictlError("no input file could be read")


@reports_errors
def adapt(
    style: Annotated[Optional[list[str]], typer.Option(
        help="The style to adapt to (a folder name given to tokenize); several: repeat --style (or join them with +).",
        autocompletion=complete_style, metavar="<style>")] = None,
    all_styles: bool = option(AdaptSettings, "all_styles", "--all-styles", metavar=FLAG),
    model: Annotated[Optional[Path], typer.Option(
        help="The model to start from: a pre-trained MidiBert, or an adapted model to continue "
             "[default: WORKDIR/bert].")] = None,
    tokens: TokensOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output [default: WORKDIR/adapted/STYLE, several "
                                                                   "styles joined by +].")] = None,
    full: bool = option(AdaptSettings, "full", "--full", metavar=FLAG),
    from_scratch: bool = option(AdaptSettings, "from_scratch", "--from-scratch", metavar=FLAG),
    pieces: Optional[int] = option(AdaptSettings, "pieces"),
    rank: int = option(AdaptSettings, "rank"),
    alpha: float = option(AdaptSettings, "alpha"),
    lora_dropout: float = option(AdaptSettings, "lora_dropout"),
    max_len: int = option(AdaptSettings, "max_len"),
    epochs: int = option(AdaptSettings, "epochs"),
    patience: int = option(AdaptSettings, "patience"),
    min_delta: float = option(AdaptSettings, "min_delta"),
    batch_size: int = option(AdaptSettings, "batch_size"),
    grad_accum: int = option(AdaptSettings, "grad_accum"),
    global_batch_size: Optional[int] = option(AdaptSettings, "global_batch_size"),
    lr: Optional[float] = option(AdaptSettings, "lr"),
    weight_decay: float = option(AdaptSettings, "weight_decay"),
    clip: float = option(AdaptSettings, "clip"),
    mixed_precision: Optional[Precision] = option(AdaptSettings, "mixed_precision"),
    report_to: ReportTo = option(AdaptSettings, "report_to"),
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint (of an interrupted run, or of a finished "
                                              "one with a larger --epochs).", metavar=FLAG)] = False,
    seed: int = option(AdaptSettings, "seed"),
    device: DeviceName = option(AdaptSettings, "device"),
    overwrite: Overwrite = False,
    workdir: Workdir = None,
) -> None:
    """Adapt a pre-trained MidiBert to one style's next notes: LoRA (default) or --full, early-stopped on the style's
    validation pieces; reports the validation next-note NLL (nats per note) before and after.

    Writes WORKDIR/adapted/STYLE (the adapter on its base model, or the full weights; metrics; a model card) when the
    run is complete (docs/adapt.md).

    Example: musictl adapt --style waltz --pieces 4   |   musictl adapt --style waltz --full -o waltz-full   |
    musictl adapt --all-styles --full -o next   |   musictl adapt --style waltz --model next --pieces 4
    """
    from musictl import artifacts, workspace
    from musictl.bert import adapt as adaptation
    from musictl.bert.settings import STYLE_JOIN, adapt_styles
    from musictl.console import info, track

    settings = AdaptSettings.from_values({**locals(), "style": STYLE_JOIN.join(style) if style else None})
    tokens = tokens or artifacts.artifact_dir(workdir, artifacts.TOKENS)
    model = model or artifacts.artifact_dir(workdir, artifacts.BERT)
    known = workspace.tokens_styles(tokens)
    named = STYLE_JOIN.join(known) if settings.all_styles else settings.style
    what = "--all-styles" if settings.all_styles else f"--style {settings.style}"
    workspace.require_inputs(f"adapt {what}", workdir, [workspace.Needed(artifacts.TOKENS, None, tokens),
                                                        workspace.Needed(adaptation.base_kind(model), None, model)])
    for one in adapt_styles(settings.style):
        workspace.check_style(one, known, tokens)
    out_dir = out or artifacts.artifact_dir(workdir, artifacts.ADAPTED, named)
    if adaptation.base_kind(model) == artifacts.BERT:
        warn_if_untrained(model, workdir)

    def log_line(row) -> str:
        fields = row["valid"]["fields"]
        return (f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}, valid NLL {row['valid_loss']:.4f} "
                f"(pitch {fields['pitch']:.3f}, duration {fields['duration']:.3f})")

    with track(f"adapt {named}", settings.epochs, describe=log_line, log_every=log_line) as on_progress:
        result = adaptation.adapt(tokens, model, out_dir, settings, overwrite, resume, on_progress)
    if not result.main_process:
        return
    before, after = result.before["fields"], result.after["fields"]
    info(f"[green]valid next-note NLL[/] (nats per note, before -> after): pitch {before['pitch']:.3f} -> "
         f"{after['pitch']:.3f}, duration {before['duration']:.3f} -> {after['duration']:.3f} ({result.mode}, "
         f"{len(result.train_pieces)} training pieces, best epoch {result.best_epoch} of {result.epochs_run}, "
         f"{result.cpu_seconds:.1f} CPU s)")
    if result.stopped_early:
        info(f"stopped early: {result.stopped_early}")
    print(out_dir)
