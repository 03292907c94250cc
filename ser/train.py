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
from omegaconf import DictConfig, OmegaConf
from sklearn.metrics import classification_report

from ser import resume, runs
from ser.config import flatten, hparams_of, instantiate_group, to_plain
from ser.data.corpus import DataError
from ser.data.datamodule import SERDataModule
from ser.data.splits import SplitError
from ser.environment import run_environment
from ser.labels import CLASSES
from ser.logs import console_callbacks, data_report_text, prints_full_report, quiet_third_party, show_bars
from ser.models.checkpoint import CheckpointError, data_record, load_checkpoint
from ser.models.module import SERModule
from ser.plots import confusion_figure, save_figure
from ser.results import SCALARS, TRIVIAL_BINARY_ACCURACY, failure_record, run_record, write_record, write_text
from ser.runtime import (
    configure_matmul_precision,
    configure_threads,
    is_multirun,
    mark_failed,
    run_command,
    seed_everything,
    task_started,
)
from ser.validate import ConfigError, checkpoint_mismatch, validate

log = logging.getLogger("ser.train")

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
# A user's mistake, found before work: one line on stderr and exit code 2, not a traceback.
USER_ERRORS = (DataError, ConfigError, CheckpointError, SplitError, runs.ResumeError)


def build_datamodule(cfg: DictConfig) -> SERDataModule:
    """The DataModule of the data, split and features groups (and augment.speed under the run's seed); the
    feature extractor is built here, once."""
    return SERDataModule.from_config(
        cfg.data, cfg.split, cfg.features, augment=cfg.get("augment"), seed=cfg.get("seed")
    )


def build_module(
    cfg: DictConfig,
    input_dim: int,
    feature_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    class_counts: torch.Tensor | None = None,
    data_record: dict[str, Any] | None = None,
) -> SERModule:
    """The LightningModule, handed what it needs from the data: feature statistics and class counts."""
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
        normalization=str(cfg.data.get("normalization", "global")),
        augment=to_plain(cfg.get("augment")) or None,
        feature_stats=feature_stats,
        class_counts=class_counts,
        data_record=data_record,
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
    """validate (before any work) -> build (data, trainer, module) -> fit -> test -> record."""
    start = time.perf_counter()
    out_dir = Path(cfg.paths.output_dir)
    validate(cfg)  # values that cannot work and unwritable folders stop here, before indexing and training
    resume_from = resume.resume_checkpoint(cfg, out_dir)  # resume=<this folder>, or a requeued/finished sweep job
    bars = show_bars(cfg.get("progress"))
    quiet_third_party()
    configure_threads(cfg)
    configure_matmul_precision(cfg)
    seed_everything(cfg.get("seed"))

    datamodule = build_datamodule(cfg)
    datamodule.progress = datamodule.progress and bars
    check_checkpoint(cfg, datamodule.input_dim)  # a checkpoint of another model size fails before any work
    datamodule.build_index()  # a missing or wrong corpus fails here, before any work
    trainer, callbacks, loggers = build_trainer(cfg, bars)

    datamodule.prepare_data()
    datamodule.setup("fit")
    # The checkpoint records which speakers trained, validated and tested it (ser.eval refuses overlap).
    record = data_record(datamodule.corpora.names, datamodule.split, datamodule.clips)
    module = build_module(cfg, datamodule.input_dim, datamodule.feature_stats(), datamodule.class_counts(), record)
    if trainer.is_global_zero:
        report_data(datamodule, loggers)

    if cfg.get("train", True):
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from or cfg.get("ckpt_path"))
    checkpoint = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    if cfg.get("test", True):
        ckpt = best_path or ("last" if cfg.get("train", True) else cfg.get("ckpt_path"))
        if not cfg.get("train", True):
            log.info("testing %s", ckpt or "the model's initial weights (no ckpt_path)")
        elif not best_path:
            log.warning("no best checkpoint; testing the %s weights", ckpt)
        # The metrics table only on a terminal: a log has them in the "test:" line below.
        trainer.test(module, datamodule=datamodule, ckpt_path=ckpt or None, verbose=bars)

    metrics = collect_metrics(cfg, module, datamodule, trainer, best_path, time.perf_counter() - start)
    metrics["overrides"] = task_overrides()  # a sweep job re-launched into its folder knows it is the same job
    if trainer.is_global_zero:
        write_artifacts(out_dir, metrics, module)
        log_hparams(loggers, cfg, metrics)
        if metrics.get("uar") is not None:  # test=false (e.g. a tuning trial) has no test figures
            log.info(
                "test: accuracy %.4f | UAR %.4f | macro-F1 %.4f | binary_accuracy %.4f (all-'no' model: %.4f) -> %s",
                *(metrics[k] for k in ("accuracy", "uar", "macro_f1", "binary_accuracy")),
                TRIVIAL_BINARY_ACCURACY,
                out_dir,
            )
    finish_loggers(loggers)
    return metrics


