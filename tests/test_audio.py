"""Audio decoding (mono, 16 kHz, float32, any libsndfile format) and the decoder's exclusions."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from audio_fixtures import make_crema_tree, tone, write_wav

from ser.data.audio import AudioError, is_silent, load_audio
from ser.data.cache import FeatureCache
from ser.data.corpora import build_index
from ser.features import LogMel


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)])


def test_mono_mixdown_is_the_channel_mean(tmp_path: Path) -> None:
    data = tone(0.25, 16000, channels=2, freq=300.0, seed=1)
    assert not np.allclose(data[:, 0], data[:, 1])
    path = tmp_path / "stereo.wav"
    sf.write(path, data, 16000, subtype="FLOAT")
    wave = load_audio(path, 16000)
    assert wave.shape == (4000,) and wave.dtype == np.float32
    np.testing.assert_allclose(wave, data.mean(axis=1), atol=1e-7)


def test_mono_file_is_returned_unchanged_at_the_target_rate(tmp_path: Path) -> None:
    data = tone(0.2, 16000, freq=440.0, seed=2)
    path = tmp_path / "mono.wav"
    sf.write(path, data, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path), data)


@pytest.mark.parametrize("rate", [44100, 48000, 8000, 22050])
def test_resampled_to_16k(tmp_path: Path, rate: int) -> None:
    path = write_wav(tmp_path / "x.wav", seconds=0.5, sr=rate, channels=3, freq=440.0, seed=3, subtype="FLOAT")
    wave = load_audio(path, 16000)
    assert wave.dtype == np.float32 and wave.ndim == 1 and wave.flags["C_CONTIGUOUS"]
    assert abs(wave.size - 8000) <= 1
    assert abs(_peak_hz(wave, 16000) - 440.0) < 3.0
    # The tone's level survives (channel gains 1, 0.625, 0.25 average to 0.625; amplitude 0.3).
    rms = float(np.sqrt(np.mean(wave[400:-400] ** 2)))
    assert rms == pytest.approx(0.3 * 0.625 / np.sqrt(2), rel=0.05)
    # Mixdown first, then soxr (the resampler the spec names).
    mono = sf.read(path, dtype="float32")[0].mean(axis=1)
    np.testing.assert_allclose(wave, soxr.resample(mono, rate, 16000, quality="HQ"), atol=1e-6)


def test_other_sample_rate_target(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "x.wav", seconds=0.5, sr=16000, freq=500.0)
    wave = load_audio(path, 8000)
    assert abs(wave.size - 4000) <= 1 and abs(_peak_hz(wave, 8000) - 500.0) < 3.0


def test_flac_and_ogg_decode_like_wav(tmp_path: Path) -> None:
    pcm = np.round(tone(0.5, 44100, freq=330.0, seed=4) * 32767).astype(np.int16)
    wav, flac, ogg = tmp_path / "x.wav", tmp_path / "x.flac", tmp_path / "x.ogg"
    for path in (wav, flac, ogg):
        sf.write(path, pcm, 44100)  # the same int16 samples in every container
    ref = load_audio(wav)
    np.testing.assert_array_equal(load_audio(flac), ref)  # lossless
    lossy = load_audio(ogg)
    assert lossy.dtype == np.float32 and abs(lossy.size - ref.size) <= 1
    assert abs(_peak_hz(lossy, 16000) - 330.0) < 3.0
    n = min(lossy.size, ref.size)
    assert np.corrcoef(lossy[:n], ref[:n])[0, 1] > 0.9


def test_is_silent() -> None:
    assert is_silent(np.zeros(16000, dtype=np.float32))
    assert is_silent(np.zeros(0, dtype=np.float32))
    assert is_silent(np.full(100, 5e-5, dtype=np.float32))
    assert not is_silent(tone(0.1, 16000))
    quiet = np.zeros(1000, dtype=np.float32)
    quiet[500] = -0.01  # one sample is enough to count as signal
    assert not is_silent(quiet)


def test_unreadable_file_errors_name_it(tmp_path: Path) -> None:
    garbage = tmp_path / "1001_DFA_ANG_XX.wav"
    garbage.write_bytes(b"RIFF" + b"\x00garbage" * 20)
    with pytest.raises(AudioError, match=re.escape("1001_DFA_ANG_XX.wav: cannot decode audio")):
        load_audio(garbage)
    with pytest.raises(AudioError, match=re.escape("missing.wav")):
        load_audio(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match=re.escape("empty.wav: the file holds no samples")):
        load_audio(empty)


# ------------------------------------------------------------------ exclusions while extracting features


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Two good CREMA-D clips, one all-zero clip, one undecodable file and one too short to frame."""
    root = tmp_path / "crema-d"
    make_crema_tree(root, actors=["1001"], emotions=["ANG", "HAP"], sentences=["DFA"], seconds=0.3)
    write_wav(root / "AudioWAV" / "1001_MTI_SAD_XX.wav", seconds=0.8, silent=True)
    (root / "AudioWAV" / "1001_IEO_NEU_XX.wav").write_bytes(b"RIFF not really a wav")
    write_wav(root / "AudioWAV" / "1001_TIE_FEA_XX.wav", seconds=100 / 16000)
    return root


