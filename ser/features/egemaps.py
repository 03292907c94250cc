"""openSMILE's eGeMAPSv02 low-level descriptors per 10 ms frame, as an extractor."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ser.features.base import FeatureExtractor

__all__ = ["EGeMAPS"]

_INT16_MAX = 32767 / 32768


class EGeMAPS(FeatureExtractor):
    """eGeMAPSv02 low-level descriptors: waves [B, N] -> features [B, T, 25], frame lengths [B].

    What openSMILE does, measured with opensmile 2.6 (tests/test_egemaps.py holds it to this):

    - 25 descriptors per frame (``EGeMAPS.names``): loudness, alpha ratio, Hammarberg index, spectral
      slopes, spectral flux, MFCC 1-4, F0 (semitones from 27.5 Hz), jitter, shimmer, HNR, H1-H2, H1-A3
      and F1-F3 frequency/bandwidth/amplitude, each smoothed over 3 frames (``_sma3``); the ``nz``
      (voiced-only) ones read 0 in unvoiced frames.
    - Frames every 10 ms starting at sample 0, no padding at either end: a clip of N samples gives
      ``N // hop - 4`` frames (hop = 10 ms), checked at 8, 16, 44.1 and 48 kHz over hundreds of lengths;
      at 22.05 kHz the 10 ms hop is not a whole number of samples and the count is sometimes one less,
      so the sample rate must be a multiple of 100 Hz.
    - A clip shorter than 60 ms (the F0 window; 960 samples at 16 kHz) gives no frame at all: openSMILE
      then fills one row with NaN. Such clips are refused here (``min_samples``), like LogMel's too-short clips.
    - Input is converted to 16-bit integers (x * 32768), so samples are clipped to [-1, 1) first: louder
      ones would wrap around.

    Each clip is processed alone (trimmed to its length), so padding never changes a clip's features;
    frames past a clip's end are zeros and any NaN or infinity openSMILE emits becomes 0. openSMILE is not
    torch, so the batch is looped over on the CPU (20-35x faster than real time on one core: the
    feature cache computes each clip once).
    """

    NUM_DESCRIPTORS = 25

    def __init__(self, sample_rate: int = 16000) -> None:
        if sample_rate <= 0 or sample_rate % 100:
            raise ValueError(f"sample_rate={sample_rate}: eGeMAPS frames are 10 ms apart, use a multiple of 100 Hz")
        super().__init__(sample_rate, sample_rate // 100)
        # Built on first use: importing and setting up openSMILE takes about a second, and configs are
        # instantiated just to read out_dim or sample_rate.
        self._smile: Any = None

    def smile(self) -> Any:
        """The ``opensmile.Smile`` for eGeMAPSv02 low-level descriptors."""
        if self._smile is None:
            import opensmile  # here, not at the top: openSMILE and pandas take a second to import

            self._smile = opensmile.Smile(
                feature_set=opensmile.FeatureSet.eGeMAPSv02,
                feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
            )
            if len(self._smile.feature_names) != self.NUM_DESCRIPTORS:
                raise RuntimeError(
                    f"openSMILE's eGeMAPSv02 gives {len(self._smile.feature_names)} descriptors, "
                    f"expected {self.NUM_DESCRIPTORS}; check the installed opensmile version"
                )
        return self._smile

    @property
    def names(self) -> list[str]:
        """The descriptor names, in feature order (e.g. ``Loudness_sma3`` first)."""
        return list(self.smile().feature_names)

    @property
    def out_dim(self) -> int:
        """Feature size per frame."""
        return self.NUM_DESCRIPTORS

    @property
    def min_samples(self) -> int:
        """60 ms, the F0 window: openSMILE gives no frame for a shorter clip."""
        return 6 * self.hop_length

    @property
    def first_frame_centre(self) -> int:
        """openSMILE reports frame t as the window [t * 10 ms, t * 10 ms + 20 ms]: centred 10 ms in.

        That is the frame of the loudness, spectral, MFCC and formant descriptors. The F0 branch (F0,
        jitter, shimmer, HNR, H1-H2, H1-A3) reads 60 ms windows starting at the same t * 10 ms, centred
        30 ms in: 2 frames later, a shift well under a syllable, left as openSMILE gives it."""
        return self.hop_length

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Frames of a ``num_samples``-sample clip: ``num_samples // hop - 4`` (0 below ``min_samples``)."""
        frames = num_samples // self.hop_length - 4
        if isinstance(frames, torch.Tensor):
            return frames.clamp(min=0)
        return max(frames, 0)

    def too_short(self, num_samples: int) -> str:
        return (
            f"clip of {num_samples} samples is too short: eGeMAPS needs at least {self.min_samples} samples "
            f"(60 ms at {self.sample_rate} Hz) for its first frame"
        )

    def _clip(self, wave: np.ndarray) -> np.ndarray:
        """[T, 25] descriptors of one clip, NaN/inf -> 0."""
        signal = np.clip(wave, -1.0, _INT16_MAX).astype(np.float32, copy=False)
        values = self.smile().process_signal(signal, self.sample_rate).to_numpy(dtype=np.float32)
        expected = int(self.num_frames(wave.size))
        if values.shape != (expected, self.NUM_DESCRIPTORS):
            raise RuntimeError(
                f"openSMILE gave {values.shape[0]} frames x {values.shape[1]} descriptors for {wave.size} samples; "
                f"expected {expected} x {self.NUM_DESCRIPTORS} (see ser/features/egemaps.py on the frame count)"
            )
        return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """waves [B, N] (zero padded past each clip's length) -> (features [B, T, 25], frame_lengths [B]).

        T = ``num_frames(N)``; ``lengths=None`` means every clip fills all N samples.
        """
        waves, lengths_t = self.check_batch(waves, lengths)
        frame_lengths = self.num_frames(lengths_t)
        out = torch.zeros(waves.shape[0], int(self.num_frames(waves.shape[1])), self.NUM_DESCRIPTORS)
        cpu = waves.detach().cpu().numpy()
        for row, n in enumerate(lengths_t.tolist()):
            out[row, : int(frame_lengths[row])] = torch.from_numpy(self._clip(cpu[row, :n]))
        return out.to(waves.device), frame_lengths
