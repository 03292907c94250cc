"""The two losses the original work compared. Both train the same 12 logits; both predict by argmax.

``categorical``: softmax cross-entropy (optional label smoothing and class weights).
``binary``: 12 independent sigmoids with binary cross-entropy on one-hot targets (optional pos_weight),
what Keras' ``binary_crossentropy`` does with a one-hot label.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ser.labels import NUM_CLASSES


def _weights(spec: str | float | Sequence[float] | None, counts: torch.Tensor | None, kind: str) -> torch.Tensor | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec != "balanced":
            raise ValueError(f"loss.{kind}={spec!r}: use null, 'balanced' or a list of {NUM_CLASSES} numbers")
        if counts is None:
            raise ValueError(f"loss.{kind}=balanced needs the training class counts")
        counts = counts.double().clamp_min(1)
        if kind == "class_weights":
            return (counts.sum() / (len(counts) * counts)).float()
        return ((counts.sum() - counts) / counts).float()  # negatives per positive, per class
    if isinstance(spec, (int, float)):
        return torch.full((NUM_CLASSES,), float(spec))
    w = torch.tensor(list(spec), dtype=torch.float32)
    if w.shape != (NUM_CLASSES,):
        raise ValueError(f"loss.{kind} has {len(w)} values, expected {NUM_CLASSES}")
    return w


class SERLoss(nn.Module):
    """Common interface: ``forward(logits, labels)``, ``probabilities(logits)``, ``name``."""

    name = "loss"

    def set_class_counts(self, counts: torch.Tensor) -> None:
        """Called with the training class counts before training (for 'balanced' weights)."""

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class CategoricalLoss(SERLoss):
    name = "categorical"

    def __init__(self, label_smoothing: float = 0.0, class_weights: str | Sequence[float] | None = None) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.class_weights_spec = class_weights
        self.register_buffer(
            "weight", _weights(class_weights, None, "class_weights") if class_weights != "balanced" else None
        )

    def set_class_counts(self, counts: torch.Tensor) -> None:
        if self.class_weights_spec == "balanced":
            self.weight = _weights("balanced", counts, "class_weights")

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(logits.device) if self.weight is not None else None
        return F.cross_entropy(logits, labels, weight=weight, label_smoothing=self.label_smoothing)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(-1)


class BinaryLoss(SERLoss):
    name = "binary"

    def __init__(self, pos_weight: str | float | Sequence[float] | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"loss.label_smoothing={label_smoothing}: must be in [0, 1)")
        # As cross-entropy smooths: targets (1 - e) * onehot + e / classes, so the two losses compare alike.
        self.label_smoothing = label_smoothing
        self.pos_weight_spec = pos_weight
        self.register_buffer(
            "pos_weight", _weights(pos_weight, None, "pos_weight") if pos_weight != "balanced" else None
        )

    def set_class_counts(self, counts: torch.Tensor) -> None:
        if self.pos_weight_spec == "balanced":
            self.pos_weight = _weights("balanced", counts, "pos_weight")

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
        if self.label_smoothing:
            target = target * (1 - self.label_smoothing) + self.label_smoothing / logits.shape[-1]
        pw = self.pos_weight.to(logits.device) if self.pos_weight is not None else None
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.sigmoid()
