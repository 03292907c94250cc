"""Speed perturbation of train clips (Ko et al., 2015; Kaldi's ``sox speed``): which speed each clip has each epoch.

The perturbed audio itself is :func:`ser.data.audio.change_speed`; its features are cached once per speed
(``FeatureCache(speed=...)``). Here: the ``augment.speed`` setting, the per-epoch draws (reproducible from
the run's seed and the epoch alone, so every DDP rank and a resumed run draw the same), the dataset that
holds the train clips at every speed and the batch sampler that serves one speed per clip and epoch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ser.data.batching import BucketBatchSampler, FeatureDataset

__all__ = ["SpeedBatchSampler", "SpeedDataset", "SpeedPerturbation"]

# Mixed into the draws' seed so that they are independent of the batch sampler's permutation (same seed, epoch).
_DRAW_STREAM = 0x5BEED


@dataclass(frozen=True)
class SpeedPerturbation:
    """The ``augment.speed`` setting: each train clip is served, each epoch, at one of ``factors`` drawn
    uniformly (a factor f plays the clip f times as fast: len/f samples, tempo and pitch times f)."""

    factors: tuple[float, ...] = (0.9, 1.0, 1.1)
    seed: int = 0

    def __post_init__(self) -> None:
        factors = self.factors
        ok = (
            isinstance(factors, (list, tuple))
            and len(factors) > 0
            and all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f < float("inf") for f in factors)
            and len(set(factors)) == len(factors)
        )
        if not ok:
            raise ValueError(
                f"augment.speed.factors={list(factors) if isinstance(factors, (list, tuple)) else factors!r}: "
                "need a non-empty list of positive numbers, each once (e.g. [0.9, 1.0, 1.1])"
            )
        object.__setattr__(self, "factors", tuple(float(f) for f in factors))

    @classmethod
    def from_config(cls, augment: Mapping[str, Any] | None, seed: int | None) -> SpeedPerturbation | None:
        """The setting of a plain ``augment`` group (None without ``augment.speed``) under the run's ``seed``.

        An unseeded run (seed null) draws from seed 0: the draws must not come from OS entropy, since every
        DDP rank has to batch the same lengths."""
        speed = (augment or {}).get("speed")
        if not speed:
            return None
        if not isinstance(speed, Mapping):
            raise ValueError(
                f"augment.speed={speed!r}: need a group with factors, e.g. augment.speed.factors=[0.9,1.0,1.1]"
            )
        factors = speed.get("factors", cls.factors)
        return cls(factors=tuple(factors) if isinstance(factors, (list, tuple)) else factors, seed=int(seed or 0))

    @property
    def perturbed(self) -> tuple[float, ...]:
        """The factors other than 1.0: each needs a feature cache entry of its own."""
        return tuple(f for f in self.factors if f != 1.0)

    def draw(self, n: int, epoch: int) -> np.ndarray:
        """[n] the factor each of ``n`` clips is served at in ``epoch``: a function of (seed, epoch) alone."""
        rng = np.random.default_rng([self.seed, epoch, _DRAW_STREAM])
        return np.asarray(self.factors)[rng.integers(0, len(self.factors), n)]


class SpeedDataset(Dataset):
    """The train clips at several speeds: item ``k * n + i`` is clip ``i`` at ``speeds[k]``.

    ``variants[k]`` holds the clips of ``speeds[k]``; ``positions[k][i]`` is clip ``i``'s item in it, or -1
    where that speed's cache entry lacks the clip (too short or silent once resampled): such a clip is
    served unperturbed instead, so variant 0 must be the unperturbed train dataset (speed 1.0, every clip).
    """

    def __init__(
        self, speeds: Sequence[float], variants: Sequence[FeatureDataset], positions: Sequence[Sequence[int]]
    ) -> None:
        self.speeds = [float(s) for s in speeds]
        self.variants = list(variants)
        self.positions = np.asarray(positions, dtype=np.int64).reshape(len(self.variants), -1)
        self.n = self.positions.shape[1]
        if self.speeds[0] != 1.0 or len(set(self.speeds)) != len(self.speeds):
            raise ValueError(f"speeds {self.speeds}: variant 0 must be the unperturbed clips (1.0), each speed once")
        # [K, n] frames (after the crop) of each clip at each speed; 0 where the speed lacks the clip.
        self.lengths = np.zeros(self.positions.shape, dtype=np.int64)
        for k, variant in enumerate(self.variants):
            have = self.positions[k] >= 0
            self.lengths[k, have] = np.asarray(variant.lengths, dtype=np.int64)[self.positions[k, have]]

    def __len__(self) -> int:
        return len(self.variants) * self.n

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int, int]:
        k, i = divmod(int(item), self.n)
        return self.variants[k][int(self.positions[k, i])]

    def items(self, factors: np.ndarray) -> np.ndarray:
        """[n] the item of each clip at its drawn factor; the unperturbed one where that speed lacks the clip."""
        variant = {s: k for k, s in enumerate(self.speeds)}
        k = np.array([variant[float(f)] for f in factors], dtype=np.int64)
        clip = np.arange(self.n)
        k = np.where(self.positions[k, clip] >= 0, k, 0)
        return k * self.n + clip


class SpeedBatchSampler(BucketBatchSampler):
    """:class:`BucketBatchSampler` over a :class:`SpeedDataset`: each epoch, every clip's speed is drawn first
    (``SpeedPerturbation.draw``), then the drawn clips are bucketed and capped on their own (perturbed)
    lengths, so ``max_frames`` still bounds every batch. Yields item indices of the dataset."""

    def __init__(self, dataset: SpeedDataset, speed: SpeedPerturbation, batch_size: int, **kwargs: Any) -> None:
        super().__init__(dataset.lengths[0], batch_size, shuffle=True, **kwargs)
        self.dataset = dataset
        self.speed = speed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.items = self.dataset.items(self.speed.draw(self.dataset.n, epoch))
        self.lengths = self.dataset.lengths.reshape(-1)[self.items]

    def _batches(self) -> list[list[int]]:
        return [[int(self.items[i]) for i in batch] for batch in super()._batches()]
