"""Small helpers of the train entry point: config -> objects, flattening, JSON output."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf


def to_plain(cfg: Any) -> Any:
    """A DictConfig/ListConfig as plain, resolved Python containers (safe to pickle into checkpoints)."""
    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Objects of a config group whose entries each have a ``_target_`` (callbacks, loggers)."""
    if not cfg:
        return []
    return [instantiate(c) for c in cfg.values() if isinstance(c, DictConfig) and "_target_" in c]


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and None become strings (TensorBoard hparams take scalars)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


def hparams_of(cfg: DictConfig) -> dict[str, Any]:
    """The parts of a run config that describe the experiment (not paths, logging or Hydra)."""
    plain = to_plain(cfg)
    keep = ("data", "features", "model", "loss", "optimizer", "scheduler", "seed")
    params = flatten({k: plain[k] for k in keep if k in plain})
    params["loss.name"] = str(plain.get("loss", {}).get("_target_", "")).rsplit(".", 1)[-1]
    params["trainer.max_epochs"] = plain.get("trainer", {}).get("max_epochs")
    params["tags"] = ",".join(plain.get("tags") or [])
    drop = ("data.root", "data.roots", "data.cache_dir", "data.output_dir", "data.progress", "data._target_")
    return {k: v for k, v in params.items() if not k.startswith(drop)}


def write_json(path: str | Path, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    path.write_text(json.dumps(clean(data), indent=2))
    return path


def configure_threads(cfg: DictConfig) -> int:
    """Torch threads for this job: ``num_threads`` if set, else the cores shared among parallel sweep jobs.

    Without this, jobs run in parallel by the joblib launcher each start one thread per core and the
    oversubscribed OpenMP pools slow every job down many times over.
    """
    import os

    import torch

    threads = cfg.get("num_threads")
    if threads is None:
        n_jobs = OmegaConf.select(cfg, "hydra.launcher.n_jobs", default=None) if "hydra" in cfg else None
        if n_jobs is None:
            try:
                from hydra.core.hydra_config import HydraConfig

                n_jobs = OmegaConf.select(HydraConfig.get(), "launcher.n_jobs", default=None)
            except ValueError:  # not inside a Hydra app
                n_jobs = None
        if n_jobs is None:
            return torch.get_num_threads()
        cores = os.cpu_count() or 1
        parallel = cores if int(n_jobs) < 0 else max(1, int(n_jobs))
        threads = max(1, cores // parallel)
    torch.set_num_threads(int(threads))
    return int(threads)


def seed_everything(seed: int | None) -> None:
    """Seed every RNG. ``None`` means unseeded; 0 is a seed like any other."""
    if seed is not None:
        L.seed_everything(int(seed), workers=True)
