"""``musictl train-gcn`` on the shared run lifecycle: the GCN link predictor trained by :class:`musictl.training.Run`.

PyG's ``examples/link_pred.py`` shape, with the loop in :meth:`musictl.training.Run.fit`: full-batch, so the
one graph is the one item of each epoch (an epoch cadence: one optimizer step, one validation and one
checkpoint per epoch). :func:`forward` is ``encode`` + ``decode`` of the training edges against as many
fresh negatives (drawn from the run's ``gcn-negatives`` stream at the epoch: a resumed run draws the same);
:func:`evaluate` is validation ROC-AUC and AP (:func:`musictl.transfer.gcn.test`), its ``accuracy`` the
validation ROC-AUC on the negatives of the kind training uses, which :class:`musictl.training.EarlyStopping`
monitors (``--patience``; a perfect 1.0 also ends the run: no later epoch could be chosen over it). The
weights of the best validation epoch (``best/`` of the checkpoint) are restored and the test split is
scored once; the baselines (heuristics, a GCN on random features, an MLP on the node features) are scored on
the same split after it, as before (:mod:`musictl.transfer.baselines`, seeded without touching the global RNGs).

Nothing here seeds the caller's global RNGs: the split and the layers' initialisation run under
:func:`musictl.transfer.gcn.seeded` (``torch.random.fork_rng``), and the run's own seeding (dropout) is put
back when :func:`train` returns. ``--resume`` continues ``gcn/STYLE``'s checkpoint
(:func:`musictl.artifacts.resumable`); settings that shape the model, its inputs or the split are ``fixed``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from musictl import artifacts, training
from musictl.errors import UsageError
from musictl.progress import Progress
from musictl.transfer import gcn
from musictl.transfer.baselines import baseline_scores
from musictl.transfer.link_prediction import LinkPrediction, full_embeddings, prepare_split
from musictl.transfer.results import GcnResult
from musictl.transfer.settings import GcnSettings

KIND = artifacts.GCN
# the random stream (musictl.training.generator): keyed by --seed, the stream's name and an index
NEGATIVES = "gcn-negatives"  # the training negatives (index: the epoch's stream position)


# ----- build -----------------------------------------------------------------------------------------------
def build(in_dim: int, settings: GcnSettings) -> tuple[gcn.LinkPredictor, torch.optim.Optimizer]:
    """Encoder + decoder (initialised from ``--seed``, the global RNGs left as they were) and Adam."""
    with gcn.seeded(settings.seed):
        model = gcn.LinkPredictor(gcn.Encoder(in_dim, settings), gcn.LinkDecoder(settings.out_dim, settings.decoder))
    return model, torch.optim.Adam(model.parameters(), lr=settings.lr)


def collate(samples: list[training.Sample]) -> dict[str, torch.Tensor]:
    """The epoch's one item: the whole graph; only its stream position travels (it keys the negatives)."""
    return {"position": torch.tensor(samples[0].position)}


def forward(model, batch: dict[str, torch.Tensor], x: torch.Tensor, graph, settings: GcnSettings) -> torch.Tensor:
    """PyG's ``train`` step: the training edges against as many fresh negatives, binary cross-entropy."""
    positives = graph.edge_label_index
    drawn = training.generator(settings.seed, NEGATIVES, int(batch["position"]))
    negatives = gcn.draw_negatives(graph, positives.size(1), settings.negatives, drawn)
    labels = torch.cat([torch.ones(positives.size(1)), torch.zeros(negatives.size(1))]).to(x.device)
    return F.binary_cross_entropy_with_logits(model(x, graph, torch.cat([positives, negatives], 1)), labels)


def evaluate(model: gcn.LinkPredictor, x: torch.Tensor, graph, split, selected_on: str) -> dict:
    """PyG's ``test`` on validation: ``val_auc``, ``val_ap`` (and ``*_same_field``), and as ``accuracy`` the
    unrounded ROC-AUC that selects the epoch (what :class:`musictl.training.EarlyStopping` monitors)."""
    scores = gcn.test(model.encoder, model.decoder, x, graph, split)
    return {"accuracy": scores[selected_on][0], **gcn.score_row(scores, "val_")}


