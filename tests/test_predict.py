"""Prediction from checkpoints: loading, per-file results, output formats, bad inputs, timelines, streams.

Everything runs on a tiny checkpoint written by a real ``lightning.Trainer`` and on audio synthesized
here; no corpus is read.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from checkpoint_fixtures import SR, build_checkpoint, fill_the_disk, speechlike
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import ser
from ser.data.audio import load_audio
from ser.inference.prediction import InputFailure, Prediction
from ser.inference.predictor import Predictor, window_starts
from ser.labels import CLASSES
from ser.predict import CONFIG_DIR, PredictOptions, UsageError, options_from_config, run

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.ckpt")


@pytest.fixture(scope="module")
def predictor(ckpt: Path) -> Predictor:
    return Predictor.from_checkpoint(ckpt)


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files of several formats, rates and channel counts, plus a folder with a nested one."""
    d = tmp_path_factory.mktemp("audio")
    files = {
        "wav_stereo_44k": d / "stereo44k.wav",
        "flac_16k": d / "mono16k.flac",
        "ogg_22k": d / "mono22k.ogg",
    }
    sf.write(files["wav_stereo_44k"], speechlike(1.5, 44100, seed=1, channels=2), 44100)
    sf.write(files["flac_16k"], speechlike(2.0, SR, seed=2), SR)
    sf.write(files["ogg_22k"], speechlike(1.2, 22050, seed=3), 22050)
    folder = d / "folder"
    (folder / "nested").mkdir(parents=True)
    sf.write(folder / "a.wav", speechlike(1.0, SR, seed=4), SR)
    sf.write(folder / "nested" / "b.flac", speechlike(0.8, 8000, seed=5), 8000)
    (folder / "notes.txt").write_text("not audio, and not picked up from a folder")
    files["folder"] = folder
    return files


def config_run(overrides: list[str]) -> tuple[int, str]:
    """The Hydra command shape, in process: conf/predict.yaml + overrides -> run()."""
    GlobalHydra.instance().clear()  # another test may have left its own Hydra context behind
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="predict", overrides=overrides)
    out = io.StringIO()
    code = run(options_from_config(cfg), stdout=out)
    return code, out.getvalue()


