"""MusicGen loading, the tiny random base for tests, EnCodec codes and the delay pattern.

The delay pattern (DESIGN.md section 6): codebook ``k`` is shifted right by ``k`` steps, so at
step ``t`` the decoder predicts codebook 0 of frame ``t``, codebook 1 of frame ``t-1``, ...
Positions outside a codebook's shifted span are the pad id (ignored by the loss). Labels without
this shift train on misaligned targets and no error ever shows it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from musictl.errors import UsageError
from musictl.hf import from_pretrained, looks_like_path
from musictl.violin.settings import TINY

RANDOM_BASE_FILE = "musictl_random_base.json"  # marks a directory as the untrained tiny base


def delay_pattern(codes, pad_id: int):
    """(B, K, T) codes -> (B, K, T + K - 1) with codebook k shifted right by k and pad elsewhere."""
    import torch

    bsz, k_books, frames = codes.shape
    out = torch.full((bsz, k_books, frames + k_books - 1), pad_id, dtype=torch.long, device=codes.device)
    for k in range(k_books):
        out[:, k, k : k + frames] = codes[:, k]
    return out


def undelay(delayed, n_frames: int):
    """Inverse of :func:`delay_pattern`: (B, K, T + K - 1) -> (B, K, T)."""
    import torch

    return torch.stack([delayed[:, k, k : k + n_frames] for k in range(delayed.shape[1])], dim=1)


def is_random_base(path: str | Path) -> bool:
    return (Path(path) / RANDOM_BASE_FILE).is_file()


def build_tiny_base(
    out: Path, seed: int = 0, n_codebooks: int = 4, codebook_size: int = 64, hidden_size: int = 32, layers: int = 2,
    dropout: float = 0.1,
) -> Path:
    """A small untrained MusicGen saved as a local directory (model + word-level tokenizer).

    EnCodec's codebooks start at zero, so every frame would quantise to code 0; here each residual
    codebook is initialised from encoder latents of synthetic tones so the codes carry information.
    """
    import torch
    from transformers import EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, MusicgenForConditionalGeneration, T5Config

    torch.manual_seed(seed)  # own seeding: transformers initialises weights from the global RNG (a test model)
    text = T5Config(vocab_size=256, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4, decoder_start_token_id=0)
    audio = EncodecConfig(
        sampling_rate=32_000,
        audio_channels=1,
        hidden_size=16,
        num_filters=4,
        num_residual_layers=1,
        upsampling_ratios=[8, 5, 4, 4],
        codebook_size=codebook_size,
        codebook_dim=16,
        num_lstm_layers=1,
        target_bandwidths=[n_codebooks * np.log2(codebook_size) * 50 / 1000],
        normalize=False,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=codebook_size,
        num_codebooks=n_codebooks,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        ffn_dim=2 * hidden_size,
        dropout=dropout,  # MusicGen's default 0.1; 0 makes training deterministic across process counts
        max_position_embeddings=1024,
        pad_token_id=codebook_size,
        bos_token_id=codebook_size,
        decoder_start_token_id=codebook_size,
    )
    config = MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
    model = MusicgenForConditionalGeneration(config)
    _init_codebooks(model.audio_encoder, seed)
    _code_dependent_decoder(model.audio_encoder, codebook_size, n_codebooks)
    model.generation_config.pad_token_id = codebook_size
    model.generation_config.decoder_start_token_id = codebook_size
    model.generation_config.bos_token_id = codebook_size
    model.generation_config.max_length = 256
    model.generation_config.guidance_scale = 3.0
    model.generation_config.do_sample = True
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    _tiny_tokenizer().save_pretrained(out)
    (out / RANDOM_BASE_FILE).write_text(
        json.dumps({"seed": seed, "note": "untrained random MusicGen for tests and offline demos"})
    )
    return out


@np.errstate(all="ignore")
def _init_codebooks(encodec, seed: int) -> None:
    import torch

    rng = np.random.default_rng(seed)  # own seeding: the tiny test model's codebooks
    t = np.arange(32_000 * 2) / 32_000
    tones = [
        0.5 * np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * r * t)) / 2
        for f, r in zip(rng.uniform(150, 2000, 16), rng.uniform(1, 8, 16))
    ]
    wave = torch.tensor(np.stack(tones)[:, None, :], dtype=torch.float32)
    with torch.no_grad():
        residual = encodec.encoder(wave).transpose(1, 2).reshape(-1, encodec.config.codebook_dim)
        for layer in encodec.quantizer.layers:
            book = layer.codebook
            picks = torch.as_tensor(rng.choice(residual.shape[0], book.codebook_size, replace=False))
            book.embed.copy_(residual[picks])
            book.embed_avg.copy_(residual[picks])
            if hasattr(book, "inited"):
                book.inited.fill_(True)
            residual = residual - layer.decode(layer.encode(residual.T[None]))[0].T


def _code_dependent_decoder(encodec, codebook_size: int, n_codebooks: int) -> None:
    """Zero the random EnCodec decoder's biases and scale its last layer to ~0.1 RMS.

    Random biases otherwise dominate the output (codes move it by ~0.01%), so every code
    sequence would sound the same and audio metrics could not tell two systems apart.
    """
    import torch

    convs = [m for m in encodec.decoder.modules() if isinstance(m, torch.nn.Conv1d | torch.nn.ConvTranspose1d)]
    with torch.no_grad():
        for module in encodec.decoder.modules():
            if isinstance(getattr(module, "bias", None), torch.nn.Parameter):
                module.bias.zero_()
        codes = torch.randint(0, codebook_size, (1, 2, n_codebooks, 50))
        rms = encodec.decode(codes, [None]).audio_values.pow(2).mean().sqrt()
        last, scale = convs[-1], 0.1 / max(float(rms), 1e-12)
        if hasattr(last, "parametrizations"):  # weight norm: the magnitude g sets the scale
            last.parametrizations.weight.original0.mul_(scale)
        else:
            last.weight.mul_(scale)


def _tiny_tokenizer():
    """Word-level tokenizer over a small music vocabulary (no hub download possible offline)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [
        "solo",
        "violin",
        "lively",
        "gentle",
        "reel",
        "jig",
        "hornpipe",
        "polka",
        "waltz",
        "march",
        "strathspey",
        "slide",
        "tune",
        "in",
        "major",
        "minor",
        "bpm",
        "bright",
        "upper",
        "warm",
        "low",
        "singing",
        "middle",
        "register",
        "staccato",
        "legato",
        "detached",
        "bowing",
        "soft",
        "loud",
        "moderately",
        "c",
        "c#",
        "d",
        "eb",
        "e",
        "f",
        "f#",
        "g",
        "ab",
        "a",
        "bb",
        "b",
        "fiddle",
        "folk",
        "melody",
        "slow",
        "fast",
        "happy",
        "sad",
        "with",
        "and",
        "the",
        "of",
        "a",
    ]
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in words + [str(n) for n in range(40, 240)]:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def resolve_base(base: str, cache_dir: Path) -> Path | str:
    """``tiny-random`` -> a built local directory; a local directory as is; else a hub id."""
    if base == TINY:
        target = cache_dir / "tiny-random-musicgen"
        if not (target / "config.json").is_file():
            build_tiny_base(target)
        return target
    return Path(base) if Path(base).exists() or looks_like_path(base) else base


