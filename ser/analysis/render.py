"""A comparison as files: comparison.md, comparison.csv, figures, and the few lines printed to the terminal."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ser.analysis.checks import caveats
from ser.analysis.keys import label
from ser.analysis.stats import Comparison
from ser.analysis.story import Story
from ser.analysis.words import fmt, fmt_ci, fmt_p, p_is, stratum_verdicts, verdict
from ser.labels import CLASSES, NUM_CLASSES
from ser.plots import confusion_figure, fit_title, normalize_rows, plt, save_figure
from ser.results import display_name, write_text
from ser.sweeps import META_FIELDS, Job

MAX_CONFUSION_PANELS = 6
ERROR_CHARS = 300
MAX_LISTED = 10  # failed jobs printed to the terminal; the markdown lists all
# What guessing scores: UAR of any constant or random prediction is 1/12.
CHANCE = {"uar": 1 / NUM_CLASSES}


def _md_cell(text: Any) -> str:
    s = " ".join(str(text).split())
    s = s if len(s) <= ERROR_CHARS else s[: ERROR_CHARS - 1] + "…"
    return s.replace("|", "\\|")


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def status_counts(jobs: Sequence[Job]) -> str:
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j.status] = counts.get(j.status, 0) + 1
    words = {
        "ok": "completed",
        "missing": "without metrics.json",
        "not run": "without a folder",
        "running/killed": "still running or killed",
        "interrupted": "interrupted (resumable)",
    }
    return ", ".join(f"{n} {words.get(s, s)}" for s, n in counts.items())


def _paired_sections(comp: Comparison) -> list[str]:
    lines = ["## Paired differences", ""]
    for stratum in dict.fromkeys(p.stratum for p in comp.paired):
        for a, b in dict.fromkeys((p.a, p.b) for p in comp.paired):
            rows = [p for p in comp.paired if p.stratum == stratum and (p.a, p.b) == (a, b)]
            title = f"{b} − {a}" + (f", {stratum}" if stratum != "all" else "")
            unpaired = max((p.unpaired for p in rows), default=0)
            lines += [f"### {title}", ""]
            lines += md_table(
                ["metric", "pairs", a, b, "mean diff", "95% CI", "t-test p", "Wilcoxon p", f"{b} ahead"],
                [
                    (
                        display_name(p.metric),
                        p.n,
                        fmt(p.mean_a),
                        fmt(p.mean_b),
                        fmt(p.diff.mean),
                        fmt_ci(p.diff),
                        fmt_p(p.t_p),
                        fmt_p(p.wilcoxon_p),
                        f"{p.b_ahead}/{p.n}",
                    )
                    for p in rows
                ],
            )
            if unpaired:
                lines.append(f"\n{unpaired} run(s) had no partner (the counterpart failed or is missing).")
            lines.append("")
    return lines


def _kfold_sections(comp: Comparison) -> list[str]:
    lines = ["## Cross-validation (per fold)", ""]
    for table in comp.kfold:
        lines += [f"### {table.group}", ""]
        fold_rows: list[list[Any]] = [[f, n, *(fmt(v[m]) for m in comp.metrics)] for f, n, v in table.rows]
        fold_rows.append(
            [
                "**CV mean ± sd**",
                sum(r[1] for r in table.rows),
                *(f"{fmt(table.cv[m].mean)} ± {fmt(table.cv[m].sd)}" for m in comp.metrics),
            ]
        )
        lines += md_table(["fold", "runs", *(display_name(m) for m in comp.metrics)], fold_rows)
        lines.append("")
    return lines


def render_markdown(comp: Comparison, figures: Sequence[Path], story: Story | None = None) -> str:
    story = story or Story()
    sources = ", ".join(f"`{d}`" for d in comp.sources) or f"`{comp.sweep_dir}`"
    lines = [f"# Sweep comparison: {sources}", ""]
    lines.append(f"{len(comp.jobs)} jobs: {status_counts(comp.jobs)}.")
    varied = ", ".join(f"`{k}`" for k in comp.varied) or "nothing"
    lines.append(
        f"Varied: {varied}. Grouped by: {', '.join(comp.group_keys) or '–'}. "
        f"Paired over: {', '.join(comp.match_keys) or '–'}."
    )
    lines += [
        "All numbers are test-set metrics; mean ± sd over runs, 95% CI of the mean from the t distribution "
        "(clipped to [0, 1], the range of every metric). Chance UAR is 1/12 = 0.083.",
        *comp.notes,
        "",
    ]
    warnings = caveats(comp)
    if warnings:
        lines += ["## Warnings", "", *(f"- {w}" for w in warnings), ""]
    for title, text in story.sections(comp):
        lines += [f"## {title}", "", text, ""]
    lines += ["## Verdict", "", verdict(comp, story.verdict_extra(comp)), ""]
    per_setting = stratum_verdicts(comp)
    if per_setting:
        lines += ["## Verdict per setting", ""]
        for stratum, text in per_setting:
            lines += [f"### {stratum}", "", text, ""]

    lines += ["## Per group", ""]
    for g in comp.groups:
        lines += [f"### {g.label} (n={len(g.jobs)})", ""]
        lines += md_table(
            ["metric", "n", "mean", "sd", "95% CI"],
            [(display_name(m), s.n, fmt(s.mean), fmt(s.sd), fmt_ci(s)) for m, s in g.stats.items()],
        )
        lines.append("")
    if comp.paired:
        lines += _paired_sections(comp)
    if comp.kfold:
        lines += _kfold_sections(comp)

    lines += ["## Failed or missing jobs", ""]
    if comp.problems:
        problems = [(j.id, j.status, " ".join(j.overrides) or "–", j.error or "–") for j in comp.problems]
        lines += md_table(["job", "status", "overrides", "error"], problems)
    else:
        lines.append("None: every job completed.")
    lines += ["", "## Figures", ""]
    lines += [f"![{p.stem}]({p.name})" for p in figures] or ["None written (--no-plots)."]
    return "\n".join(lines) + "\n"


def csv_rows(comp: Comparison, story: Story | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per job: id, status, varied parameters, every scalar metric, error."""
    story = story or Story()
    meta = [k for k in META_FIELDS if k not in comp.varied]
    fields = (*comp.metrics, *story.csv_fields)
    best = [f"best_val_{k}" for k in (*comp.metrics, "epoch")]
    header = ["job", "status", "group", *comp.varied, *fields, *best, *meta, "overrides", "error"]
    rows = []
    for job in comp.jobs:
        row: dict[str, Any] = {
            "job": job.id,
            "status": job.status,
            "overrides": " ".join(job.overrides),
            "error": job.error,
        }
        group = label(comp.group_keys, [job.params.get(k) for k in comp.group_keys])
        row["group"] = group if job.params else ""
        row.update({k: job.params.get(k, "") for k in comp.varied})
        row.update({k: job.metrics.get(k, "") for k in (*fields, *meta)})
        best_val = job.metrics.get("best_val") or {}
        row.update({f"best_val_{k}": best_val.get(k, "") for k in (*comp.metrics, "epoch")})
        rows.append({k: "" if v is None else v for k, v in row.items()})
    return header, rows