def cli(overrides: list[str]) -> int:
    """The command as typed (``ser-predict ckpt=... inputs=[...]``), in process; results go to stdout."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="predict", overrides=overrides)
    return run(options_from_config(cfg))


def module_probabilities(ckpt: Path, wave: np.ndarray) -> np.ndarray:
    """What the trained LightningModule computes for one clip (the reference for prediction)."""
    from hydra.utils import instantiate

    from ser.models.module import SERModule

    state = torch.load(ckpt, weights_only=True)
    module = SERModule(**state["hyper_parameters"])
    module.load_state_dict(state["state_dict"])
    module.eval()
    extractor = instantiate(state["hyper_parameters"]["features"])
    with torch.no_grad():
        feats, frames = extractor(torch.from_numpy(wave)[None], torch.tensor([wave.size]))
        return module.probabilities(module(feats, frames))[0].numpy()


def test_prediction_equals_trained_module(ckpt: Path, predictor: Predictor, audio: dict[str, Path]) -> None:
    paths = [audio["wav_stereo_44k"], audio["flac_16k"], audio["ogg_22k"]]
    results = predictor.predict_files(paths)
    assert [r.path for r in results] == [str(p) for p in paths]
    for path, result in zip(paths, results, strict=True):
        assert isinstance(result, Prediction)
        expected = module_probabilities(ckpt, load_audio(path, SR))
        np.testing.assert_allclose(result.probabilities, expected, atol=1e-6)
        assert result.label == CLASSES[int(np.argmax(expected))]
        assert result.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
        assert f"{result.gender}_{result.emotion}" == result.label


def test_batching_does_not_change_results(predictor: Predictor) -> None:
    waves = [speechlike(s, seed=i) for i, s in enumerate((0.5, 2.0, 1.1, 0.3, 1.7))]
    together = predictor.predict_waves(waves)
    alone = np.stack([predictor.predict_waves([w])[0] for w in waves])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    # Resampling inside predict_waves matches decoding at the model rate.
    w44 = speechlike(1.0, 44100, seed=9)
    np.testing.assert_allclose(
        predictor.predict_waves([w44], sample_rate=44100),
        predictor.predict_waves([soxr.resample(w44, 44100, SR, quality="HQ")]),
        atol=1e-6,
    )


def test_binary_model_uses_sigmoids(tmp_path: Path) -> None:
    pred = Predictor.from_checkpoint(build_checkpoint(tmp_path / "binary.ckpt", loss="binary", seed=1))
    probs = pred.predict_waves([speechlike(1.0, seed=7)])[0]
    assert ((probs > 0) & (probs < 1)).all()
    assert probs.sum() != pytest.approx(1.0, abs=1e-3)  # 12 independent sigmoids, as the module reports


def test_missing_checkpoint_exits_2(tmp_path: Path, audio: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    code = cli([f"ckpt={tmp_path / 'nope.ckpt'}", f"inputs=[{audio['flac_16k']}]"])
    assert code == 2
    assert "nope.ckpt: checkpoint not found" in capsys.readouterr().err


# -- command line: formats ---------------------------------------------------------------------------


def test_json_output_hydra_shape(ckpt: Path, audio: dict[str, Path]) -> None:
    inputs = f"[{audio['wav_stereo_44k']},{audio['folder']}]"
    code, out = config_run([f"ckpt={ckpt}", f"inputs={inputs}", "format=json"])
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == {"header", "predictions", "errors"} and doc["errors"] == []
    header = doc["header"]
    assert header["checkpoint"] == os.path.abspath(ckpt)
    assert (header["mode"], header["window"], header["hop"]) == ("files", None, None)
    assert header["sample_rate"] == SR and header["classes"] == list(CLASSES)
    assert header["ser_version"] == ser.__version__ and header["created"].endswith("+00:00")
    rows = doc["predictions"]
    folder = audio["folder"]
    assert [r["path"] for r in rows] == [
        str(audio["wav_stereo_44k"]),
        str(folder / "a.wav"),
        str(folder / "nested" / "b.flac"),
    ]
    for r in rows:
        assert set(r) == {"path", "label", "gender", "emotion", "confidence", "probabilities"}
        assert r["confidence"] == r["probabilities"][r["label"]]
        assert list(r["probabilities"]) == list(CLASSES)
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)
        assert r["label"] == f"{r['gender']}_{r['emotion']}"
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_csv_to_a_file_and_table(
    ckpt: Path, predictor: Predictor, audio: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out_file = tmp_path / "sub" / "predictions.csv"
    paths = [str(audio["flac_16k"]), str(audio["ogg_22k"])]
    assert cli([f"ckpt={ckpt}", f"inputs=[{','.join(paths)}]", "format=csv", f"output={out_file}"]) == 0
    rows = list(csv.DictReader(out_file.open()))
    assert list(rows[0]) == ["path", "label", "gender", "emotion", "confidence", *CLASSES]
    expected = predictor.predict_files(paths)
    for row, exp in zip(rows, expected, strict=True):
        assert isinstance(exp, Prediction)
        assert row["path"] == exp.path and row["label"] == exp.label
        assert float(row["confidence"]) == pytest.approx(exp.confidence, abs=1e-6)
        np.testing.assert_allclose([float(row[c]) for c in CLASSES], exp.probabilities, atol=1e-6)
    capsys.readouterr()
    assert cli([f"ckpt={ckpt}", f"inputs=[{','.join(paths)}]"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["path", "label", "gender", "emotion", "confidence"]  # the JSON keys
    assert [line.split()[0] for line in table[1:]] == paths
    assert [line.split()[1] for line in table[1:]] == [e.label for e in expected]  # type: ignore[union-attr]


def test_output_file_is_written_atomically(
    ckpt: Path, audio: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out_file = tmp_path / "predictions.json"
    assert cli([f"ckpt={ckpt}", f"inputs=[{audio['flac_16k']}]", "format=json", f"output={out_file}"]) == 0
    old = out_file.read_text()
    assert len(json.loads(old)["predictions"]) == 1

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("killed before the rename")

    # The disk fills up while the results are written, or the process dies before the rename: either way
    # the earlier file stays whole and no temporary file is left beside it.
    both = f"inputs=[{audio['flac_16k']},{audio['ogg_22k']}]"
    for break_it in (lambda: fill_the_disk(monkeypatch), lambda: monkeypatch.setattr(os, "replace", broken_replace)):
        break_it()
        with pytest.raises(OSError, match="No space left|killed"):
            cli([f"ckpt={ckpt}", both, "format=json", f"output={out_file}"])
        monkeypatch.undo()
        assert out_file.read_text() == old
        assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.json"]
    capsys.readouterr()


def test_an_output_that_cannot_be_written_stops_before_any_prediction(
    ckpt: Path, audio: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setattr(Predictor, "predict_files", lambda *a, **k: pytest.fail("predicted before the check"))
    with pytest.raises(UsageError, match=rf"^output={blocker}/p.json: cannot write there \(.*\); choose a writable"):
        cli([f"ckpt={ckpt}", f"inputs=[{audio['flac_16k']}]", f"output={blocker}/p.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_bad_inputs_are_named_and_others_still_predicted(
    ckpt: Path, audio: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    empty = tmp_path / "empty.flac"
    empty.touch()
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SR, dtype=np.float32), SR)
    short = tmp_path / "short.wav"
    sf.write(short, speechlike(0.01), SR)
    missing = tmp_path / "missing.wav"
    empty_dir = tmp_path / "nothing_here"
    empty_dir.mkdir()
    good = audio["flac_16k"]
    args = [str(p) for p in (text, good, empty, silent, short, missing, empty_dir)]
    code = cli([f"ckpt={ckpt}", f"inputs=[{','.join(args)}]", "format=json"])
    captured = capsys.readouterr()
    assert code == 1
    doc = json.loads(captured.out)
    rows = doc["predictions"]
    assert [r["path"] for r in rows] == [str(good)]
    assert [e["path"] for e in doc["errors"]] == [str(p) for p in (text, empty, silent, short, missing, empty_dir)]
    assert doc["errors"][2]["reason"].startswith("silent")
    err = captured.err
    assert f"{text}: cannot decode audio" in err
    assert f"{empty}: empty file" in err
    assert f"{silent}: silent" in err
    assert f"{short}: too short" in err
    assert f"{missing}: no such file or folder" in err
    assert f"{empty_dir}: folder holds no audio files" in err
    assert "6 of 7 inputs gave no prediction" in err


def test_usage_errors_exit_2(ckpt: Path, capsys: pytest.CaptureFixture) -> None:
    assert config_run([f"ckpt={ckpt}"])[0] == 2
    assert "nothing to classify" in capsys.readouterr().err
    assert config_run([f"ckpt={ckpt}", "inputs=[x.wav]", "format=xml"])[0] == 2
    assert "format='xml'" in capsys.readouterr().err
    assert config_run(["inputs=[x.wav]"])[0] == 2
    assert "no checkpoint given" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert config_run([f"ckpt={ckpt}", "inputs=[x.wav]", "device=cuda"])[0] == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_hydra_module_in_subprocess(
    ckpt: Path, audio: dict[str, Path], tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ser.predict",
            f"ckpt={ckpt}",
            f"inputs=[{audio['flac_16k']},{tmp_path}/gone.wav]",
            "format=json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env,
    )
    assert proc.returncode == 1, proc.stderr
    rows = json.loads(proc.stdout)["predictions"]
    assert [r["path"] for r in rows] == [str(audio["flac_16k"])]
    assert f"{tmp_path}/gone.wav: no such file or folder" in proc.stderr
    assert not (tmp_path / "outputs").exists()  # prediction leaves no Hydra run folder behind


# -- timelines and streams ---------------------------------------------------------------------------


def test_window_starts() -> None:
    assert window_starts(10, 4, 2) == [0, 2, 4, 6]  # 6..10 is the last full window; nothing left over
    assert window_starts(11, 4, 2) == [0, 2, 4, 6, 8]  # 8..11: a partial last window
    assert window_starts(3, 4, 2) == [0]  # shorter than a window: one partial window
    assert window_starts(10, 2, 5) == [0, 5]  # hop > window leaves gaps
    assert window_starts(0, 4, 2) == []


def test_timeline_windows_match_clip_predictions(predictor: Predictor) -> None:
    wave = speechlike(4.3, seed=11)
    rows = predictor.timeline(wave, window=1.0, hop=0.5, path="x")
    starts = [r.start for r in rows]
    assert starts == pytest.approx([0.5 * k for k in range(8)])
    assert rows[-1].end == pytest.approx(4.3) and rows[-2].end == pytest.approx(4.0)
    clips = [wave[round(r.start * SR) : round(r.end * SR)] for r in rows]
    np.testing.assert_allclose(np.stack([r.probabilities for r in rows]), predictor.predict_waves(clips), atol=1e-5)


def blocks_of(wave: np.ndarray, seed: int) -> Iterator[np.ndarray]:
    """The wave cut at random points, as a device would deliver it (some blocks empty)."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, len(wave), size=40))
    yield from np.split(wave, cuts)


