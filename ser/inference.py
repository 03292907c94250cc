"""Prediction from a trained checkpoint: files, raw waves, sliding-window timelines and audio streams.

A checkpoint written by ``ser.train`` carries everything prediction needs: the class names, the
audio sample rate, the feature extractor config, the network config and weights, and the training
normalization statistics (buffers of the network's ``normalizer``). ``Predictor.from_checkpoint``
loads it with ``torch.load(weights_only=True)`` and rebuilds the extractor and the network from the
saved configs; nothing else (no data, no Hydra config) is read.

Probabilities are what the trained module reports: softmax for the categorical loss, 12 independent
sigmoids for the binary loss. The predicted class is the argmax either way.

The sliding-window timeline and live input share one code path, :meth:`Predictor.stream`, which
consumes an iterator of audio blocks; an offline timeline is the same stream fed with one block.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch
from hydra.utils import instantiate
from torch import nn

from ser.checkpoint import CHECKPOINT_FORMAT
from ser.data.audio import AudioError, is_silent, load_audio
from ser.data.corpus import audio_extensions, find_audio_files

log = logging.getLogger("ser.predict")

REQUIRED_HPARAMS = ("model", "loss", "features", "sample_rate", "classes", "input_dim")
REQUIRED_STATE = ("net.normalizer.mean", "net.normalizer.std")
# Configs in a checkpoint are instantiated by name; only this project's classes are accepted, so a
# crafted checkpoint cannot name an arbitrary callable (weights_only alone would not stop that).
TRUSTED_TARGET_PREFIX = "ser."
SILENCE_THRESHOLD = 1e-4
# Cap on samples per padded feature batch, so one long file does not pull a batch of short ones
# up to its length (and memory stays bounded: ~2 min of 16 kHz audio per batch).
MAX_BATCH_SAMPLES = 2_000_000


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used for prediction; the message names the file and why."""


