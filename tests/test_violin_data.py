"""Violin data: melodies from MIDI -> playable captioned clips, user clip import, metrics, the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

D_MAJOR_TUNE = [62, 66, 69, 74, 73, 71, 69, 66, 67, 69, 71, 69, 66, 64, 62, 62]


def write_tune(path: Path, pitches=D_MAJOR_TUNE, bpm: float = 120.0, repeats: int = 3) -> Path:
    """A D major melody (tonic on the strong beats) over a low drone track, at ``bpm``."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    melody, drone = pretty_midi.Instrument(40, name="melody"), pretty_midi.Instrument(42, name="drone")
    beat = 60.0 / bpm
    t = 0.0
    for _ in range(repeats):
        for p in pitches:
            melody.notes.append(pretty_midi.Note(90, p, t, t + beat * 0.5 * 0.8))
            t += beat * 0.5
    drone.notes.append(pretty_midi.Note(70, 38, 0.0, t))
    midi.instruments += [melody, drone]
    midi.write(str(path))
    return path


@pytest.fixture(scope="module")
def tune_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tunes")
    write_tune(folder / "DoubleReel.mid")
    write_tune(folder / "SlowAir.mid", bpm=80.0)
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    return folder


def test_melody_is_the_highest_voice_in_violin_range(tune_dir):
    from musictl.violin.melody import VIOLIN_LOW, extract_melody

    melody = extract_melody(tune_dir / "DoubleReel.mid")
    assert [n.pitch for n in melody.notes[:16]] == D_MAJOR_TUNE  # the drone (38) is below, never chosen
    assert min(n.pitch for n in melody.notes) >= VIOLIN_LOW
    assert melody.bpm == pytest.approx(120.0)
    low = extract_melody(tune_dir / "DoubleReel.mid", track="drone")
    assert [n.pitch for n in low.notes] == [38 + 24]  # moved up two octaves into violin range


def test_prepare_writes_playable_clips_whose_captions_match_their_midi(tune_dir, tmp_path):
    from musictl.violin.audio import chroma
    from musictl.violin.dataset import from_midi
    from musictl.violin.keys import estimate_key

    files = sorted(tune_dir.glob("*.mid"))
    report = from_midi(files, tmp_path, seconds=4.0, limit=10, seed=0, valid=0.25)
    assert [Path(p["path"]).name for p in report.problems] == ["broken.mid"]
    assert len(report.rows) >= 4 and {r["split"] for r in report.rows} == {"train", "valid"}
    for row in report.rows:
        audio, rate = sf.read(tmp_path / row["audio"])
        assert rate == 32_000 and audio.ndim == 1 and len(audio) == 4 * 32_000
        assert np.sqrt(np.mean(audio**2)) > 1e-3, "clip is silent"
        assert "solo violin" in row["caption"] and "D major" in row["caption"]
        expected_bpm = 120 if "DoubleReel" in row["source"] else 80
        assert abs(row["attributes"]["bpm"] - expected_bpm) <= 0.06 * expected_bpm
        assert f"{row['attributes']['bpm']} bpm" in row["caption"]
        assert ("lively reel" in row["caption"]) == ("DoubleReel" in row["source"])
    heard = [estimate_key(chroma(sf.read(tmp_path / r["audio"], dtype="float32")[0])) for r in report.rows]
    assert sum(k == (2, "major") for k in heard) >= len(heard) - 1  # the audio itself is in D major


def _write(path: Path, audio: np.ndarray, rate: int = 32_000, caption: str | None = "solo violin, gentle air in G major"):
    sf.write(path, audio, rate)
    if caption:
        path.with_suffix(".txt").write_text(caption)


def test_audio_import_converts_and_skips_bad_clips(tmp_path):
    from musictl.violin.dataset import from_audio

    src, out = tmp_path / "clips", tmp_path / "out"
    src.mkdir()
    t = np.arange(44_100 * 2) / 44_100
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    _write(src / "a_stereo.wav", np.stack([tone, tone], axis=1), rate=44_100)
    _write(src / "b_ok.flac", tone[:64_000], rate=32_000)
    _write(src / "c_silent.wav", np.zeros(64_000))
    _write(src / "d_short.wav", tone[:3_000])
    _write(src / "e_nocaption.wav", tone, caption=None)
    (src / "f_broken.wav").write_bytes(b"RIFF not audio")
    (src / "f_broken.txt").write_text("solo violin")
    report = from_audio(src, out, limit=10, min_seconds=1.0)
    assert [Path(r["source"]).name for r in report.rows] == ["a_stereo.wav", "b_ok.flac"]
    reasons = {Path(p["path"]).name: p["reason"] for p in report.problems}
    assert "silent" in reasons["c_silent.wav"] and "too short" in reasons["d_short.wav"]
    assert "no caption" in reasons["e_nocaption.wav"] and "unreadable" in reasons["f_broken.wav"]
    assert any("mono" in n for n in report.notices) and any("44100 Hz -> 32000 Hz" in n for n in report.notices)
    audio, rate = sf.read(out / report.rows[0]["audio"])
    assert rate == 32_000 and audio.ndim == 1 and len(audio) == 64_000


