"""``musictl adapt``: a pre-trained MidiBert adapted to one style's next notes with LoRA or in full, on the shared run
lifecycle; the artifact that status lists and load_adapted reloads; resume; damaged adapters; unknown styles."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from musictl import artifacts, workspace
from musictl.bert import adapt, nextnote
from musictl.bert.pretrain import PretrainSettings, pretrain
from musictl.bert.settings import ADAPT_LR_FULL, ADAPT_LR_LORA, ADAPT_LR_SCRATCH, AdaptSettings
from musictl.cli import app
from musictl.errors import ArtifactError, Interrupted, UsageError
from musictl.midi.tokens import TokenCorpus
from tests.test_run_lifecycle import same_weights, sigint_at

runner = CliRunner()
TINY = dict(style="waltz", max_len=64, batch_size=4, epochs=8, patience=8, seed=1, device="cpu")
TINY_ARGS = ["--max-len", "64", "--batch-size", "4", "--epochs", "8", "--patience", "8", "--seed", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def base(tokens_dir, tmp_path_factory):
    """A workspace with the tokens (styles blues, march, waltz) and a tiny pre-trained MidiBert."""
    torch.set_num_threads(1)
    ws = tmp_path_factory.mktemp("adapt") / "ws"
    shutil.copytree(tokens_dir, ws / "tokens")
    pretrain(ws / "tokens", ws / "bert", PretrainSettings(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                          field_embed_dim=8, max_len=64, batch_size=4, eval_every=2,
                                                          max_steps=4, seed=3, objective="mlm", device="cpu"))
    return ws


@pytest.fixture(scope="module")
def lora(base):
    """``musictl adapt --style waltz --pieces 3`` (LoRA) in the base workspace: its output and its metrics."""
    result = runner.invoke(app, ["adapt", "--style", "waltz", "--pieces", "3", "--workdir", str(base), *TINY_ARGS])
    assert result.exit_code == 0, result.output
    out = base / "adapted" / "waltz"
    assert result.stdout.strip().splitlines()[-1] == str(out)
    return out, json.loads((out / "metrics.json").read_text())


def valid_nll(model, tokens: TokenCorpus) -> dict:
    """The validation NLL of the waltz pieces under ``model``, as adapt scores it."""
    pieces = tokens.select(style="waltz", split="valid")
    return adapt.evaluate(model, [tokens.piece_tokens(p) for p in pieces], [p.path for p in pieces], 64,
                          tokens.config.max_bars, 4, "cpu")


def test_lora_adaptation_writes_an_artifact_that_status_lists_and_load_adapted_reloads(base, lora):
    out, metrics = lora
    manifest = artifacts.require(out, artifacts.ADAPTED, "waltz")
    assert manifest.parameters["style"] == "waltz" and manifest.parameters["mode"] == "lora"
    assert manifest.parameters["lr"] == ADAPT_LR_LORA and manifest.inputs["bert"]["path"] == "../../bert"
    assert (out / adapt.ADAPTER_FILE).is_file() and not (out / adapt.WEIGHTS_FILE).exists()
    assert {"curves.png", "README.md", "config.json", "metrics.jsonl"} <= {p.name for p in out.iterdir()}
    assert 0 < metrics["trainable_parameters"] < metrics["total_parameters"]
    assert metrics["steps"] > 0 and metrics["cpu_seconds"] >= 0 and metrics["epochs_run"] == len(metrics["history"])
    corpus = TokenCorpus.open(base / "tokens")
    pool = corpus.select(style="waltz", split="train")
    assert metrics["train_pieces"] == [p.path for p in adapt.draw_pieces(pool, 3, 1)] and len(metrics["train_pieces"]) == 3

    status = json.loads(runner.invoke(app, ["status", "--json", "--workdir", str(base)]).stdout)
    listed = [a for a in status["artifacts"] if a["kind"] == "adapted"]
    assert [(a["name"], a["state"], a["made_by"]) for a in listed] == [("waltz", "fresh", "musictl adapt --style waltz")]
    assert listed[0]["verdict"].startswith("lora, 3 pieces: valid next-note NLL pitch")
    assert listed[0]["inputs"] == {"tokens": "fresh", "bert": "fresh"}

    for merge in (True, False):  # the reloaded model scores the validation pieces as the best epoch did
        again = valid_nll(adapt.load_adapted(out, merge=merge), corpus)
        assert again["loss"] == pytest.approx(metrics["after"]["loss"], abs=1e-5)
        assert again["fields"] == pytest.approx(metrics["after"]["fields"], abs=1e-5)


def test_adaptation_lowers_the_style_s_validation_nll(lora):
    _, metrics = lora
    before, after = metrics["before"], metrics["after"]
    assert after["loss"] < before["loss"]
    for field in ("pitch", "duration"):
        assert after["fields"][field] < before["fields"][field], field
        assert metrics["improvement"][field] == pytest.approx(before["fields"][field] - after["fields"][field], abs=1e-5)
    assert min(row["valid_loss"] for row in metrics["history"]) == pytest.approx(after["loss"])


def test_full_adaptation_trains_every_weight_and_reloads(base, tmp_path):
    out = tmp_path / "waltz-full"
    result = adapt.adapt(base / "tokens", base / "bert", out, AdaptSettings(**TINY, full=True))
    assert result.mode == "full" and result.trainable_parameters == result.total_parameters
    assert (out / adapt.WEIGHTS_FILE).is_file() and not (out / adapt.ADAPTER_FILE).exists()
    assert artifacts.read_manifest(out).parameters["lr"] == ADAPT_LR_FULL
    model = adapt.load_adapted(out)
    assert isinstance(model, nextnote.MidiBertForNextNote) and model.config.causal
    assert valid_nll(model, TokenCorpus.open(base / "tokens"))["fields"] == pytest.approx(result.after["fields"], abs=1e-5)
    assert result.after["loss"] < result.before["loss"]


def test_an_interrupted_adaptation_resumes_to_the_adapter_of_an_uninterrupted_one(base, tmp_path):
    settings = AdaptSettings(**TINY)
    whole = adapt.adapt(base / "tokens", base / "bert", tmp_path / "whole", settings)
    work = tmp_path / "work"
    shutil.copytree(base / "tokens", work / "tokens")
    shutil.copytree(base / "bert", work / "bert")
    out = work / "adapted" / "waltz"
    with pytest.raises(Interrupted, match=r"checkpoint at step 3 kept in .*musictl adapt --style waltz --resume"):
        adapt.adapt(work / "tokens", work / "bert", out, settings, on_progress=sigint_at(3))
    assert [(r.kind, r.name, r.step, r.command) for r in workspace.scan(work).resumable] == [
        ("adapted", "waltz", 3, "musictl adapt --style waltz --resume")]
    with pytest.raises(UsageError, match="was made with --rank 8, not --rank 4"):
        adapt.adapt(work / "tokens", work / "bert", out, AdaptSettings(**TINY, rank=4), resume=True)
    seen = []
    resumed = adapt.adapt(work / "tokens", work / "bert", out, settings, resume=True,
                          on_progress=lambda done, total, row=None: seen.append(done))
    assert seen == [4, 5, 6, 7, 8]  # continued after the checkpoint
    assert same_weights(tmp_path / "whole" / adapt.ADAPTER_FILE, out / adapt.ADAPTER_FILE)
    assert (resumed.before, resumed.after, resumed.best_epoch, resumed.steps) == (whole.before, whole.after,
                                                                                  whole.best_epoch, whole.steps)
    assert artifacts.read_jsonl(out / "metrics.jsonl") == artifacts.read_jsonl(tmp_path / "whole" / "metrics.jsonl")
    assert workspace.scan(work).resumable == []


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text
    return text


def test_a_damaged_or_missing_adapter_is_a_one_line_error_with_the_next_step(lora, tmp_path):
    out, _ = lora
    remake = "remake it: musictl adapt --style waltz --overwrite"
    truncated = tmp_path / "truncated" / "waltz"
    shutil.copytree(out, truncated)
    data = (truncated / adapt.ADAPTER_FILE).read_bytes()
    (truncated / adapt.ADAPTER_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError) as caught:  # its manifest's fingerprint no longer matches
        adapt.load_adapted(truncated)
    assert one_line(caught.value).endswith(remake) and "do not match its manifest" in str(caught.value)
    artifacts.write_manifest(truncated, artifacts.read_manifest(truncated))  # fingerprinted as it is: the load fails
    with pytest.raises(ArtifactError) as caught:
        adapt.load_adapted(truncated)
    assert one_line(caught.value).startswith(f"{truncated}: cannot load the adapted model") and one_line(caught.value).endswith(remake)
    (truncated / adapt.ADAPTER_FILE).unlink()
    artifacts.write_manifest(truncated, artifacts.read_manifest(truncated))
    with pytest.raises(ArtifactError) as caught:
        adapt.load_adapted(truncated)
    assert one_line(caught.value) == f"{truncated} lacks {adapt.ADAPTER_FILE}; {remake}"

    moved = tmp_path / "elsewhere" / "adapted" / "waltz"  # the adapter without the base model it sits on
    shutil.copytree(out, moved)
    manifest = artifacts.read_manifest(moved)
    manifest.inputs["bert"] = {**manifest.inputs["bert"], "path": "../../bert", "absolute": str(tmp_path / "gone")}
    artifacts.write_manifest(moved, manifest)
    with pytest.raises(ArtifactError) as caught:
        adapt.load_adapted(moved)
    assert "the base model of" in one_line(caught.value) and "is missing" in str(caught.value)
    with pytest.raises(ArtifactError, match="holds a 'bert' artifact, not 'adapted'"):
        adapt.load_adapted(out.parent.parent / "bert")


def test_an_unknown_style_lists_the_known_ones(base):
    result = runner.invoke(app, ["adapt", "--style", "horror", "--workdir", str(base), *TINY_ARGS])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: no style 'horror' in {base / 'tokens'} (known styles: blues, march, waltz); pass one of them "
                     "to --style"]
    with pytest.raises(ArtifactError, match=r"did you mean 'waltz'\? \(known styles: blues, march, waltz\)"):
        adapt.adapt(base / "tokens", base / "bert", base / "nowhere", AdaptSettings(**{**TINY, "style": "Waltz"}))
    assert not (base / "nowhere").exists()


def test_k_pieces_are_the_few_shot_benchmark_s_draw(base):
    from musictl.transfer.fewshot import draw_shots

    pool = TokenCorpus.open(base / "tokens").select(style="march", split="train")
    for seed in range(5):
        for k in (1, 2, 3, None):
            assert adapt.draw_pieces(pool, k, seed) == draw_shots(pool, k or 0, seed)


def test_embed_reads_an_adapted_model_s_encoder(base, lora):
    from musictl.transfer.embed import contextual_midibert, is_midibert_dir, static_midibert

    out, _ = lora
    corpus = TokenCorpus.open(base / "tokens")
    assert is_midibert_dir(out)
    table, _, vocab = static_midibert(out)
    assert table.shape == (corpus.config.n_graph_tokens, 32) and vocab.vocab_id == corpus.config.vocab_id
    adapted, counts, _, _ = contextual_midibert(out, corpus, "waltz", max_len=64)
    plain, _, _, _ = contextual_midibert(base / "bert", corpus, "waltz", max_len=64)
    seen = counts.numpy() > 0
    assert seen.any() and not np.allclose(adapted.numpy()[seen], plain.numpy()[seen], atol=1e-4)


def test_several_styles_pool_their_pieces_and_name_the_artifact(base):
    settings = AdaptSettings(**{**TINY, "style": "march+blues+march", "epochs": 1})
    assert settings.style == "march+blues"  # once each, in the order given
    with pytest.raises(UsageError, match="not both"):
        AdaptSettings(**{**TINY, "all_styles": True})
    corpus = TokenCorpus.open(base / "tokens")
    train, valid = adapt.style_pieces(corpus, base / "tokens", settings)
    pools = [corpus.select(style=s, split="train") for s in ("march", "blues")]
    assert train == pools[0] + pools[1] and {p.style for p in valid} == {"march", "blues"}
    everything, _ = adapt.style_pieces(corpus, base / "tokens", AdaptSettings(**{**TINY, "style": None, "all_styles": True,
                                                                                  "pieces": 4}))
    pool = [p for s in corpus.styles for p in corpus.select(style=s, split="train")]
    assert everything == adapt.draw_pieces(pool, 4, TINY["seed"])

    result = runner.invoke(app, ["adapt", "--style", "march", "--style", "blues", "--epochs", "1", "--workdir", str(base),
                                 *TINY_ARGS[:4], *TINY_ARGS[6:]])
    assert result.exit_code == 0, result.output
    out = base / "adapted" / "march+blues"
    assert result.stdout.strip().splitlines()[-1] == str(out)
    manifest = artifacts.require(out, artifacts.ADAPTED, "march+blues")
    assert manifest.parameters["style"] == "march+blues"
    assert json.loads((out / "metrics.json").read_text())["train_pieces"] == [p.path for p in train]


def test_an_adapted_model_is_a_base_to_adapt_again(base, tmp_path):
    """LoRA and full runs on top of a full adapted model start from its next-note weights and reload through it."""
    corpus = TokenCorpus.open(base / "tokens")
    first = tmp_path / "next"
    adapt.adapt(base / "tokens", base / "bert", first, AdaptSettings(**{**TINY, "style": None, "all_styles": True,
                                                                         "full": True, "epochs": 2}))
    start = valid_nll(adapt.load_adapted(first), corpus)
    for full in (False, True):
        out = tmp_path / f"chained-{full}"
        result = adapt.adapt(base / "tokens", first, out, AdaptSettings(**TINY, full=full))
        assert result.before["fields"] == pytest.approx(start["fields"], abs=1e-5)  # it starts where the base ended
        manifest = artifacts.read_manifest(out)
        assert manifest.inputs["bert"]["kind"] == artifacts.ADAPTED
        assert valid_nll(adapt.load_adapted(out), corpus)["fields"] == pytest.approx(result.after["fields"], abs=1e-5)
    shutil.rmtree(first)  # a LoRA adapter whose adapted base is gone: one line naming it
    with pytest.raises(ArtifactError, match=r"the base model of .* is missing"):
        adapt.load_adapted(tmp_path / "chained-False")


def test_from_scratch_is_the_base_architecture_with_seeded_random_weights(base, tmp_path):
    settings = AdaptSettings(**{**TINY, "epochs": 1}, from_scratch=True)
    assert settings.full and settings.mode == "scratch" and settings.lr == ADAPT_LR_SCRATCH
    made = [adapt.scratch_model(base / "bert", seed) for seed in (1, 1, 2)]
    pretrained = adapt.base_model(base / "bert")
    shape = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_sizes", "max_position_embeddings", "causal")
    assert [getattr(made[0].config, k) for k in shape] == [getattr(pretrained.config, k) for k in shape]
    state = [m.state_dict() for m in made]
    assert all(torch.equal(state[0][k], state[1][k]) for k in state[0])  # the seed decides
    assert not torch.equal(state[0]["bert.in_proj.weight"], state[2]["bert.in_proj.weight"])
    assert not torch.equal(state[0]["bert.in_proj.weight"], pretrained.state_dict()["bert.in_proj.weight"])
    torch.manual_seed(123)
    outside = torch.rand(1)
    torch.manual_seed(123)
    adapt.scratch_model(base / "bert", 5)
    assert torch.equal(torch.rand(1), outside)  # no leak into the caller's random stream

    result = adapt.adapt(base / "tokens", base / "bert", tmp_path / "scratch", settings)
    assert result.mode == "scratch" and result.trainable_parameters == result.total_parameters
    reloaded = adapt.load_adapted(tmp_path / "scratch")
    assert valid_nll(reloaded, TokenCorpus.open(base / "tokens"))["fields"] == pytest.approx(result.after["fields"],
                                                                                            abs=1e-5)
