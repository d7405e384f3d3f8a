"""MusicGen + LoRA on the tiny random base: delay pattern, LoRA isolation, adapter round trip, base errors."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from musictl.violin.model import build_tiny_base

    torch.set_num_threads(1)
    return build_tiny_base(tmp_path_factory.mktemp("violin") / "tiny")


def _batch(model, tokenizer, seed=0):
    from musictl.violin.lora import make_batch
    from musictl.violin.model import encode_audio

    rng = np.random.default_rng(seed)
    t = np.arange(16_000) / 32_000
    audio = np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in (440.0, 587.0)]).astype(np.float32)
    codes = encode_audio(model.get_base_model() if hasattr(model, "get_base_model") else model, audio)
    return make_batch(model, tokenizer, ["solo violin, lively reel in D major", "gentle jig in A minor"], codes, 0.0, rng)


def test_delay_pattern_matches_hand_made_example():
    from musictl.violin.model import delay_pattern, undelay

    P = 9
    codes = torch.tensor([[[1, 2, 3, 4], [5, 6, 7, 8], [0, 1, 2, 3]]])  # (1, K=3, T=4)
    expected = torch.tensor(
        [
            [
                [1, 2, 3, 4, P, P],
                [P, 5, 6, 7, 8, P],
                [P, P, 0, 1, 2, 3],
            ]
        ]
    )
    delayed = delay_pattern(codes, P)
    assert torch.equal(delayed, expected)
    assert torch.equal(undelay(delayed, 4), codes)


def test_delay_pattern_agrees_with_transformers(tiny_base):
    """Same layout as MusicGen's own build_delay_pattern_mask (which puts a BOS column first)."""
    from musictl.violin.model import delay_pattern, load_base

    model, _ = load_base(tiny_base)
    k, pad = model.decoder.num_codebooks, model.config.decoder.pad_token_id
    codes = torch.randint(0, pad, (2, k, 7))
    with_bos = torch.cat([torch.full((2, k, 1), pad), codes], dim=-1).reshape(2 * k, -1)
    _, mask = model.decoder.build_delay_pattern_mask(with_bos, pad, max_length=8 + k)
    theirs = mask.reshape(2, k, -1)[:, :, 1 : 7 + k]
    theirs = theirs.masked_fill(theirs == -1, pad)  # -1 marks the next position to generate: no target yet
    assert torch.equal(delay_pattern(codes, pad), theirs)


def test_tiny_base_codes_are_not_all_zero(tiny_base):
    from musictl.violin.model import encode_audio, load_base

    model, _ = load_base(tiny_base)
    t = np.arange(32_000) / 32_000
    codes = encode_audio(model, (0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 3 * t))[None].astype(np.float32))
    assert codes.shape[1] == model.decoder.num_codebooks
    assert len(torch.unique(codes)) > 4


