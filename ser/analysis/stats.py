"""Statistics of a sweep: group runs by what varied, summarize, pair over repetitions, test, k-fold tables."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from ser.analysis.keys import (
    PAIRING_KEYS,
    determined_keys,
    execution_keys,
    hashable,
    is_alias,
    label,
    sort_key,
    varied_keys,
)
from ser.results import SCALARS
from ser.sweeps import Job

# Every scalar metric is a rate in [0, 1]; a difference of two lies in [-1, 1]. CIs are clipped to these.
METRIC_BOUNDS = (0.0, 1.0)
DIFF_BOUNDS = (-1.0, 1.0)

# Splits whose runs are folds of one protocol: their per-fold tables are shown.
FOLD_SPLITS: tuple[str, ...] = ("kfold", "loso", "cross_corpus")


@dataclass(frozen=True)
class Summary:
    """Mean, sample sd and t-based 95% CI of the mean of n finite values (NaN where undefined); the CI is clipped
    to the values' possible range when one is given (a rate's CI never leaves [0, 1])."""

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float


def summarize(values: Iterable[float], confidence: float = 0.95, bounds: tuple[float, float] | None = None) -> Summary:
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Summary(n, mean, sd, low, high)


@dataclass(frozen=True)
class Paired:
    """B − A over runs matched on every varied key except the contrast."""

    stratum: str
    metric: str
    a: str
    b: str
    n: int
    mean_a: float
    mean_b: float
    diff: Summary
    t_p: float
    wilcoxon_p: float
    b_ahead: int
    ties: int
    unpaired: int

    @property
    def a_ahead(self) -> int:
        return self.n - self.b_ahead - self.ties


def paired_test(a: Sequence[float], b: Sequence[float]) -> tuple[Summary, float, float]:
    """Summary of b − a, paired t-test p and Wilcoxon signed-rank p (two-sided; NaN where undefined)."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = summarize(b_arr - a_arr, bounds=DIFF_BOUNDS)
    t_p = w_p = math.nan
    if len(a_arr) >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant or all-zero differences: NaN is the honest answer
            t_p = float(stats.ttest_rel(b_arr, a_arr).pvalue)
            try:
                w_p = float(stats.wilcoxon(b_arr, a_arr).pvalue)
            except ValueError:
                w_p = math.nan
    return diff, t_p, w_p


def min_wilcoxon_p(n: int) -> float:
    """Smallest two-sided p the exact Wilcoxon signed-rank test can give with n pairs."""
    return min(1.0, 2.0 / 2**n)


@dataclass(frozen=True)
class Contrast:
    """The parameter whose levels a sweep is about (``loss``, ``model``, ...), with its baseline listed first."""

    key: str
    baseline: str | None = None
    noun: str = ""  # how one level is called in sentences; the key by default
    plural: str = ""

    def name(self, level: str) -> str:
        """'binary' -> 'the binary loss'."""
        return f"the {level} {self.noun or self.key}"

    @property
    def nouns(self) -> str:
        return self.plural or f"{self.noun or self.key}s"


@dataclass
class Group:
    key: tuple
    label: str
    jobs: list[Job]
    stats: dict[str, Summary]


@dataclass
class FoldTable:
    """Per-fold means (over seeds) of one group and the cross-validated mean ± sd over folds."""

    group: str
    rows: list[tuple[Any, int, dict[str, float]]]
    cv: dict[str, Summary]


@dataclass
class Comparison:
    sweep_dir: Path
    jobs: list[Job]
    metric: str
    alpha: float
    varied: list[str]
    group_keys: list[str]
    match_keys: list[str]
    contrast: str | None  # the contrast key ("loss"), "group" (two groups, contrast fixed) or None (descriptive)
    levels: list[str]
    groups: list[Group]
    paired: list[Paired]
    kfold: list[FoldTable]
    notes: list[str] = field(default_factory=list)
    spec: Contrast | None = None  # the contrast asked for, whether or not the sweep could make it
    sources: list[Path] = field(default_factory=list)  # the sweep folders, when the jobs came from several
    metrics: tuple[str, ...] = SCALARS

    @property
    def done(self) -> list[Job]:
        return [j for j in self.jobs if j.status == "ok"]

    @property
    def problems(self) -> list[Job]:
        return [j for j in self.jobs if j.status != "ok"]

    @property
    def by_contrast(self) -> bool:
        """True when the levels are the values of the contrast key, not group labels."""
        return self.spec is not None and self.contrast == self.spec.key

    def level_of(self, job: Job) -> str:
        if self.by_contrast:
            assert self.spec is not None
            return str(job.params.get(self.spec.key))
        return label(self.group_keys, [job.params.get(k) for k in self.group_keys])

    def level_name(self, level: str) -> str:
        """How a level is called in sentences: 'the binary loss', or the group label in backticks."""
        return self.spec.name(level) if self.by_contrast and self.spec is not None else f"`{level}`"

    def match_of(self, job: Job) -> tuple:
        return tuple(hashable(job.params.get(k)) for k in self.match_keys)

    def sort_key(self, value: Any) -> tuple:
        return sort_key(value, self.spec.baseline if self.spec is not None else None)

    def paired_result(self, metric: str, stratum: str = "all") -> list[Paired]:
        return [p for p in self.paired if p.metric == metric and p.stratum == stratum]


