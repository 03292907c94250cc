"""Audio decoding: soundfile -> mono -> soxr resample -> float32, whole or in blocks for long files; speed changes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ser.data.corpus import DataError


class AudioError(DataError):
    """A file that cannot be decoded as audio; the message names it (a DataError: commands print it as one line)."""


def _why_unreadable(path: str | Path, exc: Exception) -> str:
    """What is wrong with a file soundfile could not open, in words.

    libsndfile reports every OS error as "System error" and an empty file as an unknown format, so the
    file is opened once more here to tell a missing, unreadable or empty file from one that is not audio.
    """
    try:
        with open(path, "rb") as f:
            empty = not f.read(1)
    except FileNotFoundError:
        return "file not found (a broken link?)"
    except PermissionError:
        return "permission denied: this user cannot read the file (check its permissions)"
    except IsADirectoryError:
        return "a folder, not an audio file"
    except OSError as err:
        return f"cannot read the file ({err.strerror or err})"
    if empty:
        return "empty file (0 bytes)"
    # soundfile repeats the path ("Error opening '/x/y.wav': Format not recognised."); the message names it once.
    detail = re.sub(r"^Error opening .*?: ", "", str(exc)).rstrip(".")
    return f"cannot decode audio ({detail}); is it a valid audio file?"


def open_audio(path: str | Path) -> sf.SoundFile:
    """The file opened for reading, or an AudioError naming it and saying what is wrong."""
    try:
        return sf.SoundFile(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError or TypeError by format
        raise AudioError(f"{path}: {_why_unreadable(path, exc)}") from exc


def _read(f: sf.SoundFile, path: str | Path, frames: int = -1) -> np.ndarray:
    try:
        return f.read(frames, dtype="float32", always_2d=True)
    except Exception as exc:  # a file that opens but breaks off (truncated, corrupt frames)
        raise AudioError(f"{path}: cannot decode audio ({exc}); is it a valid audio file?") from exc


def _mono(data: np.ndarray) -> np.ndarray:
    return data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]


def load_short_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None) -> np.ndarray | None:
    """:func:`load_audio`, or None without decoding when the file is longer than ``max_seconds`` (its header
    says so): such a file is read with :func:`stream_audio` instead, so it is never whole in memory."""
    with open_audio(path) as f:
        if max_seconds is not None and f.frames > max_seconds * f.samplerate:
            return None
        data, rate = _read(f, path), f.samplerate
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no samples")
    wave = _mono(data)
    if rate != sample_rate:
        wave = soxr.resample(wave, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(wave, dtype=np.float32)


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Decode any format libsndfile reads, mix to mono and resample to ``sample_rate`` (float32)."""
    wave = load_short_audio(path, sample_rate)
    assert wave is not None
    return wave


def stream_audio(path: str | Path, sample_rate: int = 16000, block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """:func:`load_audio` in blocks of about ``block_seconds``: the same samples once concatenated (soxr's
    stream resampler carries its state across blocks), with memory bounded by the block, not the file."""
    with open_audio(path) as f:
        rate = f.samplerate
        block = max(1, int(block_seconds * rate))
        resampler = None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, 1, "float32", "HQ")
        total = 0
        while True:
            data = _read(f, path, block)
            last = data.shape[0] < block  # a short read is the end (an exact multiple ends with an empty one)
            total += data.shape[0]
            wave = _mono(data)
            if resampler is not None:
                wave = resampler.resample_chunk(wave, last=last)
            if wave.size:
                yield np.ascontiguousarray(wave, dtype=np.float32)
            if last:
                break
    if total == 0:
        raise AudioError(f"{path}: the file holds no samples")


def change_speed(wave: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """``wave`` played ``factor`` times as fast, as Kaldi's speed perturbation (sox ``speed``) does it:
    about ``len / factor`` samples at the same ``sample_rate``, tempo and pitch both scaled by ``factor``.
    A factor of 1 returns ``wave`` itself."""
    if factor == 1.0:
        return wave
    # The samples read as if recorded at factor x the rate, resampled back to the rate.
    out = soxr.resample(wave, factor * sample_rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def change_speed_stream(blocks: Iterable[np.ndarray], factor: float, sample_rate: int) -> Iterator[np.ndarray]:
    """:func:`change_speed` of a clip given in blocks (:func:`stream_audio`), in blocks: memory stays bounded by
    a block (soxr's stream resampler carries its state across blocks, as in :func:`stream_audio`)."""
    if factor == 1.0:
        yield from blocks
        return
    resampler = soxr.ResampleStream(factor * sample_rate, sample_rate, 1, "float32", "HQ")
    it = iter(blocks)
    block = next(it, None)
    while block is not None:
        following = next(it, None)  # one block ahead: the resampler must be told which block is the last
        out = resampler.resample_chunk(block, last=following is None)
        if out.size:
            yield np.ascontiguousarray(out, dtype=np.float32)
        block = following


def is_silent(wave: np.ndarray, threshold: float = 1e-4) -> bool:
    """True for clips with no usable signal (peak below ``threshold``; all-zero files in particular)."""
    return wave.size == 0 or float(np.max(np.abs(wave))) < threshold


def is_finite(wave: np.ndarray) -> bool:
    """False for a wave holding NaN or inf samples (a float WAV can): they would poison every statistic."""
    return bool(np.isfinite(wave).all())
