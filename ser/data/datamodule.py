"""LightningDataModule: corpus index -> cached features -> split -> normalization -> bucketed batches
(train batches: optionally speed-perturbed, ser.data.speed)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from ser.data.batching import BucketBatchSampler, FeatureDataset, LengthLimits, collate
from ser.data.cache import CacheSettings, FeatureCache, FeatureSet, feature_identity
from ser.data.corpora import CorpusSet
from ser.data.corpus import Clip, CorpusIndex
from ser.data.normalization import check_normalization, moments
from ser.data.report import build_report, format_report, save_report
from ser.data.speed import SpeedBatchSampler, SpeedDataset, SpeedPerturbation
from ser.data.splits import Split, SplitSpec
from ser.labels import NUM_CLASSES
from ser.logs import show_bars
from ser.results import write_text

log = logging.getLogger(__name__)


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


class SERDataModule(L.LightningDataModule):
    """Registered corpora (CREMA-D, SAVEE, the synthetic demo, ...) as padded, length-bucketed batches.

    ``extractor`` is built once by the caller and declares ``sample_rate`` (the rate audio is decoded at),
    ``hop_length``, ``out_dim`` and ``min_samples``. ``speed``: train batches serve each clip at a speed drawn
    per epoch (augment.speed); validation, test and the statistics always see the clips as recorded.
    """

    def __init__(
        self,
        corpora: CorpusSet,
        extractor: torch.nn.Module,
        split: SplitSpec | None = None,
        batch_size: int = 32,
        cache: CacheSettings | None = None,
        num_workers: int = 0,
        output_dir: str | Path | None = None,
        progress: bool = True,
        normalization: str = "global",
        limits: LengthLimits | None = None,
        speed: SpeedPerturbation | None = None,
    ) -> None:
        super().__init__()
        self.speed = speed
        self.limits = limits or LengthLimits()
        self.normalization = check_normalization(normalization)
        self.corpora = corpora
        self.extractor = extractor
        self.split_spec = split or SplitSpec()
        self.batch_size = batch_size
        self.cache = cache or CacheSettings()
        self.num_workers = num_workers
        self.output_dir = Path(output_dir) if output_dir else None
        self.progress = progress

        self._index: CorpusIndex | None = None
        self.clips: list[Clip] = []
        self.feature_set: FeatureSet | None = None
        self.split: Split | None = None
        self.report: dict | None = None
        self.speaker_ids: dict[str, int] = {}
        self.datasets: dict[str, FeatureDataset] = {}
        self.speed_train: SpeedDataset | None = None  # the train clips at every speed (augment.speed)

    @classmethod
    def from_config(
        cls,
        data: Mapping[str, Any],
        split: Mapping[str, Any] | SplitSpec,
        features: Mapping[str, Any],
        extractor: torch.nn.Module | None = None,
        augment: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> SERDataModule:
        """The DataModule of the ``data``, ``split`` and ``features`` config groups.

        ``extractor`` is the instance of ``features`` when the caller has one already; otherwise it is built here.
        ``augment`` (the group) and ``seed`` (the run's) set speed perturbation, when the group has ``speed``.
        """
        data = _plain(data)
        spec = split if isinstance(split, SplitSpec) else instantiate(split)
        return cls(
            corpora=CorpusSet.from_config(data),
            extractor=extractor if extractor is not None else instantiate(features),
            split=spec,
            batch_size=int(data["batch_size"]),
            cache=CacheSettings(
                dir=str(data["cache_dir"]),
                features=_plain(features),
                workers=data.get("feature_workers"),
                on_error=str(data.get("on_error", "raise")),
            ),
            num_workers=int(data.get("num_workers", 0)),
            output_dir=data.get("output_dir"),
            progress=show_bars(data.get("progress", "auto")),
            normalization=str(data.get("normalization", "global")),
            limits=LengthLimits.from_config(data),
            speed=SpeedPerturbation.from_config(_plain(augment), seed),
        )

    # -- files on disk -> index -> features ---------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return int(self.extractor.sample_rate)

    @property
    def cache_dir(self) -> Path:
        return Path(self.cache.dir)

    def resolved_roots(self) -> dict[str, str]:
        """The configured folder of each chosen corpus (the index records the folders actually read)."""
        return self.corpora.resolved_roots()

    def build_index(self) -> CorpusIndex:
        """Index the corpora (cheap; raises DataError before any work if data is missing)."""
        if self._index is None:
            self._index = self.corpora.index(progress=self.progress)
        return self._index

    def feature_config(self) -> dict:
        """What names the features in the cache key."""
        return feature_identity(self.sample_rate, self.cache.features)

    def feature_cache(self, speed: float = 1.0) -> FeatureCache:
        """The cache of the clips' features, played ``speed`` times as fast (1: as recorded)."""
        return FeatureCache(
            self.cache_dir / "features",
            self.feature_config(),
            lambda: self.extractor,
            sample_rate=self.sample_rate,
            num_workers=self.cache.workers,
            on_error=self.cache.on_error,
            progress=self.progress,
            speed=speed,
        )

    def prepare_data(self) -> None:
        # Only build here: setup() loads (and validates) the entry, so a warm start reads it once.
        clips = self.build_index().clips
        self.feature_cache().ensure(clips)
        # Each speed is extracted once for every clip of the index (not only this split's train clips), so
        # every fold and seed of a sweep shares its entry.
        for factor in self.speed.perturbed if self.speed else ():
            self.feature_cache(factor).ensure(clips)

    # -- split, statistics, datasets ------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if self.split is not None:
            return
        index = self.build_index()
        fs = self.feature_cache().load_or_build(index.clips)
        kept = set(fs.clip_ids)
        self.clips = [c for c in index.clips if c.clip_id in kept]
        row = {cid: i for i, cid in enumerate(fs.clip_ids)}
        self.feature_set = fs
        self.split = self.split_spec.make(self.clips)
        self.speaker_ids = {s: i for i, s in enumerate(sorted({c.speaker for c in self.clips}))}
        self.speaker_stats = self._speaker_stats(row) if self.normalization == "speaker" else {}
        for part in ("train", "val", "test"):
            self.datasets[part] = self.make_dataset([self.clips[i] for i in self.split.part(part)], row)
        if self.speed is not None:
            self.speed_train = self.make_speed_dataset([self.clips[i] for i in self.split.train], index.clips)
        hop = int(self.extractor.hop_length)
        seconds = [float(fs.lengths[row[c.clip_id]]) * hop / self.sample_rate for c in self.clips]
        longest = float("inf") if self.max_frames is None else self.max_frames * hop / self.sample_rate
        kept = [min(sec, longest) for sec in seconds]
        self.report = build_report(
            self.clips, index.excluded + fs.excluded, seconds, index.roots, kept, self.limits.max_seconds
        )
        # The commands print it (once per command, and in full only in a sweep's first job: ser.logs).
        log.debug("\n%s", format_report(self.report))
        if self.output_dir is not None and self._is_rank_zero():
            self.save_artifacts(self.output_dir)

    def evaluation_set(self, fs: FeatureSet, all_clips: Sequence[Clip], scored: Sequence[Clip]) -> FeatureDataset:
        """The test part for scoring checkpoints without a split (ser.eval): ``scored`` clips of ``fs``.

        What :meth:`setup` sets, over ``all_clips`` (the data's clips with features in ``fs``): speaker
        statistics over all of each speaker's clips, so a checkpoint scored on its own test speakers is
        normalized exactly as in its training run. Every scored clip must have features in ``fs``.
        """
        row = {cid: i for i, cid in enumerate(fs.clip_ids)}
        self.feature_set = fs
        self.clips = [c for c in all_clips if c.clip_id in row]
        self.speaker_ids = {s: i for i, s in enumerate(sorted({c.speaker for c in self.clips}))}
        self.speaker_stats = self._speaker_stats(row) if self.normalization == "speaker" else {}
        self.datasets = {"test": self.make_dataset(list(scored), row)}
        return self.datasets["test"]

    def make_dataset(
        self, clips: list[Clip], row: Mapping[str, int], features: FeatureSet | None = None
    ) -> FeatureDataset:
        """The dataset of one part: feature rows with each clip's label and speaker id (from ``features``, by
        default the clips as recorded)."""
        assert self.feature_set is not None
        return FeatureDataset(
            features if features is not None else self.feature_set,
            [row[c.clip_id] for c in clips],
            [c.label for c in clips],
            [self.speaker_ids[c.speaker] for c in clips],
            normalization=self.normalization,
            speaker_stats=self.speaker_stats,
            max_frames=self.max_frames,
        )

    def make_speed_dataset(self, train: list[Clip], index_clips: list[Clip]) -> SpeedDataset:
        """The train clips at 1.0 and at every perturbed speed of ``self.speed`` (each speed's entry loaded once).

        The perturbed clips are normalized like the others: with the statistics of the unperturbed training
        frames (``feature_stats``) or of the speaker's unperturbed frames; ``utterance`` uses the clip's own.
        """
        assert self.speed is not None
        speeds, variants, positions = [1.0], [self.datasets["train"]], [list(range(len(train)))]
        for factor in self.speed.perturbed:
            fs = self.feature_cache(factor).load_or_build(index_clips)
            row = {cid: i for i, cid in enumerate(fs.clip_ids)}
            present = [c for c in train if c.clip_id in row]  # a clip lacking at this speed is served at 1.0
            item = {c.clip_id: j for j, c in enumerate(present)}
            speeds.append(factor)
            variants.append(self.make_dataset(present, row, fs))
            positions.append([item.get(c.clip_id, -1) for c in train])
        return SpeedDataset(speeds, variants, positions)

    @property
    def max_frames(self) -> int | None:
        """Frames of data.max_seconds: longer clips are centre-cropped to it (None: no crop)."""
        if self.limits.max_seconds is None:
            return None
        return int(self.extractor.num_frames(torch.tensor(int(self.limits.max_seconds * self.sample_rate))))

    def _speaker_stats(self, row: Mapping[str, int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Mean and std of each speaker's frames, over all of the speaker's clips (no labels used); of the clips
        as recorded, also under speed perturbation (a perturbed clip is normalized with them too)."""
        assert self.feature_set is not None
        rows: dict[int, list[int]] = {}
        for c in self.clips:
            rows.setdefault(self.speaker_ids[c.speaker], []).append(row[c.clip_id])
        return {spk: moments(self.feature_set.get(r) for r in rs) for spk, rs in rows.items()}

    def save_artifacts(self, out_dir: Path) -> None:
        """Write the data report and the split manifest of this run."""
        assert self.report is not None and self.split is not None
        save_report(self.report, out_dir)
        write_text(out_dir / "split_manifest.json", json.dumps(self.split.manifest(self.clips), indent=2))

    def _is_rank_zero(self) -> bool:
        return self.trainer is None or self.trainer.global_rank == 0

    @property
    def input_dim(self) -> int:
        return int(self.extractor.out_dim)

    def feature_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dimension mean and std over the training frames only (no val/test leakage), after the
        utterance or speaker normalization when one is chosen. Under speed perturbation too, these (like the
        speaker statistics) are of the unperturbed clips: datasets["train"] is always the clips as recorded."""
        train = self.datasets["train"]
        return moments(train[i][0] for i in range(len(train)))

    def class_counts(self) -> torch.Tensor:
        """Training clips per class (all classes of the scheme, zeros included)."""
        return torch.bincount(torch.tensor(self.datasets["train"].labels, dtype=torch.long), minlength=NUM_CLASSES)

    def summary(self) -> dict:
        """Short description of the data for metrics.json."""
        assert self.split is not None and self.report is not None
        return {
            "corpora": list(self.corpora.names),
            "split": self.split.strategy,
            "split_seed": self.split.seed,
            "fold": self.split.fold,
            "speaker_independent": self.split.speaker_independent,
            "clips": {p: len(self.split.part(p)) for p in ("train", "val", "test")},
            "speakers": {p: len({self.clips[i].speaker for i in self.split.part(p)}) for p in ("train", "val", "test")},
            "hours": self.report["hours"],
            "excluded": len(self.report["excluded"]),
        }

    # -- loaders --------------------------------------------------------------------------------------

    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        world = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        common = dict(seed=self.split_spec.seed, num_replicas=world, rank=rank, max_frames=self.limits.max_batch_frames)
        ds: FeatureDataset | SpeedDataset
        if part == "train" and self.speed_train is not None:  # only train batches are ever speed-perturbed
            assert self.speed is not None
            ds = self.speed_train
            sampler: BucketBatchSampler = SpeedBatchSampler(ds, self.speed, self.batch_size, **common)
        else:
            ds = self.datasets[part]
            sampler = BucketBatchSampler(ds.lengths, self.batch_size, shuffle=shuffle, **common)
        return DataLoader(
            ds,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
