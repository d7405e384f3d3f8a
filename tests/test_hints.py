"""Next steps that work: a wrong artifact names the command that makes the right one from what was found, a
missing chain is named whole in one error, a misspelt style gets a suggestion, generate-rwr asks for a style
when several are trained, and a failed first command leaves no empty workspace behind."""

from __future__ import annotations

import itertools
import re
import shutil
import typing

import pytest
import typer
from typer.testing import CliRunner

from musictl import artifacts, workspace
from musictl.bert.settings import TaskName
from musictl.cli import app
from musictl.errors import ArtifactError, UsageError
from tests.midi_factory import STYLES, style_piece

runner = CliRunner()
CLICK = typer.main.get_command(app)
TASKS = typing.get_args(TaskName)


def fake(path, kind, files=(), **parameters):
    """An artifact directory of ``kind`` whose manifest matches its (empty) files."""
    path.mkdir(parents=True, exist_ok=True)
    for name in files:
        (path / name).write_bytes(b"")
    artifacts.write_manifest(path, artifacts.Manifest(kind=kind, parameters=parameters))
    return path


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), result.output
    return lines[0]


def next_commands(message: str) -> list[str]:
    return [c.strip() for c in re.findall(r"\bmusictl [^;()&]+", message)]


def assert_valid_next_steps(message: str, styles=tuple(STYLES)) -> None:
    """Every ``musictl ...`` the message names is a real command with real options; --task / --style values
    are real ones (or the TASK / STYLE placeholders): never a folder name such as ``--task bert``."""
    commands = next_commands(message)
    assert commands, f"no next step in: {message}"
    for text in commands:
        words, command = text.split()[1:], CLICK
        while hasattr(command, "commands") and words and words[0] in command.commands:
            command, words = command.commands[words[0]], words[1:]
        assert not hasattr(command, "commands"), f"{text!r} names no command"
        options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        for word in words:
            assert not word.startswith("-") or word in options, f"{word} is not an option of {text!r} ({message})"
        values = dict(itertools.pairwise(words))
        assert values.get("--task", "TASK") in (*TASKS, "TASK"), message
        assert values.get("--style", "STYLE") in (*styles, "STYLE"), message


def test_every_made_from_option_is_an_option_of_the_maker():
    for kind, inputs in artifacts.MADE_FROM.items():
        for flag in inputs.values():
            assert_valid_next_steps(f"run: {artifacts.producer_of(kind)} {flag} X")


@pytest.fixture(scope="module")
def base(tokens_dir, tmp_path_factory):
    """A workspace with the real tokens (styles blues, march, waltz) and nothing else."""
    ws = tmp_path_factory.mktemp("hints") / "ws"
    shutil.copytree(tokens_dir, ws / "tokens")
    return ws


@pytest.fixture
def ws(base, tmp_path):
    copy = tmp_path / "ws"
    shutil.copytree(base, copy)
    return copy


def feed(root, kind):
    """A fake artifact of ``kind`` in its own folder outside the workspace (named like it, as users name them)."""
    names = {artifacts.GRAPH: "graph/horror", artifacts.GCN: "gcn/horror", artifacts.FINETUNE: "finetune/melody"}
    parameters = {artifacts.GRAPH: {"style": "horror"}, artifacts.GCN: {"style": "horror"},
                  artifacts.FINETUNE: {"task": "melody"}}.get(kind, {})
    return fake(root / "fed" / names.get(kind, kind.replace("-", "/")), kind, **parameters)


@pytest.mark.parametrize("kind", [k for k in artifacts.KINDS if k != artifacts.FINETUNE])
def test_predict_names_a_valid_next_step_for_every_kind(kind, tmp_path):
    song = tmp_path / "song.mid"
    song.write_bytes(style_piece("waltz", 1, bars=2))
    model = feed(tmp_path, kind)
    line = error_line(runner.invoke(app, ["predict", "--model", str(model), str(song), "--device", "cpu"]))
    assert re.search(f"holds an? '{kind}' artifact, not 'finetune'", line)
    assert "--task horror" not in line and f"--task {model.name}" not in line
    assert_valid_next_steps(line)


def test_predict_on_a_pretrained_model_says_how_to_fine_tune_it(tmp_path):
    song = tmp_path / "song.mid"
    song.write_bytes(style_piece("waltz", 1, bars=2))
    bert = fake(tmp_path / "musictl-work" / "bert", artifacts.BERT)
    line = error_line(runner.invoke(app, ["predict", "--model", str(bert), str(song)]))
    assert line.endswith(f"(a pre-trained model, not a fine-tuned model); run: musictl finetune-mask --task TASK --model {bert}")


def test_predict_on_the_folder_of_fine_tuned_models_lists_them(tmp_path):
    song = tmp_path / "song.mid"
    song.write_bytes(style_piece("waltz", 1, bars=2))
    folder = tmp_path / "finetune"
    fake(folder / "melody", artifacts.FINETUNE, task="melody")
    line = error_line(runner.invoke(app, ["predict", "--model", str(folder), str(song)]))
    assert f"give one of them: {folder / 'melody'}" in line and "--task finetune" not in line


