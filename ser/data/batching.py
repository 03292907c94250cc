"""Datasets, padding collate and length-bucketed batch samplers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ser.data.cache import FeatureSet
from ser.data.normalization import moments, standardize


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
    (ser.data.normalization): ``speaker`` needs the statistics of each speaker id in ``speaker_stats``."""

    def __init__(
        self,
        features: FeatureSet,
        rows: Sequence[int],
        labels: Sequence[int],
        speakers: Sequence[int],
        normalization: str = "global",
        speaker_stats: Mapping[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ):
        self.features = features
        self.rows = list(rows)
        self.labels = list(labels)
        self.speakers = list(speakers)
        self.lengths = [int(features.lengths[r]) for r in self.rows]
        self.normalization = normalization
        self.speaker_stats = speaker_stats or {}
        if normalization == "speaker" and not set(self.speakers) <= set(self.speaker_stats):
            raise ValueError("speaker normalization needs the statistics of every speaker of the dataset")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        x = self.features.get(self.rows[i])
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
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size}: must be at least 1")
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pool = pool
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i : i + bs].tolist() for i in range(0, n, bs)]
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(n)
        batches: list[list[int]] = []
        step = bs * self.pool
        for start in range(0, n, step):
            chunk = perm[start : start + step]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + bs].tolist() for i in range(0, len(chunk), bs))
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
        if self.num_replicas > 1 and len(batches) % self.num_replicas:
            batches += batches[: self.num_replicas - len(batches) % self.num_replicas]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        n_batches = -(-len(self.lengths) // self.batch_size)
        if not self.shuffle:
            return len(range(self.rank, n_batches, self.num_replicas))
        return len(self._batches()[self.rank :: self.num_replicas])