def _mean_by(jobs: Iterable[Job], key: Callable[[Job], Any], metric: str) -> dict[Any, float]:
    """Mean of a metric per key over finite values (duplicate settings are averaged, not dropped)."""
    buckets: dict[Any, list[float]] = {}
    for job in jobs:
        v = job.value(metric)
        if math.isfinite(v):
            buckets.setdefault(key(job), []).append(v)
    return {k: float(np.mean(v)) for k, v in buckets.items()}


def analyze(
    jobs: Sequence[Job],
    metric: str = "uar",
    alpha: float = 0.05,
    group_by: Sequence[str] | None = None,
    pair_by: Sequence[str] | None = None,
    sweep_dir: str | Path = ".",
    contrast: Contrast | None = None,
    metrics: Sequence[str] = SCALARS,
) -> Comparison:
    """Groups, per-group statistics, paired differences and k-fold tables of the loaded jobs.

    With a ``contrast`` among the grouping keys, its levels are compared pairwise, matched on every other
    varied key and also within each setting of the other grouping keys; with exactly two groups, the
    groups are compared; otherwise the groups are only described.
    """
    jobs = list(jobs)
    metrics = tuple(metrics)
    done = [j for j in jobs if j.status == "ok"]
    key = contrast.key if contrast is not None else None
    baseline = contrast.baseline if contrast is not None else None
    varied = varied_keys(jobs, first=key)
    pairing = tuple(pair_by) if pair_by is not None else PAIRING_KEYS
    notes: list[str] = []
    if group_by is not None:
        group_keys = list(group_by)
        followers: list[str] = []
    else:
        executed = execution_keys(jobs, [k for k in varied if k not in pairing])
        candidates = [k for k in varied if k not in pairing and k not in executed]
        followers = determined_keys(done, candidates, keep=[k for k in (key,) if k])
        group_keys = [k for k in candidates if k not in followers]
        # An execution key that changed only with the groups follows them, so it is no match key either.
        followers += [k for k in executed if determined_keys(done, [*group_keys, k], keep=group_keys)]
        executed = [k for k in executed if k not in followers]
        if followers:
            named = ", ".join(group_keys) or "the groups"
            notes.append(f"{', '.join(followers)} changed only with {named}, so runs are not grouped by it.")
        if executed:
            says = "says" if len(executed) == 1 else "say"
            notes.append(
                f"{', '.join(executed)} only {says} where runs executed: runs are not grouped by it, "
                "and are paired only within one setting of it."
            )

    by_key: dict[tuple, list[Job]] = {}
    for job in done:
        by_key.setdefault(tuple(hashable(job.params.get(k)) for k in group_keys), []).append(job)
    groups = [
        Group(
            gkey,
            label(group_keys, gkey),
            members,
            {m: summarize((j.value(m) for j in members), bounds=METRIC_BOUNDS) for m in metrics},
        )
        for gkey, members in sorted(by_key.items(), key=lambda kv: sort_key(kv[0], baseline))
    ]

    levels_found = sorted(
        {str(j.params.get(key)) for j in done if key in j.params}, key=lambda v: sort_key(v, baseline)
    )
    if contrast is not None and key in group_keys and len(levels_found) < 2:
        notes.append(f"Only one {contrast.noun or key} has completed runs, so the {contrast.nouns} cannot be compared.")
    strata_keys: list[str] = []
    if contrast is not None and key in group_keys and len(levels_found) >= 2:
        kind, levels = key, levels_found
        # Judged on every job (not only completed ones) so failures cannot make a crossed key look tied.
        known = [j for j in jobs if j.params]
        aliases = [k for k in varied if k not in (key, *pairing) and is_alias(known, k, key)]
        if aliases:
            notes.append(f"{', '.join(aliases)} changed together with the {key}, so runs are not paired on it.")
        match_keys = [k for k in varied if k != key and k not in aliases and k not in followers]
        strata_keys = [k for k in group_keys if k != key and k not in aliases]
    elif len(groups) == 2:
        kind, levels = "group", [g.label for g in groups]
        match_keys = [k for k in varied if k not in group_keys and k not in followers]
    else:
        kind, levels, match_keys = None, [], []
        if len(groups) > 2:
            what = f"a {key} contrast" if key else "a contrast"
            notes.append(f"{len(groups)} groups without {what}: compared descriptively, no paired test.")

    comp = Comparison(
        sweep_dir=Path(sweep_dir),
        jobs=jobs,
        metric=metric,
        alpha=alpha,
        varied=varied,
        group_keys=group_keys,
        match_keys=match_keys,
        contrast=kind,
        levels=levels,
        groups=groups,
        paired=[],
        kfold=[],
        notes=notes,
        spec=contrast,
        metrics=metrics,
    )
    if kind is not None:
        comp.paired = paired_results(comp, strata_keys)
        duplicates = len(done) - len({(comp.level_of(j), comp.match_of(j)) for j in done})
        if duplicates:
            notes.append(f"{duplicates} run(s) repeat a setting; repeats are averaged before pairing.")
    comp.kfold = kfold_tables(comp)
    return comp