def metric_figure(comp: Comparison, metric: str, story: Story | None = None) -> Figure:
    """Every run as a point per group, with the group mean and its 95% CI; pairs joined by lines."""
    story = story or Story()
    fig, ax = plt.subplots(figsize=(max(4.5, 1.8 * len(comp.groups) + 1.5), 4.2))
    positions: dict[tuple[int, tuple], tuple[float, float]] = {}
    for i, g in enumerate(comp.groups):
        members = sorted(
            (j for j in g.jobs if math.isfinite(j.value(metric))), key=lambda j: comp.sort_key(comp.match_of(j))
        )
        offsets = np.linspace(-0.15, 0.15, len(members)) if len(members) > 1 else np.zeros(len(members))
        xs, ys = i + offsets, [j.value(metric) for j in members]
        ax.scatter(xs, ys, s=24, alpha=0.75, zorder=3)
        positions.update({(i, comp.match_of(j)): (x, y) for j, x, y in zip(members, xs, ys, strict=True)})
        s = g.stats[metric]
        if s.n:
            err = [[s.mean - s.ci_low], [s.ci_high - s.mean]] if math.isfinite(s.ci_low) else None
            ax.errorbar(
                i + 0.3,
                s.mean,
                yerr=err,
                fmt="D",
                color="black",
                capsize=5,
                zorder=4,
                label="mean, 95% CI" if i == 0 else None,
            )
    if len(comp.groups) == 2 and comp.match_keys:
        for (i, key), (x0, y0) in positions.items():
            if i == 0 and (1, key) in positions:
                x1, y1 = positions[(1, key)]
                ax.plot([x0, x1], [y0, y1], color="grey", alpha=0.35, lw=0.8, zorder=2)
    if metric in CHANCE:
        ax.axhline(CHANCE[metric], ls="--", color="grey", lw=1, label=f"chance (1/{NUM_CLASSES})")
    for line in story.reference_lines(metric):
        ax.axhline(**line)
    ax.set_xticks(
        range(len(comp.groups)),
        [g.label for g in comp.groups],
        rotation=15 if len(comp.groups) > 3 else 0,
        fontsize=8,
    )
    ax.set_xlim(-0.6, len(comp.groups) - 0.4)
    ax.set_ylabel(display_name(metric))
    fit_title(ax, f"test {display_name(metric)}, one point per run")
    ax.grid(axis="y", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def confusion_panels(comp: Comparison) -> Figure | None:
    """Mean row-normalized test confusion matrix of each group, side by side."""
    panels = []
    for g in comp.groups:
        mats = [normalize_rows(np.asarray(j.metrics["confusion"])) for j in g.jobs if j.metrics.get("confusion")]
        if mats:
            panels.append((g.label, len(mats), np.mean(mats, axis=0)))
    if not panels:
        return None
    panels = panels[:MAX_CONFUSION_PANELS]
    ncols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.5 * ncols, 6.5 * nrows), squeeze=False)
    for ax, (title, n, mean) in zip(axes.flat, panels, strict=False):
        confusion_figure(mean, CLASSES, title=f"{title}: mean of {n} runs (rows normalized)", ax=ax)
    for ax in list(axes.flat)[len(panels) :]:
        ax.remove()
    return fig


