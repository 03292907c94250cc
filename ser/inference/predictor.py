"""The Predictor: a checkpoint's network and features classifying files, raw waves, timelines and streams.

``Predictor.from_checkpoint`` rebuilds extractor and network through :mod:`ser.models.checkpoint`
(safe load, the ``_target_`` allow-list); nothing else (no data, no Hydra config) is read.

Probabilities are what the trained module reports: softmax for the categorical loss, 12 independent
sigmoids for the binary loss. The predicted class is the argmax either way.

The sliding-window timeline and live input share one code path, :meth:`Predictor.stream`, which
consumes an iterator of audio blocks; an offline timeline is the same stream fed with one block.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch
from torch import nn

from ser.data.audio import AudioError, is_silent, load_audio
from ser.data.corpus import audio_extensions, find_audio_files
from ser.data.normalization import check_normalization, moments, standardize
from ser.inference.prediction import InputFailure, Prediction
from ser.models.checkpoint import rebuild

SILENCE_THRESHOLD = 1e-4
# Cap on samples per padded feature batch, so one long file does not pull a batch of short ones
# up to its length (and memory stays bounded: ~2 min of 16 kHz audio per batch).
MAX_BATCH_SAMPLES = 2_000_000


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
        normalization: str = "global",
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
        self.min_samples = int(extractor.min_samples)
        # How the model's training features were normalized before the network (ser.data.normalization).
        # utterance/speaker: each input by its own frames, unless fit_speaker() fixed one speaker's statistics.
        self.normalization = check_normalization(normalization)
        self.speaker_stats: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", batch_size: int = 64) -> Predictor:
        """Rebuild extractor and network from a ``ser.train`` checkpoint (see :func:`ser.models.checkpoint.rebuild`)."""
        return cls.from_rebuilt(rebuild(path), device=device, batch_size=batch_size)

    @classmethod
    def from_rebuilt(cls, model: Any, device: str | torch.device = "cpu", batch_size: int = 64) -> Predictor:
        """A predictor of a :class:`ser.models.checkpoint.RebuiltModel`."""
        return cls(
            model.net,
            model.extractor,
            model.loss.probabilities,
            model.classes,
            model.sample_rate,
            device=device,
            batch_size=batch_size,
            source=model.source,
            config=model.config,
            normalization=model.normalization,
        )

    # -- core ----------------------------------------------------------------------------------------

    @torch.inference_mode()
    def forward_batch(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Probabilities [B, C] of a zero-padded batch of waves [B, N] with valid ``lengths`` [B]."""
        waves = waves.to(self.device)
        lengths = lengths.to(self.device)
        feats, frames = self.extractor(waves, lengths)
        feats = self._normalize(feats, frames)
        return self.to_probabilities(self.net(feats, frames)).float().cpu()

    def _normalize(self, feats: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        if self.normalization == "global":
            return feats  # the network standardizes with its stored training statistics
        if self.speaker_stats is not None:
            return standardize(feats, tuple(t.to(feats.device) for t in self.speaker_stats))
        out = torch.zeros_like(feats)
        for i, n in enumerate(frames.tolist()):
            out[i, :n] = standardize(feats[i, :n], moments([feats[i, :n]]))
        return out

    @torch.inference_mode()
    def fit_speaker(self, waves: Sequence[np.ndarray]) -> None:
        """Treat ``waves`` (mono, at the model's rate) as one speaker: later inputs are normalized with
        the statistics of all their frames, as training normalized each speaker (normalization=speaker)."""
        blocks = []
        for w in waves:
            feats, frames = self.extractor(torch.from_numpy(np.asarray(w, np.float32))[None].to(self.device))
            blocks.append(feats[0, : int(frames[0])].cpu())
        self.speaker_stats = moments(blocks)

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
        if not np.isfinite(wave).all():
            # NaN would pass the silence test and come out as NaN probabilities with a made-up label.
            return InputFailure(path, "holds NaN or inf samples; nothing to classify")
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
