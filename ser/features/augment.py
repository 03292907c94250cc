"""Train-batch augmentation of cached features: random crops, SpecAugment masks and mixup, reproducible under a
generator."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

__all__ = ["MixedBatch", "Mixup", "RandomCrop", "SpecAugment", "mixup", "mixup_targets", "random_crop", "spec_augment"]


def _valid(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, T] True on each clip's own frames."""
    return torch.arange(frames, device=lengths.device) < lengths.unsqueeze(1)


def _spans(size: torch.Tensor, max_width: torch.Tensor, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """[B, count, 2] (start, width) of ``count`` spans per clip: width ~ U{0..max_width}, inside [0, size)."""
    u = torch.rand(size.shape[0], count, 2, generator=generator)
    width = torch.minimum((u[..., 0] * (max_width.unsqueeze(1) + 1)).floor(), size.unsqueeze(1).float())
    start = (u[..., 1] * (size.unsqueeze(1) - width + 1)).floor()
    return torch.stack([start, width], dim=-1).long()


def _cover(spans: torch.Tensor, positions: int) -> torch.Tensor:
    """[B, positions] True where any of a clip's spans covers the position."""
    pos = torch.arange(positions).view(1, 1, -1)
    start, width = spans[..., 0:1], spans[..., 1:2]
    return ((pos >= start) & (pos < start + width)).any(dim=1)


def random_crop(
    features: torch.Tensor, lengths: torch.Tensor, max_frames: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One window of at most ``max_frames`` of each clip of a zero-padded batch [B, T, F], at a random start.

    A clip longer than ``max_frames`` keeps ``max_frames`` consecutive frames of its own, starting
    uniformly in 0..length - max_frames; a shorter clip is kept whole. Returns the cropped batch, zero
    padded to its longest window, and the new lengths. Training on windows is the usual chunk-level
    training of SER: the network's time cost falls with the frames it sees (a clip's label holds for
    each of its parts), while validation, test and prediction still see whole clips. Draws come from
    ``generator`` (CPU), as for :func:`spec_augment`; a batch that already fits is returned as it is.
    """
    if features.dim() != 3:
        raise ValueError(f"expected features of shape [batch, frames, dims], got {tuple(features.shape)}")
    if int(max_frames) < 1:
        raise ValueError(f"max_frames={max_frames}: must be a positive number of frames")
    batch, frames, dims = features.shape
    lengths_cpu = lengths.detach().long().cpu().clamp(max=frames)
    if batch == 0 or int(lengths_cpu.max()) <= max_frames:
        return features, lengths
    kept = lengths_cpu.clamp(max=int(max_frames))
    start = (torch.rand(batch, generator=generator) * (lengths_cpu - kept + 1)).floor().long()
    width = int(kept.max())
    index = (start.unsqueeze(1) + torch.arange(width)).clamp(max=frames - 1)  # [B, width]
    device = features.device
    out = torch.gather(features, 1, index.to(device).unsqueeze(2).expand(-1, -1, dims))
    out = torch.where(_valid(kept, width).to(device).unsqueeze(2), out, torch.zeros((), dtype=out.dtype, device=device))
    return out, kept.to(lengths.device, lengths.dtype)


class RandomCrop(nn.Module):
    """:func:`random_crop` as a module that acts in training mode only (identity under ``eval()``)."""

    def __init__(self, max_frames: int) -> None:
        super().__init__()
        if int(max_frames) < 1:
            raise ValueError(f"max_frames={max_frames}: must be a positive number of frames")
        self.max_frames = int(max_frames)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T, F] features, [B] frame lengths -> windows of at most ``max_frames`` frames, their lengths."""
        if not self.training:
            return features, lengths
        return random_crop(features, lengths, self.max_frames, generator)


def spec_augment(
    features: torch.Tensor,
    lengths: torch.Tensor,
    freq_masks: int = 2,
    freq_width: int = 8,
    time_masks: int = 2,
    time_width: int = 20,
    time_ratio: float | None = None,
    p: float = 1.0,
    value: float | str = "mean",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SpecAugment (Park et al., 2019) without time warping on a zero-padded batch [B, T, F].

    Each clip, with probability ``p``, gets ``freq_masks`` bands of width U{0..freq_width} (whole
    feature channels over its valid frames) and ``time_masks`` spans of width U{0..time_width} frames,
    capped at ``time_ratio`` of its own length when given, all inside its first ``lengths[b]`` frames:
    padding is never touched. ``value="mean"`` fills masks with the clip's own mean of each feature
    over its valid frames, which stays neutral whatever per-dimension normalization follows (the
    cached features are raw dB, where 0 is not silence); a number fills with that number. The random
    draws come from ``generator`` (CPU; the default generator when None), so a seeded generator
    repeats the masks exactly. Returns a new tensor; ``p=0`` or no masks returns ``features`` itself.
    """
    if features.dim() != 3:
        raise ValueError(f"expected features of shape [batch, frames, dims], got {tuple(features.shape)}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p={p}: must be in [0, 1]")
    if min(freq_masks, freq_width, time_masks, time_width) < 0:
        raise ValueError("mask counts and widths must be >= 0")
    if time_ratio is not None and not 0.0 <= time_ratio <= 1.0:
        raise ValueError(f"time_ratio={time_ratio}: must be in [0, 1]")
    batch, frames, dims = features.shape
    if p == 0.0 or batch == 0 or (freq_masks * freq_width == 0 and time_masks * time_width == 0):
        return features
    lengths_cpu = lengths.detach().long().cpu().clamp(max=frames)
    # Draws on the CPU in a fixed order (apply, frequency, time), so results do not depend on the device.
    apply = torch.rand(batch, generator=generator) < p
    freq = _cover(_spans(torch.full((batch,), dims), torch.full((batch,), freq_width), freq_masks, generator), dims)
    max_t = torch.full((batch,), time_width)
    if time_ratio is not None:
        max_t = torch.minimum(max_t, (lengths_cpu.float() * time_ratio).floor().long())
    time = _cover(_spans(lengths_cpu, max_t, time_masks, generator), frames)
    valid = _valid(lengths_cpu, frames)
    mask = (time.unsqueeze(2) | freq.unsqueeze(1)) & valid.unsqueeze(2) & apply.view(-1, 1, 1)
    mask = mask.to(features.device)
    if value == "mean":
        weights = valid.to(features.device, features.dtype).unsqueeze(2)
        fill = (features * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp(min=1)
    elif isinstance(value, str):
        raise ValueError(f"value={value!r}: use 'mean' or a number")
    else:
        fill = torch.tensor(float(value), dtype=features.dtype, device=features.device)
    return torch.where(mask, fill, features)


class SpecAugment(nn.Module):
    """:func:`spec_augment` as a module that acts in training mode only (identity under ``eval()``)."""

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 8,
        time_masks: int = 2,
        time_width: int = 20,
        time_ratio: float | None = None,
        p: float = 1.0,
        value: float | str = "mean",
    ) -> None:
        super().__init__()
        self.freq_masks, self.freq_width = int(freq_masks), int(freq_width)
        self.time_masks, self.time_width = int(time_masks), int(time_width)
        self.time_ratio = None if time_ratio is None else float(time_ratio)
        self.p = float(p)
        self.value = value

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """[B, T, F] features, [B] frame lengths -> masked features (same shape)."""
        if not self.training:
            return features
        return spec_augment(
            features,
            lengths,
            self.freq_masks,
            self.freq_width,
            self.time_masks,
            self.time_width,
            self.time_ratio,
            self.p,
            self.value,
            generator,
        )


class MixedBatch(NamedTuple):
    """A mixup batch: train on ``lam * loss(targets_a) + (1 - lam) * loss(targets_b)``."""

    features: torch.Tensor  # [B, T, F]
    lengths: torch.Tensor  # [B], each mixed clip keeps the length of its first clip
    targets_a: torch.Tensor  # [B] labels of the first clips (the batch's own)
    targets_b: torch.Tensor  # [B] labels of the partners
    lam: float  # weight of the first clips, >= 0.5


def mixup(
    features: torch.Tensor,
    lengths: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.2,
    generator: torch.Generator | None = None,
) -> MixedBatch:
    """Mixup (Zhang et al., 2018) of a zero-padded batch [B, T, F] with a permutation of itself.

    lam ~ Beta(alpha, alpha), one per batch, taken as max(lam, 1 - lam) so the batch's own clip
    dominates: the mixed clip keeps that clip's length and padding. Its partner's valid frames are
    repeated (looped) to cover that length, so no frame mixes speech with padding. ``alpha <= 0``
    gives lam = 1 (no mixing). Draws come from ``generator`` (CPU), as for :func:`spec_augment`.

    Losses that are linear in the target (cross-entropy, binary cross-entropy, with or without class
    weights or label smoothing) then train on the soft target ``lam * onehot(a) + (1 - lam) *
    onehot(b)`` (:func:`mixup_targets`), which equals ``lam * loss(a) + (1 - lam) * loss(b)``.
    """
    if features.dim() != 3:
        raise ValueError(f"expected features of shape [batch, frames, dims], got {tuple(features.shape)}")
    batch, frames, _ = features.shape
    perm = torch.randperm(batch, generator=generator)
    if alpha > 0:
        # torch.distributions.Beta takes no generator; a numpy generator seeded from it keeps the draw reproducible.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        lam = float(np.random.default_rng(seed).beta(alpha, alpha))
        lam = max(lam, 1.0 - lam)
    else:
        lam = 1.0
    device = features.device
    perm_d = perm.to(device)
    partner_len = lengths.to(device).long()[perm_d].clamp(min=1)
    loop = torch.arange(frames, device=device).unsqueeze(0) % partner_len.unsqueeze(1)  # [B, T]
    partner = torch.gather(features[perm_d], 1, loop.unsqueeze(2).expand_as(features))
    valid = _valid(lengths.to(device).long(), frames).unsqueeze(2)
    mixed = torch.where(valid, lam * features + (1.0 - lam) * partner, features)
    return MixedBatch(mixed, lengths, targets, targets[perm.to(targets.device)], lam)


def mixup_targets(batch: MixedBatch, num_classes: int) -> torch.Tensor:
    """[B, num_classes] soft targets ``lam * onehot(a) + (1 - lam) * onehot(b)`` of a :class:`MixedBatch`."""
    a = nn.functional.one_hot(batch.targets_a.long(), num_classes).float()
    b = nn.functional.one_hot(batch.targets_b.long(), num_classes).float()
    return batch.lam * a + (1.0 - batch.lam) * b


class Mixup(nn.Module):
    """:func:`mixup` with a fixed ``alpha``, applied to a batch with probability ``p`` (training mode only)."""

    def __init__(self, alpha: float = 0.2, p: float = 1.0) -> None:
        super().__init__()
        if alpha < 0 or not 0.0 <= p <= 1.0:
            raise ValueError(f"need alpha >= 0 and 0 <= p <= 1, got alpha={alpha}, p={p}")
        self.alpha = float(alpha)
        self.p = float(p)

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        targets: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> MixedBatch:
        """A :class:`MixedBatch`; lam = 1 (the batch unchanged) in eval mode or when the batch is not drawn."""
        if not self.training or self.p == 0.0 or float(torch.rand(1, generator=generator)) >= self.p:
            return MixedBatch(features, lengths, targets, targets, 1.0)
        return mixup(features, lengths, targets, self.alpha, generator)
