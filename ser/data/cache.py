"""Feature cache: features of a file set computed once, reused by every run and every sweep job.

The key hashes the audio and feature config and each file's identity (path, size, mtime), so a
changed file or setting gives a new entry and nothing stale is ever served. Entries are written to a
temporary file and renamed into place (atomic); a file lock makes jobs that start together wait for
one builder instead of duplicating the work; an entry that fails to load or to validate (truncated,
foreign) is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from tqdm.auto import tqdm

from ser.data.audio import AudioError, is_silent, load_audio
from ser.data.corpus import Clip, Exclusion

log = logging.getLogger(__name__)

CACHE_VERSION = 1
BATCH_SECONDS = 60.0  # audio per feature batch: large enough for torch.stft to use the cores


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


def file_identity(path: str) -> tuple[str, int, int]:
    st = os.stat(path)
    return os.path.abspath(path), st.st_size, st.st_mtime_ns


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
    """Loads or builds the ``FeatureSet`` of a clip list under ``cache_dir``."""

    def __init__(
        self,
        cache_dir: str | Path,
        config: Mapping,
        make_extractor: Callable[[], torch.nn.Module],
        sample_rate: int = 16000,
        num_workers: int | None = None,
        on_error: str = "raise",
        progress: bool = True,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"data.on_error={on_error!r}: choose raise or skip")
        self.cache_dir = Path(cache_dir)
        self.config = dict(config)
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
            fs = FeatureSet.from_state(torch.load(path, weights_only=True, map_location="cpu"))
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
            raise AudioError(unreadable[0].reason.removeprefix("unreadable: "))
        return fs

    def build(self, clips: Sequence[Clip]) -> FeatureSet:
        """Decode (threads: soundfile and soxr release the GIL) and extract features in length-sorted batches."""
        extractor = self.make_extractor().eval()
        min_samples = int(extractor.min_samples)
        order = sorted(range(len(clips)), key=lambda i: os.path.getsize(clips[i].path))
        results: dict[int, torch.Tensor] = {}
        excluded: list[Exclusion] = []
        bar = tqdm(total=len(clips), desc="features", unit="clip", disable=not self.progress)

        def decode(i: int) -> tuple[int, np.ndarray | None, str | None]:
            try:
                wave = load_audio(clips[i].path, self.sample_rate)
            except AudioError as exc:
                if self.on_error == "raise":
                    raise
                return i, None, f"unreadable: {exc}"
            if is_silent(wave):
                return i, None, "silent: no sample above 1e-4"
            if wave.size < min_samples:
                return i, None, f"too short: {wave.size} samples < {min_samples}"
            return i, wave, None

        batch: list[tuple[int, np.ndarray]] = []
        batch_samples = 0
        limit = int(BATCH_SECONDS * self.sample_rate)
        # Extraction in one intra-op thread: the decode threads keep the cores busy, and OpenMP workers that
        # wait at every op's barrier for a descheduled peer made the whole build 3.6x slower on 2 loaded
        # cores, 1.14x on 2 idle ones (bench/bench_features.py --before --breakdown --profile).
        with ThreadPoolExecutor(self.num_workers) as pool, torch_threads(1):
            for i, wave, reason in pool.map(decode, order):
                bar.update(1)
                if wave is None:
                    excluded.append(Exclusion(clips[i].path, clips[i].corpus, reason or ""))
                    continue
                batch.append((i, wave))
                batch_samples += wave.size
                if batch_samples >= limit:
                    self._extract(extractor, batch, results)
                    batch, batch_samples = [], 0
            if batch:
                self._extract(extractor, batch, results)
        bar.close()
        kept = [i for i in range(len(clips)) if i in results]
        feats = [results[i] for i in kept]
        lengths = torch.tensor([0] + [f.shape[0] for f in feats], dtype=torch.long)
        dim = feats[0].shape[1] if feats else 0
        return FeatureSet(
            clip_ids=[clips[i].clip_id for i in kept],
            features=torch.cat(feats) if feats else torch.zeros(0, dim),
            offsets=torch.cumsum(lengths, 0),
            excluded=excluded,
        )

    @staticmethod
    def _extract(extractor: torch.nn.Module, batch: list[tuple[int, np.ndarray]], out: dict) -> None:
        lengths = torch.tensor([w.size for _, w in batch])
        waves = torch.zeros(len(batch), int(lengths.max()))
        for row, (_, w) in enumerate(batch):
            waves[row, : w.size] = torch.from_numpy(w)
        with torch.inference_mode():
            feats, frames = extractor(waves, lengths)
        for row, (i, _) in enumerate(batch):
            out[i] = feats[row, : frames[row]].clone()
