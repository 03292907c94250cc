"""LightningDataModule: corpus index -> cached features -> split -> normalization -> bucketed batches."""

from __future__ import annotations

import functools
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

from ser.data.batching import BucketBatchSampler, FeatureDataset, collate
from ser.data.cache import FeatureCache, FeatureSet
from ser.data.corpus import Clip, CorpusIndex, build_index
from ser.data.report import build_report, format_report, save_report
from ser.data.splits import Split, make_split

log = logging.getLogger(__name__)


class SERDataModule(L.LightningDataModule):
    """CREMA-D and/or SAVEE (or the synthetic demo corpus) as padded, length-bucketed batches."""

    def __init__(
        self,
        features: Mapping[str, Any],
        corpora: Sequence[str] = ("crema_d", "savee"),
        roots: Mapping[str, str] | None = None,
        root: str = "data",
        demo: bool = False,
        strict: bool = False,
        on_error: str = "raise",
        sample_rate: int = 16000,
        split: str = "speaker",
        split_seed: int = 0,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        num_folds: int = 5,
        fold: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        feature_workers: int | None = None,
        cache_dir: str = ".cache/ser",
        output_dir: str | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__()
        self.features_cfg = features
        self.corpora = list(corpora)
        self.root = root
        self.roots = dict(roots or {"crema_d": f"{root}/crema-d", "savee": f"{root}/savee"})
        self.demo = demo
        self.strict = strict
        self.on_error = on_error
        self.sample_rate = sample_rate
        self.split_name = split
        self.split_seed = split_seed
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.num_folds = num_folds
        self.fold = fold
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.feature_workers = feature_workers
        self.cache_dir = Path(cache_dir)
        self.output_dir = Path(output_dir) if output_dir else None
        self.progress = progress

        self._index: CorpusIndex | None = None
        self.clips: list[Clip] = []
        self.feature_set: FeatureSet | None = None
        self.split: Split | None = None
        self.report: dict | None = None
        self.speaker_ids: dict[str, int] = {}
        self.datasets: dict[str, FeatureDataset] = {}

    # -- files on disk -> index -> features ---------------------------------------------------------

    def resolved_roots(self) -> dict[str, str]:
        if not self.demo:
            return {k: self.roots[k] for k in self.corpora if k in self.roots}
        from ser.data.demo import ensure_demo_corpus

        folder = ensure_demo_corpus(self.cache_dir / "demo", progress=self.progress)
        return {"crema_d": str(folder / "crema-d"), "savee": str(folder / "savee")}

    def build_index(self) -> CorpusIndex:
        """Index the corpora (cheap; raises DataError before any work if data is missing)."""
        if self._index is None:
            self._index = build_index(self.corpora, self.resolved_roots(), strict=self.strict)
        return self._index

    def feature_config(self) -> dict:
        cfg = self.features_cfg
        as_dict = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        return {"sample_rate": self.sample_rate, "features": as_dict}

    def make_extractor(self) -> torch.nn.Module:
        return instantiate(self.feature_config()["features"])

    @functools.cached_property
    def extractor(self) -> torch.nn.Module:
        """One extractor instance for reading its settings (frame hop, output size)."""
        return self.make_extractor()

    def feature_cache(self) -> FeatureCache:
        return FeatureCache(
            self.cache_dir / "features",
            self.feature_config(),
            self.make_extractor,
            sample_rate=self.sample_rate,
            num_workers=self.feature_workers,
            on_error=self.on_error,
            progress=self.progress,
        )

    def prepare_data(self) -> None:
        # Only build here: setup() loads (and validates) the entry, so a warm start reads it once.
        self.feature_cache().ensure(self.build_index().clips)

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
        self.split = make_split(
            self.clips,
            self.split_name,
            seed=self.split_seed,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            num_folds=self.num_folds,
            fold=self.fold,
        )
        self.speaker_ids = {s: i for i, s in enumerate(sorted({c.speaker for c in self.clips}))}
        for part in ("train", "val", "test"):
            idx = self.split.part(part)
            self.datasets[part] = FeatureDataset(
                fs,
                [row[self.clips[i].clip_id] for i in idx],
                [self.clips[i].label for i in idx],
                [self.speaker_ids[self.clips[i].speaker] for i in idx],
            )
        hop = int(getattr(self.extractor, "hop_length", 160))
        seconds = [float(fs.lengths[row[c.clip_id]]) * hop / self.sample_rate for c in self.clips]
        self.report = build_report(self.clips, index.excluded + fs.excluded, seconds, self.resolved_roots())
        log.info("\n%s", format_report(self.report))
        if self.output_dir is not None and self._is_rank_zero():
            self.save_artifacts(self.output_dir)

    def save_artifacts(self, out_dir: Path) -> None:
        """Write the data report and the split manifest of this run."""
        assert self.report is not None and self.split is not None
        save_report(self.report, out_dir)
        (out_dir / "split_manifest.json").write_text(json.dumps(self.split.manifest(self.clips), indent=2))

    def _is_rank_zero(self) -> bool:
        return self.trainer is None or self.trainer.global_rank == 0

    @property
    def input_dim(self) -> int:
        return int(self.extractor.out_dim)

    def feature_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dimension mean and std over the training frames only (no val/test leakage)."""
        fs, train = self.feature_set, self.datasets["train"]
        assert fs is not None
        total = torch.zeros(fs.dim, dtype=torch.float64)
        sq = torch.zeros(fs.dim, dtype=torch.float64)
        frames = 0
        for r in train.rows:
            x = fs.get(r).double()
            total += x.sum(0)
            sq += (x * x).sum(0)
            frames += x.shape[0]
        mean = total / frames
        std = (sq / frames - mean * mean).clamp_min(1e-8).sqrt()
        return mean.float(), std.float()

    def summary(self) -> dict:
        """Short description of the data for metrics.json."""
        assert self.split is not None and self.report is not None
        return {
            "corpora": self.corpora if not self.demo else ["demo"],
            "split": self.split_name,
            "split_seed": self.split_seed,
            "fold": self.split.fold,
            "speaker_independent": self.split.speaker_independent,
            "clips": {p: len(self.split.part(p)) for p in ("train", "val", "test")},
            "speakers": {
                p: len({self.clips[i].speaker for i in self.split.part(p)}) for p in ("train", "val", "test")
            },
            "hours": self.report["hours"],
            "excluded": len(self.report["excluded"]),
        }

    # -- loaders --------------------------------------------------------------------------------------

    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        ds = self.datasets[part]
        world = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        sampler = BucketBatchSampler(
            ds.lengths, self.batch_size, shuffle=shuffle, seed=self.split_seed, num_replicas=world, rank=rank
        )
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
