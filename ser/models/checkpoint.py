"""The checkpoint contract of ser.train: its format mark, the safe load and the rebuild of model and features.

A checkpoint carries everything prediction needs: the class names, the audio sample rate, the
feature extractor config, the network config and weights, and the training normalization
statistics (buffers of the network's ``normalizer``). :func:`rebuild` loads it with
``torch.load(weights_only=True)`` and instantiates the extractor, network and loss from the saved
configs; nothing else (no data, no Hydra config) is read. Lightning is not imported here, so readers
of checkpoints stay light.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "ser-checkpoint-v1"
FORMAT_KEY = "ser_format"
# What the model was trained on (corpora, split, speakers of each part): see :func:`data_record`. Checkpoints
# written before it existed lack it; readers treat it as unknown, never as "no overlap".
DATA_KEY = "ser_data"
REQUIRED_HPARAMS = ("model", "loss", "features", "sample_rate", "classes", "input_dim")
REQUIRED_STATE = ("net.normalizer.mean", "net.normalizer.std")
# Configs in a checkpoint are instantiated by name; only this project's classes are accepted, so a
# crafted checkpoint cannot name an arbitrary callable (weights_only alone would not stop that).
TRUSTED_TARGET_PREFIX = "ser."
# Classes that moved since checkpoints were first written: old name -> where it lives now.
MOVED_TARGETS = {
    "ser.losses.CategoricalLoss": "ser.models.losses.CategoricalLoss",
    "ser.losses.BinaryLoss": "ser.models.losses.BinaryLoss",
}
# What a rebuilt model reports as its config (exports embed it).
CONFIG_KEYS = ("features", "model", "loss", "sample_rate", "classes", "input_dim")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used for prediction; the message names the file and why."""


def stamp(checkpoint: dict[str, Any], data: Mapping[str, Any] | None = None) -> None:
    """Mark a checkpoint being written (SERModule.on_save_checkpoint) as one this contract reads, with the
    record of its training data when there is one."""
    checkpoint[FORMAT_KEY] = CHECKPOINT_FORMAT
    if data:
        checkpoint[DATA_KEY] = dict(data)


def data_record(corpora: Sequence[str], split: Any, clips: Sequence[Any]) -> dict[str, Any]:
    """What a run trained, validated and tested on: corpora, split strategy/seed/fold and each part's speakers.

    ``split`` is a :class:`ser.data.splits.Split` over ``clips``. Plain lists and strings only, so
    ``weights_only`` loading reads it; ser.eval uses it to refuse scoring a model on speakers it has seen.
    """
    parts = {"train": split.train, "val": split.val, "test": split.test}
    return {
        "corpora": [str(c) for c in corpora],
        "split": str(split.strategy),
        "seed": split.seed,
        "fold": split.fold,
        "num_folds": split.num_folds,
        "speaker_independent": bool(split.speaker_independent),
        "speakers": {p: sorted({clips[i].speaker for i in idx}) for p, idx in parts.items()},
        "clips": {p: len(idx) for p, idx in parts.items()},
    }


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


def _current_targets(cfg: Any) -> Any:
    """The config with every moved ``_target_`` renamed to where the class lives now."""
    if isinstance(cfg, Mapping):
        return {k: MOVED_TARGETS.get(v, v) if k == "_target_" else _current_targets(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [_current_targets(v) for v in cfg]
    return cfg


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
    fmt = ckpt.get(FORMAT_KEY)
    if fmt is None:
        raise CheckpointError(
            f"{path}: no '{FORMAT_KEY}' field: not a checkpoint written by ser.train (expected {CHECKPOINT_FORMAT})"
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


@dataclass(frozen=True, eq=False)
class RebuiltModel:
    """What a checkpoint rebuilds: the network (weights and normalization loaded), its loss and features."""

    net: nn.Module
    loss: nn.Module
    extractor: nn.Module
    classes: tuple[str, ...]
    sample_rate: int
    config: dict[str, Any]  # the saved configs under CONFIG_KEYS
    source: str
    normalization: str = "global"  # how features were normalized before the network in training
    data: Mapping[str, Any] | None = None  # data_record() of the run that trained it; None for older checkpoints


def rebuild(path: str | Path) -> RebuiltModel:
    """Rebuild extractor, network and loss from a ``ser.train`` checkpoint (see module docstring)."""
    ckpt = load_checkpoint(path)
    hp = {
        k: _current_targets(v) if k in ("model", "loss", "features") else v for k, v in ckpt["hyper_parameters"].items()
    }
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
    if int(extractor.out_dim) != int(hp["input_dim"]):
        raise CheckpointError(f"{path}: feature size {extractor.out_dim} != model input_dim {hp['input_dim']}")
    mean, std = state["normalizer.mean"], state["normalizer.std"]
    if bool((mean == 0).all()) and bool((std == 1).all()):
        log.warning("%s: normalization statistics are the untrained defaults (mean 0, std 1)", path)
    return RebuiltModel(
        net=net,
        loss=loss,
        extractor=extractor,
        classes=tuple(hp["classes"]),
        sample_rate=int(hp["sample_rate"]),
        config={k: hp[k] for k in CONFIG_KEYS},
        source=str(path),
        normalization=str(hp.get("normalization") or "global"),
        data=ckpt.get(DATA_KEY) if isinstance(ckpt.get(DATA_KEY), Mapping) else None,
    )
