"""Stacked front ends: log-mels and eGeMAPS side by side on one frame grid, padding-proof, through a checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("opensmile")

from checkpoint_fixtures import CRNN, SR, build_checkpoint, speechlike

from ser.data.cache import cache_key, feature_identity
from ser.export import ExportedModel, export
from ser.features import MFCC, FeatureExtractor, LogMel
from ser.features.egemaps import EGeMAPS
from ser.features.stacked import Stacked
from ser.inference.predictor import Predictor


@pytest.fixture(scope="module")
def both() -> Stacked:
    return Stacked({"logmel": LogMel(SR, n_mels=16), "egemaps": EGeMAPS(SR)})


def test_opensmile_centres_its_first_frame_where_egemaps_says() -> None:
    frames = EGeMAPS(SR).smile().process_signal(speechlike(0.5), SR).index
    start, end = frames[0]
    assert (start + end).total_seconds() / 2 * SR == pytest.approx(EGeMAPS(SR).first_frame_centre)
    assert LogMel(SR).first_frame_centre == 0  # centred framing


def test_each_view_keeps_its_channels_on_one_grid(both: Stacked) -> None:
    assert isinstance(both, FeatureExtractor)
    assert (both.out_dim, both.min_samples, both.hop_length) == (16 + 25, 960, 160)
    assert both.offsets == {"logmel": 1, "egemaps": 0}  # log-mel frame 1 is centred where eGeMAPS frame 0 is
    wave = torch.from_numpy(speechlike(1.0)).unsqueeze(0)
    feats, frames = both(wave)
    logmel, _ = both.views["logmel"](wave)
    egemaps, _ = both.views["egemaps"](wave)
    assert frames.tolist() == [egemaps.shape[1]] == [int(both.num_frames(SR))] == [96]
    torch.testing.assert_close(feats[0, :, :16], logmel[0, 1:97], rtol=0, atol=0)
    torch.testing.assert_close(feats[0, :, 16:], egemaps[0], rtol=0, atol=0)


def test_padding_never_changes_a_clip(both: Stacked) -> None:
    clips = [speechlike(s, seed=i) for i, s in enumerate((1.2, 0.4, 0.07))]
    batch = torch.zeros(3, clips[0].size)
    for row, clip in enumerate(clips):
        batch[row, : clip.size] = torch.from_numpy(clip)
    feats, frames = both(batch, torch.tensor([c.size for c in clips]))
    for row, clip in enumerate(clips):
        alone, alone_frames = both(torch.from_numpy(clip).unsqueeze(0))
        assert int(frames[row]) == int(alone_frames[0]) == int(both.num_frames(clip.size))
        torch.testing.assert_close(feats[row, : frames[row]], alone[0], rtol=0, atol=1e-5)
        assert not feats[row, frames[row] :].any()


def test_views_that_frame_alike_keep_chunked_extraction() -> None:
    spectral = Stacked({"logmel": LogMel(SR, n_mels=16), "mfcc": MFCC(n_mfcc=8, sample_rate=SR, n_mels=16)})
    assert spectral.offsets == {"logmel": 0, "mfcc": 0} and spectral.context_samples == 512
    assert Stacked({"logmel": LogMel(SR), "egemaps": EGeMAPS(SR)}).context_samples is None  # openSMILE: whole clips


def test_views_that_cannot_line_up_are_refused() -> None:
    with pytest.raises(ValueError, match=r"features\.views\.slow: 16000 Hz, hop 320"):
        Stacked({"logmel": LogMel(SR), "slow": LogMel(SR, hop_length=320, win_length=400)})
    with pytest.raises(ValueError, match="features.views is empty"):
        Stacked({})
    with pytest.raises(ValueError, match=r"too short: eGeMAPS needs at least 960 samples"):
        Stacked({"logmel": LogMel(SR), "egemaps": EGeMAPS(SR)})(torch.zeros(1, 500))


STACKED = {
    "_target_": "ser.features.stacked.Stacked",
    "views": {
        "logmel": {"_target_": "ser.features.LogMel", "sample_rate": SR, "n_mels": 16},
        "egemaps": {"_target_": "ser.features.egemaps.EGeMAPS", "sample_rate": SR},
    },
}


def test_a_checkpoint_on_stacked_features_predicts(tmp_path: Path) -> None:
    predictor = Predictor.from_checkpoint(build_checkpoint(tmp_path / "best.ckpt", features=STACKED))
    assert predictor.extractor.out_dim == 16 + 25
    waves = [speechlike(1.5), speechlike(0.8, seed=1)]
    together = predictor.predict_waves(waves)
    assert together.shape == (2, 12) and np.allclose(together.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(predictor.predict_waves(waves[1:]), together[1:], atol=1e-6)


def test_the_views_order_names_the_cache_entry() -> None:
    logmel, egemaps = STACKED["views"]["logmel"], STACKED["views"]["egemaps"]
    first = {**STACKED, "views": {"logmel": logmel, "egemaps": egemaps}}
    swapped = {**STACKED, "views": {"egemaps": egemaps, "logmel": logmel}}
    # Same views, channels in another order: another cache entry (a sorted-key hash alone would share one).
    assert cache_key([], feature_identity(SR, first)) != cache_key([], feature_identity(SR, swapped))
    assert cache_key([], feature_identity(SR, first)) == cache_key([], feature_identity(SR, dict(first)))
    # Plain extractors keep the key they had before views existed.
    assert feature_identity(SR, logmel) == {"sample_rate": SR, "features": logmel}


def test_export_of_a_stacked_checkpoint(tmp_path: Path) -> None:
    ckpt = build_checkpoint(tmp_path / "best.ckpt", model=CRNN, features=STACKED)
    path = export(ckpt, "torchscript", tmp_path / "model.pt", check=True)  # its example clips are 50-100 ms
    assert ExportedModel(path).metadata["features"]["views"]["egemaps"]["_target_"].endswith("EGeMAPS")
