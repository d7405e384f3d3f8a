"""The text condition dropped in training is exactly generate()'s unconditional branch; batches through DDP.

MusicGen's ``generate(guidance_scale > 1)`` appends ``zeros_like`` T5 states AND ``zeros_like``
attention mask for its null branch; ``forward`` projects the states (``enc_to_dec_proj``) and
multiplies them by the mask, so the decoder sees zero states and an all-zero mask. A training null
of zero states with the mask left at 1 gives the decoder ``enc_to_dec_proj.bias`` instead.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

CAPTION = "solo violin, lively reel in D major"


@pytest.fixture(scope="module")
def projected_base(tmp_path_factory):
    """A tiny base whose decoder (48-d) is wider than T5 (32-d), so ``enc_to_dec_proj`` is used, with a non-zero bias."""
    from musictl.violin.model import build_tiny_base, load_base

    torch.set_num_threads(1)
    path = build_tiny_base(tmp_path_factory.mktemp("violin") / "tiny48", hidden_size=48)
    model, tokenizer = load_base(path)
    assert model.text_encoder.config.hidden_size != model.decoder.config.hidden_size
    with torch.no_grad():
        model.enc_to_dec_proj.bias.copy_(torch.linspace(0.5, 1.5, model.decoder.config.hidden_size))
    return model.eval(), tokenizer


def _decoder_inputs(model):
    """Capture ``encoder_hidden_states`` and ``encoder_attention_mask`` of every decoder call."""
    calls = []

    def hook(module, args, kwargs):
        calls.append({k: kwargs[k].detach().clone() for k in ("encoder_hidden_states", "encoder_attention_mask")})

    return calls, model.decoder.register_forward_pre_hook(hook, with_kwargs=True)


def _codes(model, n: int = 1):
    from musictl.violin.model import encode_audio

    t = np.arange(8_000) / 32_000
    return encode_audio(model, np.stack([0.3 * np.sin(2 * np.pi * 440.0 * t)] * n).astype(np.float32))


def _generated(model, tokenizer, calls: list) -> dict:
    """The decoder inputs of the first step of ``generate()`` with guidance (conditional row, then unconditional)."""
    enc = tokenizer([CAPTION], return_tensors="pt")
    with torch.no_grad():
        model.generate(input_ids=enc.input_ids, attention_mask=enc.attention_mask, do_sample=False, guidance_scale=3.0,
                       max_new_tokens=2)
    generated = calls[0]
    calls.clear()
    return generated


def test_dropped_sample_feeds_the_decoder_what_generate_feeds_its_unconditional_branch(projected_base):
    from musictl.violin.lora import forward, make_batch

    model, tokenizer = projected_base
    calls, handle = _decoder_inputs(model)
    try:
        generated = _generated(model, tokenizer, calls)
        assert generated["encoder_hidden_states"].shape[0] == 2  # conditional + unconditional rows
        null_states, null_mask = generated["encoder_hidden_states"][1], generated["encoder_attention_mask"][1]
        rng = np.random.default_rng(0)
        batch = make_batch(model, tokenizer, [CAPTION, CAPTION], _codes(model, 2), 1.0, rng)  # drop every sample
        with torch.no_grad():
            forward(model, batch)
    finally:
        handle.remove()
    trained = calls[0]
    for row in range(2):
        assert torch.equal(trained["encoder_attention_mask"][row], null_mask)
        torch.testing.assert_close(trained["encoder_hidden_states"][row], null_states, rtol=0, atol=0)
    assert not null_mask.any() and not null_states.any()  # the null: zero states, nothing attended to


def test_kept_sample_feeds_the_decoder_what_generate_feeds_its_conditional_branch(projected_base):
    from musictl.violin.lora import forward, make_batch

    model, tokenizer = projected_base
    calls, handle = _decoder_inputs(model)
    try:
        conditional = _generated(model, tokenizer, calls)["encoder_hidden_states"][0]
        batch = make_batch(model, tokenizer, [CAPTION], _codes(model), 0.0, np.random.default_rng(0))
        with torch.no_grad():
            forward(model, batch)
    finally:
        handle.remove()
    torch.testing.assert_close(calls[0]["encoder_hidden_states"][0], conditional)
    assert calls[0]["encoder_attention_mask"].all()


def test_training_with_dropped_text_has_a_finite_loss_and_gradient(projected_base):
    """An all-zero cross-attention mask must not turn the loss into NaN (fully masked rows)."""
    from musictl.violin.lora import add_lora, forward, make_batch

    model, tokenizer = projected_base
    peft_model = add_lora(model, ["q_proj", "v_proj"], rank=2, alpha=4, dropout=0.0)
    try:
        peft_model.train()
        batch = make_batch(peft_model, tokenizer, [CAPTION, "gentle jig in A minor"], _codes(model, 2), 1.0,
                           np.random.default_rng(0))
        loss = forward(peft_model, batch).loss
        loss.backward()
        assert torch.isfinite(loss)
        grads = [p.grad for n, p in peft_model.named_parameters() if p.requires_grad and p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
    finally:
        peft_model.unload()


def test_batches_are_built_through_a_ddp_wrapper(tmp_path):
    """``make_batch`` reads the frozen T5 of the model inside DDP (``.module``), not of the wrapper."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from musictl.violin.lora import add_lora, codebook_losses, forward, make_batch
    from musictl.violin.model import build_tiny_base, load_base

    model, tokenizer = load_base(build_tiny_base(tmp_path / "tiny"))
    peft_model = add_lora(model, ["q_proj", "v_proj"], rank=2, alpha=4, dropout=0.0)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        wrapped = DistributedDataParallel(peft_model)
        batch = make_batch(wrapped, tokenizer, [CAPTION], _codes(model), 0.5, np.random.default_rng(0))
        assert torch.isfinite(forward(wrapped, batch).loss)
        assert len(codebook_losses(wrapped, batch)) == model.decoder.num_codebooks
        from musictl.violin.lora import base_model

        assert base_model(wrapped) is peft_model.get_base_model()
    finally:
        dist.destroy_process_group()
