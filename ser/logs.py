"""What a command prints: bars only on a terminal, the data report once, and no third-party noise."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.callbacks import ModelSummary, ProgressBar

log = logging.getLogger("ser.train")

# progress: auto (bars only when stdout and stderr are a terminal) | bar | none
PROGRESS_CHOICES = ("auto", "bar", "none")
# Lightning's messages that are adverts or say nothing about this run (the second: our summary replaces its own).
ADVERTS = ("💡 Tip:", "Trainer already configured with model summary callbacks")
# Warnings raised inside third-party code that a user cannot act on.
QUIET_WARNINGS = (
    r".*does not have many workers.*",  # features are already in memory: workers only add start-up time
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # Lightning's own use of a torch API
)


def is_terminal() -> bool:
    """True when both output streams are a terminal: a redirect, a pipe, joblib or SLURM make it False."""
    try:
        return sys.stdout.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def show_bars(setting: Any) -> bool:
    """Whether progress bars are drawn under ``progress``: auto | bar | none (true/false also accepted)."""
    if isinstance(setting, bool):
        return setting
    value = "auto" if setting is None else str(setting).lower()
    if value == "auto":
        return is_terminal()
    if value in ("bar", "true"):
        return True
    if value in ("none", "false"):
        return False
    raise ValueError(f"progress={setting!r}: choose one of {', '.join(PROGRESS_CHOICES)}")


class _DropAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(ADVERTS)


def quiet_third_party() -> None:
    """Silence Lightning's advert and warnings the user cannot act on (idempotent)."""
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    import lightning_utilities.core.rank_zero as rank_zero

    # rank_zero_info logs through one module-level logger, which Lightning points at its own name.
    names = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
    for logger in {rank_zero.log, *(logging.getLogger(n) for n in names)}:
        if not any(isinstance(f, _DropAdverts) for f in logger.filters):
            logger.addFilter(_DropAdverts())


class ModelSummaryLines(ModelSummary):
    """Lightning's model summary as plain log lines, without the FLOPs column (always 0: no example input)."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count

        columns = dict(summary_data)
        rows = zip(columns.get("Name", []), columns.get("Type", []), columns.get("Params", []), strict=False)
        lines = [f"  {name:<14} {kind:<18} {params:>8}" for name, kind, params in rows if params.strip() != "0"]
        log.info(
            "model: %s parameters (%s trainable), %.2f MB\n%s",
            get_human_readable_count(int(total_parameters)),
            get_human_readable_count(int(trainable_parameters)),
            model_size,
            "\n".join(lines),
        )


def console_callbacks(callbacks: list, bars: bool, model_summary: bool) -> list:
    """The run's callbacks with the console ones settled: no bar unless ``bars``, our summary if asked."""
    kept = [c for c in callbacks if bars or not isinstance(c, ProgressBar)]
    if model_summary and not any(isinstance(c, ModelSummary) for c in kept):
        kept.append(ModelSummaryLines(max_depth=1))
    return kept


# ------------------------------------------------------------------------------------ the data report


def split_lines(summary: Mapping[str, Any]) -> list[str]:
    """Three lines: clips and speakers of train, val and test (from SERDataModule.summary())."""
    clips, speakers = summary.get("clips") or {}, summary.get("speakers") or {}
    width = max((len(str(clips.get(p, 0))) for p in ("train", "val", "test")), default=1)
    return [
        f"{part:<5} {clips.get(part, 0):>{width}} clips, {speakers.get(part, 0):>3} speakers"
        for part in ("train", "val", "test")
    ]


def split_title(summary: Mapping[str, Any]) -> str:
    fold = f", fold {summary['fold']}" if summary.get("fold") is not None else ""
    kind = "speaker-independent" if summary.get("speaker_independent") else "speaker-DEPENDENT"
    return f"split {summary.get('split')} (seed {summary.get('split_seed')}{fold}, {kind}):"


def one_line_summary(report: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    """The data of a run in one line (sweep jobs after the first)."""
    clips, speakers = summary.get("clips") or {}, summary.get("speakers") or {}
    parts = " | ".join(f"{p} {clips.get(p, 0)} clips/{speakers.get(p, 0)} spk" for p in ("train", "val", "test"))
    return (
        f"data: {report.get('clips')} clips, {report.get('hours', 0):.2f} h, {len(report.get('excluded') or [])} "
        f"excluded; split {summary.get('split')} seed {summary.get('split_seed')}: {parts}"
    )


def data_report_text(report: Mapping[str, Any], summary: Mapping[str, Any], full: bool) -> str:
    """The full data report with the split summary, or one line."""
    from ser.data.report import format_report

    if not full:
        return one_line_summary(report, summary)
    return "\n".join([format_report(dict(report)), "", split_title(summary), *split_lines(summary)])


def prints_full_report(job_num: Any) -> bool:
    """Single runs and a sweep's first job print the full report; later jobs (and tuning trials) one line."""
    return job_num is None or str(job_num) == "0"
