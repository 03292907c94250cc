"""Exported networks (ONNX, TorchScript) give the checkpoint's outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoint_fixtures import CRNN, LSTM, build_checkpoint, fill_the_disk, speechlike

from ser.export import ExportedModel, default_output, export
from ser.inference.predictor import Predictor
from ser.labels import CLASSES
from ser.models.checkpoint import CheckpointError

TOL = 1e-5


@pytest.fixture(scope="module", params=["lstm", "crnn"])
def ckpt(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = {"lstm": LSTM, "crnn": CRNN}[request.param]
    return build_checkpoint(tmp_path_factory.mktemp("export") / "best.ckpt", seed=3, model=model)


def features_of(predictor: Predictor, seconds: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded feature batch of synthetic clips of different lengths (not the export's example)."""
    waves = [torch.from_numpy(speechlike(s, seed=20 + i)) for i, s in enumerate(seconds)]
    lengths = torch.tensor([w.numel() for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : w.numel()] = w
    with torch.no_grad():
        return predictor.extractor(batch, lengths)


# ONNX is marked slow only for its cost: torch.export's first use takes ~5 s, TorchScript ~0.2 s.
@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=pytest.mark.slow)])
def test_export_matches_checkpoint(ckpt: Path, tmp_path: Path, fmt: str) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    path = export(ckpt, fmt, tmp_path / f"model.{fmt}", check=True, tolerance=TOL)
    predictor = Predictor.from_checkpoint(ckpt)
    model = ExportedModel(path)
    # Batch size and frame count both differ from the export's example inputs.
    feats, frames = features_of(predictor, [2.4, 0.3, 1.0, 1.7, 0.05])
    logits, probs = model(feats.numpy(), frames.numpy())
    with torch.no_grad():
        ref_logits = predictor.net(feats, frames)
        ref_probs = predictor.to_probabilities(ref_logits)
    np.testing.assert_allclose(logits, ref_logits.numpy(), atol=TOL)
    np.testing.assert_allclose(probs, ref_probs.numpy(), atol=TOL)
    # The end-to-end prediction, through the exported network instead of the checkpoint's.
    wave = speechlike(3.0, seed=30)
    f1, n1 = predictor.extractor(torch.from_numpy(wave)[None], None)
    np.testing.assert_allclose(model(f1.numpy(), n1.numpy())[1][0], predictor.predict_waves([wave])[0], atol=TOL)
    # What a consumer needs to make the features and read the outputs travels with the file.
    for meta in (model.metadata, json.loads(path.with_name(path.name + ".json").read_text())):
        assert meta["classes"] == list(CLASSES)
        assert meta["sample_rate"] == 16000
        assert meta["features"]["_target_"] == "ser.features.LogMel"
        assert meta["format"] == f"ser-export-v1/{fmt}"
        assert meta["normalization"] == "global"


# Before ser.export kept the LSTM's frame dims dynamic through the ONNX decomposition, these graphs took
# the LSTM output's frames as k*Min(T, T//k) (k: the example's frames) and failed in onnxruntime at a
# GatherND (a second bidirectional layer) or gave other logits (mean pooling after a BiLSTM).
@pytest.mark.slow
@pytest.mark.parametrize(
    "model",
    [
        pytest.param({**CRNN, "pooling": "mean"}, id="crnn-mean"),
        pytest.param({**LSTM, "bidirectional": True, "num_layers": 2, "pooling": "last"}, id="bilstm2-last"),
    ],
)
def test_onnx_export_keeps_frames_dynamic_through_every_recurrent_layer(model: dict, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    ckpt = build_checkpoint(tmp_path / "best.ckpt", seed=3, model=model)
    path = export(ckpt, "onnx", tmp_path / "model.onnx", check=True, tolerance=TOL)
    predictor = Predictor.from_checkpoint(ckpt)
    exported = ExportedModel(path)
    # Frame counts that are and are not multiples of the example's, batches of 1 to 5.
    for seconds in ([2.4, 0.3, 1.0, 1.7, 0.05], [0.7], [0.33, 0.21], [0.12, 0.5, 0.9]):
        feats, frames = features_of(predictor, seconds)
        with torch.no_grad():
            ref = predictor.net(feats, frames)
        np.testing.assert_allclose(exported(feats.numpy(), frames.numpy())[0], ref.numpy(), atol=TOL)


def test_metadata_sidecar_is_written_atomically(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = export(ckpt, "torchscript", tmp_path / "model.pt", check=False)
    sidecar = path.with_name(path.name + ".json")
    old = sidecar.read_text()
    assert json.loads(old)["format"] == "ser-export-v1/torchscript"

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("killed before the rename")

    # The disk fills up while the sidecar is written, or the process dies before the rename: either way
    # the earlier sidecar stays whole and no temporary file is left beside it.
    for break_it in (lambda: fill_the_disk(monkeypatch), lambda: monkeypatch.setattr(os, "replace", broken_replace)):
        break_it()
        with pytest.raises(OSError, match="No space left|killed"):
            export(ckpt, "torchscript", path, check=False)
        monkeypatch.undo()
        assert sidecar.read_text() == old
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.json"]


def test_default_output_and_bad_input(ckpt: Path, tmp_path: Path) -> None:
    assert default_output(ckpt, "onnx") == ckpt.with_suffix(".onnx")
    assert default_output(ckpt, "torchscript") == ckpt.with_suffix(".pt")
    with pytest.raises(ValueError, match="format='tflite'"):
        export(ckpt, "tflite")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"RIFF....WAVEfmt ")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        export(bad, "torchscript")


def test_help_is_about_export(subprocess_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ser.export", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env,
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("ser.export: write the network")
    assert "python -m ser.export ckpt=" in text and "format=torchscript" in text
    for group in ("optimizer:", "scheduler:", "trainer:", "Configuration groups"):
        assert group not in text  # train's config groups do not apply here
    for key in ("ckpt", "format", "output", "opset", "check", "tolerance"):
        assert f"\n  {key} " in text, key
