"""Spectral front ends (log-mel, MFCC) built on ``torch.stft``.

The numbers match librosa's defaults (Slaney mel scale and area normalisation, centered framing with
reflect padding, periodic Hann window) so features can be checked against a reference, but nothing
here imports librosa. Batches are zero padded; each clip is framed as if it were alone, so padding
never changes a clip's features and frames past a clip's end come out as zeros.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn

from ser.features.base import FeatureExtractor

__all__ = ["MFCC", "LogMel", "dct_matrix", "hz_to_mel", "mel_filterbank", "mel_to_hz", "savgol_kernel"]

# Slaney's Auditory Toolbox mel scale: linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(freqs: np.ndarray | float) -> np.ndarray:
    """Hz -> mel on the Slaney scale (librosa's ``htk=False``)."""
    f = np.asarray(freqs, dtype=np.float64)
    log_part = _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(f >= _MIN_LOG_HZ, log_part, f / _F_SP)


def mel_to_hz(mels: np.ndarray | float) -> np.ndarray:
    """Mel -> Hz on the Slaney scale, the inverse of :func:`hz_to_mel`."""
    m = np.asarray(mels, dtype=np.float64)
    log_part = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(m, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(m >= _MIN_LOG_MEL, log_part, m * _F_SP)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> np.ndarray:
    """Triangular mel filters [n_mels, n_fft // 2 + 1]; ``librosa.filters.mel(htk=False, norm="slaney")``."""
    if f_max is None:
        f_max = sample_rate / 2.0
    if not 0.0 <= f_min < f_max <= sample_rate / 2.0:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, f_max={f_max}")
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    # n_mels + 2 edges evenly spaced in mel; filter i rises from edge i, peaks at i+1, falls to i+2.
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # Area normalisation: every filter integrates to the same value whatever its width in Hz.
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    if not np.all((edges[:-2] == 0) | (weights.max(axis=1) > 0)):
        warnings.warn(
            f"some of the {n_mels} mel filters cover no FFT bin (n_fft={n_fft}); use fewer mel bands or a larger n_fft",
            stacklevel=2,
        )
    return weights


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """First ``n_out`` rows of the orthonormal DCT-II matrix [n_out, n_in] (scipy ``dct(norm="ortho")``)."""
    n = np.arange(n_in)
    k = np.arange(n_out)[:, None]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)
    basis[0] /= math.sqrt(2.0)
    return basis


def savgol_kernel(width: int, order: int) -> np.ndarray:
    """Taps c[j], j = -(width//2)..width//2, with ``y[t] = sum_j c[j] x[t + j]`` the order-th derivative
    of a degree-``order`` least-squares polynomial fit (what ``librosa.feature.delta`` computes).

    For order 1 this is the usual delta regression ``sum_n n (x[t+n] - x[t-n]) / (2 sum_n n^2)``.
    """
    half = width // 2
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    vander = offsets[:, None] ** np.arange(order + 1)[None, :]
    return math.factorial(order) * np.linalg.pinv(vander)[order]


class LogMel(FeatureExtractor):
    """Log-mel filterbank energies in dB: waves [B, N] -> features [B, T, n_mels], frame lengths [B]."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        amin: float = 1e-10,
    ) -> None:
        if not 0 < win_length <= n_fft:
            raise ValueError(f"need 0 < win_length <= n_fft, got win_length={win_length}, n_fft={n_fft}")
        if hop_length <= 0 or n_mels <= 0 or amin <= 0:
            raise ValueError("hop_length, n_mels and amin must be positive")
        super().__init__(sample_rate, hop_length)
        self.n_fft = int(n_fft)
        self.win_length = int(win_length)
        self.n_mels = int(n_mels)
        self.f_min = float(f_min)
        self.f_max = None if f_max is None else float(f_max)
        self.amin = float(amin)
        self.pad = self.n_fft // 2

        # Periodic Hann (the DFT-even window librosa uses), centred in n_fft samples as librosa pads it.
        n = np.arange(self.win_length)
        hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / self.win_length)
        window = np.zeros(self.n_fft)
        left = (self.n_fft - self.win_length) // 2
        window[left : left + self.win_length] = hann
        fbank = mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.f_min, self.f_max)
        # Non-persistent: both follow from the constructor arguments, so checkpoints need not carry them.
        self.register_buffer("window", torch.tensor(window, dtype=torch.float32), persistent=False)
        self.register_buffer("mel_fb", torch.tensor(fbank.T, dtype=torch.float32), persistent=False)

    @property
    def out_dim(self) -> int:
        """Feature size per frame."""
        return self.n_mels

    @property
    def min_samples(self) -> int:
        """Shortest clip that can be framed: reflect padding needs more samples than the pad."""
        return self.pad + 1

    @property
    def context_samples(self) -> int:
        """A frame's window reaches n_fft // 2 samples either side of its centre; n_fft covers odd n_fft too."""
        return self.n_fft

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Frames of a ``num_samples``-sample clip under centred framing: ``1 + n // hop`` for even n_fft."""
        return 1 + (num_samples + 2 * self.pad - self.n_fft) // self.hop_length

    def _pad_clips(self, waves: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """Reflect-pad every clip at its own start and end; zeros after that, up to N + 2 * pad."""
        num = waves.shape[1]
        padded = nn.functional.pad(waves.unsqueeze(1), (self.pad, self.pad), mode="reflect").squeeze(1)
        if lengths is None:
            return padded
        # The batch-wide pad is already right at every clip's start; only the pad samples after each
        # clip's end differ, so rewrite those (x[L-2], x[L-3], ...) and zero everything beyond.
        # This touches 2 * pad samples per clip; gathering every padded sample was ~4x slower on CPU.
        offsets = torch.arange(self.pad, device=waves.device)
        ends = lengths.unsqueeze(1)
        mirrored = torch.gather(waves, 1, ends - 2 - offsets)
        padded = padded.scatter(1, ends + self.pad + offsets, mirrored)
        keep = torch.arange(num + 2 * self.pad, device=waves.device) < ends + 2 * self.pad
        return torch.where(keep, padded, 0.0)

    def too_short(self, num_samples: int) -> str:
        return (
            f"clip of {num_samples} samples is too short: reflect padding by n_fft // 2 = "
            f"{self.pad} needs at least {self.min_samples} samples"
        )

    def _log_mel(self, waves: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Unmasked dB log-mel [B, T, n_mels] and frame lengths; frames past a clip's end hold junk."""
        waves, lengths_t = self.check_batch(waves, lengths)
        # Without lengths every clip fills the batch, so the batch-wide reflect pad is already exact.
        padded = self._pad_clips(waves, None if lengths is None else lengths_t)
        spec = torch.stft(
            padded,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            window=self.window,
            center=False,
            return_complex=True,
        )
        # stft's [B, F, T] output is a transposed view of frame-major memory, so work in [B, T, F]
        # order, which also feeds the matmul directly. re*re + im*im is several times faster on CPU
        # than abs()**2 (hypot) or squaring view_as_real and summing its size-2 last axis.
        spec = spec.transpose(1, 2)
        power = torch.addcmul(spec.real * spec.real, spec.imag, spec.imag)  # [B, T, n_fft // 2 + 1]
        mel = torch.matmul(power, self.mel_fb)  # [B, T, n_mels]
        log_mel = 10.0 * torch.log10(mel.clamp(min=self.amin))
        return log_mel, self.num_frames(lengths_t)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """waves [B, N] (zero padded past each clip's length) -> (features [B, T, F], frame_lengths [B]).

        T = ``num_frames(N)``; ``lengths=None`` means every clip fills all N samples.
        """
        log_mel, frame_lengths = self._log_mel(waves, lengths)
        return self.mask_frames(log_mel, frame_lengths), frame_lengths


class MFCC(FeatureExtractor):
    """MFCCs (orthonormal DCT-II of the dB log-mel), optionally with delta and delta-delta appended."""

    def __init__(
        self,
        n_mfcc: int = 40,
        deltas: int = 0,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        amin: float = 1e-10,
        delta_width: int = 9,
    ) -> None:
        if not 0 < n_mfcc <= n_mels:
            raise ValueError(f"need 0 < n_mfcc <= n_mels, got n_mfcc={n_mfcc}, n_mels={n_mels}")
        if deltas not in (0, 1, 2):
            raise ValueError(f"deltas must be 0, 1 or 2, got {deltas}")
        if delta_width < 3 or delta_width % 2 == 0:
            raise ValueError(f"delta_width must be an odd integer >= 3, got {delta_width}")
        # LogMel validates the framing arguments before the base class records them.
        logmel = LogMel(sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max, amin)
        super().__init__(logmel.sample_rate, logmel.hop_length)
        self.logmel = logmel
        self.n_mfcc = int(n_mfcc)
        self.deltas = int(deltas)
        self.delta_width = int(delta_width)
        # Same framing attributes as LogMel, so callers can read either extractor the same way.
        self.n_fft = self.logmel.n_fft
        self.win_length = self.logmel.win_length
        dct = dct_matrix(self.n_mfcc, self.logmel.n_mels).T
        self.register_buffer("dct", torch.tensor(dct, dtype=torch.float32), persistent=False)
        # Row k-1 holds the taps of the k-th derivative (delta, delta-delta).
        taps = np.zeros((self.deltas, self.delta_width))
        for k in range(1, self.deltas + 1):
            taps[k - 1] = savgol_kernel(self.delta_width, k)
        self.register_buffer("delta_taps", torch.tensor(taps, dtype=torch.float32), persistent=False)

    @property
    def out_dim(self) -> int:
        """Feature size per frame."""
        return self.n_mfcc * (1 + self.deltas)

    @property
    def min_samples(self) -> int:
        """Shortest clip that can be framed (see :attr:`LogMel.min_samples`)."""
        return self.logmel.min_samples

    @property
    def context_samples(self) -> int:
        """The log-mel's context plus the frames the delta filter reaches either side."""
        return self.logmel.context_samples + (self.delta_width // 2 * self.hop_length if self.deltas else 0)

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Frames of a clip of ``num_samples`` samples (see :meth:`LogMel.num_frames`)."""
        return self.logmel.num_frames(num_samples)

    def _deltas(self, feats: torch.Tensor, frame_lengths: torch.Tensor) -> list[torch.Tensor]:
        """Savitzky-Golay derivatives along time, edges replicated at each clip's own last frame."""
        batch, frames, dim = feats.shape
        half = self.delta_width // 2
        t = torch.arange(frames, device=feats.device)
        last = (frame_lengths - 1).unsqueeze(1)
        out = [feats.new_zeros(feats.shape) for _ in range(self.deltas)]
        # A loop over the few filter taps, not over frames: each tap is one batched gather.
        for j in range(-half, half + 1):
            idx = torch.minimum((t + j).clamp(min=0).expand(batch, -1), last)
            shifted = torch.gather(feats, 1, idx.unsqueeze(-1).expand(-1, -1, dim))
            for k in range(self.deltas):
                out[k] = out[k] + self.delta_taps[k, j + half] * shifted
        return out

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """waves [B, N] (zero padded past each clip's length) -> (features [B, T, F], frame_lengths [B])."""
        log_mel, frame_lengths = self.logmel._log_mel(waves, lengths)
        mfcc = torch.matmul(log_mel, self.dct)
        feats = torch.cat([mfcc, *self._deltas(mfcc, frame_lengths)], dim=-1) if self.deltas else mfcc
        return self.mask_frames(feats, frame_lengths), frame_lengths