def test_lora_changes_only_adapter_weights_and_reloads_identically(tiny_base, tmp_path):
    from peft import PeftModel

    from musictl.violin.lora import add_lora, forward, parameter_share
    from musictl.violin.model import load_base

    torch.manual_seed(0)
    model, tokenizer = load_base(tiny_base)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = add_lora(model, ["q_proj", "v_proj"], rank=4, alpha=8, dropout=0.0)
    trainable, total = parameter_share(peft_model)
    assert 0 < trainable < total / 10
    assert all("lora_" in n for n, p in peft_model.named_parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    batch = _batch(peft_model, tokenizer)
    for _ in range(3):
        loss = forward(peft_model, batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = peft_model.get_base_model().state_dict()
    changed = [k for k in after if "lora_" in k and "lora_B" in k and after[k].abs().sum() > 0]
    assert changed, "LoRA B matrices did not move"
    for key, value in before.items():
        wrapped = key.replace(".q_proj.weight", ".q_proj.base_layer.weight").replace(
            ".v_proj.weight", ".v_proj.base_layer.weight"
        )
        assert torch.equal(after[wrapped], value), f"base weight {key} changed"

    peft_model.eval()
    with torch.no_grad():
        logits = forward(peft_model, batch).logits
        with peft_model.disable_adapter():
            base_logits = forward(peft_model, batch).logits
    assert not torch.allclose(logits, base_logits), "the adapter has no effect"
    peft_model.save_pretrained(tmp_path / "adapter")
    fresh, _ = load_base(tiny_base)
    reloaded = PeftModel.from_pretrained(fresh, str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        assert torch.equal(forward(reloaded, batch).logits, logits)


def test_generation_is_seeded(tiny_base):
    from musictl.violin.generate import generate, load_for_generation

    model, tokenizer, random_base = load_for_generation(tiny_base, None, "cpu")
    assert random_base
    a = generate(model, tokenizer, ["solo violin in G major"], 1.0, 3.0, seed=1)
    b = generate(model, tokenizer, ["solo violin in G major"], 1.0, 3.0, seed=1)
    assert a.shape == (1, 32_000) and np.array_equal(a, b) and np.abs(a).max() > 0


def test_generation_goes_through_the_adapter(tiny_base):
    from musictl.violin.generate import generate
    from musictl.violin.lora import add_lora
    from musictl.violin.model import load_base

    model, tokenizer = load_base(tiny_base)
    peft_model = add_lora(model, ["q_proj", "v_proj"], rank=4, alpha=8, dropout=0.0)
    torch.manual_seed(0)
    for name, weight in peft_model.named_parameters():
        if "lora_B" in name:
            weight.data.normal_(0, 0.3)
    peft_model.eval()
    with_adapter = generate(peft_model, tokenizer, ["solo violin, reel in D major"], 1.0, 3.0, seed=0)
    with peft_model.disable_adapter():
        without = generate(peft_model, tokenizer, ["solo violin, reel in D major"], 1.0, 3.0, seed=0)
    assert not np.array_equal(with_adapter, without), "generate ignored the adapter"


def test_base_that_is_not_musicgen_is_refused(tmp_path):
    from transformers import BertConfig

    from musictl.errors import UsageError
    from musictl.violin.model import load_base

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(UsageError, match="not a MusicGen"):
        load_base(tmp_path)
    with pytest.raises(UsageError, match=r"no config\.json"):
        load_base(tmp_path / "missing")


def test_unreachable_hub_id_says_to_pass_a_local_directory(monkeypatch):
    from musictl.errors import MusictlError
    from musictl.violin.model import load_base

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MusictlError, match="local directory"):
        load_base("musictl-test/no-such-musicgen")


def test_training_resumes_from_its_checkpoint(tiny_base, tmp_path, caplog):
    import dataclasses
    import logging

    import soundfile as sf

    from musictl import artifacts
    from musictl.artifacts import write_jsonl
    from musictl.violin.settings import LoraTrainSettings
    from musictl.violin.train import train

    data = tmp_path / "data"
    (data / "clips").mkdir(parents=True)
    t = np.arange(16_000) / 32_000
    rows = []
    for i, f in enumerate((440.0, 494.0, 587.0, 659.0)):
        sf.write(data / f"clips/{i}.wav", 0.3 * np.sin(2 * np.pi * f * t), 32_000)
        rows.append({"audio": f"clips/{i}.wav", "caption": "solo violin in D major", "split": "valid" if i == 3 else "train"})
    write_jsonl(data / "metadata.jsonl", rows)
    artifacts.write_manifest(data, artifacts.Manifest("violin-data", {"seconds": 0.5}, metrics={"clips": 4}))
    out = tmp_path / "lora"

    def fit(config, resume):
        run = train(config, data, out, tmp_path, resume=resume, overwrite=True)
        return run.result, artifacts.read_jsonl(out / "metrics.jsonl")

    config = LoraTrainSettings(base=str(tiny_base), rank=4, alpha=8, lr=1e-2, batch_size=2, max_steps=2, eval_every=1, device="cpu")
    first, metrics = fit(config, False)
    assert [r["step"] for r in metrics] == [1, 2] and len(first.valid_loss_per_codebook) == 4
    config = dataclasses.replace(config, max_steps=4)
    logger = logging.getLogger("musictl")  # the CLI's log routing may have stopped it propagating to caplog
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="musictl"):
            _, metrics = fit(config, True)
    finally:
        logger.removeHandler(caplog.handler)
    messages = [r.getMessage() for r in caplog.records]
    assert any("resumed" in m and "step 2" in m for m in messages)
    assert [r["step"] for r in metrics] == [1, 2, 3, 4]