def test_metrics_are_zero_for_identical_sets_and_grow_with_difference():
    from musictl.violin.metrics import clap_scores, frechet_distance, key_agreement, log_mel_frames, mean_log_mel_distance

    rng = np.random.default_rng(0)
    t = np.arange(32_000) / 32_000
    clips = [0.3 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(32_000) for f in (293.7, 440.0, 587.3)]
    noise = [0.3 * rng.standard_normal(32_000) for _ in clips]
    assert mean_log_mel_distance(clips, clips) == 0.0
    assert mean_log_mel_distance(clips, noise) > 1.0
    frames = log_mel_frames(clips)
    assert frechet_distance(frames, frames) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(frames, log_mel_frames(noise)) > 10 * max(frechet_distance(frames, frames), 1e-3)
    d_major = [
        sum(0.2 * np.sin(2 * np.pi * 440 * 2 ** ((p - 69) / 12) * t) for p in chord) for chord in ([62, 66, 69], [62, 69, 74])
    ]
    assert key_agreement(d_major, ["violin in D major"] * 2)["key_match"] == 1.0
    assert key_agreement(d_major, ["violin in Eb minor"] * 2)["key_match"] == 0.0
    assert clap_scores(None, clips, ["x"] * 3)["clap_status"].startswith("unavailable")


@pytest.mark.slow
def test_cli_prepare_train_generate_evaluate_on_the_tiny_base(violin_cli, tune_dir, tmp_path):
    import torch

    torch.set_num_threads(1)
    work = tmp_path / "work"
    result = violin_cli("prepare", "--midi", tune_dir, "--seconds", 2, "--limit", 8, "--valid", 0.25, "-w", work)
    assert result.exit_code == 0, result.output
    manifest = json.loads((work / "violin/data/manifest.json").read_text())
    assert manifest["kind"] == "violin-data" and manifest["metrics"]["clips"] == 8
    assert violin_cli("prepare", "--midi", tune_dir, "-w", work).exit_code == 1  # exists: kept without --overwrite

    args = ("train", "--base", "tiny-random", "--max-steps", 4, "--eval-every", 2, "--batch-size", 2, "--rank", 4, "--lr", 5e-3)
    result = violin_cli(*args, "--device", "cpu", "-w", work)
    assert result.exit_code == 0, result.output
    lora = work / "violin/lora"
    manifest = json.loads((lora / "manifest.json").read_text())
    assert manifest["kind"] == "violin-lora" and manifest["metrics"]["random_base"] is True
    assert len(manifest["metrics"]["valid_loss_per_codebook"]) == 4
    assert (lora / "adapter_config.json").is_file() and (lora / "base/config.json").is_file()
    assert "Random base" in (lora / "README.md").read_text()
    assert [json.loads(line)["step"] for line in (lora / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]

    out = tmp_path / "reel.wav"
    result = violin_cli(
        "generate", "--adapter", lora, "-p", "solo violin, lively reel in D major", "-o", out, "--seconds", 1, "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    audio, rate = sf.read(out)
    assert rate == 32_000 and len(audio) == 32_000

    result = violin_cli("evaluate", "-w", work, "--seconds", 1, "--limit", 2, "--device", "cpu")
    assert result.exit_code == 0, result.output
    scores = json.loads((work / "violin/eval/eval_results.json").read_text())
    assert scores["random_base"] is True and scores["reference"]["log_mel_distance"] == 0.0
    assert scores["base+adapter"]["clap"] is None and "unavailable" in scores["base+adapter"]["clap_status"]


def test_cli_bad_inputs_are_one_line_errors(violin_cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = violin_cli("prepare", "--audio", empty, "-w", tmp_path / "w")
    assert result.exit_code == 1 and "no usable clip" in result.output
    result = violin_cli("train", "--base", "tiny-random", "-w", tmp_path / "w2")
    assert result.exit_code == 1 and "run: musictl lora-violin prepare" in result.output
    result = violin_cli("train", "--targets", "q_proj,nonsense", "-w", tmp_path / "w2")
    assert result.exit_code == 2 and "--targets" in result.output
    result = violin_cli("generate", "-p", " ", "-o", tmp_path / "x.wav")
    assert result.exit_code == 2


def test_audio_import_reads_a_metadata_jsonl(tmp_path):
    from musictl.violin.dataset import from_audio

    src = tmp_path / "clips"
    src.mkdir()
    t = np.arange(32_000 * 2) / 32_000
    sf.write(src / "x.wav", 0.3 * np.sin(2 * np.pi * 440 * t), 32_000)
    rows = [{"audio": "x.wav", "caption": "solo violin, gentle air in A major"}, {"audio": "missing.wav", "caption": "c"}, "bad"]
    (src / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = from_audio(src, tmp_path / "out", limit=10, min_seconds=1.0)
    assert [r["caption"] for r in report.rows] == ["solo violin, gentle air in A major"]
    assert len(report.problems) == 2
