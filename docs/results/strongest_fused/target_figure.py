"""Issue 9's target, per fold of a k-fold sweep: test UAR, 6-emotion accuracy and job minutes, with the targets.

    python docs/results/strongest_fused/target_figure.py outputs/multirun/alone_logmel_egemaps \\
        docs/results/strongest_fused/target.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TARGETS = {"uar": 0.62, "emotion_accuracy": 0.64, "minutes": 6.0}


def main(sweep: str, out: str) -> None:
    records = [json.loads(p.read_text()) for p in Path(sweep).glob("*/metrics.json")]
    records = sorted((r for r in records if r.get("status") == "ok"), key=lambda r: r["fold"])
    folds = [r["fold"] for r in records]
    panels = {
        "uar": ("test UAR (12 classes)", [r["uar"] for r in records]),
        "emotion_accuracy": ("6-emotion accuracy", [r["emotion_accuracy"] for r in records]),
        "minutes": ("job wall time (min)", [r["wall_time_s"] / 60 for r in records]),
    }
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, (key, (label, values)) in zip(axes, panels.items(), strict=True):
        ax.bar([str(f) for f in folds], values, color="tab:blue")
        what = "limit per fold" if key == "minutes" else "target for the mean"
        ax.axhline(TARGETS[key], color="tab:red", linestyle="--", label=f"{what} {TARGETS[key]:g}")
        ax.set_xlabel("fold")
        ax.set_title(f"{label}\nmean {sum(values) / len(values):.3f}", fontsize=9)
        ax.legend(fontsize=8, loc="lower right")
        if key != "minutes":
            ax.set_ylim(0.5, 0.7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:3])