def test_stream_gives_the_offline_timeline(predictor: Predictor) -> None:
    wave = speechlike(6.25, seed=12)
    wave[round(2.0 * SR) : round(4.5 * SR)] = 0.0  # a pause long enough to hold whole windows
    offline = predictor.timeline(wave, window=1.5, hop=0.5)
    streamed = list(predictor.stream(blocks_of(wave, seed=3), window=1.5, hop=0.5))
    assert [(r.start, r.end, r.silent, r.label) for r in streamed] == [
        (r.start, r.end, r.silent, r.label) for r in offline
    ]
    assert any(r.silent for r in offline) and not offline[0].silent
    for a, b in zip(streamed, offline, strict=True):
        if not a.silent:
            np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
    # Stereo blocks are mixed down like stereo files.
    stereo = np.stack([wave, wave], axis=1)
    again = list(predictor.stream(np.array_split(stereo, 7), window=1.5, hop=0.5))
    assert [r.label for r in again] == [r.label for r in offline]


def test_stream_at_another_rate_is_resampled(predictor: Predictor) -> None:
    wave44 = speechlike(3.0, 44100, seed=13)
    offline = predictor.timeline(soxr.resample(wave44, 44100, SR, quality="HQ"), window=1.0, hop=0.5)
    streamed = list(predictor.stream(blocks_of(wave44, seed=4), window=1.0, hop=0.5, sample_rate=44100))
    assert [(r.start, r.end) for r in streamed] == [(r.start, r.end) for r in offline]
    for a, b in zip(streamed, offline, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-4)


