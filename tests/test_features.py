"""Feature extractors against librosa (the reference) and padding invariance within a batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser.features import MFCC, LogMel, dct_matrix, mel_filterbank, savgol_kernel

librosa = pytest.importorskip("librosa")

# Filterbank weights are computed in float64 and stored as float32; librosa rounds to float32 too
# (its peak weight is ~0.02, so float32 rounding alone is ~1e-9).
FILTERBANK_TOL = 1e-6
# Log-mel in dB, every bin of every frame. torch's float32 FFT rounding is relative to a frame's
# loudest component (librosa frames in float64), so the error grows as a band falls below its
# frame's peak: measured <= 8e-6 dB on white noise (~25 dB spread across bands) and <= 2e-4 dB on a
# chirp in quiet noise (~70 dB spread). Tolerances leave ~5x headroom for other FFT backends.
LOGMEL_TOL_DB = {"noise": 5e-5, "chirp_in_noise": 1e-3}
# MFCCs and their deltas (dB units, c0 up to ~300): DCT/regression of the log-mel errors above,
# plus float32 rounding of c0 (ulp 1.5e-5 at 128). Measured <= 4e-5 (noise), 1.3e-4 (chirp).
MFCC_TOL = {"noise": 2e-4, "chirp_in_noise": 1e-3}
# The same clip alone and inside a zero-padded batch: only the FFT/matmul batching differs, which
# moves results by a float32 ulp or so (measured 7.6e-6 on an MFCC c0 of ~-130; the ulp there).
BATCH_ATOL, BATCH_RTOL = 1e-5, 1e-6

CONFIGS = [
    {"sample_rate": 16000},  # the project default: 512-point FFT, 25 ms window, 10 ms hop, 64 bands
    {
        "sample_rate": 22050,
        "n_fft": 1024,
        "win_length": 1024,
        "hop_length": 256,
        "n_mels": 48,
        "f_min": 50.0,
        "f_max": 7600.0,
    },
]


def _noise(num: int, seed: int, std: float = 0.1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(num) * std).astype(np.float32)


def _chirp(num: int, sample_rate: int, amp: float = 0.5) -> np.ndarray:
    """Linear sweep from 100 Hz to 0.45 * sample_rate over the clip."""
    t = np.arange(num) / sample_rate
    f0, f1 = 100.0, 0.45 * sample_rate
    return (amp * np.sin(2 * np.pi * (f0 * t + (f1 - f0) / (2 * t[-1]) * t**2))).astype(np.float32)


def _signal(kind: str, num: int, sample_rate: int) -> np.ndarray:
    if kind == "noise":
        return _noise(num, seed=1)
    return _chirp(num, sample_rate) + _noise(num, seed=2, std=0.01)


def _librosa_power_mel(y: np.ndarray, m: LogMel) -> np.ndarray:
    """librosa's mel power spectrogram [n_mels, T] with the extractor's settings."""
    return librosa.feature.melspectrogram(
        y=y,
        sr=m.sample_rate,
        n_fft=m.n_fft,
        hop_length=m.hop_length,
        win_length=m.win_length,
        window="hann",
        center=True,
        pad_mode="reflect",
        power=2.0,
        n_mels=m.n_mels,
        fmin=m.f_min,
        fmax=m.f_max,
        htk=False,
        norm="slaney",
    )


def _one(module: torch.nn.Module, y: np.ndarray) -> np.ndarray:
    """Features of a single clip as [F, T] (librosa's layout)."""
    feats, frame_lengths = module(torch.from_numpy(y)[None])
    assert int(frame_lengths[0]) == feats.shape[1]
    return feats[0].numpy().T


@pytest.mark.parametrize("cfg", CONFIGS)
def test_filterbank_matches_librosa(cfg: dict) -> None:
    m = LogMel(**cfg)
    ref = librosa.filters.mel(
        sr=m.sample_rate, n_fft=m.n_fft, n_mels=m.n_mels, fmin=m.f_min, fmax=m.f_max, htk=False, norm="slaney"
    )
    ours = mel_filterbank(m.sample_rate, m.n_fft, m.n_mels, m.f_min, m.f_max)
    assert ours.shape == ref.shape == (m.n_mels, m.n_fft // 2 + 1)
    assert np.abs(ours - ref).max() < FILTERBANK_TOL
    assert np.abs(m.mel_fb.numpy().T - ref).max() < FILTERBANK_TOL
    assert (ours.max(axis=1) > 0).all()  # no empty band


def test_helpers_match_scipy() -> None:
    scipy_fft = pytest.importorskip("scipy.fft")
    scipy_signal = pytest.importorskip("scipy.signal")
    x = np.random.default_rng(0).standard_normal((64, 5))
    np.testing.assert_allclose(dct_matrix(20, 64) @ x, scipy_fft.dct(x, axis=0, norm="ortho")[:20], atol=1e-12)
    for order in (1, 2):
        ref = scipy_signal.savgol_coeffs(9, order, deriv=order, use="dot")
        np.testing.assert_allclose(savgol_kernel(9, order), ref, atol=1e-12)
    # Order 1 is the textbook delta: sum_n n * (x[t+n] - x[t-n]) / (2 * sum n^2) = n / 60 for N = 4.
    np.testing.assert_allclose(savgol_kernel(9, 1), np.arange(-4, 5) / 60.0, atol=1e-12)


@pytest.mark.parametrize("kind", ["noise", "chirp_in_noise"])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_logmel_matches_librosa(cfg: dict, kind: str) -> None:
    m = LogMel(**cfg)
    y = _signal(kind, int(1.3 * m.sample_rate) + 7, m.sample_rate)  # not a multiple of the hop
    ref = 10.0 * np.log10(np.maximum(_librosa_power_mel(y, m), m.amin))
    ours = _one(m, y)
    assert ours.shape == ref.shape
    assert ref.min() > -100.0  # no bin sits on the amin floor, so every bin is a real comparison
    assert np.abs(ours - ref).max() < LOGMEL_TOL_DB[kind]


@pytest.mark.parametrize("deltas", [0, 1, 2])
@pytest.mark.parametrize("kind", ["noise", "chirp_in_noise"])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_mfcc_matches_librosa(cfg: dict, kind: str, deltas: int) -> None:
    m = MFCC(n_mfcc=40, deltas=deltas, **cfg)
    y = _signal(kind, int(1.3 * m.sample_rate) + 7, m.sample_rate)
    mel_db = librosa.power_to_db(_librosa_power_mel(y, m.logmel), ref=1.0, amin=m.logmel.amin, top_db=None)
    mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=40, dct_type=2, norm="ortho")
    parts = [mfcc] + [librosa.feature.delta(mfcc, width=9, order=k, mode="nearest") for k in range(1, deltas + 1)]
    ref = np.concatenate(parts, axis=0)
    ours = _one(m, y)
    assert ours.shape == ref.shape == (m.out_dim, ref.shape[1])
    assert np.abs(ours - ref).max() < MFCC_TOL[kind]
    if deltas:  # the deltas are real signals here, not zeros that would pass trivially
        assert np.abs(ref[40:]).max() > 1.0


@pytest.mark.parametrize("make", [lambda: LogMel(), lambda: MFCC(deltas=2)], ids=["logmel", "mfcc_deltas2"])
def test_padding_never_changes_a_clip(make) -> None:
    m = make()
    sr = m.sample_rate
    # Lengths: the shortest allowed clip, one just past a hop boundary, a mid one, and the longest.
    lengths = [m.min_samples, 160 * 37 + 1, int(0.77 * sr), int(1.5 * sr)]
    clips = [_chirp(n, sr) + _noise(n, seed=i, std=0.05) for i, n in enumerate(lengths)]
    width = max(lengths) + 999  # extra zero padding past the longest clip too
    batch = torch.zeros(len(clips), width)
    for i, clip in enumerate(clips):
        batch[i, : len(clip)] = torch.from_numpy(clip)
    feats, frame_lengths = m(batch, torch.tensor(lengths))

    assert feats.shape == (len(clips), int(m.num_frames(torch.tensor(width))), m.out_dim)
    assert frame_lengths.tolist() == [1 + n // m.hop_length for n in lengths]
    for i, clip in enumerate(clips):
        alone, alone_len = m(torch.from_numpy(clip)[None])
        n_frames = int(frame_lengths[i])
        assert int(alone_len[0]) == n_frames == alone.shape[1]
        torch.testing.assert_close(feats[i, :n_frames], alone[0], rtol=BATCH_RTOL, atol=BATCH_ATOL)
        assert torch.count_nonzero(feats[i, n_frames:]) == 0
        assert torch.count_nonzero(feats[i, :n_frames]) > 0


def test_garbage_past_length_is_ignored() -> None:
    """Samples past a clip's length (not zeros, e.g. another clip's tail) must not leak in."""
    m = MFCC(deltas=1)
    clip = _noise(12345, seed=3)
    clean = torch.zeros(1, 20000)
    clean[0, :12345] = torch.from_numpy(clip)
    dirty = clean.clone()
    dirty[0, 12345:] = torch.from_numpy(_noise(20000 - 12345, seed=4, std=1.0))
    lengths = torch.tensor([12345])
    torch.testing.assert_close(m(dirty, lengths)[0], m(clean, lengths)[0], rtol=0, atol=0)


def test_lengths_none_means_full_length() -> None:
    m = LogMel()
    waves = torch.from_numpy(np.stack([_noise(16000, seed=5), _noise(16000, seed=6)]))
    full = torch.tensor([16000, 16000])
    a, a_len = m(waves)
    b, b_len = m(waves, full)
    assert a_len.tolist() == b_len.tolist() == [101, 101]
    torch.testing.assert_close(a, b, rtol=BATCH_RTOL, atol=BATCH_ATOL)


def test_shapes_and_out_dim() -> None:
    assert LogMel(n_mels=80).out_dim == 80
    assert [MFCC(n_mfcc=13, deltas=d).out_dim for d in (0, 1, 2)] == [13, 26, 39]
    m = MFCC(n_mfcc=20, deltas=1)
    feats, frame_lengths = m(torch.from_numpy(np.stack([_noise(8000, seed=7)] * 3)))
    assert feats.shape == (3, 51, 40)
    assert frame_lengths.dtype == torch.long
    assert frame_lengths.tolist() == [51, 51, 51]
    assert LogMel().num_frames(torch.tensor([257, 48000])).tolist() == [2, 301]
    assert LogMel().num_frames(16000) == 101


@pytest.mark.parametrize("make", [LogMel, MFCC])
def test_too_short_clip_raises(make) -> None:
    m = make()
    assert m.min_samples == m.n_fft // 2 + 1 == 257  # both extractors expose the framing attributes
    assert (m.sample_rate, m.hop_length, m.win_length) == (16000, 160, 400)
    m(torch.zeros(1, 257) + 0.1)  # the minimum itself works
    with pytest.raises(ValueError, match="at least 257 samples"):
        m(torch.zeros(1, 256))
    with pytest.raises(ValueError, match="at least 257 samples"):
        m(torch.zeros(2, 1000), torch.tensor([1000, 200]))


def test_bad_inputs_raise() -> None:
    m = LogMel()
    with pytest.raises(ValueError, match="batch, samples"):
        m(torch.zeros(1000))
    with pytest.raises(ValueError, match="exceeds"):
        m(torch.zeros(2, 1000), torch.tensor([1000, 1001]))
    with pytest.raises(ValueError, match="lengths for a batch"):
        m(torch.zeros(2, 1000), torch.tensor([1000]))
    with pytest.raises(ValueError, match="deltas"):
        MFCC(deltas=3)
    with pytest.raises(ValueError, match="n_mfcc"):
        MFCC(n_mfcc=80, n_mels=64)
    with pytest.raises(ValueError, match="f_max"):
        LogMel(sample_rate=16000, f_max=9000.0)


def test_deterministic_float32_and_buffers() -> None:
    m = MFCC(deltas=2)
    waves = torch.from_numpy(np.stack([_noise(9000, seed=8), _chirp(9000, 16000)])).double()
    a, _ = m(waves, torch.tensor([9000, 6000]))
    b, _ = m(waves, torch.tensor([9000, 6000]))
    assert a.dtype == torch.float32  # float64 input still gives float32 features
    assert torch.equal(a, b)
    assert torch.isfinite(a).all()
    # Derived constants are buffers (so .to(device) moves them) but stay out of checkpoints.
    assert {name for name, _ in m.named_buffers()} == {"dct", "delta_taps", "logmel.window", "logmel.mel_fb"}
    assert m.state_dict() == {}


def test_autograd_flows_to_waves() -> None:
    waves = torch.from_numpy(np.stack([_noise(4000, seed=9), _noise(4000, seed=10)])).requires_grad_()
    feats, _ = MFCC(deltas=2)(waves, torch.tensor([4000, 3000]))
    feats.sum().backward()
    assert waves.grad is not None and torch.isfinite(waves.grad).all()
    assert waves.grad[0].abs().sum() > 0
    assert waves.grad[1, 3000:].abs().sum() == 0  # nothing past a clip's length feeds the output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("make", [LogMel, lambda: MFCC(deltas=2)], ids=["logmel", "mfcc_deltas2"])
def test_cuda_matches_cpu(make) -> None:
    m = make()
    waves = torch.from_numpy(np.stack([_chirp(20000, 16000) + _noise(20000, seed=11, std=0.01)] * 2))
    lengths = torch.tensor([20000, 12000])
    cpu, cpu_len = m(waves, lengths)
    gpu, gpu_len = m.to("cuda")(waves.cuda(), lengths.cuda())
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float32
    assert gpu_len.cpu().tolist() == cpu_len.tolist()
    # cuFFT and the CPU FFT round differently; same bound as against librosa.
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=MFCC_TOL["chirp_in_noise"])


def test_extractors_declare_the_contract() -> None:
    from ser.features import FeatureExtractor, spectral

    # Configs and checkpoints name ser.features.LogMel / MFCC: the re-exports are the classes themselves.
    assert LogMel is spectral.LogMel and MFCC is spectral.MFCC
    for m in (LogMel(), MFCC(deltas=1)):
        assert isinstance(m, FeatureExtractor)
        assert (m.sample_rate, m.hop_length, m.min_samples) == (16000, 160, 257)
    with pytest.raises(TypeError, match="abstract"):
        FeatureExtractor(16000, 160)  # type: ignore[abstract]


def test_feature_targets_pass_the_checkpoint_allow_list() -> None:
    """Every conf/features option, and the names older checkpoints saved, load through the allow-list."""
    from pathlib import Path

    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from ser.features import FeatureExtractor
    from ser.models.checkpoint import TRUSTED_TARGET_PREFIX

    conf = Path(__file__).resolve().parents[1] / "conf" / "features"
    targets = {str(OmegaConf.load(p)["_target_"]) for p in conf.glob("*.yaml")}
    assert {"ser.features.LogMel", "ser.features.MFCC", "ser.features.egemaps.EGeMAPS"} <= targets
    for target in targets:
        assert target.startswith(TRUSTED_TARGET_PREFIX)
        assert issubclass(get_class(target), FeatureExtractor)
