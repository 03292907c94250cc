"""LightningModule: the network, the chosen loss, the metrics of every stage and what a run logs."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from torchmetrics import MeanMetric

from ser.data.batching import Batch
from ser.features.augment import Mixup, RandomCrop, SpecAugment
from ser.labels import CLASSES, NUM_CLASSES
from ser.metrics import StageMetrics
from ser.models.checkpoint import DATA_KEY, stamp

log = logging.getLogger("ser.train")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class SERModule(L.LightningModule):
    """Wraps the network (``model`` config) and trains it with the ``loss`` config.

    All constructor arguments are plain config dicts, saved as hyperparameters, so a checkpoint
    rebuilds the whole model on its own (see ser.predict).
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        loss: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        input_dim: int,
        scheduler: Mapping[str, Any] | None = None,
        features: Mapping[str, Any] | None = None,
        sample_rate: int = 16000,
        classes: tuple[str, ...] | list[str] = CLASSES,
        monitor: str = "val/uar",
        normalization: str = "global",
        augment: Mapping[str, Any] | None = None,
        feature_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
        class_counts: torch.Tensor | None = None,
        data_record: Mapping[str, Any] | None = None,
    ) -> None:
        """``feature_stats`` (mean, std of the training frames) and ``class_counts`` (training clips per
        class) come from the data; they are not hyperparameters: the checkpoint keeps them as buffers.
        ``data_record`` (ser.models.checkpoint.data_record: corpora, split, speakers of each part) is not
        one either: it goes into the checkpoint beside them, not into hparams.yaml or the loggers."""
        super().__init__()
        # logger=False: the HPARAMS tab gets the full run config with final metrics at the end (ser.train).
        self.save_hyperparameters(logger=False, ignore=["feature_stats", "class_counts", "data_record"])
        self.data_record = dict(data_record) if data_record else None
        if len(classes) != NUM_CLASSES:
            raise ValueError(f"{len(classes)} class names given, the label scheme has {NUM_CLASSES}")
        self.net = instantiate(model, input_dim=input_dim)
        self.loss_fn = instantiate(loss)
        augment = dict(augment or {})
        self.crop = RandomCrop(**augment["crop"]) if augment.get("crop") else None
        self.spec_augment = SpecAugment(**augment["spec_augment"]) if augment.get("spec_augment") else None
        self.mixup = Mixup(**augment["mixup"]) if augment.get("mixup") else None
        self._augment_rng: torch.Generator | None = None
        if feature_stats is not None:
            self.net.normalizer.set_stats(*feature_stats)
        if class_counts is not None:
            self.loss_fn.set_class_counts(class_counts)
        self.train_metrics = StageMetrics()
        self.val_metrics = StageMetrics()
        self.test_metrics = StageMetrics()
        self.train_loss = MeanMetric()
        self.epoch_times: list[float] = []
        self._epoch_start = 0.0
        self.best_val: dict[str, float] = {}
        self.test_results: dict[str, Any] = {}
        self.last_val_confusion: torch.Tensor | None = None

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.net(features, lengths)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return self.loss_fn.probabilities(logits)

    # -- steps -------------------------------------------------------------------------------------------

    def _step(self, batch: Batch, metrics: StageMetrics, stage: str) -> torch.Tensor:
        if stage == "train" and (self.crop is not None or self.spec_augment is not None or self.mixup is not None):
            logits, loss = self._augmented_step(batch)
        else:
            logits = self(batch.features, batch.lengths)
            loss = self.loss_fn(logits, batch.labels)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"{stage} loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}. "
                "The run is stopped. Try a lower optimizer.lr, gradient clipping (trainer.gradient_clip_val), "
                "or check the features for NaN/inf values."
            )
        metrics.update(self.probabilities(logits.detach().float()), batch.labels)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=stage != "test",
            batch_size=batch.labels.shape[0],
            sync_dist=True,
        )
        return loss

    def _augmented_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and loss of a train batch under random crops, SpecAugment and/or mixup (draws from a seeded
        generator, in that order)."""
        if self._augment_rng is None:
            # Seeded from the run's seed (seed_everything), so augmented runs repeat exactly.
            self._augment_rng = torch.Generator().manual_seed(torch.initial_seed() + self.global_rank)
        features, lengths = batch.features, batch.lengths
        if self.crop is not None:
            features, lengths = self.crop(features, lengths, self._augment_rng)
        if self.spec_augment is not None:
            features = self.spec_augment(features, lengths, self._augment_rng)
        if self.mixup is None:
            logits = self(features, lengths)
            return logits, self.loss_fn(logits, batch.labels)
        mixed = self.mixup(features, lengths, batch.labels, self._augment_rng)
        logits = self(mixed.features, mixed.lengths)
        # Both losses are linear in the target, so this is the loss of the mixed soft target.
        loss = mixed.lam * self.loss_fn(logits, mixed.targets_a) + (1 - mixed.lam) * self.loss_fn(
            logits, mixed.targets_b
        )
        return logits, loss

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, self.train_metrics, "train")
        self.train_loss.update(loss.detach(), weight=batch.labels.shape[0])
        return loss

    # trainer.precision (bf16-mixed, 16-mixed) is for the training steps: validation and test run in float32,
    # as ser.eval and ser.predict do, so a checkpoint scores the same in its run and anywhere else.
    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        with torch.autocast(self.device.type, enabled=False):
            self._step(batch, self.val_metrics, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        with torch.autocast(self.device.type, enabled=False):
            self._step(batch, self.test_metrics, "test")

    def _log_stage(self, metrics: StageMetrics, stage: str) -> dict[str, float]:
        values = {k: float(v) for k, v in metrics.compute().items()}
        for k, v in values.items():
            self.log(f"{stage}/{k}", v, prog_bar=k == "uar" and stage != "train")
        # One x-axis for TensorBoard: the epoch. Lightning plots a logged "step" as the x value of the
        # metrics flushed with it, and the confusion-matrix images are logged at the epoch too.
        self.log("step", float(self.current_epoch))
        return values

    def on_train_epoch_end(self) -> None:
        # Validation of this epoch has run already, so the line has both train and val figures.
        train = self._log_stage(self.train_metrics, "train")
        train_loss = float(self.train_loss.compute())
        if self.trainer.optimizers:  # the rate this epoch trained with, on the epoch axis
            self.log("train/lr", float(self.trainer.optimizers[0].param_groups[0]["lr"]))
        self.train_metrics.reset()
        self.train_loss.reset()
        elapsed = time.perf_counter() - self._epoch_start
        self.epoch_times.append(elapsed)
        if self.global_rank == 0:
            val = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")}
            parts = [f"train/loss {train_loss:.4f}", f"train/uar {train['uar']:.4f}"]
            parts += [
                f"{k} {val[k]:.4f}" for k in ("val/loss", "val/uar", "val/accuracy", "val/binary_accuracy") if k in val
            ]
            log.info("epoch %d | %s | %.1f s", self.current_epoch, " | ".join(parts), elapsed)

    def on_validation_epoch_end(self) -> None:
        values = self._log_stage(self.val_metrics, "val")
        confusion = self.val_metrics.compute_confusion().cpu()
        self.val_metrics.reset()
        if self.trainer.sanity_checking:
            return
        if not self.best_val or values["uar"] > self.best_val["uar"]:
            self.best_val = {**values, "epoch": self.current_epoch}
        self.last_val_confusion = confusion
        self._log_confusion_image(confusion, "val/confusion_matrix")

    def on_test_epoch_end(self) -> None:
        values = self._log_stage(self.test_metrics, "test")
        self.test_results = {
            **values,
            "per_class_recall": self.test_metrics.compute_per_class_recall(),
            "confusion": self.test_metrics.compute_confusion().cpu().tolist(),
        }
        self._log_confusion_image(torch.tensor(self.test_results["confusion"]), "test/confusion_matrix")
        self.test_metrics.reset()

    def _log_confusion_image(self, confusion: torch.Tensor, tag: str) -> None:
        tb = next((lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)), None)
        if tb is None or self.global_rank != 0:
            return
        from ser.plots import confusion_figure

        fig = confusion_figure(confusion.numpy(), self.hparams.classes, title=f"{tag} (epoch {self.current_epoch})")
        tb.experiment.add_figure(tag, fig, global_step=self.current_epoch)

    # -- optimization ------------------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        sched_cfg = dict(self.hparams.scheduler)
        interval = sched_cfg.pop("interval", "epoch")
        monitor = sched_cfg.pop("monitor", self.hparams.monitor)
        if sched_cfg.get("total_steps") == "auto":  # one-cycle: the whole run's optimizer steps
            sched_cfg["total_steps"] = int(self.trainer.estimated_stepping_batches)
        scheduler = instantiate(sched_cfg)(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": monitor, "interval": interval},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stamp(checkpoint, self.data_record)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Resumed weights have also learnt from the speakers the earlier run trained and validated on: keep them
        # in the record, so ser.eval never scores the model on them as if they were new.
        old = checkpoint.get(DATA_KEY)
        if not self.data_record or not old:
            self.data_record = self.data_record or old
            return
        speakers = {p: list(v) for p, v in self.data_record["speakers"].items()}
        for part in ("train", "val"):
            speakers[part] = sorted(set(speakers[part]) | set(old["speakers"][part]))
        speakers["test"] = sorted(set(speakers["test"]) - set(speakers["train"]) - set(speakers["val"]))
        self.data_record = {**self.data_record, "speakers": speakers}