@pytest.mark.parametrize("kind", [k for k in artifacts.KINDS if k != artifacts.GRAPH])
def test_train_gcn_graph_dir_names_a_valid_next_step_for_every_kind(kind, ws, tmp_path):
    fake(ws / "embeddings", artifacts.EMBEDDINGS)
    result = runner.invoke(app, ["train-gcn", "--style", "waltz", "--graph-dir", str(feed(tmp_path, kind)),
                                 "--workdir", str(ws), "--device", "cpu"])
    line = error_line(result)
    assert result.exit_code == 1 and re.search(f"holds an? '{kind}' artifact, not 'graph'", line)
    assert_valid_next_steps(line)


@pytest.mark.parametrize("kind", [k for k in artifacts.KINDS if k != artifacts.EMBEDDINGS])
def test_train_gcn_embeddings_names_a_valid_next_step_for_every_kind(kind, ws, tmp_path):
    fake(ws / "graph" / "waltz", artifacts.GRAPH, files=artifacts.KINDS[artifacts.GRAPH].files, style="waltz")
    result = runner.invoke(app, ["train-gcn", "--style", "waltz", "--embeddings", str(feed(tmp_path, kind)),
                                 "--workdir", str(ws), "--device", "cpu"])
    line = error_line(result)
    assert result.exit_code == 1 and re.search(f"holds an? '{kind}' artifact, not 'embeddings'", line)
    assert_valid_next_steps(line)
    if kind == artifacts.BERT:
        assert f"run: musictl embed --model {tmp_path / 'fed' / 'bert'}" in line


@pytest.mark.parametrize("kind", [k for k in artifacts.KINDS if k != artifacts.GCN])
def test_generate_rwr_names_a_valid_next_step_for_every_kind_in_its_gcn_place(kind, ws):
    fake(ws / "graph" / "waltz", artifacts.GRAPH, files=artifacts.KINDS[artifacts.GRAPH].files, style="waltz")
    fake(ws / "gcn" / "waltz", kind)
    result = runner.invoke(app, ["generate-rwr", "--style", "waltz", "-o", str(ws / "out.mid"), "--workdir", str(ws)])
    line = error_line(result)
    assert result.exit_code == 1 and re.search(f"holds an? '{kind}' artifact, not 'gcn'", line)
    assert "remake it: musictl train-gcn --style waltz --overwrite" in line
    assert_valid_next_steps(line)


# ----- the whole missing chain at once ---------------------------------------------------------------
EMPTY = {
    ("train-gcn", "--style", "folk"): "train-gcn --style folk needs tokens, graph/folk and embeddings, which are missing; "
    "run: musictl tokenize && musictl pretrain-bert && musictl embed && musictl adjacency --style folk",
    ("generate-rwr", "--style", "folk"): "generate-rwr --style folk needs tokens and gcn/folk, which are missing; run: "
    "musictl tokenize && musictl pretrain-bert && musictl embed && musictl adjacency --style folk && musictl train-gcn "
    "--style folk",
    ("embed",): "embed needs tokens and bert, which are missing; run: musictl tokenize && musictl pretrain-bert",
    ("finetune-mask", "--task", "melody"): "finetune-mask --task melody needs tokens and bert, which are missing; run: "
    "musictl tokenize && musictl pretrain-bert",
    ("adjacency", "--style", "folk"): "adjacency --style folk needs tokens, which is missing; run: musictl tokenize",
}


