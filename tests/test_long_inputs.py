"""Long clips in memory bounds: streamed decoding, chunked extraction, the max_seconds crop, frame-capped batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from audio_fixtures import make_crema_tree, write_wav
from hydra.utils import instantiate

from ser.data import cache as cache_mod
from ser.data.audio import load_audio, stream_audio
from ser.data.batching import BucketBatchSampler, FeatureDataset, LengthLimits, centre_crop
from ser.data.cache import NON_FINITE, SILENT, CacheSettings, FeatureCache, FeatureSet
from ser.data.chunked import extract_chunked
from ser.data.corpora import CorpusSet, build_index
from ser.data.datamodule import SERDataModule
from ser.data.report import format_report
from ser.data.splits import SplitSpec
from ser.features import MFCC, LogMel

FEATURES = {"_target_": "ser.features.LogMel", "sample_rate": 16000, "n_mels": 16}


def _whole(extractor: torch.nn.Module, wave: np.ndarray) -> torch.Tensor:
    with torch.inference_mode():
        feats, frames = extractor(torch.from_numpy(wave)[None])
    return feats[0, : int(frames[0])]


def _blocks(wave: np.ndarray, size: int) -> list[np.ndarray]:
    return [wave[i : i + size] for i in range(0, wave.size, size)]


# ------------------------------------------------------------------ chunked extraction = whole-clip extraction


@pytest.mark.parametrize(
    "extractor",
    [
        LogMel(n_mels=16),
        LogMel(n_fft=320, win_length=320, hop_length=160, n_mels=16),  # pad a whole number of hops
        LogMel(n_fft=401, win_length=400, hop_length=100, n_mels=16),  # odd n_fft
        MFCC(n_mfcc=13, deltas=2, n_mels=32),  # deltas reach 4 frames further
    ],
    ids=["logmel", "logmel-320", "logmel-odd", "mfcc-deltas"],
)
@pytest.mark.parametrize("samples", [4000, 16000, 16001, 16159, 33333])
def test_chunked_extraction_gives_the_whole_clip_frames(extractor: torch.nn.Module, samples: int) -> None:
    wave = (np.random.default_rng(samples).standard_normal(samples) * 0.1).astype(np.float32)
    ref = _whole(extractor, wave)
    for chunk_frames in (1, 3, 7, 40):
        for block in (777, 1600, 5000):
            got = extract_chunked(extractor, _blocks(wave, block), chunk_frames)
            assert got.finite and got.samples == samples and got.peak == pytest.approx(np.abs(wave).max())
            assert got.features is not None and got.features.shape == ref.shape
            # Same frames up to float rounding of FFTs of other sizes (~2e-6 dB measured).
            torch.testing.assert_close(got.features, ref, atol=1e-4, rtol=0)


def test_chunked_extraction_stops_at_a_non_finite_block() -> None:
    blocks = [np.full(1600, 0.1, dtype=np.float32), np.array([0.1, np.nan], dtype=np.float32)]
    got = extract_chunked(LogMel(n_mels=16), blocks, 5)
    assert not got.finite and got.features is None


def test_an_extractor_without_context_is_not_chunked() -> None:
    class Whole(LogMel):
        @property
        def context_samples(self) -> None:
            return None

    with pytest.raises(ValueError, match="cannot be chunked"):
        extract_chunked(Whole(n_mels=16), [np.zeros(1600, dtype=np.float32)], 5)


# ------------------------------------------------------------------ streamed decoding = whole-file decoding


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (44100, 2), (48000, 1)])
@pytest.mark.parametrize("block_seconds", [0.25, 0.5, 0.3])
def test_stream_audio_equals_load_audio(tmp_path: Path, rate: int, channels: int, block_seconds: float) -> None:
    path = write_wav(tmp_path / "x.wav", seconds=1.5, sr=rate, channels=channels, subtype="FLOAT", seed=rate)
    whole = load_audio(path, 16000)
    blocks = list(stream_audio(path, 16000, block_seconds))
    assert len(blocks) > 1 and all(b.dtype == np.float32 for b in blocks)
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-6, rtol=0)


# ------------------------------------------------------------------ the feature cache with long clips


@pytest.fixture
def short_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """BATCH_SECONDS = 1 s, so test clips of a few seconds take the long-clip path; records padded batch sizes."""
    monkeypatch.setattr(cache_mod, "BATCH_SECONDS", 1.0)
    padded: list[int] = []
    original = FeatureCache._extract

    def recording(extractor, batch, out) -> None:
        padded.append(len(batch) * max(w.size for _, w in batch))
        original(extractor, batch, out)

    monkeypatch.setattr(FeatureCache, "_extract", staticmethod(recording))
    return padded


def _long_tree(tmp_path: Path) -> Path:
    root = tmp_path / "crema-d"
    sentences = ("DFA", "IEO", "TIE", "IOM", "IWW", "TAI")  # 6 clips a class: a stratified split needs several
    make_crema_tree(
        root, actors=["1001", "1002"], emotions=["ANG", "HAP", "SAD", "NEU"], sentences=sentences, seconds=(0.2, 0.9)
    )
    write_wav(root / "AudioWAV" / "1001_IEO_NEU_XX.wav", seconds=3.7, sr=44100, channels=2, seed=5)
    write_wav(root / "AudioWAV" / "1002_IEO_NEU_XX.wav", seconds=2.2, seed=6)
    return root


def test_long_clips_are_streamed_with_the_same_features(tmp_path: Path, short_batches: list[int]) -> None:
    clips = build_index(["crema_d"], {"crema_d": _long_tree(tmp_path)}).clips
    cache = FeatureCache(tmp_path / "cache", {"n_mels": 16}, lambda: LogMel(n_mels=16), num_workers=2, progress=False)
    fs = cache.load_or_build(clips)
    assert fs.clip_ids == [c.clip_id for c in clips] and not fs.excluded
    extractor = LogMel(n_mels=16)
    for i, clip in enumerate(clips):
        torch.testing.assert_close(fs.get(i), _whole(extractor, load_audio(clip.path)), atol=1e-3, rtol=1e-4)
    # Every batch padded to at most 1 s of audio: the two long clips never went through a batch.
    assert short_batches and max(short_batches) <= 16000
    assert sum(short_batches) < sum(int(fs.lengths[i]) * 160 for i in range(len(fs)))


def test_an_extractor_without_context_gets_long_clips_whole(tmp_path: Path, short_batches: list[int]) -> None:
    class Whole(LogMel):
        @property
        def context_samples(self) -> None:
            return None

    clips = build_index(["crema_d"], {"crema_d": _long_tree(tmp_path)}).clips
    fs = FeatureCache(tmp_path / "c", {"w": 1}, lambda: Whole(n_mels=16), num_workers=2, progress=False).build(clips)
    long_ids = {"crema_d/1001_IEO_NEU_XX", "crema_d/1002_IEO_NEU_XX"}
    assert set(fs.clip_ids) == {c.clip_id for c in clips}
    assert sorted(n for n in short_batches if n > 16000) == [35200, 59200]  # 2.2 s and 3.7 s, each alone
    extractor = LogMel(n_mels=16)
    for i, cid in enumerate(fs.clip_ids):
        if cid in long_ids:
            wave = load_audio(next(c.path for c in clips if c.clip_id == cid))
            torch.testing.assert_close(fs.get(i), _whole(extractor, wave), atol=1e-3, rtol=1e-4)


def test_a_long_nan_or_silent_clip_is_excluded(tmp_path: Path, short_batches: list[int]) -> None:
    root = _long_tree(tmp_path)
    nan = np.full(3 * 16000, 0.1, dtype=np.float32)
    nan[40000] = np.nan
    sf.write(root / "AudioWAV" / "1001_IEO_NEU_XX.wav", nan, 16000, subtype="FLOAT")
    write_wav(root / "AudioWAV" / "1002_IEO_NEU_XX.wav", seconds=2.2, silent=True)
    clips = build_index(["crema_d"], {"crema_d": root}).clips
    fs = FeatureCache(tmp_path / "c", {}, lambda: LogMel(n_mels=16), num_workers=2, progress=False).build(clips)
    reasons = {Path(e.path).name: e.reason for e in fs.excluded}
    assert reasons == {"1001_IEO_NEU_XX.wav": NON_FINITE, "1002_IEO_NEU_XX.wav": SILENT}


def test_batches_pad_to_at_most_batch_seconds(tmp_path: Path, short_batches: list[int]) -> None:
    """Before, clips were added until the batch held 60 s, each padded to the longest: a 59 s clip padded 20 others."""
    root = tmp_path / "crema-d"
    make_crema_tree(root, actors=["1001"], emotions=["ANG", "HAP", "SAD", "NEU"], seconds=(0.1, 0.95))
    clips = build_index(["crema_d"], {"crema_d": root}).clips
    FeatureCache(tmp_path / "c", {}, lambda: LogMel(n_mels=16), num_workers=2, progress=False).build(clips)
    assert len(short_batches) > 1 and max(short_batches) <= 16000


# ------------------------------------------------------------------ crop and frame-capped batches


def test_centre_crop() -> None:
    assert centre_crop(10, None) == (0, 10)
    assert centre_crop(10, 10) == (0, 10)
    assert centre_crop(10, 4) == (3, 7)
    assert centre_crop(11, 4) == (3, 7)


def test_dataset_serves_the_centre_of_long_clips() -> None:
    lengths = [5, 12, 3]
    feats = torch.arange(sum(lengths) * 2, dtype=torch.float32).reshape(-1, 2)
    fs = FeatureSet(["a", "b", "c"], feats, torch.tensor([0, 5, 17, 20]))
    ds = FeatureDataset(fs, [0, 1, 2], [0, 1, 2], [0, 0, 0], max_frames=4)
    assert ds.lengths == [4, 4, 3]
    assert torch.equal(ds[1][0], fs.get(1)[4:8]) and torch.equal(ds[0][0], fs.get(0)[0:4])
    assert torch.equal(ds[2][0], fs.get(2))


LENGTHS = [int(n) for n in np.random.default_rng(0).integers(100, 400, size=300)] + [60000, 180000]


@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_stay_within_max_frames(shuffle: bool) -> None:
    sampler = BucketBatchSampler(LENGTHS, batch_size=64, shuffle=shuffle, seed=1, max_frames=20000)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
    for b in batches:
        assert len(b) <= 64
        assert len(b) == 1 or len(b) * max(LENGTHS[i] for i in b) <= 20000
    assert [300] in batches and [301] in batches  # each long clip alone


@pytest.mark.parametrize("shuffle", [True, False])
def test_max_frames_changes_nothing_where_it_does_not_bind(shuffle: bool) -> None:
    lengths = LENGTHS[:300]
    plain = BucketBatchSampler(lengths, batch_size=32, shuffle=shuffle, seed=4)
    capped = BucketBatchSampler(lengths, batch_size=32, shuffle=shuffle, seed=4, max_frames=32 * 400)
    for epoch in (0, 3):
        plain.set_epoch(epoch)
        capped.set_epoch(epoch)
        assert list(plain) == list(capped)


def test_capped_batches_split_evenly_across_ranks() -> None:
    for shuffle in (True, False):
        per_rank = [
            BucketBatchSampler(LENGTHS, 64, shuffle=shuffle, seed=2, num_replicas=2, rank=r, max_frames=20000)
            for r in range(2)
        ]
        assert [len(s) for s in per_rank] == [len(list(s)) for s in per_rank]
        if shuffle:
            assert len(per_rank[0]) == len(per_rank[1])


def test_length_limits_from_config() -> None:
    assert LengthLimits.from_config({}) == LengthLimits(20.0, 65536)
    assert LengthLimits.from_config({"max_seconds": None, "max_batch_frames": None}) == LengthLimits(None, None)
    with pytest.raises(ValueError, match="max_seconds"):
        LengthLimits(max_seconds=0)
    with pytest.raises(ValueError, match="max_batch_frames"):
        LengthLimits(max_batch_frames=0)


# ------------------------------------------------------------------ the DataModule: crop, report, cache key


def _dm(root: Path, cache_dir: Path, limits: LengthLimits) -> SERDataModule:
    dm = SERDataModule(
        CorpusSet(names=("crema_d",), roots={"crema_d": str(root)}),
        instantiate(FEATURES),
        split=SplitSpec(strategy="random", seed=0),
        batch_size=8,
        cache=CacheSettings(dir=str(cache_dir), features=FEATURES),
        progress=False,
        limits=limits,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_datamodule_crops_long_clips_and_reports_the_cut(tmp_path: Path) -> None:
    root = _long_tree(tmp_path)
    dm = _dm(root, tmp_path / "cache", LengthLimits(max_seconds=1.0, max_batch_frames=4 * 101))
    assert dm.max_frames == 101  # 1 s at hop 160, centred framing
    loaders = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}
    for part, loader in loaders.items():
        ds = dm.datasets[part]
        assert max(ds.lengths) <= 101 and all(ds[i][0].shape[0] == n for i, n in enumerate(ds.lengths))
        for batch in loader():
            assert batch.features.shape[0] * batch.features.shape[1] <= 4 * 101
    cropped = dm.report["cropped"]
    assert cropped["max_seconds"] == 1.0 and cropped["how"] == "centre" and cropped["clips"] == 2
    assert {Path(f["path"]).name: f["seconds"] for f in cropped["files"]} == {
        "1001_IEO_NEU_XX.wav": 3.71,  # seconds of the frames, as the report counts hours: 371 x 10 ms
        "1002_IEO_NEU_XX.wav": 2.21,
    }
    assert all(f["kept"] == 1.01 for f in cropped["files"])
    assert cropped["seconds_cut"] == pytest.approx(3.71 + 2.21 - 2 * 1.01)
    text = format_report(dm.report)
    assert "Cropped to their centre 1 s (data.max_seconds): 2 clips" in text
    assert "1001_IEO_NEU_XX.wav: 3.7 s -> 1.0 s" in text
    # The cache holds whole clips: its key does not depend on the crop, and no limit means no crop.
    uncut = _dm(root, tmp_path / "cache", LengthLimits(max_seconds=None, max_batch_frames=None))
    assert uncut.feature_cache().path_for(uncut.clips) == dm.feature_cache().path_for(dm.clips)
    assert uncut.report["cropped"]["clips"] == 0
    assert max(max(uncut.datasets[p].lengths) for p in ("train", "val", "test")) == 1 + 59200 // 160
    assert "Cropped" not in format_report(uncut.report)
