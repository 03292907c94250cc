"""Prediction from checkpoints: loading, per-file results, output formats, bad inputs, timelines, streams.

Everything runs on a tiny checkpoint written by a real ``lightning.Trainer`` and on audio synthesized
here; no corpus is read.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from ser.data.audio import load_audio
from ser.inference import (
    CheckpointError,
    InputFailure,
    Prediction,
    Predictor,
    load_checkpoint,
    window_starts,
)
from ser.labels import CLASSES
from ser.predict import CONFIG_DIR, cli, options_from_config, run

SR = 16000
N_MELS = 16
ROOT = Path(__file__).resolve().parent.parent


def build_checkpoint(path: Path, loss: str = "categorical", seed: int = 0) -> Path:
    """A small SERModule fitted for one epoch on random features and saved by the Trainer."""
    import lightning as L
    from torch.utils.data import DataLoader

    from ser.data.batching import collate
    from ser.models.module import SERModule

    torch.manual_seed(seed)
    loss_cfg = {"_target_": "ser.losses.CategoricalLoss" if loss == "categorical" else "ser.losses.BinaryLoss"}
    module = SERModule(
        model={"_target_": "ser.models.lstm.LSTMClassifier", "hidden_size": 8, "dense_size": 8, "dropout": 0.0},
        loss=loss_cfg,
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.5},
        input_dim=N_MELS,
        features={"_target_": "ser.features.LogMel", "sample_rate": SR, "n_mels": N_MELS},
        sample_rate=SR,
        classes=list(CLASSES),
    )
    # Statistics of the size log-mel dB features have, so normalization matters to the outputs.
    module.net.normalizer.set_stats(-40.0 + 5 * torch.randn(N_MELS), 8.0 + torch.rand(N_MELS))
    items = [(torch.randn(20 + 3 * i, N_MELS) * 10 - 40, i % 12, 0) for i in range(8)]
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*val_dataloader.*")  # no validation here, on purpose
        trainer.fit(module, train_dataloaders=DataLoader(items, batch_size=4, collate_fn=collate))
    trainer.save_checkpoint(path)
    return path


def speechlike(seconds: float, sr: int = SR, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Harmonic tone with a wandering pitch, syllable-rate loudness and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = rng.uniform(90, 260) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wave = sum(np.sin(k * phase) / k for k in range(1, 6))
    wave *= 0.2 * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    wave += 0.01 * rng.standard_normal(t.size)
    wave = wave.astype(np.float32)
    if channels == 1:
        return wave
    return np.stack([wave * (1 - 0.2 * c) for c in range(channels)], axis=1)


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


# -- checkpoints ------------------------------------------------------------------------------------


def test_checkpoint_is_self_contained(ckpt: Path) -> None:
    state = load_checkpoint(ckpt)
    hp = state["hyper_parameters"]
    assert hp["classes"] == list(CLASSES)
    assert hp["sample_rate"] == SR and hp["features"]["n_mels"] == N_MELS
    assert hp["model"]["_target_"] == "ser.models.lstm.LSTMClassifier"
    assert float(state["state_dict"]["net.normalizer.std"].min()) >= 8.0  # the stats travel with the weights


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


@pytest.mark.parametrize("kind", ["wav_renamed", "other_dict", "no_format", "lacks_stats", "foreign_target", "pickle"])
def test_foreign_checkpoints_are_clear_errors(ckpt: Path, tmp_path: Path, kind: str) -> None:
    bad = tmp_path / f"{kind}.ckpt"
    expect = {
        "wav_renamed": "not a PyTorch checkpoint",
        "other_dict": "no 'ser_format' field",
        "no_format": "no 'ser_format' field",
        "lacks_stats": "state_dict.net.normalizer.mean",
        "foreign_target": "only classes under 'ser.'",
        "pickle": "weights_only",
    }[kind]
    state = torch.load(ckpt, weights_only=True)
    if kind == "wav_renamed":
        sf.write(bad, speechlike(0.2), SR, format="WAV")
    elif kind == "other_dict":
        torch.save({"model": torch.zeros(3)}, bad)
    elif kind == "no_format":
        del state["ser_format"]
        torch.save(state, bad)
    elif kind == "lacks_stats":
        del state["state_dict"]["net.normalizer.mean"]
        del state["hyper_parameters"]["classes"]
        torch.save(state, bad)
        expect = "hyper_parameters.classes"
    elif kind == "foreign_target":
        state["hyper_parameters"]["model"]["_target_"] = "os.system"
        torch.save(state, bad)
    else:
        state["extra"] = types.SimpleNamespace(a=1)  # an arbitrary object: refused by weights_only
        torch.save(state, bad)
    with pytest.raises(CheckpointError, match=expect) as info:
        Predictor.from_checkpoint(bad)
    assert str(bad) in str(info.value)
    if kind == "lacks_stats":
        assert "state_dict.net.normalizer.mean" in str(info.value)


def test_missing_checkpoint_exits_2(tmp_path: Path, audio: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    code = cli(["--ckpt", str(tmp_path / "nope.ckpt"), str(audio["flac_16k"])])
    assert code == 2
    assert "nope.ckpt: checkpoint not found" in capsys.readouterr().err


# -- command line: formats ---------------------------------------------------------------------------


def test_json_output_hydra_shape(ckpt: Path, audio: dict[str, Path]) -> None:
    inputs = f"[{audio['wav_stereo_44k']},{audio['folder']}]"
    code, out = config_run([f"ckpt={ckpt}", f"inputs={inputs}", "format=json"])
    assert code == 0
    rows = json.loads(out)
    folder = audio["folder"]
    assert [r["path"] for r in rows] == [
        str(audio["wav_stereo_44k"]),
        str(folder / "a.wav"),
        str(folder / "nested" / "b.flac"),
    ]
    for r in rows:
        assert set(r) == {"path", "label", "gender", "emotion", "probabilities"}
        assert list(r["probabilities"]) == list(CLASSES)
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)
        assert r["label"] == f"{r['gender']}_{r['emotion']}"
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_csv_and_table_argparse_shape(
    ckpt: Path, predictor: Predictor, audio: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out_file = tmp_path / "sub" / "predictions.csv"
    paths = [str(audio["flac_16k"]), str(audio["ogg_22k"])]
    assert cli(["--ckpt", str(ckpt), *paths, "--format", "csv", "-o", str(out_file)]) == 0
    rows = list(csv.DictReader(out_file.open()))
    assert list(rows[0]) == ["path", "label", "gender", "emotion", *CLASSES]
    expected = predictor.predict_files(paths)
    for row, exp in zip(rows, expected, strict=True):
        assert isinstance(exp, Prediction)
        assert row["path"] == exp.path and row["label"] == exp.label
        np.testing.assert_allclose([float(row[c]) for c in CLASSES], exp.probabilities, atol=1e-6)
    capsys.readouterr()
    assert cli(["--ckpt", str(ckpt), *paths]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["path", "label", "prob", "gender", "emotion"]
    assert [line.split()[0] for line in table[1:]] == paths
    assert [line.split()[1] for line in table[1:]] == [e.label for e in expected]  # type: ignore[union-attr]


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
    code = cli(["--ckpt", str(ckpt), *args, "--format", "json"])
    captured = capsys.readouterr()
    assert code == 1
    rows = json.loads(captured.out)
    assert [r["path"] for r in rows] == [str(good)]
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


def test_hydra_module_in_subprocess(ckpt: Path, audio: dict[str, Path], tmp_path: Path) -> None:
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
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 1, proc.stderr
    rows = json.loads(proc.stdout)
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
    rows = json.loads(out)
    assert [r["start"] for r in rows] == [0.0, 0.5, 1.0]
    assert set(rows[0]) == {"path", "start", "end", "silent", "label", "gender", "emotion", "probabilities"}


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
    code = cli(["--ckpt", str(ckpt), "--mic", "--duration", "2.5", "--window", "1", "--hop", "0.5", "--format", "csv"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    heard = soxr.resample(recording[: int(2.5 * rate)], rate, SR, quality="HQ")
    offline = predictor.timeline(heard, window=1.0, hop=0.5)
    assert [float(r["start"]) for r in rows] == [r.start for r in offline]
    assert [r["path"] for r in rows] == ["<mic>"] * len(offline)
    for row, exp in zip(rows, offline, strict=True):
        np.testing.assert_allclose([float(row[c]) for c in CLASSES], exp.probabilities, atol=1e-4)


def test_microphone_without_sounddevice(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import raises ImportError
    assert cli(["--ckpt", str(ckpt), "--mic"]) == 2
    assert "pip install 'ser[live]'" in capsys.readouterr().err


def test_input_failure_text() -> None:
    assert str(InputFailure("a.wav", "silent")) == "a.wav: silent"
