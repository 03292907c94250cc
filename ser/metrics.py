"""Honest metrics for the 12-class task, side by side with the per-output binary accuracy Keras reported.

All are torchmetrics, so they accumulate over batches and stay right under DDP.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassRecall,
    MultilabelAccuracy,
)

from ser.labels import CLASSES, NUM_CLASSES, NUM_EMOTIONS, NUM_GENDERS
from ser.results import SCALARS, TRIVIAL_BINARY_ACCURACY  # noqa: F401  (re-exported)


class _Mapped(Metric):
    """Accuracy of a coarser view (emotion or gender) of the 12-class predictions."""

    full_state_update = False

    def __init__(self, num_classes: int, view: str) -> None:
        super().__init__()
        self.view = view
        self.inner = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        return x % NUM_EMOTIONS if self.view == "emotion" else x // NUM_EMOTIONS

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.inner.update(self._map(preds), self._map(target))

    def compute(self) -> torch.Tensor:
        return self.inner.compute()

    def reset(self) -> None:
        super().reset()
        self.inner.reset()


def present_class_averages(confusion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """UAR and macro-F1 over the true classes present in a confusion matrix (rows: truth, columns: prediction).

    torchmetrics' macro averages count a class with no clip as recall and F1 0 whenever it was predicted,
    so a test set without female speakers (SAVEE, cross-corpus) would be scored on classes it cannot hold.
    A prediction into an absent class still costs the recall of the clip's true class.
    """
    confusion = confusion.cpu().double()  # float64 is not on every device (MPS)
    tp, support, predicted = confusion.diagonal(), confusion.sum(1), confusion.sum(0)
    present = support > 0
    uar = (tp[present] / support[present]).mean()
    macro_f1 = (2 * tp[present] / (support[present] + predicted[present])).mean()
    return uar.float(), macro_f1.float()


class StageMetrics(nn.Module):
    """Everything measured on one stage (train, val or test).

    UAR, macro-F1 and the per-class recalls cover the classes present in the stage's data; with every class
    present they are torchmetrics' own numbers.
    """

    def __init__(self) -> None:
        super().__init__()
        self.label_metrics = MetricCollection(
            {
                "accuracy": MulticlassAccuracy(NUM_CLASSES, average="micro"),
                "uar": MulticlassRecall(NUM_CLASSES, average="macro"),
                "macro_f1": MulticlassF1Score(NUM_CLASSES, average="macro"),
                "emotion_accuracy": _Mapped(NUM_EMOTIONS, "emotion"),
                "gender_accuracy": _Mapped(NUM_GENDERS, "gender"),
            }
        )
        self.per_class_recall = MulticlassRecall(NUM_CLASSES, average=None)
        self.binary_accuracy = MultilabelAccuracy(NUM_CLASSES, threshold=0.5, average="micro")
        self.confusion = MulticlassConfusionMatrix(NUM_CLASSES)

    def update(self, probabilities: torch.Tensor, target: torch.Tensor) -> None:
        preds = probabilities.argmax(-1)
        self.label_metrics.update(preds, target)
        self.per_class_recall.update(preds, target)
        self.binary_accuracy.update(probabilities, nn.functional.one_hot(target, NUM_CLASSES))
        self.confusion.update(preds, target)

    def compute(self) -> dict[str, torch.Tensor]:
        out = dict(self.label_metrics.compute())
        out["binary_accuracy"] = self.binary_accuracy.compute()
        confusion = self.confusion.compute()
        present = confusion.sum(1) > 0
        if present.any() and not present.all():
            out["uar"], out["macro_f1"] = (v.to(out["uar"].device) for v in present_class_averages(confusion))
        return out

    def compute_per_class_recall(self) -> dict[str, float | None]:
        """Recall of each class; None for a class with no clip (it has no recall to measure)."""
        present = (self.confusion.compute().sum(1) > 0).tolist()
        recalls = self.per_class_recall.compute().tolist()
        return {name: (r if p else None) for name, r, p in zip(CLASSES, recalls, present, strict=True)}

    def compute_confusion(self) -> torch.Tensor:
        return self.confusion.compute()

    def reset(self) -> None:
        self.label_metrics.reset()
        self.per_class_recall.reset()
        self.binary_accuracy.reset()
        self.confusion.reset()
