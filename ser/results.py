"""The run record without torch: metric names, writing and reading ``metrics.json`` (sweeps: :mod:`ser.sweeps`)."""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ser.labels import GENDERS, NUM_CLASSES, NUM_EMOTIONS

# Scalar metrics logged as <stage>/<name>; these are also the plain names in metrics.json.
SCALARS: tuple[str, ...] = ("accuracy", "uar", "macro_f1", "emotion_accuracy", "gender_accuracy", "binary_accuracy")
DISPLAY_NAMES: dict[str, str] = {
    "accuracy": "accuracy (12-class)",
    "uar": "UAR",
    "macro_f1": "macro-F1",
    "emotion_accuracy": "6-emotion accuracy",
    "gender_accuracy": "gender accuracy",
    "binary_accuracy": "binary_accuracy (per output)",
}
# Per-output accuracy of a model that says "no" to every class, on one-hot targets: 11/12.
TRIVIAL_BINARY_ACCURACY = (NUM_CLASSES - 1) / NUM_CLASSES
RECORD_FILE = "metrics.json"


def display_name(metric: str) -> str:
    """'uar' -> 'UAR'; unknown names unchanged."""
    return DISPLAY_NAMES.get(metric, metric)


# ------------------------------------------------------------------------------------------ writing


def _clean(x: Any) -> Any:
    """NaN and infinities as None (JSON null): strict JSON readers reject them."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_json(path: str | Path, data: Any) -> Path:
    """Indented JSON written atomically: a reader sees the old file or the whole new one, never a part."""
    text = json.dumps(_clean(data), indent=2)  # before any file exists: a value JSON cannot hold leaves nothing
    return write_text(path, text)


def write_text(path: str | Path, text: str) -> Path:
    """A text file written atomically (temporary file in the same folder, fsync, rename): a full disk or a
    killed process leaves the old file or none, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("x") as fh:  # a plain open, so the file gets the usual permissions (umask)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def run_record(
    *,
    test: Mapping[str, Any],
    best_val: Mapping[str, Any] | None,
    loss: str,
    seed: int | None,
    split: str,
    fold: int | None,
    data: Mapping[str, Any],
    epochs: int,
    epoch_time_s: float | None,
    wall_time_s: float,
    best_checkpoint: str,
    environment: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of a completed run: test metrics under plain names, then what the run was.

    ``loss`` is the loss object's ``name`` and ``split``/``fold`` come from the Split that was made,
    so a record says what ran, whatever config spelled it; ``environment`` is where it ran
    (:func:`ser.environment.run_environment`).
    """
    record: dict[str, Any] = {k: test.get(k) for k in SCALARS}
    record["per_class_recall"] = test.get("per_class_recall", {})
    record["trivial_binary_accuracy"] = TRIVIAL_BINARY_ACCURACY
    record["best_val"] = {k: best_val.get(k) for k in (*SCALARS, "epoch")} if best_val else {}
    record.update(
        status="ok",
        loss=str(loss),
        seed=seed,
        split=str(split),
        fold=int(fold) if fold is not None else None,
        data=dict(data),
        epochs=epochs,
        epoch_time_s=epoch_time_s,
        wall_time_s=round(wall_time_s, 2),
        best_checkpoint=best_checkpoint,
        confusion=test.get("confusion"),
    )
    genders = genders_in(record["confusion"])
    if len(genders) == 1:  # a male-only test corpus (SAVEE, say): scored as ser.eval scores it
        record["gender_accuracy"] = None
        record["skipped"] = {"gender_accuracy": single_gender_reason(genders[0])}
    if environment is not None:
        record["environment"] = dict(environment)
    return record


def genders_in(confusion: Sequence[Sequence[int]] | None) -> list[str]:
    """The speaker genders with at least one clip in a 12-class confusion matrix (rows: true class)."""
    if not confusion or len(confusion) != NUM_CLASSES:
        return []
    return [g for i, g in enumerate(GENDERS) if sum(map(sum, confusion[i * NUM_EMOTIONS : (i + 1) * NUM_EMOTIONS]))]


def single_gender_reason(gender: str) -> str:
    """Why gender accuracy is not reported on data whose speakers all have one gender."""
    return f"only {gender} speakers: it would score a model that always answers {gender} as perfect"


def failure_record(exc: BaseException, overrides: Iterable[str]) -> dict[str, Any]:
    """The record of a run that raised: enough for a sweep report to list it with its overrides."""
    return {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "overrides": [str(o) for o in overrides]}


def write_record(out_dir: str | Path, record: Mapping[str, Any]) -> Path:
    """``out_dir/metrics.json``."""
    return write_json(Path(out_dir) / RECORD_FILE, dict(record))


def read_record(folder: str | Path) -> dict[str, Any] | None:
    """The record of a run folder; None without metrics.json, OSError/ValueError when it cannot be read.

    Records of every version read the same: the fields have only been added to, never renamed.
    """
    path = Path(folder) / RECORD_FILE
    if not path.is_file():
        return None
    loaded = json.loads(path.read_text())
    return loaded if isinstance(loaded, dict) else {}
