"""Checkpoints a run resumes from exactly: atomic files, ``last.ckpt`` after every epoch, every RNG saved."""

from __future__ import annotations

import logging
import os
import random
import uuid
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint

log = logging.getLogger(__name__)

# Where ResumeState keeps its part of a checkpoint.
RESUME_KEY = "ser_resume"
# SERModule attributes that outlive an epoch but are not weights: restored so the run record of a resumed
# run (best validation epoch, median epoch time) covers the whole run, not only the part after the resume.
MODULE_STATE = ("best_val", "epoch_times")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through a temporary file in the same folder and a rename: a reader (or a resumed run)
    sees the previous file or the whole new one, never a truncated one, also on a full disk.

    Lightning writes in place (or through the system temp folder, a copy across file systems).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("xb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _is_local(path: str | Path) -> bool:
    return "://" not in str(path)


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ModelCheckpoint with files written atomically and ``last.ckpt`` rewritten after every epoch.

    Lightning rewrites ``last.ckpt`` only when it also saved a top-k checkpoint, so on a validation plateau
    it stays at the best epoch and a killed run resumed from there; here it always holds the newest epoch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_written_step: int | None = None

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if not _is_local(filepath):
            super()._save_checkpoint(trainer, filepath)
            return
        # Every rank takes part in saving (sharded strategies gather); only rank 0 renames, after the barrier.
        tmp = str(Path(filepath).with_name(f".{Path(filepath).name}.partial"))
        try:
            super()._save_checkpoint(trainer, tmp)
            if trainer.is_global_zero:
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, filepath)
        except BaseException:
            if trainer.is_global_zero:
                Path(tmp).unlink(missing_ok=True)
            raise
        trainer.strategy.barrier("ser.ModelCheckpoint")
        self._last_checkpoint_saved = filepath

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        if self.save_last:
            self._last_written_step = trainer.global_step

    def _save_last_every_epoch(self, trainer: L.Trainer) -> None:
        from lightning.pytorch.trainer.states import TrainerFn

        if (
            not self.save_last
            or trainer.fast_dev_run
            or trainer.state.fn != TrainerFn.FITTING
            or trainer.sanity_checking
            or self._last_written_step == trainer.global_step
            or trainer.global_step == 0
        ):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_every_epoch(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_every_epoch(trainer)


# ------------------------------------------------------------------------------------------ RNG states


def rng_states(module: Any = None) -> dict[str, Any]:
    """Every RNG a training step draws from, as tensors and plain values (``weights_only`` loading reads them):
    torch (CPU and CUDA: dropout, data loader worker seeds), NumPy, Python ``random`` and the module's
    augmentation generator."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": _python_state(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    generator = getattr(module, "_augment_rng", None)
    if isinstance(generator, torch.Generator):
        states["augment"] = generator.get_state()
    return states


def _python_state(state: tuple) -> list:
    version, internal, gauss = state
    return [int(version), [int(x) for x in internal], gauss]


def restore_rng_states(states: dict[str, Any], module: Any = None) -> None:
    """Put back what :func:`rng_states` saved; a generator saved for the module is recreated if it has none yet."""
    torch.set_rng_state(states["torch"])
    numpy = states["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], keys, numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        saved = states["cuda"]
        if len(saved) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(saved)
        else:
            log.warning("%d CUDA RNG states saved, %d GPUs here: not restored", len(saved), torch.cuda.device_count())
    if "augment" in states and module is not None and hasattr(module, "_augment_rng"):
        generator = module._augment_rng if isinstance(module._augment_rng, torch.Generator) else torch.Generator()
        generator.set_state(states["augment"])
        module._augment_rng = generator


class ResumeState(Callback):
    """Saves what a resumed run needs beyond Lightning's own state, so it repeats the uninterrupted run exactly.

    - every RNG: dropout, augmentation and data loader worker seeds draw what the uninterrupted run drew;
    - the module's run-long attributes (:data:`MODULE_STATE`);
    - the epoch-end step of ReduceLROnPlateau: ``last.ckpt`` is written at the end of an epoch, before Lightning
      steps plateau schedulers, and a resumed Lightning skips that step (it did not save the metric); the value
      is saved here and the step taken when training restarts;
    - ``trainer.should_stop``: a run that early stopping ended and that was killed while testing does not train on.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        module_state = {k: getattr(pl_module, k) for k in MODULE_STATE if hasattr(pl_module, k)}
        checkpoint[RESUME_KEY] = {
            "rng": rng_states(pl_module),
            "module": module_state,
            "plateau": _pending_plateau_values(trainer),
            "should_stop": bool(trainer.should_stop),
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        saved = checkpoint.get(RESUME_KEY)
        if not saved:  # a checkpoint of an older version: weights and loops resume, the RNGs start afresh
            log.warning("the checkpoint holds no RNG states: the resumed run will not repeat the uninterrupted one")
            return
        for key, value in saved.get("module", {}).items():
            if key in MODULE_STATE:
                setattr(pl_module, key, value)
        restore_rng_states(saved["rng"], pl_module)
        self._pending = {"plateau": saved.get("plateau") or [], "should_stop": bool(saved.get("should_stop"))}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Schedulers and loops are restored by now (after on_load_checkpoint).
        pending, self._pending = self._pending, None
        if not pending:
            return
        plateaus = [c for c in trainer.lr_scheduler_configs if c.reduce_on_plateau and c.interval == "epoch"]
        for config, value in zip(plateaus, pending["plateau"], strict=False):
            if value is not None:
                config.scheduler.step(value)
        if pending["should_stop"]:
            trainer.should_stop = True


def _pending_plateau_values(trainer: L.Trainer) -> list[float | None]:
    """The metric of each epoch-interval plateau scheduler, when saved after the epoch's batches but before
    Lightning steps those schedulers (its epoch-end hooks run first); empty otherwise."""
    loop = trainer.fit_loop
    progress = loop.epoch_progress.current
    if progress.completed >= progress.processed:
        return []
    values: list[float | None] = []
    for config in trainer.lr_scheduler_configs:
        if config.reduce_on_plateau and config.interval == "epoch":
            metric = trainer.callback_metrics.get(config.monitor) if config.monitor else None
            values.append(float(metric) if metric is not None else None)
    return values
