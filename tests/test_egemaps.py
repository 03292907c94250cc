"""eGeMAPS extractor (openSMILE) on synthesized tones and noise: the extractor contract and openSMILE's framing."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

pytest.importorskip("opensmile")

from ser.features import FeatureExtractor
from ser.features.egemaps import EGeMAPS

SR = 16000


def _tone(num: int, amp: float = 0.3, freq: float = 220.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone (voiced-like) with a little noise."""
    t = np.arange(num) / SR
    wave = sum(amp / k * np.sin(2 * np.pi * k * freq * t) for k in (1, 2, 3))
    return (wave + 0.003 * np.random.default_rng(seed).standard_normal(num)).astype(np.float32)


def _noise(num: int, std: float = 0.05, seed: int = 1) -> np.ndarray:
    return (std * np.random.default_rng(seed).standard_normal(num)).astype(np.float32)


@pytest.fixture(scope="module")
def m() -> EGeMAPS:
    return EGeMAPS(sample_rate=SR)


def test_declares_the_contract(m: EGeMAPS) -> None:
    assert isinstance(m, FeatureExtractor)
    assert (m.sample_rate, m.hop_length, m.out_dim, m.min_samples) == (SR, 160, 25, 960)
    assert len(m.names) == 25 and m.names[0] == "Loudness_sma3"
    assert EGeMAPS(sample_rate=48000).hop_length == 480
    with pytest.raises(ValueError, match="multiple of 100"):
        EGeMAPS(sample_rate=22050)


def test_num_frames_is_what_opensmile_gives(m: EGeMAPS) -> None:
    """openSMILE frames a clip alone as N // hop - 4 frames (no padding at either end)."""
    smile = m.smile()
    for n in (960, 1119, 1120, 4321, SR, 3 * SR + 77):
        direct = smile.process_signal(_noise(n, seed=n), SR)
        assert len(direct) == int(m.num_frames(n)) == int(m.num_frames(torch.tensor(n)))
        assert not direct.isna().any().any()
    assert m.num_frames(torch.tensor([0, 959, 960, 48000])).tolist() == [0, 1, 2, 296]


def test_batch_shapes_finite_and_padding_invariant(m: EGeMAPS) -> None:
    lengths = [m.min_samples, 7777, SR, int(1.5 * SR)]
    clips = [_tone(n, seed=i) if i % 2 else _noise(n, seed=i) for i, n in enumerate(lengths)]
    width = max(lengths) + 999
    batch = torch.zeros(len(clips), width)
    for i, clip in enumerate(clips):
        batch[i, : clip.size] = torch.from_numpy(clip)
    feats, frame_lengths = m(batch, torch.tensor(lengths))

    assert feats.shape == (len(clips), int(m.num_frames(torch.tensor(width))), 25)
    assert feats.dtype == torch.float32 and frame_lengths.dtype == torch.long
    assert frame_lengths.tolist() == [n // 160 - 4 for n in lengths]
    assert torch.isfinite(feats).all()
    for i, clip in enumerate(clips):
        alone, alone_len = m(torch.from_numpy(clip)[None])
        n_frames = int(frame_lengths[i])
        assert int(alone_len[0]) == n_frames == alone.shape[1]
        assert torch.equal(feats[i, :n_frames], alone[0])  # each clip is extracted alone: bit-identical
        assert torch.count_nonzero(feats[i, n_frames:]) == 0
    # Same numbers as openSMILE itself, NaN aside.
    direct = m.smile().process_signal(clips[2], SR).to_numpy(dtype=np.float32)
    np.testing.assert_array_equal(feats[2, : int(frame_lengths[2])].numpy(), np.nan_to_num(direct))


def test_louder_signal_reads_louder(m: EGeMAPS) -> None:
    quiet = _tone(SR, amp=0.02)
    loud = _tone(SR, amp=0.4)
    feats, _ = m(torch.from_numpy(np.stack([quiet, loud])))
    loudness = feats[:, :, m.names.index("Loudness_sma3")].mean(dim=1)
    assert loudness[1] > 3 * loudness[0] > 0
    # The tone is voiced: F0 (semitones from 27.5 Hz) near 12 * log2(220 / 27.5) = 36.
    f0 = feats[1, :, m.names.index("F0semitoneFrom27.5Hz_sma3nz")]
    assert abs(float(f0[f0 > 0].median()) - 36.0) < 1.0


def test_out_of_range_samples_are_clipped_not_wrapped(m: EGeMAPS) -> None:
    """openSMILE converts to int16; samples past +-1 would wrap around into nonsense without the clip."""
    loud = _tone(SR, amp=1.0)
    clipped, _ = m(torch.from_numpy(np.clip(loud, -1.0, 32767 / 32768))[None])
    raw, _ = m(torch.from_numpy(loud)[None])
    assert torch.equal(raw, clipped)


def test_short_and_bad_inputs_raise(m: EGeMAPS) -> None:
    m(torch.from_numpy(_noise(960))[None])  # the minimum works
    with pytest.raises(ValueError, match="at least 960 samples"):
        m(torch.from_numpy(_noise(959))[None])
    with pytest.raises(ValueError, match="at least 960 samples"):
        m(torch.zeros(2, 4000), torch.tensor([4000, 500]))
    with pytest.raises(ValueError, match="batch, samples"):
        m(torch.zeros(4000))


def test_silence_gives_zeros_not_nan(m: EGeMAPS) -> None:
    feats, frames = m(torch.zeros(1, SR))
    assert int(frames[0]) == 96 and torch.isfinite(feats).all()


def test_copies_and_lazy_setup() -> None:
    fresh = EGeMAPS()
    assert fresh._smile is None  # instantiating a config to read out_dim does not start openSMILE
    a, _ = fresh(torch.from_numpy(_tone(4000))[None])
    b, _ = copy.deepcopy(fresh)(torch.from_numpy(_tone(4000))[None])
    assert torch.equal(a, b)