# ----- the run -----------------------------------------------------------------------------------------------
def train(style: str, out: Path, settings: GcnSettings, inputs_of, *, built_graph: str, vocab_id: str, inputs: dict,
          resume: bool = False, overwrite: bool = False, on_progress: Progress | None = None) -> GcnResult:
    """Train, test at the best validation epoch, score the baselines, write ``out`` (swapped in when complete).

    ``inputs_of()`` is called once the output is checked and locked: it loads (node features, the graph whose
    edges are predicted, each node's field or None, the message-passing graph or None, the node token ids).
    ``resume`` continues an interrupted run from its last epoch's checkpoint, or a finished one with a larger
    ``--epochs``. Ctrl-C / SIGTERM raise :class:`musictl.errors.Interrupted` saying what was kept."""
    with gcn.seeded(None):  # Run seeds the global RNGs (dropout); the caller's are put back after the run
        run = training.Run(settings)
        if run.num_processes > 1:  # one graph, one step an epoch: several processes would only repeat it
            raise UsageError("train-gcn trains on the whole graph in one process; run it without accelerate launch "
                             "(--device cuda uses one GPU)")
        output = artifacts.resumable(out, KIND, artifacts.safe_name(style, "style"), what=f"train-gcn run of {style}")
        with run.staged(output, resume, overwrite, inputs=inputs) as state:
            features, target, fields, message, nodes = inputs_of()
            split, data, passing = prepare_split(features, target, settings, str(run.device), fields, message)
            train_graph, val, test_split = split
            x = train_graph.x
            wanted = gcn.negatives_key(settings.negatives)
            selected_on = wanted if wanted in gcn.labelled_pairs(val) else "uniform"
            model, optimizer = build(int(x.shape[1]), settings)
            model, optimizer = run.prepare(model, optimizer)
            run.restore()
            unwrapped = run.unwrap(model)

            def row(done: training.StepDone, state: training.TrainerState, valid: dict) -> dict:
                loss = run.reduce_mean(sum(float(loss) for loss in done.outputs) / len(done.outputs))
                return {"epoch": state.epoch, "loss": round(loss, 5), **{k: v for k, v in valid.items() if k != "accuracy"}}

            progress = None if on_progress is None else (lambda done, total, r: on_progress(done, total, {**r, "model": "gcn"}))
            started = time.perf_counter()
            run.fit(state, training.Cadence.per_epoch(settings.epochs), model, optimizer, None, [0], collate,
                    forward=lambda m, batch: forward(m, batch, x, train_graph, settings),
                    evaluate=lambda: evaluate(unwrapped, x, train_graph, val, selected_on), row=row,
                    early=training.EarlyStopping(settings.patience, "accuracy"), best=unwrapped, history=True,
                    on_progress=progress)
            unwrapped.load_state_dict(load_weights(run.best_dir()))
            test_scores = gcn.test(unwrapped.encoder, unwrapped.decoder, x, train_graph, test_split)  # once
            baselines = baseline_scores(split, train_graph.raw_x, settings, str(run.device), on_progress) \
                if settings.baselines else {}
            embeddings = full_embeddings(unwrapped.encoder, data, passing, settings, str(run.device))
            history, best = state.extra.get("history", []), state.best
            test_row = gcn.score_row(test_scores, "test_")
            result = LinkPrediction(
                **{f"test_{k}": test_row.get(f"test_{k}") for k in ("auc", "ap", "auc_same_field", "ap_same_field")},
                **{f"val_{k}": best.get(f"val_{k}") for k in ("auc", "ap", "auc_same_field", "ap_same_field")},
                selected_on=selected_on, best_epoch=int(best["epoch"]), epochs_run=len(history),
                train_edges=int(train_graph.edge_label_index.size(1)), val_edges=int(val.edge_label.sum()),
                test_edges=int(test_split.edge_label.sum()), nodes=int(data.num_nodes), in_dim=int(x.shape[1]),
                settings=settings, baselines=baselines, state={k: v.detach().cpu() for k, v in unwrapped.weights().items()},
                embeddings=embeddings, history=history, split=split)
            summary = GcnResult(out=Path(out), style=style, model=settings.model, features=settings.features,
                                graph=built_graph, **{k: getattr(result, k) for k in (
                                    "test_auc", "test_ap", "val_auc", "val_ap", "best_epoch", "epochs_run", "nodes", "in_dim",
                                    "test_auc_same_field", "test_ap_same_field", "baselines")})
            seconds = round(time.perf_counter() - started, 2)
            run.finish(lambda staging: write_artifact(staging, style, settings, result, summary, nodes, vocab_id, inputs,
                                                      seconds))
    return summary


