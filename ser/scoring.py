"""Scores of predictions on any data: the metrics that apply, those skipped and why, tables per speaker and corpus.

Training scores a test part that holds every class. Other data may not: SAVEE has no female
speaker, an own recording set may lack an emotion or a speaker's gender. Here a metric is computed
over what the data hold, its scope is said (``scope``), and a metric that cannot mean anything is
left out with the reason (``skipped``): 12-class metrics need the speaker's gender, UAR and
macro-F1 average over the classes present, gender accuracy needs both genders. Where every class is
present and every gender known, the numbers are those of :class:`ser.metrics.StageMetrics`, the
code that scores training's test stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ser.data.corpus import Clip
from ser.labels import CLASSES, EMOTIONS, GENDERS, NUM_CLASSES, NUM_EMOTIONS
from ser.metrics import StageMetrics
from ser.results import SCALARS, single_gender_reason

# Metrics of the 12 gender x emotion classes: they need the speaker's gender.
CLASS_METRICS = ("accuracy", "uar", "macro_f1", "binary_accuracy")


def truth(clips: Sequence[Clip]) -> tuple[np.ndarray, np.ndarray]:
    """Emotion index [N] and gender index [N] of each clip; gender -1 where it is not known."""
    emotions = np.array([EMOTIONS.index(c.emotion) for c in clips], dtype=np.int64)
    genders = np.array([GENDERS.index(c.gender) if c.gender in GENDERS else -1 for c in clips], dtype=np.int64)
    return emotions, genders


def _recalls(true: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """Recall of each of ``n`` classes; NaN for a class with no clip."""
    support = np.bincount(true, minlength=n).astype(float)
    hits = np.bincount(true[pred == true], minlength=n).astype(float)
    return np.divide(hits, support, out=np.full(n, np.nan), where=support > 0)


def mean_recall(true: np.ndarray, pred: np.ndarray, n: int) -> float | None:
    """Unweighted mean recall over the classes present (None without clips)."""
    r = _recalls(true, pred, n)
    return float(np.nanmean(r)) if np.isfinite(r).any() else None


@dataclass
class Scores:
    """What :func:`score` measured: ``metrics`` (SCALARS, None when skipped), and the words around them."""

    metrics: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)
    scope: dict[str, str] = field(default_factory=dict)


def score(probs: np.ndarray, emotions: np.ndarray, genders: np.ndarray) -> Scores:
    """Metrics of probabilities [N, 12] against the true emotions and genders (gender -1: unknown)."""
    n = len(emotions)
    pred = probs.argmax(1)
    pred_e = pred % NUM_EMOTIONS
    m: dict[str, Any] = dict.fromkeys(SCALARS)
    out = Scores(metrics=m)
    m["emotion_accuracy"] = float((pred_e == emotions).mean())
    m["emotion_uar"] = mean_recall(emotions, pred_e, NUM_EMOTIONS)
    m["emotion_confusion"] = _confusion(emotions, pred_e, NUM_EMOTIONS)
    emotions_present = sorted({EMOTIONS[e] for e in emotions})
    if len(emotions_present) < NUM_EMOTIONS:
        out.scope["emotion_uar"] = f"mean recall over the {len(emotions_present)} of 6 emotions present"
    known = genders >= 0
    m["per_class_recall"] = {}
    m["confusion"] = None
    if not known.any():
        for k in (*CLASS_METRICS, "gender_accuracy"):
            out.skipped[k] = "no clip has a known speaker gender: the 12 gender x emotion classes do not apply"
        return out
    labels = genders[known] * NUM_EMOTIONS + emotions[known]
    stage = StageMetrics()
    stage.update(torch.from_numpy(np.asarray(probs[known], dtype=np.float32)), torch.from_numpy(labels))
    values = {k: float(v) for k, v in stage.compute().items()}
    confusion = stage.compute_confusion().cpu().numpy()
    for k in CLASS_METRICS:
        m[k] = values[k]
    m["gender_accuracy"] = values["gender_accuracy"]
    m["per_class_recall"] = stage.compute_per_class_recall()
    m["confusion"] = confusion.tolist()
    if known.all():
        m["emotion_accuracy"] = values["emotion_accuracy"]  # StageMetrics' own number, as training reports it
    else:
        note = f"over the {int(known.sum())} of {n} clips whose speaker gender is known"
        out.scope.update({k: note for k in (*CLASS_METRICS, "gender_accuracy")})
    present = confusion.sum(1) > 0
    if not present.all():  # StageMetrics averaged over the classes present; say so
        note = f"over the {int(present.sum())} of {NUM_CLASSES} classes present"
        for k in ("uar", "macro_f1"):
            out.scope[k] = f"{out.scope[k]}; {note}" if k in out.scope else note
    genders_present = sorted({GENDERS[g] for g in genders[known]})
    if len(genders_present) < 2:
        only = genders_present[0]
        m["gender_accuracy"] = None
        out.skipped["gender_accuracy"] = single_gender_reason(only)
    return out


def _confusion(true: np.ndarray, pred: np.ndarray, n: int) -> list[list[int]]:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (true, pred), 1)
    return cm.tolist()


# ------------------------------------------------------------------------------------------- tables

GROUP_COLUMNS = ("clips", "accuracy", "uar", "emotion_accuracy", "emotion_uar", "members", "seen_in_training")


def group_rows(
    clips: Sequence[Clip],
    probs: np.ndarray,
    members: np.ndarray,
    seen: np.ndarray,
    by: str,
) -> list[dict[str, Any]]:
    """One row per speaker (``by="speaker"``) or corpus: clips, 12-class accuracy and UAR over the classes
    present (where genders are known), emotion accuracy and UAR, members that scored it, clips seen in training."""
    emotions, genders = truth(clips)
    pred = probs.argmax(1)
    keys = [getattr(c, by) for c in clips]
    rows = []
    for key in sorted(set(keys)):
        idx = np.array([i for i, k in enumerate(keys) if k == key])
        e, g, p = emotions[idx], genders[idx], pred[idx]
        known = g >= 0
        y, py = g[known] * NUM_EMOTIONS + e[known], p[known]
        row: dict[str, Any] = {"corpus": clips[idx[0]].corpus}
        if by == "speaker":
            row["speaker"] = key
            row["gender"] = clips[idx[0]].gender
        k_members = sorted({int(members[i]) for i in idx})
        row.update(
            clips=len(idx),
            accuracy=float((py == y).mean()) if known.any() else None,
            uar=mean_recall(y, py, NUM_CLASSES) if known.any() else None,
            emotion_accuracy=float((p % NUM_EMOTIONS == e).mean()),
            emotion_uar=mean_recall(e, p % NUM_EMOTIONS, NUM_EMOTIONS),
            members="-".join(map(str, (k_members[0], k_members[-1]))) if len(k_members) > 1 else k_members[0],
            seen_in_training=int(seen[idx].sum()),
        )
        rows.append(row)
    return rows


def prediction_rows(clips: Sequence[Clip], probs: np.ndarray, members: np.ndarray) -> list[dict[str, Any]]:
    """One row per clip: who, what it is, what the model said and how sure."""
    pred = probs.argmax(1)
    return [
        {
            "clip_id": c.clip_id,
            "corpus": c.corpus,
            "speaker": c.speaker,
            "gender": c.gender,
            "emotion": c.emotion,
            "predicted": CLASSES[int(p)],
            "confidence": round(float(probs[i, p]), 4),
            "members": int(members[i]),
            "path": c.path,
        }
        for i, (c, p) in enumerate(zip(clips, pred, strict=True))
    ]