def test_timeline_csv_and_plot(ckpt: Path, predictor: Predictor, tmp_path: Path) -> None:
    long = tmp_path / "interview.flac"
    wave = speechlike(5.5, seed=14)
    sf.write(long, wave, SR)
    plot = tmp_path / "timeline.png"
    code, out = config_run([f"ckpt={ckpt}", f"inputs=[{long}]", "window=2.0", "hop=1.0", "format=csv", f"plot={plot}"])
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0])[:7] == ["path", "start", "end", "silent", "label", "gender", "emotion"]
    assert [float(r["start"]) for r in rows] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert float(rows[-1]["end"]) == pytest.approx(5.5)
    expected = predictor.timeline(load_audio(long, SR), 2.0, 1.0)
    assert [r["label"] for r in rows] == [e.label for e in expected]
    assert plot.stat().st_size > 10_000


def test_timeline_json_lists_windows(ckpt: Path, audio: dict[str, Path]) -> None:
    code, out = config_run([f"ckpt={ckpt}", f"inputs=[{audio['flac_16k']}]", "window=1.0", "hop=0.5", "format=json"])
    assert code == 0
    doc = json.loads(out)
    assert (doc["header"]["mode"], doc["header"]["window"], doc["header"]["hop"]) == ("timeline", 1.0, 0.5)
    rows = doc["predictions"]
    assert [r["start"] for r in rows] == [0.0, 0.5, 1.0]
    assert set(rows[0]) == {
        "path",
        "start",
        "end",
        "silent",
        "label",
        "gender",
        "emotion",
        "confidence",
        "probabilities",
    }


