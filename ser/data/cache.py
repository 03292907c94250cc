"""Feature cache: features of a file set computed once, reused by every run and every sweep job.

The key hashes the audio and feature config and each file's identity (path, size, mtime), so a
changed file or setting gives a new entry and nothing stale is ever served. Entries are written to a
temporary file and renamed into place (atomic); a file lock makes jobs that start together wait for
one builder instead of duplicating the work; an entry that fails to load or to validate (truncated,
foreign) is rebuilt. A speed-perturbed entry (``speed`` != 1) names its speed in the key; speed 1 keys exactly
as unperturbed features always did, so it reuses their entries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from tqdm.auto import tqdm

from ser.data.audio import (
    AudioError,
    change_speed,
    change_speed_stream,
    is_finite,
    is_silent,
    load_audio,
    load_short_audio,
    stream_audio,
)
from ser.data.chunked import extract_chunked
from ser.data.corpus import Clip, Exclusion

log = logging.getLogger(__name__)

CACHE_VERSION = 1
BATCH_SECONDS = 60.0  # padded audio per feature batch; a longer clip is streamed and extracted in chunks of it
PREFETCH = 64  # decoded clips that may wait for extraction: bounds the decoders' lead on the extractor
SILENCE = 1e-4
SILENT = "silent: no sample above 1e-4"
NON_FINITE = "non-finite: NaN or inf samples (they would turn the normalization statistics to NaN)"
SKIP_HINT = "Run with data.on_error=skip to leave such files out (the data report lists them)."


def with_hint(message: str) -> str:
    """An unreadable file's message with the way out, as one line."""
    return f"{message}{' ' if message.endswith(('?', '.')) else '. '}{SKIP_HINT}"


def bad_wave(wave: np.ndarray, min_samples: int) -> str | None:
    """Why a decoded clip is left out whatever data.on_error says, or None for a usable one."""
    if not is_finite(wave):  # first: NaN passes the silence test
        return NON_FINITE
    if is_silent(wave, SILENCE):
        return SILENT
    if wave.size < min_samples:
        return f"too short: {wave.size} samples < {min_samples}"
    return None


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:  # decoding names the problem; here it only orders the work
        return 0


def _prefetched(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, ahead: int) -> Iterator:
    """``pool.map(fn, items)`` with at most ``ahead`` results computed but not yet consumed (map submits all)."""
    pending: deque[Future] = deque()
    it = iter(items)
    try:
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:  # an error stops the build: do not decode the rest
            future.cancel()


@dataclass
class FeatureSet:
    """Variable-length features of many clips, stored as one [frames, dim] tensor plus offsets."""

    clip_ids: list[str]
    features: torch.Tensor
    offsets: torch.Tensor
    excluded: list[Exclusion] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.clip_ids)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def get(self, i: int) -> torch.Tensor:
        return self.features[self.offsets[i] : self.offsets[i + 1]]

    def to_state(self) -> dict:
        return {
            "version": CACHE_VERSION,
            "clip_ids": self.clip_ids,
            "features": self.features,
            "offsets": self.offsets,
            "excluded": [[e.path, e.corpus, e.reason] for e in self.excluded],
        }

    @classmethod
    def from_state(cls, state: Mapping) -> FeatureSet:
        if state.get("version") != CACHE_VERSION:
            raise ValueError(f"cache version {state.get('version')} != {CACHE_VERSION}")
        fs = cls(
            clip_ids=list(state["clip_ids"]),
            features=state["features"],
            offsets=state["offsets"],
            excluded=[Exclusion(*e) for e in state["excluded"]],
        )
        if len(fs.offsets) != len(fs.clip_ids) + 1 or int(fs.offsets[-1]) != fs.features.shape[0]:
            raise ValueError("offsets do not match the stored features")
        return fs


def load_state(path: str | Path, mmap: bool = True) -> dict:
    """A cache entry's state; with ``mmap`` its tensors are views of the file, not copies.

    The mapping is private and read-only in use (nothing writes into ``FeatureSet.features``: cropping takes
    views, normalization makes new tensors), so every process that loads the entry (sweep jobs, DDP ranks,
    DataLoader workers) reads the same pages of the OS page cache instead of holding its own copy
    (bench/bench_cache_memory.py). Needs torch.save's default zip format, which is how entries are written.
    Entries are only ever replaced by a rename (a new file), never rewritten in place: truncating a mapped
    file would crash its readers with SIGBUS.
    """
    return torch.load(path, weights_only=True, map_location="cpu", mmap=mmap)


def file_identity(path: str) -> tuple[str, int, int]:
    st = os.stat(path)
    return os.path.abspath(path), st.st_size, st.st_mtime_ns


def feature_identity(sample_rate: int, features: Mapping) -> dict:
    """What names a feature config in the cache key. The key hashes with sorted keys, which would lose the
    order of stacked views (ser.features.stacked: their order is the channels' order), so it is added."""
    identity = {"sample_rate": sample_rate, "features": dict(features)}
    views = features.get("views")
    if isinstance(views, Mapping):
        identity["view_order"] = list(views)
    return identity