def _cache(tmp_path: Path, on_error: str) -> FeatureCache:
    return FeatureCache(
        tmp_path / "cache",
        {"n_mels": 16},
        lambda: LogMel(n_mels=16),
        num_workers=2,
        on_error=on_error,
        progress=False,
    )


def test_unreadable_is_an_error_by_default(tree: Path, tmp_path: Path) -> None:
    clips = build_index(["crema_d"], {"crema_d": tree}).clips
    with pytest.raises(AudioError, match=re.escape("1001_IEO_NEU_XX.wav")):
        _cache(tmp_path, "raise").load_or_build(clips)
    assert not list((tmp_path / "cache").glob("features-*.pt"))


def test_skip_lists_unreadable_silent_and_short_clips(tree: Path, tmp_path: Path) -> None:
    clips = build_index(["crema_d"], {"crema_d": tree}).clips
    fs = _cache(tmp_path, "skip").load_or_build(clips)
    assert fs.clip_ids == ["crema_d/1001_DFA_ANG_XX", "crema_d/1001_DFA_HAP_XX"]
    reasons = {Path(e.path).name: e.reason for e in fs.excluded}
    assert set(reasons) == {"1001_MTI_SAD_XX.wav", "1001_IEO_NEU_XX.wav", "1001_TIE_FEA_XX.wav"}
    assert reasons["1001_MTI_SAD_XX.wav"].startswith("silent")
    assert reasons["1001_IEO_NEU_XX.wav"].startswith("unreadable")
    assert str(tree / "AudioWAV" / "1001_IEO_NEU_XX.wav") in reasons["1001_IEO_NEU_XX.wav"]
    assert reasons["1001_TIE_FEA_XX.wav"].startswith("too short: 100 samples")
    assert all(e.corpus == "crema_d" for e in fs.excluded)


def test_silent_clip_is_excluded_even_when_raising(tree: Path, tmp_path: Path) -> None:
    (tree / "AudioWAV" / "1001_IEO_NEU_XX.wav").unlink()
    clips = build_index(["crema_d"], {"crema_d": tree}).clips
    fs = _cache(tmp_path, "raise").load_or_build(clips)
    assert len(fs) == 2
    assert sorted(e.reason.split(":")[0] for e in fs.excluded) == ["silent", "too short"]


def test_on_error_must_be_raise_or_skip(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="raise or skip"):
        _cache(tmp_path, "ignore")


def test_skip_run_does_not_hide_the_error_from_a_later_raise_run(tree: Path, tmp_path: Path) -> None:
    """on_error is not part of the cache key: an entry built with skip must not make raise silent."""
    clips = build_index(["crema_d"], {"crema_d": tree}).clips
    assert len(_cache(tmp_path, "skip").load_or_build(clips)) == 2
    with pytest.raises(AudioError, match=re.escape(str(tree / "AudioWAV" / "1001_IEO_NEU_XX.wav"))):
        _cache(tmp_path, "raise").load_or_build(clips)
    assert len(_cache(tmp_path, "skip").load_or_build(clips)) == 2  # still served to skip runs