@dataclass(frozen=True, eq=False)  # no field-wise ==: it would compare arrays
class Prediction:
    """Class probabilities of one clip, or of one window ``[start, end)`` seconds of a recording.

    ``probabilities`` is None for a silent window of a timeline (nothing to classify).
    """

    path: str
    classes: tuple[str, ...]
    probabilities: np.ndarray | None
    start: float | None = None
    end: float | None = None
    duration: float | None = None  # seconds of audio classified (not part of to_dict)

    @property
    def silent(self) -> bool:
        return self.probabilities is None

    @property
    def index(self) -> int | None:
        return None if self.probabilities is None else int(np.argmax(self.probabilities))

    @property
    def label(self) -> str | None:
        i = self.index
        return None if i is None else self.classes[i]

    @property
    def confidence(self) -> float | None:
        i = self.index
        return None if i is None or self.probabilities is None else float(self.probabilities[i])

    @property
    def gender(self) -> str | None:
        return None if self.label is None else split_class(self.label)[0]

    @property
    def emotion(self) -> str | None:
        return None if self.label is None else split_class(self.label)[1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: path, [start, end, silent,] label, gender, emotion, probabilities by class name."""
        out: dict[str, Any] = {"path": self.path}
        if self.start is not None:
            out.update(start=round(self.start, 6), end=round(float(self.end or 0.0), 6), silent=self.silent)
        out.update(label=self.label, gender=self.gender, emotion=self.emotion)
        out["probabilities"] = (
            None
            if self.probabilities is None
            else {name: float(p) for name, p in zip(self.classes, self.probabilities, strict=True)}
        )
        return out


@dataclass(frozen=True)
class InputFailure:
    """An input that gave no prediction (missing, not audio, empty, silent, too short) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def split_class(name: str) -> tuple[str, str]:
    """("male", "sad") of "male_sad"; the checkpoint's class names follow ``<gender>_<emotion>``."""
    gender, _, emotion = name.partition("_")
    return gender, emotion


# -- checkpoints ----------------------------------------------------------------------------------


def _targets(cfg: Any) -> Iterator[str]:
    """Every ``_target_`` in a (nested) config."""
    if isinstance(cfg, Mapping):
        for k, v in cfg.items():
            if k == "_target_":
                yield str(v)
            else:
                yield from _targets(v)
    elif isinstance(cfg, (list, tuple)):
        for v in cfg:
            yield from _targets(v)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Safely load a ``ser.train`` checkpoint and check it has what prediction needs."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file (e.g. .../checkpoints/best.ckpt)")
    if not zipfile.is_zipfile(path):
        # torch.save has written zip archives since torch 1.6; anything else (audio renamed .ckpt,
        # text, a truncated download) would only fail deeper in the unpickler with a cryptic message.
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (not a torch.save zip archive); give a .ckpt written by ser.train"
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses objects other than tensors and plain containers.
        raise CheckpointError(
            f"{path}: refused by safe loading (weights_only): it holds objects other than tensors and plain "
            f"containers, so it is not a ser checkpoint ({_first_line(exc)})"
        ) from exc
    except Exception as exc:  # zip/pickle readers raise RuntimeError, EOFError, ValueError, ... by damage
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {_first_line(exc)}); "
            "give a .ckpt written by ser.train"
        ) from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: holds a {type(ckpt).__name__}, not a ser.train checkpoint")
    fmt = ckpt.get("ser_format")
    if fmt is None:
        raise CheckpointError(
            f"{path}: no 'ser_format' field: not a checkpoint written by ser.train (expected {CHECKPOINT_FORMAT})"
        )
    if fmt != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {fmt!r}; this version of ser reads {CHECKPOINT_FORMAT!r}")
    hparams = ckpt.get("hyper_parameters")
    state = ckpt.get("state_dict")
    missing = []
    if not isinstance(hparams, Mapping):
        missing.append("hyper_parameters")
    else:
        missing += [f"hyper_parameters.{k}" for k in REQUIRED_HPARAMS if hparams.get(k) is None]
    if not isinstance(state, Mapping):
        missing.append("state_dict")
    else:
        missing += [f"state_dict.{k}" for k in REQUIRED_STATE if k not in state]
    if missing:
        raise CheckpointError(f"{path}: the checkpoint lacks {', '.join(missing)}; it cannot be used for prediction")
    assert isinstance(hparams, Mapping)
    for key in ("model", "loss", "features"):
        bad = [t for t in _targets(hparams[key]) if not t.startswith(TRUSTED_TARGET_PREFIX)]
        if bad:
            raise CheckpointError(
                f"{path}: hyper_parameters.{key} names {bad}; only classes under "
                f"'{TRUSTED_TARGET_PREFIX}' are instantiated from a checkpoint"
            )
    return ckpt


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto``/None -> cuda when available, else cpu; an unavailable cuda is a ValueError."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device={device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: no CUDA device is available here; use cpu or auto")
    return dev