def level_pairs(comp: Comparison) -> list[tuple[str, str]]:
    """Which levels are compared: each against the contrast's baseline when it ran (an ablation's ``none``
    against every change), else every pair."""
    baseline = comp.spec.baseline if comp.spec is not None else None
    if baseline in comp.levels and len(comp.levels) > 2:
        return [(baseline, level) for level in comp.levels if level != baseline]
    return list(itertools.combinations(comp.levels, 2))


def paired_results(comp: Comparison, strata_keys: Sequence[str]) -> list[Paired]:
    """Every pair of levels, every metric: pooled ("all") and, if other keys varied, per setting of them."""
    strata: dict[str, list[Job]] = {"all": comp.done}
    per: dict[tuple, list[Job]] = {}
    for job in comp.done if strata_keys else []:
        per.setdefault(tuple(hashable(job.params.get(k)) for k in strata_keys), []).append(job)
    if len(per) > 1:
        strata.update({label(strata_keys, key): per[key] for key in sorted(per, key=comp.sort_key)})
    results = []
    for (stratum, members), (a, b), metric in itertools.product(strata.items(), level_pairs(comp), comp.metrics):
        side_a = _mean_by((j for j in members if comp.level_of(j) == a), comp.match_of, metric)
        side_b = _mean_by((j for j in members if comp.level_of(j) == b), comp.match_of, metric)
        common = sorted(set(side_a) & set(side_b), key=comp.sort_key)
        va, vb = np.array([side_a[k] for k in common]), np.array([side_b[k] for k in common])
        diff, t_p, w_p = paired_test(va, vb)
        results.append(
            Paired(
                stratum=stratum,
                metric=metric,
                a=a,
                b=b,
                n=len(common),
                mean_a=float(va.mean()) if len(va) else math.nan,
                mean_b=float(vb.mean()) if len(vb) else math.nan,
                diff=diff,
                t_p=t_p,
                wilcoxon_p=w_p,
                b_ahead=int((vb > va).sum()),
                ties=int((vb == va).sum()),
                unpaired=len(set(side_a) ^ set(side_b)),
            )
        )
    return results


def kfold_tables(comp: Comparison) -> list[FoldTable]:
    """Per-fold tables when the sweep ran a k-fold (or leave-one-out) split over more than one fold."""
    kfold_jobs = [j for j in comp.done if j.split in FOLD_SPLITS and j.fold is not None]
    if len({hashable(j.fold) for j in kfold_jobs}) < 2:
        return []
    kfold_ids = {j.id for j in kfold_jobs}
    tables = []
    for group in comp.groups:
        members = [j for j in group.jobs if j.id in kfold_ids]
        folds = sorted({hashable(j.fold) for j in members}, key=comp.sort_key)
        rows = []
        for fold in folds:
            in_fold = [j for j in members if hashable(j.fold) == fold]
            means = {m: summarize(j.value(m) for j in in_fold).mean for m in comp.metrics}
            rows.append((fold, len(in_fold), means))
        cv = {m: summarize((r[2][m] for r in rows), bounds=METRIC_BOUNDS) for m in comp.metrics}
        tables.append(FoldTable(group.label, rows, cv))
    return tables
