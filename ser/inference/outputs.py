"""Output of predictions: table, JSON and CSV renderings, the live row writer and the timeline plot.

The three formats share their field names: a table's column headers and a CSV's columns are the keys
of the JSON rows (CSV spreads ``probabilities`` into one column per class; a table leaves out
``silent`` and ``probabilities``). The rows depend on the mode:

    files     path, label, gender, emotion, confidence, probabilities
    timeline  path, start, end, silent, label, gender, emotion, confidence, probabilities   (one per window)
    segments  path, start, end, silent, label, gender, emotion, confidence, windows         (merged windows)

``confidence`` is the probability of ``label``; in a segment, its mean over the segment's windows.
``start``/``end`` are seconds. A silent window or segment has ``silent: true`` and null label, gender,
emotion, confidence and probabilities.

``format=json`` writes one object (never NaN or Infinity: a non-finite number is null)::

    {
      "header": {
        "ser_version": "0.1.0",                 # the installed package (ser.__version__ if not installed)
        "created": "2025-01-31T12:00:00+00:00", # UTC, when the output was written
        "checkpoint": "/abs/path/best.ckpt",
        "mode": "files" | "timeline" | "segments",
        "window": 3.0 | null,                   # seconds; null in files mode
        "hop": 1.0 | null,
        "sample_rate": 16000,                   # the model's; inputs are resampled to it
        "classes": ["female_angry", ...],       # the keys of every row's probabilities
        "checkpoints": ["/abs/a.ckpt", ...]     # ensembles only: every member ("checkpoint": the folder given,
      },                                        #   or the members' common folder); probabilities are their mean
      "predictions": [ {row}, ... ],
      "errors": [ {"path": "x.wav", "reason": "silent: ..."}, ... ]   # inputs that gave no prediction
    }

Live input (``mic=true``) with ``format=json`` writes JSON Lines instead: ``{"header": {...}}`` on the
first line, then one row per line as each window (or segment) completes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ser import ser_version
from ser.inference.prediction import InputFailure, Prediction, Segment, split_class

FORMATS = ("table", "json", "csv")
MODES = ("files", "timeline", "segments")
Row = Prediction | Segment
# Minimum column widths of the live table, whose rows are written before later ones are known.
LIVE_WIDTHS = {"path": 8, "start": 8, "end": 8, "label": 16, "gender": 6, "emotion": 8, "confidence": 10}


def columns(mode: str) -> list[str]:
    """The JSON keys of one row, in order (see the module docstring)."""
    times = [] if mode == "files" else ["start", "end", "silent"]
    last = "windows" if mode == "segments" else "probabilities"
    return ["path", *times, "label", "gender", "emotion", "confidence", last]


def csv_header(classes: Sequence[str], mode: str) -> list[str]:
    return [c for name in columns(mode) for c in (classes if name == "probabilities" else [name])]


def table_header(mode: str) -> list[str]:
    return [c for c in columns(mode) if c not in ("silent", "probabilities")]


def _csv_value(key: str, value: Any) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if key in ("start", "end"):
        return f"{value:.3f}"
    if key == "silent":
        return int(value)
    if isinstance(value, float):
        return f"{value:.6f}"
    return value


def csv_row(row: Row, classes: Sequence[str], mode: str) -> list[Any]:
    d = row.to_dict()
    out: list[Any] = []
    for key in columns(mode):
        if key == "probabilities":
            probs = d[key] or {}
            out.extend(_csv_value(c, probs.get(c)) for c in classes)
        else:
            out.append(_csv_value(key, d[key]))
    return out


def table_cells(row: Row, mode: str) -> list[str]:
    d = row.to_dict()
    cells = []
    for key in table_header(mode):
        value = d[key]
        if key == "label" and value is None:
            cells.append("(silent)" if d.get("silent") else "(non-finite)")
        elif value is None:
            cells.append("")
        elif key in ("start", "end"):
            cells.append(f"{value:.2f}")
        elif key == "confidence":
            cells.append(f"{value:.3f}")
        else:
            cells.append(str(value))
    return cells


def make_header(
    checkpoint: str | Path,
    classes: Sequence[str],
    sample_rate: int,
    mode: str = "files",
    window: float | None = None,
    hop: float | None = None,
) -> dict[str, Any]:
    """What produced the predictions (the ``header`` of JSON output; see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: one of {', '.join(MODES)}")
    timeline = mode != "files"
    return {
        "ser_version": ser_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": os.path.abspath(checkpoint),
        "mode": mode,
        "window": float(window) if timeline and window is not None else None,
        "hop": float(hop) if timeline and hop is not None else None,
        "sample_rate": int(sample_rate),
        "classes": list(classes),
    }


def dumps(obj: Any, indent: int | None = None) -> str:
    """JSON that is valid JSON: a NaN or inf left anywhere is an error here, not in the reader."""
    return json.dumps(obj, indent=indent, allow_nan=False)


def format_json(rows: Sequence[Row], header: dict[str, Any], errors: Sequence[InputFailure] = ()) -> str:
    doc = {"header": header, "predictions": [r.to_dict() for r in rows], "errors": [e.to_dict() for e in errors]}
    return dumps(doc, indent=2) + "\n"


def format_csv(rows: Sequence[Row], classes: Sequence[str], mode: str) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_header(classes, mode))
    writer.writerows(csv_row(r, classes, mode) for r in rows)
    return buf.getvalue()


