"""Figures people look at: confusion matrices (and, in ser.analysis.render, metric comparisons)."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: runs and CI have no display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def normalize_rows(confusion: np.ndarray) -> np.ndarray:
    """Row-normalized confusion matrix (each true class sums to 1; empty rows stay 0)."""
    confusion = np.asarray(confusion, dtype=float)
    sums = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, sums, out=np.zeros_like(confusion), where=sums > 0)


def fit_title(ax, title: str, fontsize: float = 10) -> None:
    """Set an axes title wrapped to the axes' width, so long group labels never run off the figure."""
    width_in = ax.get_position().width * ax.figure.get_figwidth()
    # An average character is about 0.55 em wide; one em is fontsize points, 72 points an inch.
    chars = max(12, int(width_in * 72 / (0.55 * fontsize)))
    ax.set_title(textwrap.fill(title, width=chars), fontsize=fontsize)


def confusion_figure(confusion: np.ndarray, class_names: Sequence[str], title: str = "", ax=None) -> Figure:
    """Labelled, row-normalized confusion matrix with the recall of each cell printed."""
    norm = normalize_rows(confusion)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 6.5))
    else:
        fig = ax.figure
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    n = len(class_names)
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fit_title(ax, title or "confusion matrix (rows normalized)")
    for i in range(n):
        for j in range(n):
            if norm[i, j] >= 0.005:
                ax.text(
                    j,
                    i,
                    f"{norm[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write a figure as PNG (tight bounding box: nothing cut off at the edges) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Through a temporary file and a rename, like every other output: never a truncated image.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return path
