"""Audio decoding: soundfile -> mono -> soxr resample -> float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


class AudioError(RuntimeError):
    """A file that cannot be decoded as audio; the message names it."""


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Decode any format libsndfile reads, mix to mono and resample to ``sample_rate`` (float32)."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError or TypeError by format
        raise AudioError(f"{path}: cannot decode audio ({exc}); is it a valid audio file?") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no samples")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate != sample_rate:
        wave = soxr.resample(wave, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(wave, dtype=np.float32)


def is_silent(wave: np.ndarray, threshold: float = 1e-4) -> bool:
    """True for clips with no usable signal (peak below ``threshold``; all-zero files in particular)."""
    return wave.size == 0 or float(np.max(np.abs(wave))) < threshold
