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
from checkpoint_fixtures import CRNN, LSTM, build_checkpoint, speechlike

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
def test_export_matches_checkpoint(ckpt: Path, tmp_path: Path, fmt: str, request: pytest.FixtureRequest) -> None:
    if fmt == "onnx" and "crnn" in request.node.callspec.id:
        # Known: the bidirectional CRNN's ONNX graph can get two frame dims that onnxruntime finds unequal at
        # a Concat for some lengths (the BiLSTM and the unidirectional CRNN export fine); TorchScript works.
        request.applymarker(pytest.mark.xfail(reason="bidirectional CRNN ONNX: dynamic frame dims", strict=False))
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


def test_default_output_and_bad_input(ckpt: Path, tmp_path: Path) -> None:
    assert default_output(ckpt, "onnx") == ckpt.with_suffix(".onnx")
    assert default_output(ckpt, "torchscript") == ckpt.with_suffix(".pt")
    with pytest.raises(ValueError, match="format='tflite'"):
        export(ckpt, "tflite")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"RIFF....WAVEfmt ")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        export(bad, "torchscript")


def test_help_is_about_export() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ser.export", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("ser.export: write the network")
    assert "python -m ser.export ckpt=" in text and "format=torchscript" in text
    for group in ("optimizer:", "scheduler:", "trainer:", "Configuration groups"):
        assert group not in text  # train's config groups do not apply here
    for key in ("ckpt", "format", "output", "opset", "check", "tolerance"):
        assert f"\n  {key} " in text, key