@pytest.mark.parametrize("args", list(EMPTY), ids=" ".join)
def test_an_empty_workspace_names_the_whole_chain_in_one_line_and_stays_empty(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MUSICTL_WORKDIR", raising=False)
    result = runner.invoke(app, [*args, "-o" if args[0] == "generate-rwr" else "--overwrite",
                                 *(["out.mid"] if args[0] == "generate-rwr" else [])])
    assert result.exit_code == 1
    assert error_line(result) == f"error: {EMPTY[args]}"
    assert_valid_next_steps(EMPTY[args], styles=("folk",))
    assert not (tmp_path / "musictl-work").exists()


def test_a_partial_workspace_names_only_what_is_missing(ws, monkeypatch):
    monkeypatch.setenv("MUSICTL_WORKDIR", str(ws))  # the workspace every command finds by itself
    result = runner.invoke(app, ["train-gcn", "--style", "waltz"])
    assert error_line(result) == ("error: train-gcn --style waltz needs graph/waltz and embeddings, which are missing; run: "
                                  "musictl pretrain-bert && musictl embed && musictl adjacency --style waltz")
    fake(ws / "bert", artifacts.BERT)
    monkeypatch.delenv("MUSICTL_WORKDIR")
    result = runner.invoke(app, ["train-gcn", "--style", "waltz", "--workdir", str(ws)])  # named: each command names it
    assert error_line(result).endswith(f"run: musictl embed --workdir {ws} && musictl adjacency --style waltz --workdir {ws}")


def test_the_chain_of_an_input_given_elsewhere_writes_it_there(ws, tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICTL_WORKDIR", str(ws))
    elsewhere = tmp_path / "mine" / "graph"
    with pytest.raises(ArtifactError) as caught:
        workspace.require_inputs("train-gcn --style waltz", ws, [
            workspace.Needed(artifacts.GRAPH, "waltz", elsewhere),
            workspace.Needed(artifacts.EMBEDDINGS, None, ws / "embeddings")])
    assert str(caught.value).endswith(f"run: musictl pretrain-bert && musictl embed && musictl adjacency --style waltz "
                                      f"-o {elsewhere}")
    assert f"needs {elsewhere} and embeddings" in str(caught.value)
    tokens = tmp_path / "mine" / "tokens"  # the tokens given to the command are those its makers read
    with pytest.raises(ArtifactError) as caught:
        workspace.require_inputs("embed", ws, [workspace.Needed(artifacts.TOKENS, None, tokens),
                                               workspace.Needed(artifacts.BERT, None, ws / "bert")])
    assert str(caught.value).endswith(f"run: musictl tokenize -o {tokens} && musictl pretrain-bert --tokens {tokens}")
    workspace.require_inputs("adjacency", ws, [workspace.Needed(artifacts.TOKENS, None, ws / "tokens")])  # present: fine


# ----- styles ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("given, expected", [
    ("Waltz", "no style 'Waltz' in {tokens}; did you mean 'waltz'? (known styles: blues, march, waltz)"),
    ("wlatz", "no style 'wlatz' in {tokens}; did you mean 'waltz'? (known styles: blues, march, waltz)"),
    ("horror", "no style 'horror' in {tokens} (known styles: blues, march, waltz); pass one of them to --style"),
])
@pytest.mark.parametrize("command", ["train-gcn", "adjacency", "generate-rwr"])
def test_a_misspelt_style_gets_a_suggestion(command, given, expected, ws):
    extra = ["-o", str(ws / "out.mid")] if command == "generate-rwr" else []
    result = runner.invoke(app, [command, "--style", given, *extra, "--workdir", str(ws)])
    assert result.exit_code == 1
    assert error_line(result) == "error: " + expected.format(tokens=ws / "tokens")


def test_generate_rwr_without_style_uses_the_one_trained_style_and_asks_among_several(ws):
    with pytest.raises(ArtifactError, match="needs gcn/STYLE"):  # no GCN yet: the error names the chain
        workspace.generate_style(ws)
    fake(ws / "gcn" / "march", artifacts.GCN, style="march")
    assert workspace.generate_style(ws) == "march"
    result = runner.invoke(app, ["generate-rwr", "-o", str(ws / "out.mid"), "--workdir", str(ws)])
    assert "--style march" in error_line(result)  # it went on with march (whose fake GCN lacks its files)
    fake(ws / "gcn" / "waltz", artifacts.GCN, style="waltz")
    with pytest.raises(UsageError, match=r"2 styles have a trained GCN .*\(march, waltz\); choose one: --style march"):
        workspace.generate_style(ws)
    result = runner.invoke(app, ["generate-rwr", "-o", str(ws / "out.mid"), "--workdir", str(ws)])
    assert result.exit_code == 2 and "(march, waltz); choose one" in error_line(result)


def test_generate_rwr_with_no_gcn_lists_the_styles(ws, monkeypatch):
    monkeypatch.setenv("MUSICTL_WORKDIR", str(ws))
    with pytest.raises(ArtifactError) as caught:
        workspace.generate_style(ws)
    assert str(caught.value) == ("generate-rwr needs gcn/STYLE, which is missing; run: musictl pretrain-bert && musictl "
                                 "embed && musictl adjacency --style STYLE && musictl train-gcn --style STYLE (known styles: "
                                 "blues, march, waltz)")


# ----- no empty workspace after a failure --------------------------------------------------------------
def test_a_failed_tokenize_leaves_no_empty_workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MUSICTL_WORKDIR", raising=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.mid").write_text("not a MIDI file")
    result = runner.invoke(app, ["tokenize", str(bad), "--workers", "1"])
    assert result.exit_code == 1 and "could be tokenized" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]
    nested = tmp_path / "new" / "deeper" / "ws"
    assert runner.invoke(app, ["tokenize", str(bad), "--workers", "1", "--workdir", str(nested)]).exit_code == 1
    assert not (tmp_path / "new").exists()


def test_staging_removes_only_the_folders_it_created_and_left_empty(tmp_path):
    with pytest.raises(RuntimeError), artifacts.staging(tmp_path / "ws" / "graph" / "folk"):
        raise RuntimeError("the work failed")
    assert not (tmp_path / "ws").exists()
    (tmp_path / "mine").mkdir()  # the user's own (empty) workspace stays
    with pytest.raises(RuntimeError), artifacts.staging(tmp_path / "mine" / "graph" / "folk"):
        raise RuntimeError("the work failed")
    assert (tmp_path / "mine").is_dir() and not (tmp_path / "mine" / "graph").exists()
    with artifacts.staging(tmp_path / "ok" / "graph" / "folk") as tmp:
        (tmp / "graph.npz").write_bytes(b"x")
    assert (tmp_path / "ok" / "graph" / "folk" / "graph.npz").is_file()
