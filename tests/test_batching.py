"""Padding collate, FeatureDataset and the length-bucketed batch sampler (epochs, seeds, DDP shards)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from ser.data.batching import Batch, BucketBatchSampler, FeatureDataset, collate
from ser.data.cache import FeatureSet

LENGTHS = np.random.default_rng(0).integers(30, 600, size=1000).tolist()


def _flat(batches: list[list[int]]) -> list[int]:
    return [i for b in batches for i in b]


def _padding_ratio(batches: list[list[int]], lengths: list[int]) -> float:
    """Padded frames / real frames."""
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    real = sum(lengths[i] for b in batches for i in b)
    return padded / real - 1


def _feature_set(lengths: list[int], dim: int = 3) -> FeatureSet:
    feats = [torch.full((n, dim), float(i + 1)) for i, n in enumerate(lengths)]
    return FeatureSet(
        clip_ids=[f"c{i}" for i in range(len(lengths))],
        features=torch.cat(feats),
        offsets=torch.cumsum(torch.tensor([0, *lengths]), 0),
    )


# ------------------------------------------------------------------------------------------- collate


def test_collate_pads_and_keeps_labels_and_speakers() -> None:
    fs = _feature_set([4, 2, 5, 1])
    ds = FeatureDataset(fs, rows=[2, 0, 3], labels=[7, 0, 11], speakers=[1, 0, 2])
    assert len(ds) == 3 and ds.lengths == [5, 4, 1]
    batch = collate([ds[0], ds[1], ds[2]])
    assert isinstance(batch, Batch)
    assert batch.features.shape == (3, 5, 3)
    assert batch.lengths.tolist() == [5, 4, 1]
    assert batch.labels.tolist() == [7, 0, 11] and batch.speakers.tolist() == [1, 0, 2]
    for row, (fs_row, n) in enumerate([(2, 5), (0, 4), (3, 1)]):
        assert torch.equal(batch.features[row, :n], fs.get(fs_row))
        assert torch.all(batch.features[row, n:] == 0)
    moved = batch.to("cpu")
    assert torch.equal(moved.features, batch.features) and torch.equal(moved.speakers, batch.speakers)


# ------------------------------------------------------------------------------------------- sampler


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("n", [1, 7, 64, 1000])
def test_every_index_exactly_once_per_epoch(shuffle: bool, n: int) -> None:
    sampler = BucketBatchSampler(LENGTHS[:n], batch_size=16, shuffle=shuffle, seed=3, pool=4)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(_flat(batches)) == list(range(n))
        assert all(1 <= len(b) <= 16 for b in batches)
        assert len(sampler) == len(batches)


def test_deterministic_per_seed_and_epoch_and_different_across_epochs() -> None:
    def run(seed: int, epoch: int) -> list[list[int]]:
        sampler = BucketBatchSampler(LENGTHS, batch_size=16, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert run(0, 0) == run(0, 0)
    assert run(5, 3) == run(5, 3)
    assert run(0, 0) != run(0, 1)
    assert run(0, 0) != run(1, 0)
    assert run(0, 1) != run(1, 1)
    # Not just a different batch order: the groups of clips themselves change between epochs.
    assert {tuple(sorted(b)) for b in run(0, 0)} != {tuple(sorted(b)) for b in run(0, 1)}


def test_iterating_twice_in_one_epoch_replays() -> None:
    sampler = BucketBatchSampler(LENGTHS, batch_size=32, shuffle=True, seed=0)
    sampler.set_epoch(4)
    assert list(sampler) == list(sampler)


def test_bucketing_keeps_padding_small() -> None:
    sampler = BucketBatchSampler(LENGTHS, batch_size=16, shuffle=True, seed=0)
    bucketed = _padding_ratio(list(sampler), LENGTHS)
    random_batches = list(
        BatchSampler(RandomSampler(range(len(LENGTHS)), generator=torch.Generator().manual_seed(0)), 16, False)
    )
    random = _padding_ratio(random_batches, LENGTHS)
    assert random > 0.5  # lengths 30-600: random batches are mostly padding
    assert bucketed < 0.05
    assert bucketed < random / 10


def test_evaluation_order_is_sorted_and_ignores_epoch() -> None:
    sampler = BucketBatchSampler(LENGTHS, batch_size=16, shuffle=False, seed=0)
    first = list(sampler)
    sampler.set_epoch(9)
    assert list(sampler) == first
    order = _flat(first)
    assert [LENGTHS[i] for i in order] == sorted(LENGTHS)
    assert all(len(b) == 16 for b in first[:-1])


@pytest.mark.parametrize("n", [320, 336])  # 20 and 21 batches of 16
def test_ddp_shards_are_disjoint_equal_and_cover_everything(n: int) -> None:
    lengths = LENGTHS[:n]
    shards = []
    for rank in range(2):
        sampler = BucketBatchSampler(lengths, batch_size=16, shuffle=True, seed=1, num_replicas=2, rank=rank)
        sampler.set_epoch(2)
        shards.append(list(sampler))
        assert len(sampler) == len(shards[-1])
    assert len(shards[0]) == len(shards[1])  # every rank runs the same number of steps
    a, b = _flat(shards[0]), _flat(shards[1])
    assert set(a) | set(b) == set(range(n))
    if n == 320:  # an even number of batches: a true partition
        assert not set(a) & set(b)
        assert len(a) + len(b) == n
    else:  # an odd one: one batch is repeated on the short rank so both step equally often
        assert len(shards[0]) == 11
        duplicated = set(a) & set(b)
        assert duplicated == set(shards[1][-1]) == set(shards[0][0])
        assert len(a) + len(b) - len(duplicated) == n


def test_ddp_eval_shards_partition() -> None:
    shards = [
        _flat(list(BucketBatchSampler(LENGTHS[:100], 16, shuffle=False, num_replicas=2, rank=r))) for r in range(2)
    ]
    assert sorted(shards[0] + shards[1]) == list(range(100))
    lens = [len(BucketBatchSampler(LENGTHS[:100], 16, shuffle=False, num_replicas=2, rank=r)) for r in range(2)]
    assert lens == [4, 3]  # 7 batches, not padded


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_size=0"):
        BucketBatchSampler(LENGTHS, batch_size=0, shuffle=True)


def test_dataloader_with_the_sampler() -> None:
    lengths = [int(x) for x in np.random.default_rng(1).integers(1, 40, size=50)]
    fs = _feature_set(lengths)
    ds = FeatureDataset(fs, rows=range(50), labels=[i % 12 for i in range(50)], speakers=[i % 5 for i in range(50)])
    loader = DataLoader(ds, batch_sampler=BucketBatchSampler(ds.lengths, 8, shuffle=True), collate_fn=collate)
    seen = []
    for batch in loader:
        assert batch.features.shape[1] == int(batch.lengths.max())
        for row in range(len(batch.labels)):
            clip = int(batch.features[row, 0, 0]) - 1  # _feature_set fills clip i with i + 1
            seen.append(clip)
            assert int(batch.lengths[row]) == lengths[clip]
            assert int(batch.labels[row]) == clip % 12 and int(batch.speakers[row]) == clip % 5
    assert sorted(seen) == list(range(50))


def test_lightning_reaches_the_bucket_sampler_each_epoch() -> None:
    """Lightning sets the epoch on dataloader.sampler / batch_sampler.sampler only; the training order must follow."""
    from lightning.fabric.utilities.data import _set_sampler_epoch
    from torch.utils.data import DataLoader

    lengths = list(range(10, 74))
    sampler = BucketBatchSampler(lengths, batch_size=4, shuffle=True, seed=0)
    loader = DataLoader(list(range(len(lengths))), batch_sampler=sampler)
    first = list(sampler)
    _set_sampler_epoch(loader, 3)
    assert sampler.epoch == 3 and list(sampler) != first
    _set_sampler_epoch(loader, 0)
    assert list(sampler) == first  # a seed still replays exactly
