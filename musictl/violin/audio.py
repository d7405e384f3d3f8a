"""Audio I/O and features with soundfile + scipy (no torchaudio): read, check, resample, log-mel, chroma."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 32_000  # MusicGen's EnCodec rate
N_FFT = 1024
HOP = 320  # 10 ms at 32 kHz
N_MELS = 64
SILENCE_RMS = 1e-4


class AudioProblem(Exception):
    """A clip that cannot be used (silent, too short, unreadable); batch steps report and skip it."""


@dataclass
class Loaded:
    samples: np.ndarray  # float32 mono at the requested rate
    notices: list[str]


def read_clip(path: Path, sample_rate: int = SAMPLE_RATE, min_seconds: float = 1.0) -> Loaded:
    """Read one clip as mono float32 at ``sample_rate``; stereo and other rates are converted with a notice."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioProblem(f"unreadable audio ({exc})") from None
    notices = []
    if data.shape[1] > 1:
        notices.append(f"{data.shape[1]} channels mixed down to mono")
    mono = data.mean(axis=1)
    if rate != sample_rate:
        notices.append(f"resampled {rate} Hz -> {sample_rate} Hz")
        mono = resample(mono, rate, sample_rate)
    if len(mono) < min_seconds * sample_rate:
        raise AudioProblem(f"too short ({len(mono) / sample_rate:.2f} s < {min_seconds} s)")
    if float(np.sqrt(np.mean(mono**2))) < SILENCE_RMS:
        raise AudioProblem("silent (RMS below 1e-4)")
    return Loaded(mono.astype(np.float32), notices)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(rate), int(target))
    return resample_poly(samples, target // g, rate // g).astype(np.float32)


def wav_bytes(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV bytes (playable everywhere), for atomic writes."""
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(20.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    bank = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        bank[i] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    return bank


def power_spectrogram(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """(frames, bins) power and the bin frequencies."""
    from scipy.signal import stft

    freqs, _, spec = stft(samples, fs=sample_rate, nperseg=N_FFT, noverlap=N_FFT - HOP, boundary=None, padded=False)
    return (np.abs(spec) ** 2).T, freqs


def log_mel(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, n_mels: int = N_MELS) -> np.ndarray:
    """(frames, n_mels) log-mel spectrogram (natural log, floor 1e-10)."""
    power, _ = power_spectrogram(samples, sample_rate)
    return np.log(power @ _mel_filterbank(sample_rate, N_FFT, n_mels).T + 1e-10)


def chroma(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """12-bin pitch-class energy profile of a clip (sums to 1), C = 0.

    A long window (8192 samples, 4 Hz bins) resolves semitones down to the violin's open G; the
    band stops at 2.5 kHz so upper partials weigh less than fundamentals.
    """
    from scipy.signal import stft

    freqs, _, spec = stft(samples, fs=sample_rate, nperseg=8192, noverlap=8192 - 2048, boundary=None, padded=False)
    power = (np.abs(spec) ** 2).T
    keep = (freqs > 180) & (freqs < 2500)
    midi = np.round(69 + 12 * np.log2(freqs[keep] / 440.0)).astype(int) % 12
    energy = power[:, keep].sum(axis=0)
    profile = np.bincount(midi, weights=energy, minlength=12)
    return profile / max(profile.sum(), 1e-12)
