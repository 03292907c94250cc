"""Feature normalization before the network: ``global``, ``utterance`` or ``speaker``.

``global``: nothing here; the network standardizes with the statistics of the training frames.
``utterance``: each clip by the mean and std of its own frames.
``speaker``: each clip by the mean and std of all frames of its speaker (train, val and test alike;
no labels are used), which removes much of what makes a voice a voice (vocal tract, microphone,
level) before the model sees it. At prediction time a speaker is the set of inputs of one call.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

NORMALIZATIONS = ("global", "utterance", "speaker")
# A dimension that barely varies within a speaker (e.g. a band below the microphone's range) must not
# be blown up to unit variance.
MIN_STD = 1e-3


def check_normalization(name: str) -> str:
    if name not in NORMALIZATIONS:
        raise ValueError(f"data.normalization={name!r}: choose one of {', '.join(NORMALIZATIONS)}")
    return name


def moments(blocks: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std over the frames of [frames, dim] blocks (float64 sums)."""
    total = sq = None
    frames = 0
    for x in blocks:
        x = x.double()
        s, q = x.sum(0), (x * x).sum(0)
        total, sq = (s, q) if total is None else (total + s, sq + q)
        frames += x.shape[0]
    if total is None or frames == 0:
        raise ValueError("no frames to compute normalization statistics from")
    mean = total / frames
    std = (sq / frames - mean * mean).clamp_min(0).sqrt().clamp_min(MIN_STD)
    return mean.float(), std.float()


def standardize(x: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return (x - stats[0]) / stats[1]
