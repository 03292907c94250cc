"""The files of one ``ser.eval`` run: metrics.json, confusion matrices, tables, predictions, report, TensorBoard."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser.analysis.render import md_table
from ser.analysis.words import fmt
from ser.data.corpus import Clip
from ser.labels import CLASSES, EMOTIONS
from ser.plots import confusion_figure, save_figure
from ser.results import SCALARS, display_name, write_record, write_text
from ser.scoring import GROUP_COLUMNS, group_rows, prediction_rows

METRICS = (*SCALARS, "emotion_uar")
NAMES = {**{m: display_name(m) for m in SCALARS}, "emotion_uar": "6-emotion UAR"}


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())


def _cell(v: Any) -> str:
    return fmt(v) if isinstance(v, float) else ("–" if v is None else str(v))


def table_markdown(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    if not rows:
        return ["(none)"]
    header = list(rows[0])
    return md_table(header, [[_cell(r[k]) for k in header] for r in rows])


def metric_rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """metric, value, and the scope or the reason it was skipped."""
    ev = record["eval"]
    rows = []
    for m in METRICS:
        if m in ev["skipped"]:
            rows.append({"metric": NAMES[m], "value": None, "note": f"skipped: {ev['skipped'][m]}"})
        else:
            rows.append({"metric": NAMES[m], "value": record.get(m), "note": ev["scope"].get(m, "")})
    return rows


def report_markdown(record: Mapping[str, Any], speakers: list[dict], corpora: list[dict]) -> str:
    ev = record["eval"]
    lines = [
        "# ser.eval",
        "",
        f"- protocol: **{ev['protocol']}**: {ev['protocol_text']}",
        f"- checkpoints ({len(ev['checkpoints'])}): " + ", ".join(f"`{c}`" for c in ev["checkpoints"]),
        f"- data: {', '.join(record['data']['corpora'])}: {record['data']['clips']['test']} clips of "
        f"{len(ev['speakers'])} speakers ({ev['speakers_from']}), {record['data']['hours']:.2f} h",
    ]
    if ev["speakers_dropped"]:
        lines.append(f"- left out: {len(ev['speakers_dropped'])} speakers that every member trained or validated on")
    ex = ev["excluded"]
    if ex["total"]:
        lines.append(f"- excluded, not counted as errors: {ex['total']} files of the corpora read")
        lines += [f"  - {n}: {reason}" for reason, n in ex["by_reason"].items()]
    if ev["overlap"]["speakers"]:
        lines.append(
            f"- **WARNING: {len(ev['overlap']['speakers'])} scored speakers ({ev['overlap']['clips']} clips) were "
            "trained or validated on (allow_overlap=true): these numbers overstate accuracy on new speakers**: "
            + ", ".join(ev["overlap"]["speakers"][:20])
        )
    lines += ["", "## Metrics", "", *table_markdown(metric_rows(record))]
    lines += ["", "## Per corpus", "", *table_markdown(corpora)]
    lines += ["", "## Per speaker", "", *table_markdown(speakers), ""]
    return "\n".join(lines)


def summary_text(record: Mapping[str, Any], out_dir: Path) -> str:
    """The few lines printed at the end."""
    ev = record["eval"]
    shown = [f"{NAMES[m]} {fmt(record[m])}" for m in METRICS if record.get(m) is not None]
    lines = [
        f"ser.eval ({ev['protocol']}, {len(ev['checkpoints'])} checkpoint(s)) on {record['data']['clips']['test']} "
        f"clips of {len(ev['speakers'])} speakers: " + " | ".join(shown)
    ]
    lines += [f"  skipped {m}: {why}" for m, why in ev["skipped"].items()]
    if ev["excluded"]["total"]:
        lines.append(f"  excluded (outside the labels, unreadable, ...): {ev['excluded']['total']} files")
    if ev["overlap"]["speakers"]:
        lines.append(f"  WARNING: {len(ev['overlap']['speakers'])} scored speakers were seen in training")
    lines.append(f"  -> {out_dir}")
    return "\n".join(lines)


def write_outputs(
    out_dir: Path,
    record: dict[str, Any],
    clips: Sequence[Clip],
    probs: np.ndarray,
    members: np.ndarray,
    overlap: np.ndarray,
) -> None:
    """Every file of an evaluation into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_record(out_dir, record)
    title = f"{record['eval']['protocol']}, {len(clips)} clips"
    if record.get("confusion") and record.get("uar") is not None:
        fig = confusion_figure(np.asarray(record["confusion"]), CLASSES, title=f"{title}, UAR {record['uar']:.3f}")
        save_figure(fig, out_dir / "confusion_matrix.png")
    emo = np.asarray(record["emotion_confusion"])
    fig = confusion_figure(emo, EMOTIONS, title=f"6 emotions, {title}, UAR {fmt(record['emotion_uar'])}")
    save_figure(fig, out_dir / "emotion_confusion_matrix.png")
    speakers = group_rows(clips, probs, members, overlap, "speaker")
    corpora = group_rows(clips, probs, members, overlap, "corpus")
    for name, rows in (("per_speaker", speakers), ("per_corpus", corpora)):
        write_csv(out_dir / f"{name}.csv", rows)
        write_text(out_dir / f"{name}.md", "\n".join(table_markdown(rows)) + "\n")
    write_csv(out_dir / "predictions.csv", prediction_rows(clips, probs, members))
    report = report_markdown(record, speakers, corpora)
    write_text(out_dir / "eval_report.md", report)
    write_tensorboard(out_dir / "tensorboard", record, corpora, report)


def write_tensorboard(
    folder: Path, record: Mapping[str, Any], corpora: Sequence[Mapping[str, Any]], report: str
) -> None:
    """eval/<metric> scalars, eval/<corpus>/<metric> per corpus, the confusion matrix and the report as text."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder))
    try:
        for m in METRICS:
            if record.get(m) is not None:
                writer.add_scalar(f"eval/{m}", float(record[m]), 0)
        for row in corpora:
            for m in GROUP_COLUMNS:
                if isinstance(row.get(m), float):
                    writer.add_scalar(f"eval/{row['corpus']}/{m}", row[m], 0)
        if record.get("confusion") and record.get("uar") is not None:
            writer.add_figure("eval/confusion_matrix", confusion_figure(np.asarray(record["confusion"]), CLASSES), 0)
        writer.add_text("eval/report", report, 0)
    finally:
        writer.close()
