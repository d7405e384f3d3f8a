"""Audio metrics: alignment-free log-mel distance, Frechet distance, key agreement, optional CLAP."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musictl.violin.audio import SAMPLE_RATE, chroma, log_mel
from musictl.violin.keys import MAJOR, MINOR, estimate_key, parse_key


def mean_log_mel_distance(generated: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """Mean squared difference of time-averaged log-mel spectra, pair by pair.

    The proposal's spectrogram MSE compares frames one to one, which punishes a note played a
    beat later as much as a wrong note; averaging over time first keeps the timbre/pitch content
    and drops the alignment.
    """
    pairs = [(log_mel(g).mean(axis=0), log_mel(r).mean(axis=0)) for g, r in zip(generated, reference)]
    return float(np.mean([np.mean((g - r) ** 2) for g, r in pairs]))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two (n, d) feature sets (0 for identical sets)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    covmean = np.real(covmean)
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))
    return max(value, 0.0)


def log_mel_frames(clips: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([log_mel(c) for c in clips])


def key_agreement(clips: list[np.ndarray], captions: list[str]) -> dict:
    """How often the key heard in a clip (chroma + Krumhansl) is the caption's, and the mean profile correlation."""
    hits, corr, counted = 0, [], 0
    for clip, text in zip(clips, captions):
        key = parse_key(text)
        if key is None:
            continue
        counted += 1
        profile = chroma(clip)
        hits += estimate_key(profile) == key
        template = np.roll(MAJOR if key[1] == "major" else MINOR, key[0])
        r = np.corrcoef(profile, template)[0, 1]
        corr.append(float(r) if np.isfinite(r) else 0.0)
    if not counted:
        return {"key_match": None, "chroma_key_correlation": None, "clips_with_key": 0}
    return {"key_match": hits / counted, "chroma_key_correlation": float(np.mean(corr)), "clips_with_key": counted}


def clap_scores(model_dir: Path | None, clips: list[np.ndarray], captions: list[str]) -> dict:
    """Mean CLAP text-audio cosine similarity, or ``unavailable`` with the reason (no download is attempted)."""
    if model_dir is None:
        return {"clap": None, "clap_status": "unavailable: no --clap-model DIR with local CLAP weights given"}
    if not (Path(model_dir) / "config.json").is_file():
        return {"clap": None, "clap_status": f"unavailable: {model_dir} has no config.json (not a local CLAP model)"}
    import torch
    from transformers import ClapModel, ClapProcessor

    from musictl.violin.audio import resample

    model, processor = ClapModel.from_pretrained(str(model_dir)).eval(), ClapProcessor.from_pretrained(str(model_dir))
    rate = processor.feature_extractor.sampling_rate
    audio = [resample(c, SAMPLE_RATE, rate) for c in clips]
    with torch.no_grad():
        inputs = processor(text=captions, audios=audio, sampling_rate=rate, return_tensors="pt", padding=True)
        out = model(**inputs)
    sims = torch.nn.functional.cosine_similarity(out.text_embeds, out.audio_embeds).tolist()
    return {"clap": float(np.mean(sims)), "clap_status": f"computed with {model_dir}"}