def finish_loggers(loggers: list) -> None:
    """Close runs of loggers that keep a process-wide current run (wandb): the next job of a sweep or
    the next tuning trial in this process must start its own run, not log into this one."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger" and getattr(lg, "_experiment", None) is not None:
            lg.experiment.finish()


def build_trainer(cfg: DictConfig, bars: bool) -> tuple[L.Trainer, list, list]:
    """The Trainer with its callbacks and loggers; a progress bar only when ``bars`` (and the trainer allows it)."""
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    if not loggers:  # Lightning refuses a learning-rate monitor without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    # trainer.enable_progress_bar=false is the same switch as progress=none (the bar callback is dropped).
    bars = bars and cfg.trainer.get("enable_progress_bar", True) is not False
    callbacks = console_callbacks(callbacks, bars, bool(cfg.trainer.get("enable_model_summary", True)))
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, enable_progress_bar=bars
    )
    return trainer, callbacks, loggers


def check_checkpoint(cfg: DictConfig, input_dim: int) -> None:
    """``ckpt_path`` must be a ser checkpoint of the network this config builds (same sizes), before any work."""
    path = cfg.get("ckpt_path")
    if not path:
        return
    ckpt = load_checkpoint(path)  # CheckpointError: missing, not a checkpoint, not written by ser.train
    expected = {f"net.{k}": v for k, v in instantiate(cfg.model, input_dim=input_dim).state_dict().items()}
    mismatch = checkpoint_mismatch(ckpt["state_dict"], expected)
    if mismatch is None:
        return
    theirs, ours = flatten(ckpt["hyper_parameters"].get("model") or {}), flatten(to_plain(cfg.model))
    differ = [f"model.{k}={v}" for k, v in theirs.items() if ours.get(k) != v]
    trained = f"; it was trained with {' '.join(differ)}" if differ else ""
    other = "another model" if ours.get("_target_") != theirs.get("_target_") else "another model size"
    raise ConfigError(f"ckpt_path={path}: the checkpoint holds {other} ({mismatch}){trained}")


def report_data(datamodule: SERDataModule, loggers: list) -> None:
    """The data report and split summary, printed once: in full, except by a sweep's later jobs (one line)."""
    try:
        job_num = OmegaConf.select(HydraConfig.get(), "job.num", default=None, throw_on_missing=False)
    except ValueError:  # called outside a Hydra app
        job_num = None
    assert datamodule.report is not None
    summary = datamodule.summary()
    log.info("%s", data_report_text(datamodule.report, summary, full=prints_full_report(job_num)))
    for lg in loggers:
        if isinstance(lg, TensorBoardLogger):
            text = data_report_text(datamodule.report, summary, full=True)
            lg.experiment.add_text("data_report", "```\n" + text + "\n```")