def load_base(base: Path | str):
    """(model, tokenizer) of a MusicGen, with clear errors for other models and missing downloads.

    A local directory is read as is; a hub id comes from the Hugging Face cache, or from the hub when
    it can be reached (``musictl.hf.from_pretrained``: one line naming the next step otherwise).
    """
    from transformers import AutoConfig, AutoTokenizer, MusicgenForConditionalGeneration

    if isinstance(base, Path) and not (base / "config.json").is_file():
        raise UsageError(f"--base {base}: no config.json there; pass a MusicGen directory saved with save_pretrained")
    config = from_pretrained(AutoConfig, base, "MusicGen base")
    if getattr(config, "model_type", None) != "musicgen":
        raise UsageError(
            f"--base {base}: a '{getattr(config, 'model_type', '?')}' model, not a MusicGen; pass a MusicGen directory or hub id"
        )
    model = from_pretrained(MusicgenForConditionalGeneration, base, "MusicGen base", config=config)
    tokenizer = from_pretrained(AutoTokenizer, base, "MusicGen tokenizer")
    return model, tokenizer


def freeze_encoders(model) -> None:
    """The text encoder and EnCodec are never trained."""
    for part in (model.text_encoder, model.audio_encoder):
        part.requires_grad_(False)
        part.eval()


def encode_audio(model, batch: np.ndarray):
    """(B, samples) float32 -> (B, K, T) EnCodec codes."""
    import torch

    with torch.no_grad():
        values = torch.as_tensor(batch, dtype=torch.float32, device=model.device)[:, None, :]
        out = model.audio_encoder.encode(values, bandwidth=None)
    return out.audio_codes[0]


def encodec_latents(model, batch: np.ndarray) -> np.ndarray:
    """(B * T, D) continuous EnCodec encoder frames (for the Frechet distance on latents)."""
    import torch

    with torch.no_grad():
        values = torch.as_tensor(batch, dtype=torch.float32, device=model.device)[:, None, :]
        latent = model.audio_encoder.encoder(values)
    return latent.transpose(1, 2).reshape(-1, latent.shape[1]).float().cpu().numpy()
