"""One trainer shape (docs/architecture.md, "A trainer"): :meth:`musictl.training.Run.fit` owns the loop, and a
trainer module is only what differs, under the same names in every trainer.

Read from the source (ast), so a trainer that starts advancing the run's state again fails here, not as a
resume that silently drifts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "musictl"
TRAINERS = ("bert/pretrain.py", "bert/finetune.py", "bert/adapt.py", "violin/train.py", "transfer/train_gcn.py")
ROLES = ("build", "forward", "evaluate", "write_artifact", "model_card")
RUN_STATE = ("step", "position", "epoch")  # TrainerState's place in the stream: Run advances it
RUN_DECISIONS = ("out_of_patience", "improved", "save_checkpoint")  # early stopping, the best so far, checkpoints


def tree(path: str) -> ast.Module:
    return ast.parse((ROOT / path).read_text(), filename=path)


def targets(node: ast.AST) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        return [leaf for target in node.targets for leaf in ast.walk(target)]
    if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        return list(ast.walk(node.target))
    return []


@pytest.mark.parametrize("path", TRAINERS)
def test_a_trainer_never_advances_the_run_state(path):
    assigned = [f"line {node.lineno}: .{leaf.attr}" for node in ast.walk(tree(path)) for leaf in targets(node)
                if isinstance(leaf, ast.Attribute) and leaf.attr in RUN_STATE]
    assert not assigned, f"{path} assigns TrainerState's place in the stream (Run.fit advances it): {assigned}"


@pytest.mark.parametrize("path", TRAINERS)
def test_a_trainer_leaves_early_stopping_best_and_checkpoints_to_run(path):
    calls = [f"line {node.lineno}: {node.func.attr}()" for node in ast.walk(tree(path))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in RUN_DECISIONS]
    assert not calls, f"{path} decides what Run.fit decides: {calls}"


@pytest.mark.parametrize("path", TRAINERS)
def test_a_trainer_does_no_global_batch_arithmetic(path):
    uses = [f"line {node.lineno}" for node in ast.walk(tree(path))
            if isinstance(node, ast.Attribute) and node.attr == "global_batch"]
    assert not uses, f"{path} reads run.plan.global_batch (Run.steps_per_epoch / steps_for_epochs say how many steps): {uses}"


@pytest.mark.parametrize("path", TRAINERS)
def test_every_trainer_defines_the_same_roles_and_one_call_into_run_fit(path):
    module = tree(path)
    defined = {node.name for node in module.body if isinstance(node, ast.FunctionDef)}
    assert set(ROLES) <= defined, f"{path} lacks {sorted(set(ROLES) - defined)}"
    fits = [node for node in ast.walk(module) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "fit"]
    assert len(fits) == 1, f"{path} should train through exactly one run.fit(...) call"


@pytest.mark.parametrize("path", [*TRAINERS, "violin/pipeline.py"])
def test_no_import_is_renamed_to_dodge_a_name_of_the_module(path):
    """``from musictl.violin.train import train as run_training`` hid that two functions did one job: a module that
    needs another's function of the same name imports the module instead (``constants as C`` is an abbreviation)."""
    module = tree(path)
    own = {node.name for node in module.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    renamed = [f"line {node.lineno}: {alias.name} as {alias.asname}" for node in ast.walk(module)
               if isinstance(node, ast.ImportFrom) for alias in node.names if alias.asname and alias.name in own]
    assert not renamed, f"{path} renames imports that clash with its own names: {renamed}"
