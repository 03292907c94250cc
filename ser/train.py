"""Train and test one model: ``python -m ser.train loss=categorical|binary [overrides]``.

Data flow: config -> DataModule (index, cached features, split) -> SERModule -> Trainer.fit ->
test of the best checkpoint -> run artifacts (metrics.json, confusion matrix, classification report,
TensorBoard hparams with the real final metrics). Returns the optimized metric for sweepers.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig
from sklearn.metrics import classification_report

from ser.data.datamodule import SERDataModule
from ser.data.report import format_report
from ser.data.sources import DataError
from ser.labels import CLASSES
from ser.metric_names import SCALARS, TRIVIAL_BINARY_ACCURACY
from ser.models.module import SERModule
from ser.plots import confusion_figure, save_figure
from ser.runutils import configure_threads, hparams_of, instantiate_group, seed_everything, to_plain, write_json

log = logging.getLogger("ser.train")

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")

# Lightning's advice to add dataloader workers does not apply: features are already in memory.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def build_datamodule(cfg: DictConfig) -> SERDataModule:
    return instantiate(cfg.data, features=cfg.features, _recursive_=False)


def build_module(cfg: DictConfig, input_dim: int) -> SERModule:
    return SERModule(
        model=to_plain(cfg.model),
        loss=to_plain(cfg.loss),
        optimizer=to_plain(cfg.optimizer),
        scheduler=to_plain(cfg.get("scheduler")) or None,
        input_dim=input_dim,
        features=to_plain(cfg.features),
        sample_rate=int(cfg.data.sample_rate),
        classes=list(CLASSES),
        monitor=str(cfg.optimized_metric),
    )


def run(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test one model; returns the metrics written to metrics.json."""
    environ = dict(os.environ)
    try:
        return _run(cfg)
    finally:
        # The next job of a multirun sweep runs in this same process: it must start a new DDP group,
        # and must not see the LOCAL_RANK/WORLD_SIZE that make Lightning think it is a child rank.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(environ)


def _run(cfg: DictConfig) -> dict[str, Any]:
    start = time.perf_counter()
    out_dir = Path(cfg.paths.output_dir)
    configure_threads(cfg)
    seed_everything(cfg.get("seed"))

    datamodule = build_datamodule(cfg)
    datamodule.build_index()  # a missing or wrong corpus fails here, before any work
    module = build_module(cfg, datamodule.input_dim)
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    if not loggers:  # Lightning refuses a learning-rate monitor without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    datamodule.prepare_data()
    datamodule.setup("fit")
    for lg in loggers:
        if isinstance(lg, TensorBoardLogger) and trainer.is_global_zero:
            lg.experiment.add_text("data_report", "```\n" + format_report(datamodule.report) + "\n```")

    if cfg.get("train", True):
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    if cfg.get("test", True):
        ckpt = best_path or ("last" if cfg.get("train", True) else cfg.get("ckpt_path"))
        if not best_path:
            log.warning("no best checkpoint; testing the %s weights", ckpt or "current")
        trainer.test(module, datamodule=datamodule, ckpt_path=ckpt or None)

    metrics = collect_metrics(cfg, module, datamodule, trainer, best_path, time.perf_counter() - start)
    if trainer.is_global_zero:
        write_artifacts(out_dir, metrics, module)
        log_hparams(loggers, cfg, metrics)
        log.info(
            "test: accuracy %.4f | UAR %.4f | macro-F1 %.4f | binary_accuracy %.4f (all-'no' model: %.4f) -> %s",
            *(metrics.get(k, float("nan")) for k in ("accuracy", "uar", "macro_f1", "binary_accuracy")),
            TRIVIAL_BINARY_ACCURACY,
            out_dir,
        )
    return metrics


def collect_metrics(cfg, module, datamodule, trainer, best_path, wall) -> dict[str, Any]:
    epoch_times = module.epoch_times
    results = dict(module.test_results)
    metrics: dict[str, Any] = {k: results.get(k) for k in SCALARS}
    metrics["per_class_recall"] = results.get("per_class_recall", {})
    metrics["trivial_binary_accuracy"] = TRIVIAL_BINARY_ACCURACY
    metrics["best_val"] = {k: module.best_val.get(k) for k in (*SCALARS, "epoch")} if module.best_val else {}
    metrics.update(
        status="ok",
        loss=type(module.loss_fn).__name__.replace("Loss", "").lower(),
        seed=cfg.get("seed"),
        split=str(cfg.data.split),
        fold=int(cfg.data.fold) if cfg.data.split == "kfold" else None,
        data=datamodule.summary(),
        epochs=trainer.current_epoch,
        epoch_time_s=float(np.median(epoch_times)) if epoch_times else None,
        wall_time_s=round(wall, 2),
        best_checkpoint=best_path,
        confusion=results.get("confusion"),
    )
    return metrics


def write_artifacts(out_dir: Path, metrics: dict[str, Any], module: SERModule) -> None:
    """metrics.json, confusion_matrix.png and classification_report.txt of the test set."""
    write_json(out_dir / "metrics.json", metrics)
    confusion = metrics.get("confusion")
    if not confusion:
        return
    cm = np.asarray(confusion)
    fig = confusion_figure(cm, CLASSES, title=f"test, {metrics['loss']} loss, UAR {metrics['uar']:.3f}")
    save_figure(fig, out_dir / "confusion_matrix.png")
    # The report from the (DDP-synced) confusion counts: the same numbers as from per-clip predictions.
    y_true = np.repeat(np.arange(len(CLASSES)), cm.sum(1))
    y_pred = np.concatenate([np.repeat(np.arange(len(CLASSES)), row) for row in cm])
    report = classification_report(
        y_true,
        y_pred,
        labels=list(range(len(CLASSES))),
        target_names=list(CLASSES),
        digits=4,
        zero_division=0,
    )
    (out_dir / "classification_report.txt").write_text(report)


def log_hparams(loggers: list, cfg: DictConfig, metrics: dict[str, Any]) -> None:
    """HPARAMS tab: this run's hyperparameters with its real final metrics (sortable by test UAR)."""
    final = {f"hparams/test_{k}": float(metrics[k]) for k in SCALARS if metrics.get(k) is not None}
    if metrics.get("best_val"):
        final["hparams/val_uar_best"] = float(metrics["best_val"]["uar"])
    for lg in loggers:
        if isinstance(lg, TensorBoardLogger):
            lg.log_hyperparams(hparams_of(cfg), metrics=final)
            lg.save()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    out_dir = Path(cfg.paths.output_dir)
    try:
        metrics = run(cfg)
    except DataError as exc:
        log.error("%s", exc)
        print(f"\nser.train: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        write_json(
            out_dir / "metrics.json",
            {
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}",
                "overrides": list(HydraConfig.get().overrides.task),
            },
        )
        raise
    name = str(cfg.get("optimized_metric") or "")
    if name.startswith("val/"):
        value = metrics.get("best_val", {}).get(name[4:])
    else:
        value = metrics.get(name.removeprefix("test/"))
    return float(value) if value is not None else None


if __name__ == "__main__":
    main()
