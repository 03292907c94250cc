"""Config -> objects: plain containers, instantiated config groups, flattened hyperparameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    keep = ("data", "features", "model", "loss", "optimizer", "scheduler", "augment", "seed")
    params = flatten({k: plain[k] for k in keep if k in plain})
    params["loss.name"] = str(plain.get("loss", {}).get("_target_", "")).rsplit(".", 1)[-1]
    params["trainer.max_epochs"] = plain.get("trainer", {}).get("max_epochs")
    params["trainer.precision"] = str(plain.get("trainer", {}).get("precision", "32-true"))
    params["tags"] = ",".join(plain.get("tags") or [])
    drop = ("data.root", "data.roots", "data.cache_dir", "data.output_dir", "data.progress", "data._target_")
    return {k: v for k, v in params.items() if not k.startswith(drop)}
