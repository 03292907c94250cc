"""Speed perturbation (augment=speed): resampled audio, one cache entry per speed, per-epoch draws, train only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from audio_fixtures import make_crema_tree, tone
from hydra.utils import instantiate
from lightning.fabric.utilities.data import _set_sampler_epoch

from ser.data.audio import change_speed, change_speed_stream
from ser.data.batching import BucketBatchSampler, FeatureDataset
from ser.data.cache import CacheSettings, FeatureCache, FeatureSet, cache_key
from ser.data.corpora import CorpusSet
from ser.data.datamodule import SERDataModule
from ser.data.speed import SpeedBatchSampler, SpeedDataset, SpeedPerturbation
from ser.train import build_datamodule, run
from ser.validate import problems

FEATURES = {"_target_": "ser.features.LogMel", "sample_rate": 16000, "n_mels": 16}
SPEED = SpeedPerturbation((0.9, 1.0, 1.1), seed=0)


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """CREMA-D alone: 3 male + 3 female actors x 3 emotions x 2 sentences, 0.4-1.0 s each."""
    root = tmp_path_factory.mktemp("data") / "crema-d"
    make_crema_tree(root, emotions=["ANG", "SAD", "HAP"], seconds=(0.4, 1.0))
    return {"crema_d": str(root)}


def _dm(roots: dict[str, str], cache: Path, speed: SpeedPerturbation | None = SPEED, **kwargs) -> SERDataModule:
    return SERDataModule(
        CorpusSet(names=("crema_d",), roots=roots),
        instantiate(FEATURES),
        cache=CacheSettings(dir=str(cache), features=FEATURES, workers=1),
        batch_size=4,
        progress=False,
        speed=speed,
        **kwargs,
    )


@pytest.fixture(scope="module")
def dm(roots: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> SERDataModule:
    module = _dm(roots, tmp_path_factory.mktemp("cache"))
    module.prepare_data()
    module.setup("fit")
    return module


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The speed of every FeatureCache.build from now on."""
    calls: list[float] = []
    original = FeatureCache.build

    def counting(self, clips):
        calls.append(self.speed)
        return original(self, clips)

    monkeypatch.setattr(FeatureCache, "build", counting)
    return calls


# -- the audio -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_change_speed_scales_length_tempo_and_pitch(factor: float) -> None:
    wave = tone(1.0, freq=440.0, seed=1)
    out = change_speed(wave, factor, 16000)
    assert out.dtype == np.float32 and abs(out.size - wave.size / factor) <= 1
    peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * 16000 / out.size
    assert peak_hz == pytest.approx(440.0 * factor, abs=2)  # pitch moves with tempo (Kaldi/sox speed)
    assert change_speed(wave, 1.0, 16000) is wave


def test_change_speed_in_blocks_equals_the_whole_clip() -> None:
    wave = tone(2.0, seed=2)
    blocks = [wave[:5000], wave[5000:21000], wave[21000:]]
    streamed = np.concatenate(list(change_speed_stream(iter(blocks), 0.9, 16000)))
    np.testing.assert_allclose(streamed, change_speed(wave, 0.9, 16000), atol=1e-6)


# -- the cache -----------------------------------------------------------------------------------------------


def test_speed_one_keeps_the_unperturbed_key_and_other_speeds_get_their_own(dm: SERDataModule) -> None:
    clips = dm.build_index().clips
    config = dm.feature_config()
    plain = dm.cache_dir / "features" / f"features-{cache_key(clips, config)}.pt"
    assert dm.feature_cache().path_for(clips) == dm.feature_cache(1.0).path_for(clips) == plain
    paths = {f: dm.feature_cache(f).path_for(clips) for f in (0.9, 1.1, 1.05)}
    assert len({plain, *paths.values()}) == 4
    for factor in (0.9, 1.1):
        assert json.loads(paths[factor].with_suffix(".json").read_text())["config"]["speed"] == factor