def collect_metrics(cfg, module, datamodule, trainer, best_path, wall) -> dict[str, Any]:
    """The run record: the loss and the split are named by the objects that ran, not by the config."""
    epoch_times = module.epoch_times
    # Rank 0 writes the record; the other DDP ranks skip the git calls.
    where = run_environment(trainer.strategy.root_device, trainer.num_devices) if trainer.is_global_zero else None
    return run_record(
        test=module.test_results,
        best_val=module.best_val,
        loss=module.loss_fn.name,
        seed=cfg.get("seed"),
        split=datamodule.split.strategy,
        fold=datamodule.split.fold,
        data=datamodule.summary(),
        epochs=trainer.current_epoch,
        epoch_time_s=float(np.median(epoch_times)) if epoch_times else None,
        wall_time_s=wall,
        best_checkpoint=best_path,
        environment=where,
    )


def write_artifacts(out_dir: Path, metrics: dict[str, Any], module: SERModule) -> None:
    """metrics.json, confusion_matrix.png and classification_report.txt of the test set."""
    write_record(out_dir, metrics)
    confusion = metrics.get("confusion")
    if not confusion:
        return
    cm = np.asarray(confusion)
    fig = confusion_figure(cm, CLASSES, title=f"test, {metrics['loss']} loss, UAR {metrics['uar']:.3f}")
    save_figure(fig, out_dir / "confusion_matrix.png")
    # The report from the (DDP-synced) confusion counts: the same numbers as from per-clip predictions.
    y_true = np.repeat(np.arange(len(CLASSES)), cm.sum(1))
    y_pred = np.concatenate([np.repeat(np.arange(len(CLASSES)), row) for row in cm])
    # Over the classes the test data hold, as UAR and macro-F1 in metrics.json (a male-only test corpus: 6).
    present = [i for i in range(len(CLASSES)) if cm[i].sum() > 0] or list(range(len(CLASSES)))
    report = classification_report(
        y_true,
        y_pred,
        labels=present,
        target_names=[CLASSES[i] for i in present],
        digits=4,
        zero_division=0,
    )
    write_text(out_dir / "classification_report.txt", report)


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
    task_started()
    out_dir = Path(cfg.paths.output_dir)
    resumed = bool(cfg.get("resume"))
    status = runs.RunStatus(out_dir, task_overrides())
    try:
        with runs.catch_signals():  # SIGTERM/SIGINT: recorded as interrupted, last.ckpt kept for resuming
            done = status.finished  # a sweep job re-launched into its folder (ser.runs finish, a requeue)
            if done is not None:
                log.info("%s finished before (metrics.json says ok): kept as it is", out_dir)
                return resume.objective(cfg, done)
            resume.check_resumed_config(cfg, out_dir)
            status.running()
            metrics = run(cfg)
    except USER_ERRORS as exc:
        status.undo()
        if is_multirun():  # the job folder stays: its log says why
            log.error("%s", exc)
        print(f"\nser.train: {exc}", file=sys.stderr)
        if not resumed:  # a refused resume leaves the run as it was
            mark_failed(out_dir)
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit) as exc:
        code = status.interrupted(exc)
        print(f"\nser.train: {status.reason}; {runs.resume_hint(out_dir)}", file=sys.stderr)
        runs.exit(code)
    except Exception as exc:
        write_record(out_dir, failure_record(exc, task_overrides()))
        failed = mark_failed(out_dir) if not resumed else out_dir
        if failed is not None and failed != out_dir:
            print(f"ser.train: the run failed; its folder is now {failed}", file=sys.stderr)
        raise
    return resume.objective(cfg, metrics)


def task_overrides() -> list[str]:
    try:
        return [str(o) for o in HydraConfig.get().overrides.task]
    except ValueError:  # called outside a Hydra app
        return []


def cli() -> None:
    """``python -m ser.train`` / ``ser-train``: a mistake in the command line is one line and exit code 2."""
    try:  # resume=<run folder>: that run's overrides and folder
        sys.argv[1:] = resume.resume_argv(sys.argv[1:])
    except runs.ResumeError as exc:
        print(f"ser.train: {exc}", file=sys.stderr)
        sys.exit(2)
    run_command(main, "ser.train", CONFIG_DIR, "train")


if __name__ == "__main__":
    cli()
