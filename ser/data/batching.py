"""Datasets, padding collate and length-bucketed batch samplers, within bounds on clip and batch length."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ser.data.cache import FeatureSet
from ser.data.normalization import moments, standardize


@dataclass(frozen=True)
class LengthLimits:
    """What keeps a training step's memory bounded whatever the clip lengths (data.max_seconds, max_batch_frames).

    ``max_seconds``: a longer clip is centre-cropped to it in every part the DataModule serves (train, val,
    test; the cache keeps the whole clip, so its key does not depend on it); the data report lists the cuts.
    ``max_batch_frames``: a batch holds fewer clips when batch size x its longest clip would pass it.
    None turns either off.
    """

    max_seconds: float | None = 20.0
    max_batch_frames: int | None = 65536

    @classmethod
    def from_config(cls, data: Mapping) -> LengthLimits:
        """The limits of a plain ``data`` config group; a config without the keys gets the defaults."""
        seconds, frames = data.get("max_seconds", cls.max_seconds), data.get("max_batch_frames", cls.max_batch_frames)
        return cls(None if seconds is None else float(seconds), None if frames is None else int(frames))

    def __post_init__(self) -> None:
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"data.max_seconds={self.max_seconds}: must be positive (or null: no crop)")
        if self.max_batch_frames is not None and self.max_batch_frames < 1:
            raise ValueError(f"data.max_batch_frames={self.max_batch_frames}: must be positive (or null: no cap)")


def centre_crop(length: int, max_frames: int | None) -> tuple[int, int]:
    """(start, stop) of the centre ``max_frames`` frames of a clip of ``length`` frames (all of a shorter one)."""
    if max_frames is None or length <= max_frames:
        return 0, length
    start = (length - max_frames) // 2
    return start, start + max_frames


@dataclass
class Batch:
    """A padded batch: features [B, T, F], valid frames per clip, labels and speaker ids."""

    features: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    speakers: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device) for t in (self.features, self.lengths, self.labels, self.speakers)))


class FeatureDataset(Dataset):
    """Rows of a FeatureSet with their labels and speaker ids, normalized per ``normalization``
    (ser.data.normalization): ``speaker`` needs the statistics of each speaker id in ``speaker_stats``.
    A clip longer than ``max_frames`` is centre-cropped to it (a view, no copy)."""

    def __init__(
        self,
        features: FeatureSet,
        rows: Sequence[int],
        labels: Sequence[int],
        speakers: Sequence[int],
        normalization: str = "global",
        speaker_stats: Mapping[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
        max_frames: int | None = None,
    ):
        self.features = features
        self.rows = list(rows)
        self.labels = list(labels)
        self.speakers = list(speakers)
        self.max_frames = max_frames
        self.spans = [centre_crop(int(features.lengths[r]), max_frames) for r in self.rows]
        self.lengths = [stop - start for start, stop in self.spans]
        self.normalization = normalization
        self.speaker_stats = speaker_stats or {}
        if normalization == "speaker" and not set(self.speakers) <= set(self.speaker_stats):
            raise ValueError("speaker normalization needs the statistics of every speaker of the dataset")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        start, stop = self.spans[i]
        x = self.features.get(self.rows[i])[start:stop]
        if self.normalization == "utterance":
            x = standardize(x, moments([x]))
        elif self.normalization == "speaker":
            x = standardize(x, self.speaker_stats[self.speakers[i]])
        return x, self.labels[i], self.speakers[i]


def collate(items: Sequence[tuple[torch.Tensor, int, int]]) -> Batch:
    lengths = torch.tensor([x.shape[0] for x, _, _ in items])
    feats = torch.zeros(len(items), int(lengths.max()), items[0][0].shape[1])
    for row, (x, _, _) in enumerate(items):
        feats[row, : x.shape[0]] = x
    return Batch(
        features=feats,
        lengths=lengths,
        labels=torch.tensor([y for _, y, _ in items]),
        speakers=torch.tensor([s for _, _, s in items]),
    )


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length so padding stays small.

    Training: shuffle, sort within pools of ``pool`` batches, shuffle the batch order; reseeded by
    ``set_epoch`` (Lightning calls it) so every epoch differs but a seed replays exactly. Evaluation
    (``shuffle=False``): sorted by length. Under DDP each rank takes every ``num_replicas``-th batch;
    training pads the batch list by repetition so every rank runs the same number of steps.
    ``max_frames``: a batch is cut short where its size x its longest clip would pass it (a clip longer than
    that is a batch alone); batches are the same as without it wherever it does not bind.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        pool: int = 50,
        num_replicas: int = 1,
        rank: int = 0,
        max_frames: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size}: must be at least 1")
        self.max_frames = max_frames
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pool = pool
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    @property
    def sampler(self) -> BucketBatchSampler:
        # Lightning calls set_epoch on ``dataloader.sampler`` and ``dataloader.batch_sampler.sampler``, never on
        # the batch sampler itself (lightning.fabric.utilities.data._set_sampler_epoch): this makes it reach us.
        # Without it every epoch replayed epoch 0's batch order.
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _cut(self, order: np.ndarray) -> list[list[int]]:
        """Indices in ascending length order cut into batches of ``batch_size``, or fewer within ``max_frames``."""
        bs = self.batch_size
        if self.max_frames is None or len(order) == 0 or bs * int(self.lengths[order[-1]]) <= self.max_frames:
            return [order[i : i + bs].tolist() for i in range(0, len(order), bs)]
        batches: list[list[int]] = []
        batch: list[int] = []
        for i in order.tolist():
            # Ascending order: the clip being added is the batch's longest, so it sets the padded size.
            if batch and (len(batch) == bs or (len(batch) + 1) * int(self.lengths[i]) > self.max_frames):
                batches.append(batch)
                batch = []
            batch.append(i)
        return [*batches, batch] if batch else batches

    def _batches(self) -> list[list[int]]:
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            return self._cut(np.argsort(self.lengths, kind="stable"))
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(n)
        batches: list[list[int]] = []
        step = bs * self.pool
        for start in range(0, n, step):
            chunk = perm[start : start + step]
            batches.extend(self._cut(chunk[np.argsort(self.lengths[chunk], kind="stable")]))
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
        if self.num_replicas > 1 and len(batches) % self.num_replicas:
            batches += batches[: self.num_replicas - len(batches) % self.num_replicas]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        n_batches = -(-len(self.lengths) // self.batch_size)
        if not self.shuffle and self.max_frames is None:
            return len(range(self.rank, n_batches, self.num_replicas))
        return len(self._batches()[self.rank :: self.num_replicas])