def cache_key(clips: Sequence[Clip], config: Mapping) -> str:
    """Hash of the audio/feature config and every file's (path, size, mtime)."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": CACHE_VERSION, "config": config}, sort_keys=True, default=str).encode())
    for clip in clips:
        h.update(json.dumps([clip.clip_id, *file_identity(clip.path)]).encode())
    return h.hexdigest()[:24]


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Torch ops run with ``n`` intra-op threads inside the block; the previous setting is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class CacheSettings:
    """Where features are cached and how they are built (the data.cache_dir/feature_workers/on_error keys)."""

    dir: str = ".cache/ser"
    features: Mapping = field(default_factory=dict)  # the extractor's config: names the features in the key
    workers: int | None = None  # decoding threads (None: all cores)
    on_error: str = "raise"  # raise | skip: what an unreadable audio file does


class FeatureCache:
    """Loads or builds the ``FeatureSet`` of a clip list under ``cache_dir``, of the clips played ``speed`` times
    as fast (``ser.data.audio.change_speed``; 1: as recorded)."""

    def __init__(
        self,
        cache_dir: str | Path,
        config: Mapping,
        make_extractor: Callable[[], torch.nn.Module],
        sample_rate: int = 16000,
        num_workers: int | None = None,
        on_error: str = "raise",
        progress: bool = True,
        speed: float = 1.0,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"data.on_error={on_error!r}: choose raise or skip")
        if not 0 < speed < float("inf"):
            raise ValueError(f"speed={speed}: must be a positive number")
        self.cache_dir = Path(cache_dir)
        self.config = dict(config)
        self.speed = float(speed)
        if self.speed != 1.0:  # only perturbed entries name their speed: 1.0 keeps the existing keys and entries
            self.config["speed"] = self.speed
        self.make_extractor = make_extractor
        self.sample_rate = sample_rate
        self.num_workers = num_workers or os.cpu_count() or 1
        self.on_error = on_error
        self.progress = progress

    def path_for(self, clips: Sequence[Clip]) -> Path:
        return self.cache_dir / f"features-{cache_key(clips, self.config)}.pt"

    def ensure(self, clips: Sequence[Clip]) -> Path:
        """Build the entry if it is missing (a later load still validates it and rebuilds a broken one)."""
        path = self.path_for(clips)
        if not path.exists():
            self.load_or_build(clips)
        return path

    def load_or_build(self, clips: Sequence[Clip]) -> FeatureSet:
        path = self.path_for(clips)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        expected = [c.clip_id for c in clips]
        cached = self._try_load(path, expected)
        if cached is not None:
            return cached
        with FileLock(str(path) + ".lock"):
            cached = self._try_load(path, expected)  # another job may have built it while we waited
            if cached is not None:
                return cached
            start = time.perf_counter()
            fs = self.build(clips)
            tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
            try:
                torch.save(fs.to_state(), tmp)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)  # a failed write (disk full, ...) leaves no partial file behind
            (path.with_suffix(".json")).write_text(
                json.dumps({"config": self.config, "clips": len(clips)}, indent=2, default=str)
            )
            log.info("feature cache written: %s (%.1f s)", path, time.perf_counter() - start)
            return fs

    def _try_load(self, path: Path, expected_ids: list[str]) -> FeatureSet | None:
        if not path.exists():
            return None
        try:
            fs = FeatureSet.from_state(load_state(path))
        except Exception as exc:
            log.warning("feature cache %s is unreadable (%s); rebuilding it", path, exc)
            return None
        # The key already covers the exact clip list; this catches a foreign or partial file under it.
        if len(fs.clip_ids) + len(fs.excluded) != len(expected_ids) or not set(fs.clip_ids) <= set(expected_ids):
            log.warning("feature cache %s does not match the clip list; rebuilding it", path)
            return None
        # on_error is not in the key: an entry built with on_error=skip must not silence on_error=raise.
        unreadable = [e for e in fs.excluded if e.reason.startswith("unreadable: ")]
        if unreadable and self.on_error == "raise":
            raise AudioError(with_hint(unreadable[0].reason.removeprefix("unreadable: ")))
        # Entries built before NaN/inf clips were left out may hold their NaN features (the sum is one cheap pass).
        if fs.features.numel() and not torch.isfinite(fs.features.sum()):
            log.warning("feature cache %s holds NaN or inf features; rebuilding it", path)
            return None
        return fs

    def build(self, clips: Sequence[Clip]) -> FeatureSet:
        """Decode (threads: soundfile and soxr release the GIL) and extract features in length-sorted batches.

        Memory stays bounded whatever the clip lengths: at most ``PREFETCH`` decoded clips wait, a batch
        pads to at most ``BATCH_SECONDS`` of audio, and a clip longer than that is decoded in blocks and
        extracted alone, in chunks (``ser.data.chunked``), by the main thread.
        """
        extractor = self.make_extractor().eval()
        min_samples = int(extractor.min_samples)
        order = sorted(range(len(clips)), key=lambda i: _size(clips[i].path))
        results: dict[int, list[torch.Tensor]] = {}  # a clip's features, in chunks for a long one
        excluded: list[Exclusion] = []
        bar = tqdm(total=len(clips), desc="features", unit="clip", disable=not self.progress)

        def decode(i: int) -> tuple[int, np.ndarray | None, str | None]:
            """(i, wave, None); (i, None, why it is left out); (i, None, None): a long clip, to stream."""
            try:
                # A clip that the speed change would stretch past BATCH_SECONDS is streamed, as a long one.
                wave = load_short_audio(clips[i].path, self.sample_rate, max_seconds=BATCH_SECONDS * self.speed)
            except AudioError as exc:
                return i, None, self._unreadable(exc)
            return (i, None, None) if wave is None else (i, *self._at_speed(wave, min_samples))

        batch: list[tuple[int, np.ndarray]] = []
        limit = int(BATCH_SECONDS * self.sample_rate)
        # Extraction in one intra-op thread: the decode threads keep the cores busy, and OpenMP workers that
        # wait at every op's barrier for a descheduled peer made the whole build 3.6x slower on 2 loaded
        # cores, 1.14x on 2 idle ones (bench/bench_features.py --before --breakdown --profile).
        with ThreadPoolExecutor(self.num_workers) as pool, torch_threads(1):
            for i, wave, reason in _prefetched(pool, decode, order, max(PREFETCH, 4 * self.num_workers)):
                bar.update(1)
                if wave is None and reason is None:
                    feats, reason = self._extract_long(extractor, clips[i])
                    if feats is not None:
                        results[i] = feats
                        continue
                if wave is None or reason is not None:
                    excluded.append(Exclusion(clips[i].path, clips[i].corpus, reason or ""))
                    continue
                # Sizes ascend, so this clip is the longest: the padded batch stays within the limit.
                if batch and (len(batch) + 1) * wave.size > limit:
                    self._extract(extractor, batch, results)
                    batch = []
                batch.append((i, wave))
            if batch:
                self._extract(extractor, batch, results)
        bar.close()
        kept = [i for i in range(len(clips)) if i in results]
        feats = [chunk for i in kept for chunk in results[i]]
        lengths = torch.tensor([0] + [sum(c.shape[0] for c in results[i]) for i in kept], dtype=torch.long)
        dim = feats[0].shape[1] if feats else 0
        return FeatureSet(
            clip_ids=[clips[i].clip_id for i in kept],
            features=torch.cat(feats) if feats else torch.zeros(0, dim),
            offsets=torch.cumsum(lengths, 0),
            excluded=excluded,
        )

    def _at_speed(self, wave: np.ndarray, min_samples: int) -> tuple[np.ndarray, str | None]:
        """The decoded clip at this cache's speed, and why it is left out (None: kept). Checked before the speed
        change (soxr is never fed NaN) and after it (a sped-up clip may have become too short)."""
        reason = bad_wave(wave, min_samples)
        if reason is None and self.speed != 1.0:
            wave = change_speed(wave, self.speed, self.sample_rate)
            reason = bad_wave(wave, min_samples)
        return wave, reason

    def _unreadable(self, exc: AudioError) -> str:
        """The exclusion reason of an undecodable file, or the error itself (with the way out) under on_error=raise."""
        if self.on_error == "raise":
            raise AudioError(with_hint(str(exc))) from exc
        return f"unreadable: {exc}"

    def _extract_long(self, extractor: torch.nn.Module, clip: Clip) -> tuple[list[torch.Tensor] | None, str | None]:
        """Features of one clip longer than BATCH_SECONDS, or why it is left out."""
        try:
            if extractor.context_samples is None:  # frames depend on the whole clip: extract it whole, alone
                wave, reason = self._at_speed(load_audio(clip.path, self.sample_rate), int(extractor.min_samples))
                if reason is not None:
                    return None, reason
                out: dict[int, list[torch.Tensor]] = {}
                self._extract(extractor, [(0, wave)], out)
                return out[0], None
            chunk = int(BATCH_SECONDS * self.sample_rate) // int(extractor.hop_length)
            blocks = change_speed_stream(
                stream_audio(clip.path, self.sample_rate, BATCH_SECONDS), self.speed, self.sample_rate
            )
            streamed = extract_chunked(extractor, blocks, chunk)
        except AudioError as exc:
            return None, self._unreadable(exc)
        if not streamed.finite:
            return None, NON_FINITE
        if streamed.peak < SILENCE:
            return None, SILENT
        return streamed.chunks, None

    @staticmethod
    def _extract(extractor: torch.nn.Module, batch: list[tuple[int, np.ndarray]], out: dict) -> None:
        lengths = torch.tensor([w.size for _, w in batch])
        waves = torch.zeros(len(batch), int(lengths.max()))
        for row, (_, w) in enumerate(batch):
            waves[row, : w.size] = torch.from_numpy(w)
        with torch.inference_mode():
            feats, frames = extractor(waves, lengths)
        for row, (i, _) in enumerate(batch):
            out[i] = [feats[row, : frames[row]].clone()]