def _mono(block: np.ndarray) -> np.ndarray:
    """[n] or [n, channels] -> float32 [n], channels averaged (as load_audio mixes files down)."""
    a = np.asarray(block, dtype=np.float32)
    if a.ndim == 2:
        a = a.mean(axis=1, dtype=np.float32) if a.shape[1] > 1 else a[:, 0]
    elif a.ndim != 1:
        raise ValueError(f"audio blocks must be [samples] or [samples, channels], got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float32)


def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Start samples of the windows over ``num_samples``: every full window, then one partial last
    window if the full ones leave a tail (its own length; the network is padding-invariant)."""
    starts = []
    k = 0
    while k * hop < num_samples and (k == 0 or (k - 1) * hop + window < num_samples):
        starts.append(k * hop)
        k += 1
    return starts


class Predictor:
    """A trained network with its feature extractor, ready to classify audio.

    Waves are float32 mono at ``sample_rate`` (``predict_files`` and ``stream`` convert).
    """

    def __init__(
        self,
        net: nn.Module,
        extractor: nn.Module,
        probabilities: Callable[[torch.Tensor], torch.Tensor],
        classes: Sequence[str],
        sample_rate: int,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        source: str = "",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be at least 1")
        self.device = resolve_device(device)
        self.net = net.eval().to(self.device)
        self.extractor = extractor.eval().to(self.device)
        self.to_probabilities = probabilities
        self.classes = tuple(classes)
        self.sample_rate = int(sample_rate)
        self.batch_size = int(batch_size)
        self.source = source
        # The saved configs (features, model, loss, sample_rate, classes): exports embed them.
        self.config = dict(config or {})
        self.min_samples = int(getattr(extractor, "min_samples", 2))

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", batch_size: int = 64) -> Predictor:
        """Rebuild extractor and network from a ``ser.train`` checkpoint (see module docstring)."""
        ckpt = load_checkpoint(path)
        hp = ckpt["hyper_parameters"]
        try:
            extractor = instantiate(dict(hp["features"]))
            net = instantiate(dict(hp["model"]), input_dim=int(hp["input_dim"]))
            loss = instantiate(dict(hp["loss"]))
        except Exception as exc:
            raise CheckpointError(f"{path}: cannot rebuild the model from its saved config: {exc}") from exc
        state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit the saved model config: {exc}") from exc
        if int(getattr(extractor, "out_dim", hp["input_dim"])) != int(hp["input_dim"]):
            raise CheckpointError(f"{path}: feature size {extractor.out_dim} != model input_dim {hp['input_dim']}")
        mean, std = state["normalizer.mean"], state["normalizer.std"]
        if bool((mean == 0).all()) and bool((std == 1).all()):
            log.warning("%s: normalization statistics are the untrained defaults (mean 0, std 1)", path)
        return cls(
            net,
            extractor,
            loss.probabilities,
            hp["classes"],
            int(hp["sample_rate"]),
            device=device,
            batch_size=batch_size,
            source=str(path),
            config={k: hp[k] for k in ("features", "model", "loss", "sample_rate", "classes", "input_dim")},
        )

    # -- core ----------------------------------------------------------------------------------------

    @torch.inference_mode()
    def forward_batch(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Probabilities [B, C] of a zero-padded batch of waves [B, N] with valid ``lengths`` [B]."""
        waves = waves.to(self.device)
        lengths = lengths.to(self.device)
        feats, frames = self.extractor(waves, lengths)
        return self.to_probabilities(self.net(feats, frames)).float().cpu()

    def _check_length(self, n: int) -> None:
        if n < self.min_samples:
            raise ValueError(
                f"too short: {n} samples ({n / self.sample_rate * 1000:.1f} ms at {self.sample_rate} Hz); "
                f"need at least {self.min_samples}"
            )

    def predict_waves(self, waves: Sequence[np.ndarray] | np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        """Probabilities [B, C] of mono waves (a list of 1-D arrays, or one [B, N] array of equal clips).

        Waves are resampled from ``sample_rate`` when it differs from the model's. Clips are batched by
        length so padding stays small; a clip too short to frame raises ValueError.
        """
        clips = [np.asarray(w, dtype=np.float32).reshape(-1) for w in waves]
        if sample_rate is not None and sample_rate != self.sample_rate:
            clips = [soxr.resample(w, sample_rate, self.sample_rate, quality="HQ").astype(np.float32) for w in clips]
        for w in clips:
            self._check_length(w.size)
        out = np.zeros((len(clips), len(self.classes)), dtype=np.float32)
        order = sorted(range(len(clips)), key=lambda i: clips[i].size)
        pos = 0
        while pos < len(order):
            # Lengths ascend, so the last clip taken sets the padded width of the batch.
            end = pos + 1
            while (
                end < len(order)
                and end - pos < self.batch_size
                and clips[order[end]].size * (end - pos + 1) <= MAX_BATCH_SAMPLES
            ):
                end += 1
            idx = order[pos:end]
            lengths = torch.tensor([clips[i].size for i in idx])
            batch = torch.zeros(len(idx), int(lengths.max()))
            for row, i in enumerate(idx):
                batch[row, : clips[i].size] = torch.from_numpy(clips[i])
            out[idx] = self.forward_batch(batch, lengths).numpy()
            pos = end
        return out

    # -- files ---------------------------------------------------------------------------------------

    def _decode(self, path: str) -> np.ndarray | InputFailure:
        """Decoded mono wave of one file, or why it cannot be classified."""
        if os.path.getsize(path) == 0:
            return InputFailure(path, "empty file (0 bytes)")
        try:
            wave = load_audio(path, self.sample_rate)
        except AudioError as exc:
            return InputFailure(path, str(exc).removeprefix(f"{path}: "))
        if is_silent(wave, SILENCE_THRESHOLD):
            return InputFailure(path, f"silent: no sample above {SILENCE_THRESHOLD:g}, nothing to classify")
        if wave.size < self.min_samples:
            return InputFailure(
                path,
                f"too short: {wave.size} samples at {self.sample_rate} Hz, need at least {self.min_samples}",
            )
        return wave

    def iter_inputs(
        self, inputs: Iterable[str | Path], chunk: int = 256, workers: int | None = None
    ) -> Iterator[list[tuple[str, np.ndarray | InputFailure]]]:
        """Inputs (folders expanded) decoded ``chunk`` files at a time, in order, so memory stays
        bounded on big folders; decoding runs in threads (soundfile and soxr release the GIL)."""
        items = expand_inputs(inputs)
        with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
            for i in range(0, len(items), chunk):
                part = items[i : i + chunk]
                decoded = pool.map(lambda it: it if isinstance(it, InputFailure) else self._decode(it), part)
                yield [
                    (it.path if isinstance(it, InputFailure) else it, d) for it, d in zip(part, decoded, strict=True)
                ]

    def predict_files(self, inputs: Iterable[str | Path]) -> list[Prediction | InputFailure]:
        """One result per audio file, in input order (folders expand to their audio files, sorted)."""
        results: list[Prediction | InputFailure] = []
        for loaded in self.iter_inputs(inputs):
            good = [i for i, (_, w) in enumerate(loaded) if isinstance(w, np.ndarray)]
            probs = self.predict_waves([loaded[i][1] for i in good]) if good else None
            part: list[Prediction | InputFailure] = [w for _, w in loaded]  # type: ignore[misc]
            for row, i in enumerate(good):
                assert probs is not None
                seconds = loaded[i][1].size / self.sample_rate  # type: ignore[union-attr]
                part[i] = Prediction(loaded[i][0], self.classes, probs[row], duration=seconds)
            results.extend(part)
        return results

    # -- timelines and streams -----------------------------------------------------------------------

    def _window_samples(self, window: float, hop: float) -> tuple[int, int]:
        if window <= 0 or hop <= 0:
            raise ValueError(f"window ({window}) and hop ({hop}) must be positive seconds")
        win, step = round(window * self.sample_rate), round(hop * self.sample_rate)
        if win < self.min_samples:
            raise ValueError(f"window={window} s is {win} samples; the features need at least {self.min_samples}")
        return win, max(1, step)

    def _predict_windows(
        self, buf: np.ndarray, offset: int, starts: list[int], win: int, path: str
    ) -> list[Prediction]:
        """Predictions of windows ``[s, s + win)`` (absolute sample indices; cut at the buffer's end).

        Full windows go through the network in batches of ``batch_size``; a silent window is kept with
        no probabilities, a tail too short to frame is dropped.
        """
        sr = self.sample_rate
        total = offset + buf.size
        spans = [(s, min(s + win, total)) for s in starts]
        keep = [i for i, (s, e) in enumerate(spans) if e - s >= self.min_samples]
        peaks = [float(np.abs(buf[s - offset : e - offset]).max()) for s, e in (spans[i] for i in keep)]
        active = [i for i, peak in zip(keep, peaks, strict=True) if peak >= SILENCE_THRESHOLD]
        probs: dict[int, np.ndarray] = {}
        full = [i for i in active if spans[i][1] - spans[i][0] == win]
        partial = [i for i in active if spans[i][1] - spans[i][0] < win]
        tensor = torch.from_numpy(buf)
        for b in range(0, len(full), self.batch_size):
            idx = full[b : b + self.batch_size]
            rows = torch.stack([tensor[spans[i][0] - offset : spans[i][0] - offset + win] for i in idx])
            out = self.forward_batch(rows, torch.full((len(idx),), win)).numpy()
            probs.update(zip(idx, out, strict=True))
        if partial:
            tails = [buf[spans[i][0] - offset : spans[i][1] - offset] for i in partial]
            probs.update(zip(partial, self.predict_waves(tails), strict=True))
        return [
            Prediction(
                path,
                self.classes,
                probs.get(i),
                start=spans[i][0] / sr,
                end=spans[i][1] / sr,
                duration=(spans[i][1] - spans[i][0]) / sr,
            )
            for i in keep
        ]

    def stream(
        self,
        blocks: Iterable[np.ndarray],
        window: float,
        hop: float,
        sample_rate: int | None = None,
        path: str = "<stream>",
    ) -> Iterator[Prediction]:
        """Timeline of an audio stream, yielded as soon as each window is complete.

        ``blocks``: arrays [n] or [n, channels] of any size at ``sample_rate`` (default: the model's),
        e.g. microphone buffers. Windows are ``window`` s long every ``hop`` s; when the stream ends a
        last partial window covers the tail. Fed the same audio in any block sizes, the windows are the
        same as those of :meth:`timeline`.
        """
        win, step = self._window_samples(window, hop)
        resampler = None
        if sample_rate is not None and sample_rate != self.sample_rate:
            resampler = soxr.ResampleStream(sample_rate, self.sample_rate, 1, dtype="float32", quality="HQ")
        buf = np.zeros(0, dtype=np.float32)
        offset = 0  # absolute index of buf[0]
        k = 0  # next window number

        def ready(total: int) -> list[int]:
            nonlocal k
            starts = []
            while k * step + win <= total:
                starts.append(k * step)
                k += 1
            return starts

        for block in blocks:
            mono = _mono(block)
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=False)
            if mono.size == 0:
                continue
            buf = mono if buf.size == 0 else np.concatenate([buf, mono])
            starts = ready(offset + buf.size)
            if starts:
                yield from self._predict_windows(buf, offset, starts, win, path)
                # Keep only what later windows still need.
                drop = min(k * step - offset, buf.size)
                buf, offset = buf[drop:], offset + drop
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if tail.size:
                buf = np.concatenate([buf, tail])
        total = offset + buf.size
        starts = ready(total)
        # The tail window, by the same rule as window_starts: only if the full windows left samples.
        rest = [s for s in window_starts(total, win, step) if s >= k * step]
        if starts or rest:
            yield from self._predict_windows(buf, offset, starts + rest, win, path)

    def timeline(self, wave: np.ndarray, window: float, hop: float, path: str = "<wave>") -> list[Prediction]:
        """Predictions of sliding windows over one mono wave at the model's sample rate."""
        return list(self.stream([wave], window, hop, path=path))

    def timeline_files(
        self, inputs: Iterable[str | Path], window: float, hop: float
    ) -> list[tuple[str, list[Prediction] | InputFailure]]:
        """Timeline of each audio file (folders expanded), or why it has none."""
        out: list[tuple[str, list[Prediction] | InputFailure]] = []
        # Small chunks: long recordings are what timelines are for, so few are held at once.
        for loaded in self.iter_inputs(inputs, chunk=4):
            for path, wave in loaded:
                if isinstance(wave, InputFailure):
                    out.append((path, wave))
                else:
                    out.append((path, self.timeline(wave, window, hop, path=path)))
        return out


def expand_inputs(inputs: Iterable[str | Path]) -> list[str | InputFailure]:
    """Files as given, folders as their audio files (recursively, sorted); missing paths as failures.

    A file named explicitly is tried whatever its suffix: libsndfile decides whether it is audio.
    """
    out: list[str | InputFailure] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = find_audio_files(p)
            if not files:
                exts = ", ".join(sorted(audio_extensions())[:8])
                out.append(InputFailure(str(p), f"folder holds no audio files (looked for {exts}, ...)"))
            out.extend(str(f) for f in files)
        elif p.is_file():
            out.append(str(p))
        elif p.exists():
            out.append(InputFailure(str(p), "not a regular file or folder"))
        else:
            out.append(InputFailure(str(p), "no such file or folder"))
    return out