def test_a_perturbed_clip_has_about_1_over_f_the_frames(dm: SERDataModule) -> None:
    clips = dm.build_index().clips
    base = dm.feature_set
    for factor in (0.9, 1.1):
        fs = dm.feature_cache(factor).load_or_build(clips)
        assert fs.clip_ids == base.clip_ids
        ratio = (base.lengths.double() - 1) / (fs.lengths.double() - 1)  # LogMel: 1 + samples // hop frames
        assert torch.allclose(ratio, torch.full_like(ratio, factor), atol=0.03), factor
        assert (fs.lengths - base.lengths / factor).abs().max() <= 2


def test_each_speed_is_cached_once_and_epochs_compute_nothing(
    roots: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = _count_builds(monkeypatch)
    first = _dm(roots, tmp_path)
    first.prepare_data()
    assert sorted(builds) == [0.9, 1.0, 1.1]
    assert len(list((tmp_path / "features").glob("features-*.pt"))) == 3
    first.setup("fit")
    loader = first.train_dataloader()
    for epoch in (0, 1):
        loader.batch_sampler.set_epoch(epoch)
        assert sum(len(b.labels) for b in loader) == len(first.datasets["train"])
    second = _dm(roots, tmp_path)  # the next run: every speed is read back
    second.prepare_data()
    second.setup("fit")
    plain = _dm(roots, tmp_path, speed=None)  # and a run without speed perturbation reads the 1.0 entry
    plain.prepare_data()
    plain.setup("fit")
    assert len(builds) == 3
    assert torch.equal(plain.feature_set.features, first.feature_set.features)


# -- the draws -----------------------------------------------------------------------------------------------


def test_draws_repeat_under_the_seed_and_differ_between_epochs() -> None:
    a = SPEED.draw(200, epoch=0)
    assert np.array_equal(a, SpeedPerturbation((0.9, 1.0, 1.1), seed=0).draw(200, epoch=0))
    assert set(a.tolist()) == {0.9, 1.0, 1.1}
    assert not np.array_equal(a, SPEED.draw(200, epoch=1))
    assert not np.array_equal(a, SpeedPerturbation((0.9, 1.0, 1.1), seed=1).draw(200, epoch=0))


def test_loader_batches_repeat_under_the_seed_and_lightning_sets_the_epoch(
    dm: SERDataModule, roots: dict[str, str]
) -> None:
    again = _dm(roots, dm.cache_dir)
    again.setup("fit")
    a, b = dm.train_dataloader(), again.train_dataloader()
    assert isinstance(a.batch_sampler, SpeedBatchSampler)
    epochs = []
    for epoch in (0, 1):
        _set_sampler_epoch(a, epoch)  # what Lightning's fit loop calls at each epoch start
        b.batch_sampler.set_epoch(epoch)
        assert a.batch_sampler.epoch == epoch
        assert list(a.batch_sampler) == list(b.batch_sampler)
        epochs.append(a.batch_sampler.items.copy())
    assert not np.array_equal(epochs[0], epochs[1])  # another speed for some clips


def test_train_batches_are_perturbed_val_and_test_never(dm: SERDataModule) -> None:
    loader = dm.train_dataloader()
    ds, n = dm.speed_train, len(dm.datasets["train"])
    speeds = set()
    for batch, items in zip(loader, list(loader.batch_sampler), strict=True):
        assert batch.lengths.tolist() == [int(ds.lengths.reshape(-1)[i]) for i in items]
        for row, item in enumerate(items):
            x = ds[item][0]
            assert torch.equal(batch.features[row, : x.shape[0]], x)
            speeds.add(ds.speeds[item // n])
    assert speeds == {0.9, 1.0, 1.1}
    for part in ("val", "test"):
        loader = {"val": dm.val_dataloader, "test": dm.test_dataloader}[part]()
        assert type(loader.batch_sampler) is BucketBatchSampler
        assert loader.dataset is dm.datasets[part] and loader.dataset.features is dm.feature_set
        rows = [dm.feature_set.clip_ids.index(dm.clips[i].clip_id) for i in dm.split.part(part)]
        served = sorted(int(n) for b in loader for n in b.lengths)
        assert served == sorted(int(dm.feature_set.lengths[r]) for r in rows)


def test_normalization_statistics_are_of_the_unperturbed_clips(dm: SERDataModule, roots: dict[str, str]) -> None:
    plain = _dm(roots, dm.cache_dir, speed=None)
    plain.setup("fit")
    for a, b in zip(dm.feature_stats(), plain.feature_stats(), strict=True):
        assert torch.equal(a, b)
    speaker = _dm(roots, dm.cache_dir, normalization="speaker")
    speaker.setup("fit")
    assert all(v.speaker_stats is speaker.speaker_stats for v in speaker.speed_train.variants)


def _toy(lengths: list[int], dim: int = 2) -> FeatureDataset:
    offsets = torch.tensor([0, *np.cumsum(lengths)])
    fs = FeatureSet([f"c{i}" for i in range(len(lengths))], torch.randn(int(offsets[-1]), dim), offsets)
    return FeatureDataset(fs, range(len(lengths)), [0] * len(lengths), [0] * len(lengths))


def test_a_clip_a_speed_lacks_is_served_unperturbed_and_batches_stay_capped() -> None:
    base = _toy([100, 200, 300, 400])
    slow = _toy([111, 333, 444])  # clip 1 is missing at 0.9 (e.g. silent once resampled)
    ds = SpeedDataset([1.0, 0.9], [base, slow], [[0, 1, 2, 3], [0, -1, 1, 2]])
    items = ds.items(np.array([0.9, 0.9, 0.9, 1.0]))
    assert items.tolist() == [4, 1, 6, 3]
    assert ds.lengths.reshape(-1)[items].tolist() == [111, 200, 333, 400]
    assert torch.equal(ds[6][0], slow[1][0])
    sampler = SpeedBatchSampler(ds, SpeedPerturbation((0.9,), seed=3), batch_size=4, max_frames=700)
    for batch in sampler:
        lengths = ds.lengths.reshape(-1)[batch]
        assert len(batch) == 1 or len(batch) * lengths.max() <= 700


# -- the settings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factors", [[], [0.9, 0.0], [-1.0], [0.9, 0.9], "fast", [float("nan")]])
def test_bad_factors_are_named(factors) -> None:
    with pytest.raises(ValueError, match=r"^augment\.speed\.factors=.*need a non-empty list of positive numbers"):
        SpeedPerturbation.from_config({"speed": {"factors": factors}}, seed=0)


@pytest.mark.parametrize("value", ["[]", "[0.9,0]", "[1.1,1.1]"])
def test_validate_names_bad_factors_before_any_work(train_config, value: str) -> None:
    (problem,) = problems(train_config("augment=speed", f"augment.speed.factors={value}"))
    assert problem.startswith("augment.speed.factors=") and "\n" not in problem


def test_hydra_composes_the_speed_options(train_config) -> None:
    assert build_datamodule(train_config()).speed is None  # augment=none stays the default
    cfg = train_config("augment=speed", "seed=7")
    assert list(cfg.augment.keys()) == ["speed"] and list(cfg.augment.speed.factors) == [0.9, 1.0, 1.1]
    assert build_datamodule(cfg).speed == SpeedPerturbation((0.9, 1.0, 1.1), seed=7)
    both = train_config("augment=speed_specaugment", "augment.speed.factors=[0.95,1.05]")
    assert set(both.augment.keys()) == {"speed", "spec_augment"}
    assert build_datamodule(both).speed.factors == (0.95, 1.05)
    assert problems(both) == []


def test_training_with_speed_perturbation_runs(
    train_config, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    epochs: list[int] = []
    original = SpeedBatchSampler.set_epoch

    def recording(self, epoch: int) -> None:
        epochs.append(epoch)
        original(self, epoch)

    monkeypatch.setattr(SpeedBatchSampler, "set_epoch", recording)
    metrics = run(train_config("augment=speed", "trainer.max_epochs=2", "callbacks.early_stopping=null"))
    assert metrics["status"] == "ok" and metrics["uar"] is not None
    assert 1 in epochs  # Lightning reached the sampler: the second epoch drew its own speeds
    speeds = {
        json.loads(p.read_text())["config"].get("speed") for p in (shared_cache / "features").glob("features-*.json")
    }
    assert {0.9, 1.1} <= speeds