def write_outputs(
    comp: Comparison, out_dir: str | Path, plots: bool = True, story: Story | None = None
) -> dict[str, Path]:
    """comparison.md, comparison.csv and figures into out_dir; returns their paths by name."""
    story = story or Story()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    figures: list[Path] = []
    if plots and comp.groups:
        for metric in comp.metrics:
            figures.append(save_figure(metric_figure(comp, metric, story), out_dir / f"compare_{metric}.png"))
        fig = confusion_panels(comp)
        if fig is not None:
            figures.append(save_figure(fig, out_dir / "compare_confusion.png"))
    written.update({p.stem: p for p in figures})
    header, rows = csv_rows(comp, story)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out_dir / "comparison.csv", buffer.getvalue())
    written["csv"] = out_dir / "comparison.csv"
    written["md"] = out_dir / "comparison.md"
    write_text(written["md"], render_markdown(comp, figures, story))
    return written


def summary_text(comp: Comparison, story: Story | None = None, prog: str = "ser.compare") -> str:
    """The few lines printed to stdout."""
    story = story or Story()
    name = display_name(comp.metric)
    where = ", ".join(map(str, comp.sources)) or str(comp.sweep_dir)
    lines = [f"{prog}: {where}: {len(comp.jobs)} jobs ({status_counts(comp.jobs)})"]
    width = max((len(g.label) for g in comp.groups), default=0)
    for g in comp.groups:
        s = g.stats[comp.metric]
        extra = "".join(f"  {m} {fmt(g.stats[m].mean)}" for m in story.summary_metrics)
        lines.append(f"  {g.label:<{width}}  {name} {fmt(s.mean)} ± {fmt(s.sd)} (n={s.n}){extra}")
    for r in comp.paired:
        if r.metric != comp.metric:
            continue
        within = f" ({r.stratum})" if r.stratum != "all" else ""
        lines.append(
            f"  {r.b} − {r.a}{within} {name}: {fmt(r.diff.mean)} {fmt_ci(r.diff)}, paired t {p_is(r.t_p)}, "
            f"Wilcoxon {p_is(r.wilcoxon_p)} (n={r.n})"
        )
    for t in comp.kfold:
        cv = t.cv[comp.metric]
        lines.append(f"  {t.group} cross-validated {name}: {fmt(cv.mean)} ± {fmt(cv.sd)} over {cv.n} folds")
    lines += story.summary_notes(comp)
    lines += [f"  warning: {w}" for w in caveats(comp)]
    lines += [problem_line(j) for j in comp.problems[:MAX_LISTED]]
    if len(comp.problems) > MAX_LISTED:
        lines.append(f"  ... and {len(comp.problems) - MAX_LISTED} more failed or missing jobs")
    return "\n".join(lines)


def problem_line(job: Job) -> str:
    error = " ".join(job.error.split())
    return f"  job {job.id} {job.status}: {' '.join(job.overrides)}: {error[:160]}"
