"""Speech-like tones for the demo corpus: gender and emotion cues from numpy alone (pure, deterministic)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ser.labels import EMOTIONS, GENDERS

__all__ = ["synthesize_clip"]


_BASE_F0 = {"male": 115.0, "female": 215.0}
_FORMANTS = np.array([500.0, 1500.0, 2500.0, 3500.0])  # male; female ones are ~16% higher
_FORMANT_BW = np.array([90.0, 140.0, 200.0, 260.0])
_FORMANT_GAIN = np.array([1.0, 0.6, 0.35, 0.15])
_FORMANT_SCALE = {"male": 1.0, "female": 1.16}
_BAND_LIMIT_HZ = 7000.0  # below CREMA-D's 8 kHz Nyquist, so both corpora carry the same band


@dataclass(frozen=True)
class _Emotion:
    pitch: float  # f0 relative to the speaker's neutral level
    slope: float  # relative f0 change from start to end of the clip
    curve: float  # >0: fall-rise (U-shaped) contour
    accent: float  # random per-syllable pitch accents (relative)
    jitter: float  # fast random f0 wobble (relative sd)
    tremolo: float  # 7-9 Hz f0 and amplitude tremolo depth
    rate: float  # syllables per second
    level_db: float  # peak level, dBFS
    tilt_hz: float  # harmonic amplitudes fall as exp(-f / tilt_hz): higher is brighter
    breath: float  # aspiration noise relative to the voiced part


_EMOTIONS: dict[str, _Emotion] = {
    "sad": _Emotion(0.85, -0.30, 0.0, 0.03, 0.006, 0.0, 2.5, -20.0, 350.0, 0.10),
    "angry": _Emotion(1.18, 0.0, 0.0, 0.04, 0.008, 0.0, 6.0, -4.0, 1400.0, 0.04),
    "disgust": _Emotion(0.90, -0.10, 0.45, 0.04, 0.010, 0.0, 3.2, -14.0, 550.0, 0.12),
    "fear": _Emotion(1.32, 0.05, 0.0, 0.04, 0.030, 0.05, 6.2, -11.0, 700.0, 0.25),
    "happy": _Emotion(1.22, 0.25, 0.0, 0.12, 0.008, 0.0, 4.8, -9.0, 850.0, 0.05),
    "neutral": _Emotion(1.00, 0.0, 0.0, 0.03, 0.006, 0.0, 4.0, -14.0, 600.0, 0.05),
    # SAVEE's surprise: has no class, but must still sound like speech.
    "surprise": _Emotion(1.30, 0.50, 0.0, 0.06, 0.010, 0.0, 4.0, -8.0, 800.0, 0.08),
}


def _smooth_noise(rng: np.random.Generator, n: int, sample_rate: int, knots_hz: float) -> np.ndarray:
    """Unit-sd random curve, linearly interpolated between knots: cheap band-limited wobble."""
    n_knots = int(np.ceil(n / sample_rate * knots_hz)) + 2
    knots = rng.standard_normal(n_knots)
    return np.interp(np.arange(n) * (knots_hz / sample_rate), np.arange(n_knots), knots).astype(np.float32)


def _fast_fft_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _vary(rng: np.random.Generator, value: float, rel: float) -> float:
    """value scaled by a clipped log-normal factor of relative sd rel."""
    return value * float(np.exp(np.clip(rng.normal(0.0, rel), -2 * rel, 2 * rel)))


def synthesize_clip(gender: str, emotion: str, speaker_seed: int, clip_seed: int, sample_rate: int) -> np.ndarray:
    """One 1-2 s float32 mono clip in [-1, 1] of a speaker (speaker_seed) saying something (clip_seed).

    emotion is one of ``ser.labels.EMOTIONS`` or "surprise". Pure function of its arguments.
    """
    if gender not in GENDERS:
        raise ValueError(f"unknown gender {gender!r}; expected one of {GENDERS}")
    if emotion not in _EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {(*EMOTIONS, 'surprise')}")
    if sample_rate < 2 * _BAND_LIMIT_HZ:
        raise ValueError(f"sample_rate must be at least {2 * _BAND_LIMIT_HZ:.0f} Hz")
    emo = _EMOTIONS[emotion]

    # Speaker traits: constant over a speaker's clips, so held-out speakers are a real generalisation test.
    spk = np.random.default_rng(speaker_seed)
    spk_f0 = _BASE_F0[gender] * spk.uniform(0.92, 1.08)
    spk_formant = _FORMANT_SCALE[gender] * spk.uniform(0.94, 1.06)
    spk_rate = spk.uniform(0.85, 1.15)
    spk_tilt = spk.uniform(0.75, 1.25)
    spk_level_db = spk.uniform(-3.0, 3.0)

    # Per-clip variation (10-25% on most cues) blurs the class boundaries.
    rng = np.random.default_rng(clip_seed)
    n = round(rng.uniform(1.0, 2.0) * sample_rate)
    # Per-sample maths in float32 (twice as fast); only the phase accumulators need float64.
    t = (np.arange(n) / sample_rate).astype(np.float32)
    pitch = _vary(rng, emo.pitch, 0.10)
    slope = emo.slope + rng.normal(0.0, 0.12)
    curve = emo.curve + rng.normal(0.0, 0.12)
    rate = _vary(rng, emo.rate * spk_rate, 0.15)
    tilt_hz = _vary(rng, emo.tilt_hz * spk_tilt, 0.20)
    breath = _vary(rng, emo.breath, 0.25)
    jitter = _vary(rng, emo.jitter, 0.25)
    # Capped at -1 dBFS: the peak normalisation below must never push a clip into hard clipping.
    level_db = min(emo.level_db + spk_level_db + float(np.clip(rng.normal(0.0, 3.0), -6.0, 6.0)), -1.0)
    trem_hz = rng.uniform(7.0, 9.0)

    # Syllables: a half-wave-rectified sine at a slightly wandering rate gives voiced bursts and gaps.
    syl_rate = rate * (1 + 0.15 * _smooth_noise(rng, n, sample_rate, 3.0))
    syl_cycles = np.cumsum(syl_rate, dtype=np.float64) / sample_rate + rng.uniform(-0.5, 0.0)
    syl_index = np.floor(syl_cycles).astype(np.int64)
    syl_index -= syl_index[0]
    n_syl = int(syl_index[-1]) + 1
    syl_phase = (2 * np.pi * (syl_cycles % 1.0)).astype(np.float32)
    syl_env = np.sqrt(np.clip(np.sin(syl_phase), 0.0, None))
    syl_env *= (1 + 0.3 * rng.uniform(-1.0, 1.0, n_syl)).astype(np.float32)[syl_index]
    # Leading and trailing silence, as in real recordings, with 20 ms ramps against clicks.
    lead, trail = (float(v) for v in rng.uniform(0.08, 0.2, 2))
    gate = np.clip(np.minimum(t - lead, t[-1] - trail - t) / 0.02, 0.0, 1.0)
    amp = syl_env * gate
    if emo.tremolo:  # only fear trembles; skipping the sines for the rest saves a fifth of the time
        trem_phase = 2 * np.pi * trem_hz * t
        amp *= 1 + 4 * emo.tremolo * np.sin(trem_phase)

    # f0 contour: level * (slope + fall-rise) * syllable accents * jitter (* tremolo).
    u = t / t[-1] - 0.5
    contour = 1 + slope * u + curve * (4 * u * u - 1 / 3)
    accents = 1 + emo.accent * rng.standard_normal(n_syl, dtype=np.float32)[syl_index] * syl_env
    wobble = 1 + jitter * _smooth_noise(rng, n, sample_rate, 40.0)
    f0 = spk_f0 * pitch * np.clip(contour, 0.6, 1.6) * accents * wobble
    if emo.tremolo:
        f0 *= 1 + emo.tremolo * np.sin(trem_phase + rng.uniform(0, 2 * np.pi))
    f0 = np.clip(f0, 60.0, 600.0)

    # Harmonic source sum_{k<=K} r^k sin(k theta) in closed form (geometric series), so the cost does not
    # grow with the number of harmonics; r = exp(-f0/tilt) makes the tilt a function of frequency.
    cycles = np.cumsum(f0, dtype=np.float64) / sample_rate + rng.uniform(0.0, 1.0)
    theta = (2 * np.pi * (cycles % 1.0)).astype(np.float32)  # wrapped, so float32 keeps its precision
    r = np.exp(-f0 / tilt_hz)
    n_harm = np.floor(_BAND_LIMIT_HZ / f0)
    r_top = np.exp(-(n_harm + 1) * f0 / tilt_hz)  # r ** (K + 1), without the slow float power
    voiced = (r * np.sin(theta) - r_top * np.sin((n_harm + 1) * theta) + r_top * r * np.sin(n_harm * theta)) / (
        1 - 2 * r * np.cos(theta) + r * r
    )
    voiced *= amp
    voiced /= np.sqrt(np.mean(voiced**2)) + 1e-12
    noise = rng.standard_normal(n, dtype=np.float32) * amp * breath
    source = voiced + noise

    # Formant envelope and a 7 kHz roll-off, applied in the frequency domain (one FFT per clip).
    n_fft = _fast_fft_len(n)  # zero-padding to a 5-smooth length avoids pocketfft's slow prime sizes
    # The envelope is smooth, so evaluate it on a 10 Hz grid and interpolate: far cheaper than per FFT bin.
    grid = np.arange(0.0, sample_rate / 2 + 10.0, 10.0)
    formants = _FORMANTS * spk_formant
    peaks = _FORMANT_GAIN * np.exp(-0.5 * ((grid[:, None] - formants) / (_FORMANT_BW * spk_formant)) ** 2)
    envelope_grid = (0.12 + peaks.sum(axis=1)) / (1 + (grid / _BAND_LIMIT_HZ) ** 8)
    envelope = np.interp(np.fft.rfftfreq(n_fft, 1 / sample_rate), grid, envelope_grid).astype(np.float32)
    x = np.fft.irfft(np.fft.rfft(source, n_fft) * envelope, n_fft)[:n]

    x *= 10 ** (level_db / 20) / (np.max(np.abs(x)) + 1e-12)
    # Room-noise floor: no real recording is digital silence.
    x += 1e-3 * rng.standard_normal(n, dtype=np.float32)
    return np.clip(x, -1.0, 1.0).astype(np.float32)
