"""Text -> violin audio with MusicGen (base alone or base + LoRA adapter), seeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musictl.errors import ArtifactError


def load_for_generation(base, adapter: Path | None, device: str):
    """(model, tokenizer, base_is_random): the base with the adapter's LoRA layers injected when given."""
    from musictl.violin.model import is_random_base, load_base

    model, tokenizer = load_base(base)
    if adapter is not None:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").is_file():
            raise ArtifactError(f"{adapter}: no adapter_config.json; run: musictl lora-violin train")
        model = PeftModel.from_pretrained(model, str(adapter))
    model.to(device).eval()
    return model, tokenizer, isinstance(base, Path) and is_random_base(base)


def generate(model, tokenizer, prompts: list[str], seconds: float, guidance: float, seed: int) -> np.ndarray:
    """(len(prompts), samples) float32 audio; the same seed gives the same audio."""
    import torch

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    frames = max(1, int(round(seconds * inner.config.audio_encoder.frame_rate)))
    inputs = tokenizer(prompts, padding=True, return_tensors="pt").to(inner.device)
    torch.manual_seed(seed)  # own seeding: generate() samples from the global RNG and takes no generator
    with torch.no_grad():
        audio = inner.generate(
            input_ids=inputs.input_ids,
            attention_mask=inputs.attention_mask,
            do_sample=True,
            guidance_scale=guidance if guidance > 1 else None,
            max_new_tokens=frames + inner.config.decoder.num_codebooks - 1,  # the delay pattern's tail
        )
    samples = int(round(seconds * inner.config.audio_encoder.sampling_rate))
    audio = audio[:, 0, :samples].float().cpu().numpy()
    return np.pad(audio, ((0, 0), (0, samples - audio.shape[1])))
