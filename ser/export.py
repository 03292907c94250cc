"""Export a trained network to ONNX or TorchScript: ``python -m ser.export ckpt=best.ckpt format=onnx``.

The exported graph is the network with its training normalization, not the feature extractor:

    inputs   features       float32 [batch, frames, feature_dim]  (the checkpoint's features, unnormalized)
             lengths        int64   [batch]                       (valid frames per clip; padding-invariant)
    outputs  logits         float32 [batch, classes]
             probabilities  float32 [batch, classes]              (softmax or sigmoid, as the trained loss)

Why not waveform in: the front end's length checks and per-clip reflect padding are data-dependent
Python, which ``torch.export`` (ONNX) cannot capture, and a trace would freeze them. Features are
cheap to reproduce: ``ser.features`` (or librosa with the same settings) with the config embedded in
the export, as JSON under the key ``ser`` (ONNX metadata_props; TorchScript extra file ``ser.json``)
and in a ``<output>.json`` sidecar: classes, sample_rate, features, model, loss.

After writing, the export is run on synthetic clips and compared with the checkpoint's network
(``check=true``); a difference above ``tolerance`` is an error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from ser.inference.predictor import Predictor
from ser.models.checkpoint import CheckpointError
from ser.results import write_json
from ser.runtime import run_command, setup_logging

log = logging.getLogger("ser.export")

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
INPUT_NAMES = ("features", "lengths")
OUTPUT_NAMES = ("logits", "probabilities")
METADATA_KEY = "ser"
TOLERANCE = 1e-5
EXPORT_EXAMPLE_SECONDS = (0.1, 0.05, 0.08)


class ExportNet(nn.Module):
    """The network plus the trained loss's probability function: (features, lengths) -> (logits, probs)."""

    def __init__(self, net: nn.Module, probabilities: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.net = net
        self.probabilities = probabilities

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(features, lengths)
        return logits, self.probabilities(logits)


def metadata(predictor: Predictor, fmt: str) -> dict[str, Any]:
    """What a consumer of the export needs to make features and read the outputs."""
    return {
        "format": f"ser-export-v1/{fmt}",
        "source_checkpoint": predictor.source,
        "inputs": {
            "features": "float32 [batch, frames, feature_dim], output of the features config, normalized as "
            "'normalization' says (global: as it is; utterance: each clip by the mean and std of its own frames; "
            "speaker: by the mean and std of all frames of the speaker)",
            "lengths": "int64 [batch], valid frames of each clip",
        },
        "outputs": {"logits": "float32 [batch, classes]", "probabilities": "float32 [batch, classes]"},
        **predictor.config,
        "classes": list(predictor.classes),
        "sample_rate": predictor.sample_rate,
        "normalization": predictor.normalization,
    }


def example_inputs(
    predictor: Predictor, seconds: Sequence[float] = (1.3, 0.4, 0.9), seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of synthetic clips (tone + noise) of the given lengths as a padded batch; a clip shorter
    than the extractor can frame (eGeMAPS needs 60 ms) is lengthened to its ``min_samples``."""
    rng = np.random.default_rng(seed)
    sr = predictor.sample_rate
    waves = []
    for length in seconds:
        t = np.arange(max(int(length * sr), predictor.min_samples)) / sr
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t)
        waves.append((tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32))
    lengths = torch.tensor([w.size for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : w.size] = torch.from_numpy(w)
    with torch.inference_mode():
        feats, frames = predictor.extractor(batch.to(predictor.device), lengths.to(predictor.device))
    return feats.cpu().clone(), frames.cpu().clone()


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Silence the exporters' deprecation and tracer chatter; the export is checked numerically."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript", "onnx_ir")
    noisy = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in noisy]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in noisy:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(noisy, levels, strict=True):
                lg.setLevel(level)


def _lstm_frames_stay_dynamic() -> contextlib.AbstractContextManager[None]:
    """Keep ``aten.lstm``'s output frames equal to its input's through the whole ONNX export.

    ``torch.onnx.export`` captures the graph with a ``while_loop`` LSTM decomposition when shapes are
    dynamic, but then decomposes the program for ONNX outside that patch, where the LSTM's output shape
    is re-derived by the Python-loop decomposition unrolled over the example's frames: its frame dim
    becomes ``k*Min(T, T//k)`` (k: the example's frame count) instead of ``T``. Every size the graph
    computes from it is then wrong when ``T % k != 0``: the reversal index of a bidirectional stack, the
    next layer's input, the pooling. onnxruntime fails at a GatherND, Slice or Concat, or (mean pooling
    after a BiLSTM) silently returns other logits. With the patch on for the whole export, the LSTM
    nodes are unchanged and every frame dim follows the input's.
    """
    try:
        from torch.export._patches import register_lstm_while_loop_decomposition
    except ImportError:  # a torch without it: the export check (``check=true``) still catches a bad graph
        return contextlib.nullcontext()
    return register_lstm_while_loop_decomposition()


def export_onnx(predictor: Predictor, path: Path, opset: int = 18) -> Path:
    """ONNX graph with dynamic batch and frame axes, config JSON in its metadata_props."""
    import onnx

    model = ExportNet(predictor.net, predictor.to_probabilities).eval().cpu()
    # Short clips: without _lstm_frames_stay_dynamic the LSTM is unrolled over the example's frames while
    # decomposing (export time grows with them: ~34 s at 130 frames); with it, ~11 s at any length.
    feats, lengths = example_inputs(predictor, seconds=EXPORT_EXAMPLE_SECONDS)
    # AUTO, not named Dims: a strided front-end (CRNN) derives its frame count from these, and named
    # Dims made torch.export specialize the frames to the example's (a static ONNX input).
    batch = frames = torch.export.Dim.AUTO
    with _quiet_exporters(), contextlib.redirect_stdout(sys.stderr), _lstm_frames_stay_dynamic():
        program = torch.onnx.export(
            model,
            (feats, lengths),
            dynamo=True,
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"features": {0: batch, 1: frames}, "lengths": {0: batch}},
            verbose=False,
        )
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(metadata(predictor, "onnx"))})
    onnx.save(proto, str(path))
    return path


def export_torchscript(predictor: Predictor, path: Path) -> Path:
    """Traced TorchScript module (shapes stay dynamic: the network has no shape-dependent Python)."""
    model = ExportNet(predictor.net, predictor.to_probabilities).eval().cpu()
    feats, lengths = example_inputs(predictor, seconds=EXPORT_EXAMPLE_SECONDS)
    with _quiet_exporters(), torch.no_grad():
        traced = torch.jit.trace(model, (feats, lengths), check_trace=False)
    extra = {f"{METADATA_KEY}.json": json.dumps(metadata(predictor, "torchscript"))}
    with _quiet_exporters():
        torch.jit.save(traced, str(path), _extra_files=extra)
    return path


class ExportedModel:
    """Runs an exported file (ONNX via onnxruntime, TorchScript via torch.jit) on numpy inputs."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.suffix == ".onnx":
            import onnx
            import onnxruntime as ort

            self._session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
            props = {p.key: p.value for p in onnx.load(str(self.path), load_external_data=False).metadata_props}
            self.metadata = json.loads(props.get(METADATA_KEY, "{}"))
            self._module = None
        else:
            extra = {f"{METADATA_KEY}.json": ""}
            with _quiet_exporters():
                self._module = torch.jit.load(str(self.path), map_location="cpu", _extra_files=extra)
            self.metadata = json.loads(extra[f"{METADATA_KEY}.json"] or "{}")
            self._session = None

    def __call__(self, features: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits, probabilities) of features [B, T, F] with valid ``lengths`` [B]."""
        feats = np.ascontiguousarray(features, dtype=np.float32)
        lens = np.ascontiguousarray(lengths, dtype=np.int64)
        if self._session is not None:
            logits, probs = self._session.run(list(OUTPUT_NAMES), {"features": feats, "lengths": lens})
            return logits, probs
        assert self._module is not None
        with torch.inference_mode():
            logits_t, probs_t = self._module(torch.from_numpy(feats), torch.from_numpy(lens))
        return logits_t.numpy(), probs_t.numpy()


def compare(predictor: Predictor, exported: ExportedModel, seed: int = 1) -> float:
    """Largest absolute difference of logits and probabilities, export vs checkpoint network."""
    # Longer and more varied than the export example, so dynamic shapes are exercised.
    feats, lengths = example_inputs(predictor, seconds=(1.3, 0.4, 0.9, 2.1), seed=seed)
    with torch.inference_mode():
        logits = predictor.net(feats.to(predictor.device), lengths.to(predictor.device)).float().cpu()
        probs = predictor.to_probabilities(logits)
    got_logits, got_probs = exported(feats.numpy(), lengths.numpy())
    return float(max(np.abs(got_logits - logits.numpy()).max(), np.abs(got_probs - probs.numpy()).max()))


def default_output(ckpt: str | Path, fmt: str) -> Path:
    """``best.ckpt`` -> ``best.onnx`` / ``best.pt`` next to it."""
    return Path(ckpt).with_suffix(FORMATS[fmt])


def export(
    ckpt: str | Path,
    fmt: str = "onnx",
    output: str | Path | None = None,
    opset: int = 18,
    check: bool = True,
    tolerance: float = TOLERANCE,
) -> Path:
    """Export the checkpoint's network; writes the model and a ``.json`` sidecar; returns the model path."""
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r}: choose one of {', '.join(FORMATS)}")
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    path = Path(output) if output else default_output(ckpt, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":
        export_onnx(predictor, path, opset=opset)
    else:
        export_torchscript(predictor, path)
    write_json(path.with_name(path.name + ".json"), metadata(predictor, fmt))  # atomic: never a truncated sidecar
    if check:
        diff = compare(predictor, ExportedModel(path))
        if not diff <= tolerance:
            raise RuntimeError(f"{path}: exported model differs from the checkpoint by {diff:.3g} > {tolerance:g}")
        log.info("check: export matches the checkpoint network (max abs difference %.2g)", diff)
    return path


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    """``python -m ser.export ckpt=best.ckpt format=onnx|torchscript [output=model.onnx]``."""
    setup_logging("ser.export")
    if not cfg.get("ckpt"):
        print("ser.export: no checkpoint given: ckpt=PATH", file=sys.stderr)
        sys.exit(2)
    try:
        path = export(
            cfg.ckpt,
            str(cfg.format),
            cfg.get("output"),
            opset=int(cfg.opset),
            check=bool(cfg.check),
            tolerance=float(cfg.tolerance),
        )
    except (CheckpointError, ValueError) as exc:
        print(f"ser.export: {exc}", file=sys.stderr)
        sys.exit(2)
    print(path)


def cli() -> None:
    """``python -m ser.export`` / ``ser-export``: a mistake in the command line is one line and exit code 2."""
    run_command(main, "ser.export", CONFIG_DIR, "export")


if __name__ == "__main__":
    cli()
