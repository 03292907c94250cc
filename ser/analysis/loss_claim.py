"""The loss story: categorical vs binary cross-entropy, and the 92.3% binary_accuracy next to doing nothing.

The original work reported Keras' per-output ``binary_accuracy``; a model that predicts no class at all
scores 11/12 = 91.7% on it. This plug-in makes the loss the contrast (categorical as baseline) and adds the
report's binary_accuracy section, sentences, figure lines and summary line.
"""

from __future__ import annotations

import math
from typing import Any

from ser.analysis.stats import Comparison, Contrast, Summary, summarize
from ser.analysis.story import Story
from ser.analysis.words import fmt
from ser.results import TRIVIAL_BINARY_ACCURACY, display_name

ORIGINAL_CLAIM = 0.923  # the "92.3% accuracy" of the original work (Keras binary_accuracy)
LOSS = Contrast(key="loss", baseline="categorical", noun="loss", plural="losses")


def _by_level(comp: Comparison) -> dict[str, list]:
    """Completed runs per loss when the losses were contrasted, else per group."""
    if comp.by_contrast:
        return {lv: [j for j in comp.done if comp.level_of(j) == lv] for lv in comp.levels}
    return {g.label: g.jobs for g in comp.groups}


def binary_accuracy_statement(comp: Comparison) -> str:
    """The honest line about binary_accuracy: how far each run sits above predicting no class at all."""
    floor = TRIVIAL_BINARY_ACCURACY
    by_level: dict[str, Summary]
    if comp.by_contrast:
        by_level = {lv: summarize(j.value("binary_accuracy") for j in jobs) for lv, jobs in _by_level(comp).items()}
    else:
        by_level = {g.label: g.stats["binary_accuracy"] for g in comp.groups}
    parts = [
        f"{lv} {fmt(s.mean, 3)} ({(s.mean - floor) * 100:+.1f} points)"
        for lv, s in by_level.items()
        if math.isfinite(s.mean)
    ]
    if not parts:
        return ""
    text = (
        f"binary_accuracy (the per-output metric behind the original 92.3%) is {', '.join(parts)} "
        f"against {floor:.3f} (11/12) for a model that predicts no class at all: it counts the 11 "
        f"correct 'no's of every clip, so it is not a measure of 12-class recognition."
    )
    for r in comp.paired_result(comp.metric):
        ba = next((p for p in comp.paired_result("binary_accuracy") if (p.a, p.b) == (r.a, r.b)), None)
        if ba is None or r.n == 0 or ba.n == 0 or r.diff.mean == 0 or ba.diff.mean == 0:
            continue
        if (r.diff.mean > 0) != (ba.diff.mean > 0):
            higher = r.b if ba.diff.mean > 0 else r.a
            text += (
                f" Here {comp.level_name(higher)} even has the higher binary_accuracy (by "
                f"{abs(ba.diff.mean):.4f}) while being worse on {display_name(comp.metric)}: binary_accuracy "
                "ranks the two the wrong way."
            )
    return text


def claim_line(comp: Comparison) -> str:
    """binary_accuracy of each loss/group next to the trivial 11/12 and the claimed 92.3%."""
    parts = []
    for level, members in _by_level(comp).items():
        s = summarize(j.value("binary_accuracy") for j in members)
        parts.append(f"{level} {fmt(s.mean)} (n={s.n})")
    return (
        f"binary_accuracy: {', '.join(parts)}; a model that predicts no class at all: 11/12 = "
        f"{TRIVIAL_BINARY_ACCURACY:.4f}. The original {ORIGINAL_CLAIM:.1%} is "
        f"{(ORIGINAL_CLAIM - TRIVIAL_BINARY_ACCURACY) * 100:.1f} points above doing nothing."
    )


class LossClaim(Story):
    """Losses as the contrast, and binary_accuracy set against predicting no class at all."""

    contrast = LOSS
    summary_metrics = ("binary_accuracy",)
    csv_fields = ("trivial_binary_accuracy",)

    def sections(self, comp: Comparison) -> list[tuple[str, str]]:
        return [("Where 92.3% comes from", claim_line(comp))]

    def verdict_extra(self, comp: Comparison) -> list[str]:
        return [binary_accuracy_statement(comp)]

    def reference_lines(self, metric: str) -> list[dict[str, Any]]:
        if metric != "binary_accuracy":
            return []
        return [
            dict(y=TRIVIAL_BINARY_ACCURACY, ls="--", color="tab:red", lw=1, label="predicts no class (11/12)"),
            dict(y=ORIGINAL_CLAIM, ls=":", color="tab:purple", lw=1, label="original claim (92.3%)"),
        ]

    def summary_notes(self, comp: Comparison) -> list[str]:
        return [f"  a model predicting no class: binary_accuracy {TRIVIAL_BINARY_ACCURACY:.4f} (11/12)"]