def load_weights(directory: Path) -> dict:
    """The ``model.safetensors`` state dict of ``best/`` (on the CPU: ``load_state_dict`` copies to the model's device)."""
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / "model.safetensors"))


def write_artifact(tmp: Path, style: str, settings: GcnSettings, result: LinkPrediction, summary: GcnResult,
                   nodes: np.ndarray, vocab_id: str, inputs: dict, seconds: float) -> None:
    """``gcn/STYLE``: the weights (encoder + ``decoder.*``), config, node embeddings, metrics, history, card, manifest."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in result.state.items()}, str(tmp / "model.safetensors"))
    artifacts.atomic_write_json(tmp / "config.json", {**settings.to_dict(), "in_dim": result.in_dim})
    save_file({"embeddings": result.embeddings.contiguous(), "nodes": torch.from_numpy(np.asarray(nodes))},
              str(tmp / "node_embeddings.safetensors"))
    metrics = {"style": style, **result.to_dict()}
    artifacts.atomic_write_json(tmp / "metrics.json", metrics)
    artifacts.write_jsonl(tmp / "history.jsonl", result.history)
    (tmp / "README.md").write_text(model_card(settings, metrics, seconds))
    artifacts.write_manifest(tmp, artifacts.Manifest(
        kind=KIND, parameters={**settings.to_dict(), "style": style, "vocab_id": vocab_id}, inputs=inputs,
        metrics={k: v for k, v in summary.to_dict().items() if k not in ("out", "baselines")}))


def model_card(settings: GcnSettings, metrics: dict, seconds: float) -> str:
    def score(value) -> str:
        return "-" if value is None else f"{value:.4f}"

    def scores(prefix: str) -> str:
        return " | ".join(score(metrics[f"{prefix}_{k}"]) for k in ("auc", "ap", "auc_same_field", "ap_same_field"))

    return f"""---
library_name: torch_geometric
tags: [midi, music, gcn, link-prediction, musictl]
---
# GCN link predictor of `{metrics['style']}`

Model {settings.model} (features `{settings.features}`, graph `{settings.graph}`): {settings.layers} `{settings.conv}`
layers ({settings.hidden} hidden, {settings.out_dim}-d embeddings), `{settings.decoder}` decoder, trained by
`musictl train-gcn` on {metrics['train_edges']} training edges ({metrics['nodes']} nodes) against `{settings.negatives}`
negatives; best validation epoch {metrics['best_epoch']} of {metrics['epochs_run']} ({seconds:.1f} s). The test edges
({metrics['test_edges']}) were scored once, with the best epoch's weights.

| split | ROC-AUC | AP | ROC-AUC same-field | AP same-field |
|---|---:|---:|---:|---:|
| valid (best epoch) | {scores('val')} |
| test | {scores('test')} |

Walk with it: `musictl generate-rwr --style {metrics['style']}`.
"""
