"""What a report adds for one question: the contrast it asks about, its sections, sentences and figure lines."""

from __future__ import annotations

from typing import Any

from ser.analysis.stats import Comparison, Contrast


class Story:
    """The generic report: no contrast of its own, nothing added. Subclass it for one question (loss_claim)."""

    contrast: Contrast | None = None  # the parameter compared level against level, if the sweep varied it
    summary_metrics: tuple[str, ...] = ()  # shown beside the headline metric in the terminal summary
    csv_fields: tuple[str, ...] = ()  # record fields added as CSV columns after the metrics

    def sections(self, comp: Comparison) -> list[tuple[str, str]]:
        """(title, text) of markdown sections placed before the verdict."""
        return []

    def verdict_extra(self, comp: Comparison) -> list[str]:
        """Sentences that close the verdict."""
        return []

    def reference_lines(self, metric: str) -> list[dict[str, Any]]:
        """Keyword arguments of ``Axes.axhline`` for the figure of one metric."""
        return []

    def summary_notes(self, comp: Comparison) -> list[str]:
        """Lines added to the terminal summary, after the statistics."""
        return []
