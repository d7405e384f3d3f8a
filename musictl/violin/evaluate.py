"""Base vs base + adapter on the held-out clips, same prompts and seeds, against the real clips."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from musictl.progress import Progress, no_progress
from musictl.violin.audio import SAMPLE_RATE
from musictl.violin.generate import generate
from musictl.violin.metrics import clap_scores, frechet_distance, key_agreement, log_mel_frames, mean_log_mel_distance
from musictl.violin.model import encodec_latents
from musictl.violin.settings import EvaluateSettings
from musictl.violin.train import load_clips

SYSTEMS = ("base", "base+adapter")


def evaluate(model, tokenizer, data_dir: Path, settings: EvaluateSettings, clap_model: Path | None = None,
             on_progress: Progress | None = None) -> dict | None:
    """Metrics per system (None without held-out clips); ``model`` is a PeftModel whose adapter is
    switched off for the base run. Clip ``i`` is generated with seed ``settings.seed + i`` by both."""
    on_progress = on_progress or no_progress
    reference, captions = load_clips(data_dir, "valid", settings.seconds)
    reference, captions = reference[: settings.limit], captions[: settings.limit]
    if not captions:
        return None
    inner = model.get_base_model()
    results = {
        "clips": len(captions),
        "seconds": settings.seconds,
        "reference": _scores(inner, list(reference), list(reference), captions, None),
    }
    total = len(SYSTEMS) * len(captions)
    for n, system in enumerate(SYSTEMS):
        clips = []
        for i, text in enumerate(captions):
            with model.disable_adapter() if system == "base" else contextlib.nullcontext():
                clips.append(generate(model, tokenizer, [text], settings.seconds, settings.guidance, settings.seed + i)[0])
            on_progress(n * len(captions) + i + 1, total, {"system": system, "clip": i + 1})
        results[system] = _scores(inner, clips, list(reference), captions, clap_model)
    return results


def _scores(model, clips: list[np.ndarray], reference: list[np.ndarray], captions: list[str], clap_model) -> dict:
    real, fake = np.stack(reference), np.stack(clips)
    return {
        "log_mel_distance": mean_log_mel_distance(clips, reference),
        "frechet_log_mel": frechet_distance(log_mel_frames(clips), log_mel_frames(reference)),
        "frechet_encodec": frechet_distance(encodec_latents(model, fake), encodec_latents(model, real)),
        **key_agreement(clips, captions),
        **clap_scores(clap_model, clips, captions),
    }


def table(results: dict) -> str:
    """Markdown table of the headline metrics, one row per system."""
    cols = ("log_mel_distance", "frechet_log_mel", "frechet_encodec", "key_match", "chroma_key_correlation", "clap")
    lines = ["| system | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for system in ("reference", *SYSTEMS):
        row = results[system]
        cells = ["n/a" if row.get(c) is None else f"{row[c]:.4g}" for c in cols]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["SAMPLE_RATE", "evaluate", "table"]
