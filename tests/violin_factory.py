"""Tiny violin inputs for the LoRA tests: a violin-data artifact of sine clips and small LoRA settings.

Shared by tests/test_violin_faults.py, tests/test_run_lifecycle.py and tests/test_violin_model.py (a test
module never imports another test module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from musictl import artifacts

CAPTIONS = ("solo violin, lively reel in D major", "solo violin, gentle jig in A minor",
            "solo violin, slow waltz in G major", "solo violin, bright polka in E minor")


def make_data(root: Path, clips: int = 6, seconds: float = 0.5) -> Path:
    """A violin-data artifact in ``root/violin/data``: sine clips, every third one held out."""
    import soundfile as sf

    out = root / "violin" / "data"
    (out / "clips").mkdir(parents=True)
    t = np.arange(int(seconds * 32_000)) / 32_000
    rows = []
    for i in range(clips):
        sf.write(out / f"clips/{i:05d}.wav", 0.3 * np.sin(2 * np.pi * (330 + 55 * i) * t), 32_000)
        rows.append({"audio": f"clips/{i:05d}.wav", "caption": CAPTIONS[i % 4], "attributes": {}, "source": "synthetic",
                     "split": "valid" if i % 3 == 2 else "train"})
    artifacts.write_jsonl(out / "metadata.jsonl", rows)
    artifacts.write_manifest(out, artifacts.Manifest("violin-data", {"seconds": seconds}, metrics={"clips": clips}))
    return out


def lora_settings(tiny: Path, **changes):
    """LoRA settings for the tiny base: rank 2, batch 2, 4 steps, a validation every 2."""
    from musictl.violin.settings import LoraTrainSettings

    values = {"base": str(tiny), "rank": 2, "alpha": 4.0, "dropout": 0.0, "lr": 1e-3, "batch_size": 2, "max_steps": 4,
              "eval_every": 2} | changes
    return LoraTrainSettings(**values)
