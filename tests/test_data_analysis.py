"""The data analysis: loudness and F0 per class x gender from openSMILE, cached per file; figures and numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import soundfile as sf

from ser.data import analysis
from ser.data.corpora import build_index
from ser.data.corpus import Clip
from ser.data.synthesis import synthesize_clip

RATE = 16000


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    """8 demo-voice clips with CREMA-D names: a male (1001) and a female (1002) speaker, angry and sad, 2 each."""
    wavs = tmp_path_factory.mktemp("corpus") / "crema-d" / "AudioWAV"
    wavs.mkdir(parents=True)
    for spk, (actor, gender) in enumerate([("1001", "male"), ("1002", "female")]):
        for code, emotion in [("ANG", "angry"), ("SAD", "sad")]:
            for take, sentence in enumerate(["DFA", "IEO"]):
                wave = synthesize_clip(gender, emotion, speaker_seed=spk, clip_seed=10 * spk + take, sample_rate=RATE)
                sf.write(wavs / f"{actor}_{sentence}_{code}_XX.wav", wave, RATE, "PCM_16")
    return build_index(["crema_d"], {"crema_d": wavs.parent.parent / "crema-d"}).clips


class FakeWriter:
    def __init__(self) -> None:
        self.tags: list[str] = []
        self.closed = False

    def add_figure(self, tag: str, figure, close: bool = True) -> None:
        self.tags.append(tag)

    def close(self) -> None:
        self.closed = True


def test_numbers_figures_and_tensorboard(clips: list[Clip], tmp_path: Path) -> None:
    writer = FakeWriter()
    summary = analysis.run_analysis(clips, tmp_path / "run", tmp_path / "cache", RATE, False, lambda: writer)
    assert summary["clips"] == 8 and summary["failed"] == [] and summary["unvoiced_clips"] == 0
    by_class = summary["by_class"]
    assert list(by_class) == ["male_sad", "male_angry", "female_sad", "female_angry"]  # the labels' order
    for name, stats in by_class.items():
        assert stats["loudness"]["n"] == 2 and set(stats["loudness"]) == {"n", "mean", "sd", "median"}, name
    for gender in ("male", "female"):  # the demo voices are louder when angry, as the real corpora
        assert by_class[f"{gender}_angry"]["loudness"]["mean"] > by_class[f"{gender}_sad"]["loudness"]["mean"]
    f0 = summary["by_gender"]
    assert f0["female"]["f0_hz"]["median"] > 1.4 * f0["male"]["f0_hz"]["median"]  # 215 Hz vs 115 Hz voices
    assert math.isclose(
        f0["male"]["f0_hz"]["median"], analysis.semitones_to_hz(f0["male"]["f0_semitones"]["median"]), rel_tol=0.05
    )
    assert summary["durations_by_corpus"]["crema_d"]["n"] == 8
    assert 1.0 <= summary["durations_by_corpus"]["crema_d"]["median"] <= 2.0
    names = [f"analysis_{f}.png" for f in analysis.FIGURES]
    assert summary["figures"] == names
    for name in names:
        assert (tmp_path / "run" / name).read_bytes()[:4] == b"\x89PNG"
    assert writer.tags == [f"data/{f}" for f in analysis.FIGURES] and writer.closed


def test_per_clip_values_are_cached_by_file(clips: list[Clip], tmp_path: Path, monkeypatch) -> None:
    first, _ = analysis.describe_clips(clips[:3], tmp_path, RATE, progress=False)
    assert len(list(tmp_path.glob("analysis-egemaps-*.json"))) == 1

    def no_opensmile(*args, **kwargs):
        raise AssertionError("openSMILE ran again for a cached file")

    monkeypatch.setattr(analysis, "clip_descriptors", no_opensmile)
    again, failed = analysis.describe_clips(clips[:3], tmp_path, RATE, progress=False)
    assert again == first and failed == []
    with pytest.raises(AssertionError, match="ran again"):  # a new file is computed
        analysis.describe_clips(clips[3:4], tmp_path, RATE, progress=False)


def test_unreadable_clip_is_reported_not_cached(clips: list[Clip], tmp_path: Path) -> None:
    broken = tmp_path / "1001_DFA_ANG_XX.wav"
    broken.write_bytes(b"RIFF not audio")
    bad = Clip("x", str(broken), "crema_d", "1001", "male", "angry", 1)
    desc, failed = analysis.describe_clips([bad, clips[0]], tmp_path / "cache", RATE, progress=False)
    assert math.isnan(desc[0]["loudness"]) and len(failed) == 1 and str(broken) in failed[0]
    assert math.isfinite(desc[1]["loudness"])
