"""What prediction yields: the probabilities of a clip or window, segments of a timeline, or why an input gave none."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


def finite_or_none(x: float | None, digits: int | None = None) -> float | None:
    """``x`` as a float, rounded to ``digits``; None for None, NaN and inf (JSON has no NaN)."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits) if digits is not None else float(x)


@dataclass(frozen=True, eq=False)  # no field-wise ==: it would compare arrays
class Prediction:
    """Class probabilities of one clip, or of one window ``[start, end)`` seconds of a recording.

    ``probabilities`` is None for a silent window of a timeline (nothing to classify). Probabilities
    that are not all finite name no label (``label``, ``confidence`` ... are None).
    """

    path: str
    classes: tuple[str, ...]
    probabilities: np.ndarray | None
    start: float | None = None
    end: float | None = None
    duration: float | None = None  # seconds of audio classified (not part of to_dict)

    @property
    def silent(self) -> bool:
        return self.probabilities is None

    @property
    def finite(self) -> bool:
        """Whether there are probabilities and all of them are finite numbers."""
        return self.probabilities is not None and bool(np.isfinite(self.probabilities).all())

    @property
    def index(self) -> int | None:
        # argmax of a NaN row is the first NaN: a label that nothing supports.
        return int(np.argmax(self.probabilities)) if self.finite else None  # type: ignore[arg-type]

    @property
    def label(self) -> str | None:
        i = self.index
        return None if i is None else self.classes[i]

    @property
    def confidence(self) -> float | None:
        i = self.index
        return None if i is None or self.probabilities is None else float(self.probabilities[i])

    @property
    def gender(self) -> str | None:
        return None if self.label is None else split_class(self.label)[0]

    @property
    def emotion(self) -> str | None:
        return None if self.label is None else split_class(self.label)[1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: path, [start, end, silent,] label, gender, emotion, confidence, probabilities by class.

        A non-finite probability is None (null), so the result always passes ``json.dumps(allow_nan=False)``.
        """
        out: dict[str, Any] = {"path": self.path}
        if self.start is not None:
            out.update(start=round(self.start, 6), end=round(float(self.end or 0.0), 6), silent=self.silent)
        out.update(label=self.label, gender=self.gender, emotion=self.emotion, confidence=self.confidence)
        out["probabilities"] = (
            None
            if self.probabilities is None
            else {name: finite_or_none(p) for name, p in zip(self.classes, self.probabilities, strict=True)}
        )
        return out


@dataclass(frozen=True)
class Segment:
    """Consecutive windows of one recording with the same label, merged: ``[start, end)`` seconds.

    ``start`` is the first window's start and ``end`` the last window's end, so with ``hop < window``
    neighbouring segments overlap by ``window - hop``. ``confidence`` is the mean probability of the
    label over the windows; a run of silent windows is a segment too (``silent``, no label).
    """

    path: str
    start: float
    end: float
    silent: bool
    label: str | None
    confidence: float | None
    windows: int

    @property
    def gender(self) -> str | None:
        return None if self.label is None else split_class(self.label)[0]

    @property
    def emotion(self) -> str | None:
        return None if self.label is None else split_class(self.label)[1]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: path, start, end, silent, label, gender, emotion, confidence, windows."""
        return {
            "path": self.path,
            "start": round(self.start, 6),
            "end": round(self.end, 6),
            "silent": self.silent,
            "label": self.label,
            "gender": self.gender,
            "emotion": self.emotion,
            "confidence": finite_or_none(self.confidence),
            "windows": self.windows,
        }


def _segment(run: list[Prediction]) -> Segment:
    first, last = run[0], run[-1]
    scores = [p.confidence for p in run if p.confidence is not None]
    return Segment(
        path=first.path,
        start=float(first.start or 0.0),
        end=float(last.end or 0.0),
        silent=first.silent,
        label=first.label,
        confidence=float(np.mean(scores)) if scores else None,
        windows=len(run),
    )


def merge_segments(windows: Iterable[Prediction]) -> Iterator[Segment]:
    """Consecutive windows of the same recording and label as segments, in order.

    Lazy: a segment is yielded as soon as a window with another label (or path) closes it, so a live
    stream reports each segment when it ends.
    """
    run: list[Prediction] = []
    for p in windows:
        if run and (p.path, p.silent, p.label) != (run[-1].path, run[-1].silent, run[-1].label):
            yield _segment(run)
            run = []
        run.append(p)
    if run:
        yield _segment(run)


@dataclass(frozen=True)
class InputFailure:
    """An input that gave no prediction (missing, not audio, empty, silent, too short) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


def split_class(name: str) -> tuple[str, str]:
    """("male", "sad") of "male_sad"; the checkpoint's class names follow ``<gender>_<emotion>``."""
    gender, _, emotion = name.partition("_")
    return gender, emotion
