"""Feature normalization: global, per utterance, per speaker; the same at training and at prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser.data.batching import FeatureDataset
from ser.data.cache import FeatureSet
from ser.data.normalization import moments, standardize
from ser.features import LogMel
from ser.inference.predictor import Predictor
from ser.models.losses import CategoricalLoss
from ser.models.lstm import LSTMClassifier


def feature_set(blocks: list[torch.Tensor]) -> FeatureSet:
    offsets = torch.tensor([0, *np.cumsum([len(b) for b in blocks]).tolist()])
    return FeatureSet([f"c{i}" for i in range(len(blocks))], torch.cat(blocks), offsets)


def test_moments_match_torch_over_all_frames():
    blocks = [torch.randn(5, 3) * 4 + 2, torch.randn(9, 3)]
    mean, std = moments(blocks)
    allx = torch.cat(blocks)
    torch.testing.assert_close(mean, allx.mean(0))
    torch.testing.assert_close(std, allx.std(0, unbiased=False))
    assert float(moments([torch.ones(4, 2)])[1].min()) > 0  # a constant dimension is not divided by zero


@pytest.mark.parametrize("normalization", ["utterance", "speaker"])
def test_dataset_normalizes_each_utterance_or_speaker(normalization):
    torch.manual_seed(0)
    # Two speakers with very different levels; speaker 1 has two clips.
    blocks = [torch.randn(6, 4) - 50, torch.randn(8, 4) + 30, torch.randn(4, 4) + 34]
    fs = feature_set(blocks)
    speakers = [0, 1, 1]
    stats = {0: moments([blocks[0]]), 1: moments(blocks[1:])}
    ds = FeatureDataset(fs, [0, 1, 2], [0, 1, 2], speakers, normalization=normalization, speaker_stats=stats)
    items = [ds[i][0] for i in range(3)]
    if normalization == "utterance":
        for x in items:
            torch.testing.assert_close(x.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    else:
        torch.testing.assert_close(torch.cat(items[1:]).mean(0), torch.zeros(4), atol=1e-5, rtol=0)
        assert float(items[1].mean()) != pytest.approx(0.0, abs=1e-3)  # one clip alone is not centred
    with pytest.raises(ValueError, match="every speaker"):
        FeatureDataset(fs, [0], [0], [5], normalization="speaker", speaker_stats=stats)


def test_predictor_normalizes_as_training_did():
    torch.manual_seed(0)
    extractor = LogMel(sample_rate=16000, n_mels=16)
    net = LSTMClassifier(16, hidden_size=8, dense_size=8).eval()
    loss = CategoricalLoss()
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(8000).astype(np.float32) * a for a in (0.05, 0.5)]

    def by_hand(wave: np.ndarray, stats=None) -> torch.Tensor:
        feats, frames = extractor(torch.from_numpy(wave)[None])
        x = feats[0, : int(frames[0])]
        x = standardize(x, stats or moments([x]))
        return loss.probabilities(net(x[None], frames))[0]

    utt = Predictor(net, extractor, loss.probabilities, [str(i) for i in range(12)], 16000, normalization="utterance")
    got = utt.predict_waves(waves)
    for i, w in enumerate(waves):
        torch.testing.assert_close(torch.from_numpy(got[i]), by_hand(w), atol=1e-5, rtol=1e-4)

    spk = Predictor(net, extractor, loss.probabilities, [str(i) for i in range(12)], 16000, normalization="speaker")
    spk.fit_speaker(waves)  # both inputs are one speaker
    feats = [extractor(torch.from_numpy(w)[None]) for w in waves]
    stats = moments([f[0, : int(n[0])] for f, n in feats])
    got = spk.predict_waves(waves)
    for i, w in enumerate(waves):
        torch.testing.assert_close(torch.from_numpy(got[i]), by_hand(w, stats), atol=1e-5, rtol=1e-4)


def test_predict_one_speaker_normalizes_over_all_inputs(tmp_path):
    """``ser.predict one_speaker=true`` fits the speaker statistics on every input of the call."""
    import soundfile as sf

    from ser.predict import fit_one_speaker

    torch.manual_seed(0)
    extractor = LogMel(sample_rate=16000, n_mels=16)
    net = LSTMClassifier(16, hidden_size=8, dense_size=8).eval()
    loss = CategoricalLoss()
    rng = np.random.default_rng(1)
    paths = []
    for i, amp in enumerate((0.05, 0.5)):
        paths.append(tmp_path / f"{i}.wav")
        sf.write(paths[-1], (rng.standard_normal(8000) * amp).astype(np.float32), 16000)
    spk = Predictor(net, extractor, loss.probabilities, [str(i) for i in range(12)], 16000, normalization="speaker")
    fit_one_speaker(spk, [str(p) for p in paths])
    assert spk.speaker_stats is not None
    per_clip = Predictor(
        net, extractor, loss.probabilities, [str(i) for i in range(12)], 16000, normalization="speaker"
    )
    a = spk.predict_files([str(p) for p in paths])
    b = per_clip.predict_files([str(p) for p in paths])
    assert not np.allclose(a[0].probabilities, b[0].probabilities)  # the shared statistics change the inputs
