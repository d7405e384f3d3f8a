"""Build the violin-data artifact: captioned 32 kHz mono clips + ``metadata.jsonl``.

From MIDI: each file's melody is rendered with the GM violin, clip by clip, with light
augmentation (velocity jitter, tempo stretch of a few percent, gain) drawn from the seed. From
audio: the user's own clips with a caption beside each (``x.wav`` + ``x.txt``) or a
``metadata.jsonl`` (``{"audio": "x.wav", "caption": "..."}``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from musictl.progress import Progress, no_progress
from musictl.violin.audio import SAMPLE_RATE, AudioProblem, read_clip, wav_bytes
from musictl.violin.captions import attributes, caption
from musictl.violin.melody import cut_clips, extract_melody
from musictl.violin.render import Note, render

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
METADATA = "metadata.jsonl"


@dataclass
class BuildReport:
    rows: list[dict] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


def split_of(index: int, n: int, valid: float) -> str:
    """Every k-th clip is held out, so held-out clips spread over the sources."""
    if n < 2 or valid <= 0:
        return "train"
    k = max(2, round(1 / valid))
    return "valid" if index % k == k - 1 else "train"


def from_midi(
    files: list[Path],
    out: Path,
    seconds: float,
    limit: int,
    seed: int,
    track: str | None = None,
    valid: float = 0.2,
    on_progress: Progress | None = None,
) -> BuildReport:
    """Melodies of ``files`` cut into clips, ``limit`` of them drawn with ``seed`` and rendered into ``out``.

    ``on_progress(done, total)`` counts the MIDI files read.
    """
    on_progress = on_progress or no_progress
    rng = np.random.default_rng(seed)  # own seeding: the violin-data artifact's clips; a new rule would change every user's data
    report = BuildReport()
    clips: list[tuple[Path, list[Note], float]] = []
    for done, path in enumerate(files, 1):
        try:
            melody = extract_melody(path, track)
        except Exception as exc:  # pretty_midi raises many kinds on broken files
            report.problems.append({"path": str(path), "reason": f"unreadable MIDI or no melody ({exc})"})
        else:
            pieces = cut_clips(melody, seconds)
            if not pieces:
                report.problems.append({"path": str(path), "reason": f"no {seconds:g} s clip with 4+ notes"})
            clips.extend((path, notes, melody.bpm) for notes in pieces)
        on_progress(done, len(files))
    order = rng.permutation(len(clips))[:limit]
    (out / "clips").mkdir(parents=True, exist_ok=True)
    for i, j in enumerate(sorted(order)):
        path, notes, bpm = clips[j]
        stretch = float(rng.uniform(0.95, 1.05))
        jittered = [
            Note(n.start * stretch, n.end * stretch, n.pitch, int(np.clip(n.velocity + rng.integers(-8, 9), 30, 127)))
            for n in notes
        ]
        jittered = [n for n in jittered if n.start < seconds]
        audio = render(jittered, seconds, SAMPLE_RATE)
        peak = float(np.abs(audio).max())
        if peak < 1e-4:
            report.problems.append({"path": str(path), "reason": "rendered clip is silent"})
            continue
        gain = float(10 ** (rng.uniform(-3, 0) / 20))
        audio = audio / peak * 0.8 * gain
        attrs = attributes(jittered, bpm / stretch, path.stem)
        name = f"clips/{i:05d}.wav"
        (out / name).write_bytes(wav_bytes(audio))
        report.rows.append(
            {
                "audio": name,
                "caption": caption(attrs),
                "attributes": attrs,
                "source": str(path),
                "split": split_of(i, len(order), valid),
            }
        )
    return report


def from_audio(folder: Path, out: Path, limit: int, min_seconds: float, valid: float = 0.2) -> BuildReport:
    """Import user clips; silent, too short or unreadable ones (and those without caption) are reported and skipped."""
    report = BuildReport()
    metadata = folder / METADATA
    if metadata.is_file():
        entries = []
        for n, line in enumerate(metadata.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                entries.append((folder / row["audio"], row.get("caption")))
            except (ValueError, KeyError, TypeError):
                report.problems.append({"path": f"{metadata}:{n}", "reason": 'not a JSON object with "audio" and "caption"'})
    else:
        entries = []
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
            text = path.with_suffix(".txt")
            entries.append((path, text.read_text().strip() if text.is_file() else None))
    (out / "clips").mkdir(parents=True, exist_ok=True)
    for path, text in entries:
        if len(report.rows) >= limit:
            break
        if not text:
            report.problems.append({"path": str(path), "reason": "no caption (add a .txt beside it or a metadata.jsonl row)"})
            continue
        try:
            clip = read_clip(path, SAMPLE_RATE, min_seconds)
        except AudioProblem as exc:
            report.problems.append({"path": str(path), "reason": str(exc)})
            continue
        report.notices.extend(f"{path}: {n}" for n in clip.notices)
        name = f"clips/{len(report.rows):05d}.wav"
        (out / name).write_bytes(wav_bytes(clip.samples))
        report.rows.append({"audio": name, "caption": text, "attributes": {}, "source": str(path), "split": ""})
    for i, row in enumerate(report.rows):
        row["split"] = split_of(i, len(report.rows), valid)
    return report


def load_rows(data_dir: Path, split: str | None = None) -> list[dict]:
    from musictl.artifacts import read_jsonl

    rows = read_jsonl(data_dir / METADATA)
    return [r for r in rows if split is None or r["split"] == split]
