"""Names of the reported metrics and the trivial baseline, importable without torch (ser.compare uses them)."""

from __future__ import annotations

from ser.labels import NUM_CLASSES

# Scalar metrics logged as <stage>/<name>; these are also the plain names in metrics.json.
SCALARS = ("accuracy", "uar", "macro_f1", "emotion_accuracy", "gender_accuracy", "binary_accuracy")
# Per-output accuracy of a model that says "no" to every class, on one-hot targets: 11/12.
TRIVIAL_BINARY_ACCURACY = (NUM_CLASSES - 1) / NUM_CLASSES