def format_table(rows: Sequence[Row], mode: str) -> str:
    lines = [table_header(mode)] + [table_cells(r, mode) for r in rows]
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in lines)


def render(rows: Sequence[Row], fmt: str, header: dict[str, Any], errors: Sequence[InputFailure] = ()) -> str:
    """``rows`` in ``fmt``; the header's ``mode`` and ``classes`` set the columns. Only JSON lists ``errors``."""
    if fmt == "json":
        return format_json(rows, header, errors)
    if fmt == "csv":
        return format_csv(rows, header["classes"], header["mode"])
    return format_table(rows, header["mode"])


class LiveWriter:
    """Writes timeline rows as they arrive: fixed-width table rows, CSV rows, or JSON Lines after a header line."""

    def __init__(self, out: TextIO, fmt: str, header: dict[str, Any]) -> None:
        self.out, self.fmt = out, fmt
        self.classes, self.mode = header["classes"], header["mode"]
        self.csv = csv.writer(out, lineterminator="\n")
        if fmt == "csv":
            self.csv.writerow(csv_header(self.classes, self.mode))
        elif fmt == "json":
            out.write(dumps({"header": header}) + "\n")
        else:
            self._table_row(table_header(self.mode))
        out.flush()

    def _table_row(self, cells: list[str]) -> None:
        widths = [max(LIVE_WIDTHS.get(name, 0), len(name)) for name in table_header(self.mode)]
        self.out.write("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() + "\n")

    def write(self, row: Row) -> None:
        if self.fmt == "json":
            self.out.write(dumps(row.to_dict()) + "\n")
        elif self.fmt == "csv":
            self.csv.writerow(csv_row(row, self.classes, self.mode))
        else:
            self._table_row(table_cells(row, self.mode))
        self.out.flush()


def plot_timeline(preds: Sequence[Prediction], path: str | Path, title: str = "") -> Path:
    """Emotion probabilities (both genders summed) and P(female) over time, one point per window."""
    from ser.plots import plt, save_figure

    classes = preds[0].classes if preds else ()
    emotions = list(dict.fromkeys(split_class(c)[1] for c in classes))
    centres = np.array([(p.start + p.end) / 2 for p in preds if p.start is not None and p.end is not None])
    probs = np.array(
        [np.full(len(classes), np.nan) if p.probabilities is None else p.probabilities for p in preds]
    ).reshape(len(preds), len(classes))
    fig, (ax, ax_g) = plt.subplots(2, 1, sharex=True, figsize=(10, 5.5), height_ratios=[3, 1])
    curves = {e: probs[:, [i for i, c in enumerate(classes) if split_class(c)[1] == e]].sum(1) for e in emotions}
    for emotion, curve in curves.items():
        ax.plot(centres, curve, marker=".", label=emotion)
    ax.set_ylabel("P(emotion)")
    # A fixed 0..1 scale keeps files comparable (sigmoid sums of the binary model may pass 1).
    top = max((float(np.nanmax(c, initial=0.0)) for c in curves.values()), default=1.0)
    ax.set_ylim(0, max(1.0, top))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(title or "emotion over time")
    ax.grid(alpha=0.3)
    female = [i for i, c in enumerate(classes) if split_class(c)[0] == "female"]
    ax_g.plot(centres, probs[:, female].sum(1), color="tab:purple", marker=".")
    ax_g.set_ylabel("P(female)")
    ax_g.set_ylim(0, 1)
    ax_g.set_xlabel("time (s, window centre)")
    ax_g.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_paths(plot: str, inputs: Sequence[str]) -> list[Path]:
    """One PNG per timeline: ``plot`` itself for one input, ``<stem>-<input stem>.png`` for several."""
    base = Path(plot)
    if len(inputs) == 1:
        return [base]
    out: list[Path] = []
    for path in inputs:
        candidate = base.with_name(f"{base.stem}-{Path(path).stem}{base.suffix or '.png'}")
        n = 2
        while candidate in out:
            candidate = base.with_name(f"{base.stem}-{Path(path).stem}-{n}{base.suffix or '.png'}")
            n += 1
        out.append(candidate)
    return out
