"""The extractor contract: what every acoustic front end declares and how it is called."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

__all__ = ["FeatureExtractor"]


class FeatureExtractor(nn.Module, ABC):
    """waves [B, N] at ``sample_rate`` -> (features [B, T, out_dim], frame_lengths [B]), one frame per ``hop_length``.

    Every extractor declares:

    - ``sample_rate``: the rate (Hz) the audio must be decoded at;
    - ``hop_length``: samples between frames (clip seconds = frames * hop_length / sample_rate);
    - ``out_dim``: the feature size per frame (the network's ``input_dim``);
    - ``min_samples``: the shortest clip it can frame (shorter clips are refused, not padded);
    - ``num_frames(num_samples)``: frames of a clip of that many samples;
    - ``first_frame_centre``: where frame 0 sits (0, the clip's first sample, unless overridden).

    Batches are zero padded past each clip's ``lengths``; padding never changes a clip's features, and
    frames past a clip's ``frame_lengths`` come out as zeros. ``lengths=None`` means every clip fills
    the batch. T = ``num_frames(N)``.
    """

    sample_rate: int
    hop_length: int

    def __init__(self, sample_rate: int, hop_length: int) -> None:
        super().__init__()
        if sample_rate <= 0 or hop_length <= 0:
            raise ValueError(f"sample_rate and hop_length must be positive, got {sample_rate} and {hop_length}")
        self.sample_rate = int(sample_rate)
        self.hop_length = int(hop_length)

    @property
    @abstractmethod
    def out_dim(self) -> int:
        """Feature size per frame."""

    @property
    @abstractmethod
    def min_samples(self) -> int:
        """Shortest clip (in samples) that can be framed."""

    @property
    def first_frame_centre(self) -> int:
        """Sample that frame 0 is centred on (frame t: t * hop_length later); 0 for centred framing. Lets
        front ends whose grids start at different places be stacked frame by frame (ser.features.stacked)."""
        return 0

    @property
    def context_samples(self) -> int | None:
        """Samples either side of frame t's position (sample t * hop_length) that its features depend on,
        beyond where the clip starts and ends; None when frames depend on the whole clip. With it, a long
        clip is extracted in overlapping chunks with the same frames (ser.data.chunked); without, whole."""
        return None

    @abstractmethod
    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Frames of clips of ``num_samples`` samples (elementwise on a long tensor)."""

    @abstractmethod
    def forward(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """waves [B, N] (zero padded past each clip's length) -> (features [B, T, F], frame_lengths [B])."""

    def too_short(self, num_samples: int) -> str:
        """Why a clip of ``num_samples`` samples cannot be framed; extractors say what needs the samples."""
        return f"clip of {num_samples} samples is too short: need at least {self.min_samples} samples"

    def check_batch(self, waves: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate shapes and lengths; float32 waves and long lengths on the waves' device."""
        if waves.dim() != 2:
            raise ValueError(f"expected waves of shape [batch, samples], got {tuple(waves.shape)}")
        batch, num = waves.shape
        if lengths is None:
            lengths_t = torch.full((batch,), num, dtype=torch.long, device=waves.device)
        else:
            lengths_t = torch.as_tensor(lengths, device=waves.device).long().reshape(-1)
            if lengths_t.numel() != batch:
                raise ValueError(f"got {lengths_t.numel()} lengths for a batch of {batch} clips")
            if batch and int(lengths_t.max()) > num:
                raise ValueError(f"a length exceeds the padded batch width of {num} samples")
        if batch and int(lengths_t.min()) < self.min_samples:
            raise ValueError(self.too_short(int(lengths_t.min())))
        return waves.float(), lengths_t

    @staticmethod
    def mask_frames(features: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        """Zero the frames of [B, T, F] past each clip's ``frame_lengths``."""
        valid = torch.arange(features.shape[1], device=features.device) < frame_lengths.unsqueeze(1)
        return features * valid.unsqueeze(-1)
