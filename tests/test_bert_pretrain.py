"""MidiBert model, masking and the pre-training loop on tiny configurations."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from musictl import constants as C
from musictl.bert.data import pad_batch
from musictl.bert.hard_mining import masker_targets
from musictl.bert.masking import budget, hard_mining_selection, random_selection
from musictl.bert.model import MidiBertConfig, MidiBertForPreTraining, load_encoder
from musictl.bert.objective import mlm_step
from musictl.bert.pretrain import PretrainSettings, pretrain
from musictl.cli import app
from musictl.errors import ArtifactError, Interrupted
from musictl.midi.tokens import TokenCorpus
from musictl.midi.vocab import TokenizerConfig

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, field_embed_dim=8)


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return MidiBertForPreTraining(MidiBertConfig.of_size("tiny", TokenizerConfig(), **{**TINY, **overrides}))


def padded_batch(tokens_dir, n=4, length=40):
    corpus = TokenCorpus.open(tokens_dir)
    windows = [corpus.piece_tokens(p)[: length - 7 * i] for i, p in enumerate(corpus.pieces[:n])]
    return pad_batch(windows)


def test_save_load_round_trip_is_exact(tmp_path, tokens_dir):
    model = tiny_model().eval()
    ids, mask = padded_batch(tokens_dir)
    model.save_pretrained(tmp_path / "m")
    loaded = MidiBertForPreTraining.from_pretrained(tmp_path / "m").eval()
    for a, b in zip(model(ids, mask), loaded(ids, mask)):
        assert torch.equal(a, b)
    encoder = load_encoder(tmp_path / "m")
    assert torch.equal(encoder(ids, mask).last_hidden_state, model.bert(ids, mask).last_hidden_state)
    assert encoder.token_embeddings().shape == (TokenizerConfig().n_graph_tokens, 32)
    assert loaded.config.tokenizer_config == TokenizerConfig()


def test_token_embeddings_are_the_projected_field_rows():
    encoder = tiny_model().bert.eval()
    cfg = TokenizerConfig()
    table = encoder.token_embeddings()
    pitch60 = int(cfg.field_offsets[C.PITCH]) + 60
    dim = encoder.config.field_embed_dim
    row = encoder.field_embeddings[C.PITCH].weight[C.N_SPECIAL + 60]
    expected = encoder.in_proj.weight[:, C.PITCH * dim : (C.PITCH + 1) * dim] @ row
    assert torch.allclose(table[pitch60], expected, atol=1e-6)


def test_model_refuses_other_vocabulary():
    with pytest.raises(ArtifactError, match="vocabulary"):
        tiny_model().check_tokens(TokenizerConfig(velocity_bins=16))


def test_masking_never_touches_padding(tokens_dir):
    _ids, mask = padded_batch(tokens_dir)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        chosen = random_selection(mask, 0.15, generator)
        assert not (chosen & ~mask.bool()).any()
        assert torch.equal(chosen.sum(1), budget(mask, 0.15))
        scores = torch.randn(mask.shape)
        scores[~mask.bool()] = 100.0  # a masker that loves padding still cannot pick it
        chosen = hard_mining_selection(scores, mask, 0.15, 0.2, generator)
        assert not (chosen & ~mask.bool()).any()
        assert torch.equal(chosen.sum(1), budget(mask, 0.15))


def test_hard_mining_selection_follows_the_masker(tokens_dir):
    _, mask = padded_batch(tokens_dir)
    scores = torch.arange(mask.shape[1], dtype=torch.float).expand(mask.shape).clone()  # later notes score higher
    chosen = hard_mining_selection(scores, mask, 0.2, 0.0, torch.Generator().manual_seed(0))
    for row in range(mask.shape[0]):
        real = int(mask[row].sum())
        picked = chosen[row].nonzero().flatten().tolist()
        assert picked == list(range(real - len(picked), real))  # the top-scored real notes


def test_masker_targets_are_per_sample():
    loss = torch.tensor([[1.0, 2.0, 3.0, 9.0], [100.0, 300.0, 200.0, 0.0]])
    selected = torch.tensor([[True, True, True, False], [True, True, True, False]])
    target = masker_targets(loss, selected)
    assert torch.allclose(target[0, :3], torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(target[1, :3], torch.tensor([0.0, 1.0, 0.5]))
    assert target[:, 3].eq(0).all()


def _overfit_losses(tokens_dir) -> list[float]:
    model = tiny_model(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ids, mask = padded_batch(tokens_dir, n=2, length=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(60):
        result = mlm_step(model, ids, mask, torch.ones(C.N_FIELDS), 0.3, torch.Generator().manual_seed(step % 4))
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()
        losses.append(float(result.loss.detach()))
    return losses


def test_loss_falls_when_overfitting(tokens_dir):
    losses = _overfit_losses(tokens_dir)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


@pytest.mark.slow
def test_loss_halves_when_overfitting(tokens_dir):
    losses = _overfit_losses(tokens_dir)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def _settings(**kw):
    base = dict(size="tiny", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, field_embed_dim=8,
                max_len=64, batch_size=4, eval_every=2, seed=3)
    return PretrainSettings(**{**base, **kw})


@pytest.mark.parametrize("objective", ["mlm", "adversarial"])
def test_resume_gives_the_same_next_steps(tokens_dir, tmp_path, objective):
    whole = tmp_path / "whole"
    pretrain(tokens_dir, whole, _settings(max_steps=6, objective=objective))
    split = tmp_path / "split"

    def interrupt_after_4(step, total, row):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="checkpoint at step 4 kept"):  # Ctrl-C says what was kept (issue 15)
        pretrain(tokens_dir, split, _settings(max_steps=6, objective=objective), on_progress=interrupt_after_4)
    assert not (split / "manifest.json").exists()  # an interrupted run is not a finished artifact
    pretrain(tokens_dir, split, _settings(max_steps=6, objective=objective), resume=True)
    rows = lambda p: {r["step"]: r["loss"] for r in map(json.loads, (p / "metrics.jsonl").read_text().splitlines())}  # noqa: E731
    assert rows(split)[5] == pytest.approx(rows(whole)[5], rel=1e-5)
    assert rows(split)[6] == pytest.approx(rows(whole)[6], rel=1e-5)


def test_cli_writes_a_complete_artifact(tokens_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "bert"
    args = ["pretrain-bert", "--tokens", str(tokens_dir), "--out", str(out), "--hidden-size", "32", "--layers", "1",
            "--heads", "2", "--field-embed-dim", "8", "--max-len", "64", "--batch-size", "4", "--max-steps", "4",
            "--eval-every", "2", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("config.json", "model.safetensors", "metrics.json", "metrics.jsonl", "README.md", "manifest.json"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "bert" and manifest["inputs"]["tokens"]["kind"] == "tokens"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["final_valid"]["fields"]) == set(C.FIELDS)
    assert all("neighbours" in row for row in metrics["final_valid"]["fields"].values())  # beside unigram, window, previous
    assert set(metrics["learned"]) == set(metrics["learned_against"]) == set(C.FIELDS)  # margins over the strongest baseline
    assert load_encoder(out).config.num_hidden_layers == 1
    before = (out / "model.safetensors").read_bytes()
    # errors: too long a window (output untouched), nothing to resume, existing output
    result = runner.invoke(app, [*args[:-2], "--overwrite", "--max-len", "4000"])
    assert result.exit_code == 2 and "positions" in result.output
    assert (out / "model.safetensors").read_bytes() == before
    result = runner.invoke(app, ["pretrain-bert", "--tokens", str(tokens_dir), "--out", str(tmp_path / "fresh"), "--resume"])
    assert result.exit_code == 1 and "nothing to resume" in result.output
    assert runner.invoke(app, args).exit_code == 1


def test_empty_training_split_is_an_error(style_corpus, tmp_path):
    runner = CliRunner()
    tokens = tmp_path / "tokens"
    assert runner.invoke(app, ["tokenize", str(style_corpus), "-o", str(tokens), "--split", "0,0.5,0.5"]).exit_code == 0
    result = runner.invoke(app, ["pretrain-bert", "--tokens", str(tokens), "--out", str(tmp_path / "b"), "--device", "cpu"])
    assert result.exit_code == 1 and "no training pieces" in result.output


def test_preset_paper_fills_what_was_not_typed(monkeypatch):
    import musictl.bert.pretrain as pretraining

    assert PretrainSettings(preset="paper").with_preset({"lr"}).lr == PretrainSettings().lr  # a typed flag wins
    seen = {}

    def capture(tokens, out, settings, **kwargs):
        seen["settings"] = settings
        raise SystemExit(0)

    monkeypatch.setattr(pretraining, "pretrain", capture)
    result = CliRunner().invoke(app, ["pretrain-bert", "--preset", "paper", "--lr", "3e-4", "--max-len", "512"])
    assert result.exit_code == 0, result.output
    settings = seen["settings"]
    assert (settings.size, settings.batch_size, settings.clip, settings.epochs, settings.weight_decay) == ("base", 8, 3.0, 500, 0.01)
    assert settings.patience == 30
    assert (settings.lr, settings.max_len) == (3e-4, 512)


def test_patience_needs_both_accuracy_and_loss_to_stall():
    from musictl.training import EarlyStopping, TrainerState

    state, n_train, rule = TrainerState(), 10, EarlyStopping(2)
    history = [(0.30, 2.0), (0.32, 1.9), (0.31, 1.8), (0.31, 1.85), (0.30, 1.9), (0.29, 1.95)]  # one eval per epoch
    stops = []
    for epoch, (accuracy, loss) in enumerate(history):
        state.step, state.position, state.last_eval = epoch, epoch * n_train, {"accuracy": accuracy, "loss": loss}
        stops.append(state.out_of_patience(rule, n_train))
    # accuracy's best is epoch 1, loss's best epoch 2: both are 2 epochs old only at epoch 4
    assert stops == [False, False, False, False, True, True]
    assert "--patience 2" in state.stopped_early
    state.position, state.last_eval = 6 * n_train, {"accuracy": 0.32, "loss": 3.0}  # an accuracy tie counts as better
    assert not state.out_of_patience(rule, n_train)
    assert not TrainerState(last_eval={"accuracy": 0.1, "loss": 1.0}).out_of_patience(EarlyStopping(None), n_train)


def test_run_ends_at_the_evaluation_that_runs_out_of_patience(tokens_dir, tmp_path, monkeypatch):
    from musictl.training import TrainerState

    def out_of_patience(self, patience, n):
        self.stopped_early = "tested"
        return True

    monkeypatch.setattr(TrainerState, "out_of_patience", out_of_patience)
    result = pretrain(tokens_dir, tmp_path / "b", _settings(max_steps=9, eval_every=3, objective="mlm", patience=1))
    assert (result.steps, result.stopped_early) == (3, "tested")
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert (metrics["steps"], metrics["stopped_early"]) == (3, "tested")
    MidiBertForPreTraining.from_pretrained(tmp_path / "b")


def test_patience_marks_of_the_last_evaluation_are_checkpointed(tokens_dir, tmp_path):
    result = pretrain(tokens_dir, tmp_path / "b", _settings(max_steps=2, eval_every=2, objective="mlm", patience=50,
                                                                    monitor="both"))
    state = json.loads((tmp_path / "b" / "checkpoints" / "last" / "trainer_state.json").read_text())
    last = result.final_valid
    assert state["patience"] == {"accuracy": [last["accuracy"], state["position"]], "loss": [last["loss"], state["position"]]}
    assert result.stopped_early is None