def test_timeline_segments(ckpt: Path, predictor: Predictor, tmp_path: Path) -> None:
    long = tmp_path / "talk.wav"
    wave = speechlike(6.0, seed=16)
    wave[round(2.0 * SR) : round(4.0 * SR)] = 0.0  # silent windows make a segment of their own
    sf.write(long, wave, SR)
    windows = predictor.timeline(load_audio(long, SR), 1.0, 0.5, path=str(long))
    code, out = config_run(
        [f"ckpt={ckpt}", f"inputs=[{long}]", "window=1.0", "hop=0.5", "segments=true", "format=json"]
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["header"]["mode"] == "segments"
    segs = doc["predictions"]
    assert list(segs[0]) == ["path", "start", "end", "silent", "label", "gender", "emotion", "confidence", "windows"]
    assert sum(s["windows"] for s in segs) == len(windows)
    assert segs[0]["start"] == 0.0 and segs[-1]["end"] == pytest.approx(6.0)
    assert any(s["silent"] for s in segs)
    assert all(a["label"] != b["label"] for a, b in itertools.pairwise(segs))  # merged runs
    labels = [w.label for w in windows]
    runs = [labels[0]] + [b for a, b in itertools.pairwise(labels) if a != b]
    assert [s["label"] for s in segs] == runs
    code, out = config_run([f"ckpt={ckpt}", f"inputs=[{long}]", "window=1.0", "segments=true", "format=csv"])
    assert code == 0 and out.splitlines()[0].endswith(",confidence,windows")
    assert config_run([f"ckpt={ckpt}", f"inputs=[{long}]", "segments=true"])[0] == 2  # needs a window


def test_nan_audio_is_named_and_json_stays_valid(
    ckpt: Path, audio: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    nan = tmp_path / "nan.wav"
    wave = speechlike(1.0, seed=17)
    wave[100:200] = np.nan
    sf.write(nan, wave, SR, subtype="FLOAT")
    code = cli([f"ckpt={ckpt}", f"inputs=[{nan},{audio['flac_16k']}]", "format=json"])
    captured = capsys.readouterr()
    assert code == 1
    doc = json.loads(captured.out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    json.dumps(doc, allow_nan=False)
    assert [r["path"] for r in doc["predictions"]] == [str(audio["flac_16k"])]
    assert doc["errors"] == [{"path": str(nan), "reason": "holds NaN or inf samples; nothing to classify"}]
    assert f"{nan}: holds NaN or inf samples" in captured.err


def test_help_is_about_prediction(subprocess_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ser.predict", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env,
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("ser.predict: label the emotion")
    assert "python -m ser.predict ckpt=" in text and "segments=true" in text and "mic=true" in text
    for group in ("optimizer:", "scheduler:", "trainer:", "hparams_search", "Configuration groups"):
        assert group not in text  # train's config groups do not apply here
    for key in PredictOptions.__dataclass_fields__:  # every option is explained
        assert f"\n  {key} " in text, key


class FakeInputStream:
    """Stands in for ``sounddevice.InputStream``: delivers a synthetic recording through the callback."""

    recording: np.ndarray = np.zeros(0, dtype=np.float32)

    def __init__(self, samplerate: int, channels: int, dtype: str, blocksize: int, device, callback) -> None:
        self.blocksize, self.callback = blocksize, callback

    def __enter__(self) -> FakeInputStream:
        rec = self.recording
        for start in range(0, len(rec), self.blocksize):
            block = rec[start : start + self.blocksize]
            self.callback(block.reshape(-1, 1), len(block), None, None)
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_microphone_path_with_a_fake_device(
    ckpt: Path, predictor: Predictor, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    rate = 48000
    recording = speechlike(3.0, rate, seed=15)
    FakeInputStream.recording = recording
    fake = types.SimpleNamespace(
        InputStream=FakeInputStream,
        query_devices=lambda device, kind: {"default_samplerate": float(rate)},
    )
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    code = cli([f"ckpt={ckpt}", "mic=true", "duration=2.5", "window=1", "hop=0.5", "format=csv"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    heard = soxr.resample(recording[: int(2.5 * rate)], rate, SR, quality="HQ")
    offline = predictor.timeline(heard, window=1.0, hop=0.5)
    assert [float(r["start"]) for r in rows] == [r.start for r in offline]
    assert [r["path"] for r in rows] == ["<mic>"] * len(offline)
    for row, exp in zip(rows, offline, strict=True):
        np.testing.assert_allclose([float(row[c]) for c in CLASSES], exp.probabilities, atol=1e-4)


def test_microphone_segments_as_json_lines(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    rate = 16000
    FakeInputStream.recording = speechlike(3.0, rate, seed=18)
    fake = types.SimpleNamespace(
        InputStream=FakeInputStream,
        query_devices=lambda device, kind: {"default_samplerate": float(rate)},
    )
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    code = cli([f"ckpt={ckpt}", "mic=true", "duration=3", "window=1", "hop=0.5", "segments=true", "format=json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert lines[0]["header"]["mode"] == "segments" and lines[0]["header"]["window"] == 1.0
    segs = lines[1:]
    assert segs and all(s["path"] == "<mic>" for s in segs)
    assert sum(s["windows"] for s in segs) == 5  # windows at 0, 0.5, 1, 1.5, 2 s of 3 s


def test_microphone_without_sounddevice(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import raises ImportError
    assert cli([f"ckpt={ckpt}", "mic=true"]) == 2
    assert "pip install 'ser[live]'" in capsys.readouterr().err


def test_input_failure_text() -> None:
    assert str(InputFailure("a.wav", "silent")) == "a.wav: silent"
