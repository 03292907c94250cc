"""Compare the runs of a sweep: ``python -m ser.compare outputs/multirun/<time>/ [--out DIR] [--metric uar]``.

Reads every job folder of a Hydra sweep (``.hydra/overrides.yaml``, ``.hydra/config.yaml``,
``metrics.json``), groups the runs by whatever the sweep varied (seed/fold excluded: those are the
repetitions), and writes ``comparison.md``, ``comparison.csv`` and figures: per-group mean, sd and
t-based 95% CI of every test metric; paired differences between the losses over the same seeds/folds
with a paired t-test and a Wilcoxon signed-rank test; a plain-words verdict; the per-output
``binary_accuracy`` next to the 11/12 = 91.7% that a model predicting no class at all scores (where
the original "92.3% accuracy" comes from); k-fold tables; and every failed or missing job.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import yaml
from matplotlib.figure import Figure
from scipy import stats

from ser.labels import CLASSES
from ser.metric_names import SCALARS, TRIVIAL_BINARY_ACCURACY
from ser.plots import confusion_figure, normalize_rows, save_figure

# Keys whose values are repetitions of one setting, not settings: runs are paired over them.
PAIRING_KEYS: tuple[str, ...] = ("seed", "fold", "data.fold", "data.split_seed")
METRIC_NAMES: dict[str, str] = {
    "accuracy": "accuracy (12-class)",
    "uar": "UAR",
    "macro_f1": "macro-F1",
    "emotion_accuracy": "6-emotion accuracy",
    "gender_accuracy": "gender accuracy",
    "binary_accuracy": "binary_accuracy (per output)",
}
ORIGINAL_CLAIM = 0.923  # the "92.3% accuracy" of the original work (Keras binary_accuracy)
MAX_CONFUSION_PANELS = 6
ERROR_CHARS = 300
MAX_LISTED = 10  # failed jobs printed to the terminal; the markdown lists all


# --------------------------------------------------------------------------------------------- jobs


@dataclass
class Job:
    """One job folder of a sweep (or a job the sweep expected that has no folder)."""

    id: str
    status: str  # ok | failed | missing (no metrics.json) | not run (no folder)
    path: Path | None
    overrides: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def value(self, metric: str) -> float:
        """A test metric as float; NaN where the run has none."""
        v = self.metrics.get(metric)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan

    @property
    def split(self) -> str | None:
        split = self.metrics.get("split") or self.config.get("data", {}).get("split")
        return str(split) if split is not None else None

    @property
    def fold(self) -> Any:
        if self.metrics.get("fold") is not None:
            return self.metrics["fold"]
        for key in ("data.fold", "fold"):
            if key in self.params:
                return self.params[key]
        return self.config.get("data", {}).get("fold") if self.split == "kfold" else None


def _parse_value(text: str) -> Any:
    """An override value as YAML would read it ("3" -> 3), kept as text when it is not a scalar."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (str, int, float, bool)) or value is None else text


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """{"key": value} of Hydra override strings; ``+``/``++`` prefixes dropped, ``~key`` kept as deleted."""
    params: dict[str, Any] = {}
    for item in overrides:
        item = str(item)
        if item.startswith("~"):
            params[item[1:].split("=", 1)[0]] = "<deleted>"
            continue
        key, sep, value = item.lstrip("+").partition("=")
        if sep and not key.startswith("hydra"):
            params[key] = _parse_value(value)
    return params


def loss_name(target: Any) -> str | None:
    """'ser.losses.BinaryLoss' -> 'binary' (the same name train.py writes into metrics.json)."""
    if not target:
        return None
    return str(target).rsplit(".", 1)[-1].removesuffix("Loss").lower()


def job_params(overrides: Sequence[str], config: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """The overrides of a job, with ``loss`` taken from what actually ran (an experiment may set it)."""
    params = parse_overrides(overrides)
    override_loss = params.pop("loss", None)
    params.pop("loss._target_", None)
    loss = loss_name(config.get("loss", {}).get("_target_")) or metrics.get("loss") or override_loss
    if loss is not None:
        params["loss"] = loss
    return params


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None


def _log_hint(folder: Path) -> str:
    """The last error line of a job's log, for jobs that died before writing metrics.json."""
    for log in sorted(folder.glob("*.log")):
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower() or "exception" in ln.lower()]
        if errors or lines:
            return f"{log.name}: {(errors or lines)[-1]}"
    return ""


def load_job(folder: Path, expected: Sequence[str] | None = None) -> Job:
    """One job folder. A broken or absent metrics.json makes a failed/missing job, never an exception."""
    config = _read_yaml(folder / ".hydra" / "config.yaml")
    config = config if isinstance(config, dict) else {}
    overrides = _read_yaml(folder / ".hydra" / "overrides.yaml")
    metrics: dict[str, Any] = {}
    error = ""
    metrics_path = folder / "metrics.json"
    if metrics_path.is_file():
        try:
            loaded = json.loads(metrics_path.read_text())
            metrics = loaded if isinstance(loaded, dict) else {}
            status = str(metrics.get("status", "ok"))
            error = str(metrics.get("error") or "")
        except (OSError, json.JSONDecodeError) as exc:
            status, error = "failed", f"unreadable metrics.json: {exc}"
    else:
        status = "missing"
        hint = _log_hint(folder)
        error = "no metrics.json (the job died before writing it)" + (f"; {hint}" if hint else "")
    if not isinstance(overrides, list):
        overrides = metrics.get("overrides") or list(expected or [])
    overrides = [str(o) for o in overrides]
    return Job(
        id=folder.name,
        status=status,
        path=folder,
        overrides=overrides,
        params=job_params(overrides, config, metrics),
        metrics=metrics,
        config=config,
        error=error,
    )


def expected_overrides(sweep_dir: Path) -> list[list[str]] | None:
    """Overrides of every job a basic-sweeper sweep launched, in job-number order (from multirun.yaml).

    Lets jobs that never got a folder be listed too. None for other sweepers (Optuna decides as it goes)
    or when multirun.yaml is absent or unreadable.
    """
    cfg = _read_yaml(sweep_dir / "multirun.yaml")
    hydra_cfg = cfg.get("hydra", {}) if isinstance(cfg, dict) else {}
    sweeper = hydra_cfg.get("sweeper") or {}
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        task = [str(o) for o in (hydra_cfg.get("overrides", {}).get("task") or [])]
        parsed = OverridesParser.create().parse_overrides(params + task)
        return [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
    except Exception:  # a private Hydra API or an exotic override: listing gaps is a nicety only
        return None


def load_sweep(sweep_dir: str | Path) -> list[Job]:
    """Every job of a sweep folder (numbered subfolders), plus expected jobs that have no folder."""
    sweep_dir = Path(sweep_dir)
    expected = expected_overrides(sweep_dir) or []
    folders = {int(p.name): p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()}
    last = max([*folders, len(expected) - 1], default=-1)
    jobs = []
    for num in range(last + 1):
        known = expected[num] if num < len(expected) else None
        if num in folders:
            jobs.append(load_job(folders[num], known))
        else:
            # A numbering gap or an expected job without a folder: it never started (or was deleted).
            overrides = list(known or [])
            jobs.append(
                Job(
                    id=str(num),
                    status="not run",
                    path=None,
                    overrides=overrides,
                    params=job_params(overrides, {}, {}),
                    error="no job folder",
                )
            )
    return jobs


# ---------------------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Summary:
    """Mean, sample sd and t-based 95% CI of the mean of n finite values (NaN where undefined)."""

    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float


def summarize(values: Iterable[float], confidence: float = 0.95) -> Summary:
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return Summary(n, mean, sd, mean - half, mean + half)


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
    diff = summarize(b_arr - a_arr)
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


# ------------------------------------------------------------------------------------------ analysis


def _sort_key(value: Any) -> tuple:
    if isinstance(value, tuple):
        return tuple(_sort_key(v) for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    # The honest baseline first, so differences read "binary − categorical".
    return (1, 0.0 if value == "categorical" else 1.0, str(value))


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def varied_keys(jobs: Sequence[Job]) -> list[str]:
    """Override keys (and ``loss``) whose value differs between jobs; loss first, repetitions last."""
    known = [j for j in jobs if j.params]
    order: dict[str, None] = {}
    for job in known:
        order.update(dict.fromkeys(job.params))
    varied = [k for k in order if len({_hashable(j.params.get(k)) for j in known}) > 1]
    return sorted(varied, key=lambda k: (k != "loss", k in PAIRING_KEYS))


def _label(keys: Sequence[str], values: Sequence[Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True)) or "all runs"


def _is_alias(jobs: Sequence[Job], key: str, other: str) -> bool:
    """True when key and other determine each other (e.g. experiment=a always ran loss=binary)."""
    pairs = {(_hashable(j.params.get(key)), _hashable(j.params.get(other))) for j in jobs}
    return len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs})


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
    contrast: str | None  # "loss", "group" (two groups, loss fixed) or None (descriptive only)
    levels: list[str]
    groups: list[Group]
    paired: list[Paired]
    kfold: list[FoldTable]
    notes: list[str] = field(default_factory=list)

    @property
    def done(self) -> list[Job]:
        return [j for j in self.jobs if j.status == "ok"]

    @property
    def problems(self) -> list[Job]:
        return [j for j in self.jobs if j.status != "ok"]

    def level_of(self, job: Job) -> str:
        if self.contrast == "loss":
            return str(job.params.get("loss"))
        return _label(self.group_keys, [job.params.get(k) for k in self.group_keys])

    def match_of(self, job: Job) -> tuple:
        return tuple(_hashable(job.params.get(k)) for k in self.match_keys)

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
) -> Comparison:
    """Groups, per-group statistics, paired differences and k-fold tables of the loaded jobs."""
    jobs = list(jobs)
    done = [j for j in jobs if j.status == "ok"]
    varied = varied_keys(jobs)
    pairing = tuple(pair_by) if pair_by is not None else PAIRING_KEYS
    group_keys = list(group_by) if group_by is not None else [k for k in varied if k not in pairing]
    notes: list[str] = []

    by_key: dict[tuple, list[Job]] = {}
    for job in done:
        by_key.setdefault(tuple(_hashable(job.params.get(k)) for k in group_keys), []).append(job)
    groups = [
        Group(
            key,
            _label(group_keys, key),
            members,
            {m: summarize(j.value(m) for j in members) for m in SCALARS},
        )
        for key, members in sorted(by_key.items(), key=lambda kv: _sort_key(kv[0]))
    ]

    losses = sorted({str(j.params.get("loss")) for j in done if "loss" in j.params}, key=_sort_key)
    if "loss" in group_keys and len(losses) < 2:
        notes.append("Only one loss has completed runs, so the losses cannot be compared.")
    strata_keys: list[str] = []
    if "loss" in group_keys and len(losses) >= 2:
        contrast, levels = "loss", losses
        # Judged on every job (not only completed ones) so failures cannot make a crossed key look tied.
        known = [j for j in jobs if j.params]
        aliases = [k for k in varied if k not in ("loss", *pairing) and _is_alias(known, k, "loss")]
        if aliases:
            changed = ", ".join(aliases)
            notes.append(f"{changed} changed together with the loss, so runs are not paired on it.")
        match_keys = [k for k in varied if k != "loss" and k not in aliases]
        strata_keys = [k for k in group_keys if k != "loss" and k not in aliases]
    elif len(groups) == 2:
        contrast, levels = "group", [g.label for g in groups]
        match_keys = [k for k in varied if k not in group_keys]
    else:
        contrast, levels, match_keys = None, [], []
        if len(groups) > 2:
            notes.append(f"{len(groups)} groups without a loss contrast: compared descriptively, no paired test.")

    comp = Comparison(
        sweep_dir=Path(sweep_dir),
        jobs=jobs,
        metric=metric,
        alpha=alpha,
        varied=varied,
        group_keys=group_keys,
        match_keys=match_keys,
        contrast=contrast,
        levels=levels,
        groups=groups,
        paired=[],
        kfold=[],
        notes=notes,
    )
    if contrast is not None:
        comp.paired = paired_results(comp, strata_keys)
        duplicates = len(done) - len({(comp.level_of(j), comp.match_of(j)) for j in done})
        if duplicates:
            notes.append(f"{duplicates} run(s) repeat a setting; repeats are averaged before pairing.")
    comp.kfold = kfold_tables(comp)
    return comp


def paired_results(comp: Comparison, strata_keys: Sequence[str]) -> list[Paired]:
    """Every pair of levels, every metric: pooled ("all") and, if other keys varied, per setting of them."""
    strata: dict[str, list[Job]] = {"all": comp.done}
    per: dict[tuple, list[Job]] = {}
    for job in comp.done if strata_keys else []:
        per.setdefault(tuple(_hashable(job.params.get(k)) for k in strata_keys), []).append(job)
    if len(per) > 1:
        strata.update({_label(strata_keys, key): per[key] for key in sorted(per, key=_sort_key)})
    results = []
    for (stratum, members), (a, b), metric in itertools.product(
        strata.items(), itertools.combinations(comp.levels, 2), SCALARS
    ):
        side_a = _mean_by((j for j in members if comp.level_of(j) == a), comp.match_of, metric)
        side_b = _mean_by((j for j in members if comp.level_of(j) == b), comp.match_of, metric)
        common = sorted(set(side_a) & set(side_b), key=_sort_key)
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
    """Per-fold tables when the sweep ran data.split=kfold over more than one fold."""
    kfold_jobs = [j for j in comp.done if j.split == "kfold" and j.fold is not None]
    if len({_hashable(j.fold) for j in kfold_jobs}) < 2:
        return []
    kfold_ids = {j.id for j in kfold_jobs}
    tables = []
    for group in comp.groups:
        members = [j for j in group.jobs if j.id in kfold_ids]
        folds = sorted({_hashable(j.fold) for j in members}, key=_sort_key)
        rows = []
        for fold in folds:
            in_fold = [j for j in members if _hashable(j.fold) == fold]
            means = {m: summarize(j.value(m) for j in in_fold).mean for m in SCALARS}
            rows.append((fold, len(in_fold), means))
        cv = {m: summarize(r[2][m] for r in rows) for m in SCALARS}
        tables.append(FoldTable(group.label, rows, cv))
    return tables


# ------------------------------------------------------------------------------------------- wording


def _metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric)


def _f(x: float, digits: int = 4) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _p_is(p: float) -> str:
    """'p = 0.0123' or 'p < 0.0001', for sentences."""
    text = _p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def _pairs_word(comp: Comparison, n: int) -> str:
    if not comp.match_keys:
        return f"{n} pair{'s' if n != 1 else ''}"
    unit = "/".join(k.split(".")[-1] for k in comp.match_keys)
    return f"{n} paired {unit}{'s' if n != 1 else ''}"


def _name(comp: Comparison, level: str) -> str:
    return f"the {level} loss" if comp.contrast == "loss" else f"`{level}`"


def min_wilcoxon_p(n: int) -> float:
    """Smallest two-sided p the exact Wilcoxon signed-rank test can give with n pairs."""
    return min(1.0, 2.0 / 2**n)


def verdict(comp: Comparison) -> str:
    """One paragraph in plain words: which is better on the headline metric, by how much, how sure."""
    name, out = _metric_name(comp.metric), []
    for r in comp.paired_result(comp.metric):
        if r.n == 0:
            over = ", ".join(comp.match_keys) or "settings"
            out.append(
                f"No {r.a}/{r.b} runs over the same {over} both completed, so "
                f"{_name(comp, r.a)} and {_name(comp, r.b)} cannot be compared pairwise."
            )
            continue
        d = r.diff.mean
        if d == 0:
            out.append(
                f"On test {name}, {_name(comp, r.a)} and {_name(comp, r.b)} tie ({_f(r.mean_a, 3)}) "
                f"over {_pairs_word(comp, r.n)}."
            )
        else:
            better, worse = (r.b, r.a) if d > 0 else (r.a, r.b)
            ahead = r.b_ahead if d > 0 else r.a_ahead
            ci = f" (95% CI {r.diff.ci_low:+.3f} to {r.diff.ci_high:+.3f})" if r.n >= 2 else ""
            # "Better" only with some test behind it; otherwise say just what was measured.
            significant = min(np.nan_to_num([r.t_p, r.wilcoxon_p], nan=1.0)) < comp.alpha
            claim = f"**{_name(comp, better)} is better**" if significant else f"{_name(comp, better)} scores higher"
            out.append(
                f"On test {name}, {claim} than {_name(comp, worse)}: "
                f"{_f(max(r.mean_a, r.mean_b), 3)} vs {_f(min(r.mean_a, r.mean_b), 3)}, a paired difference "
                f"({r.b} − {r.a}) of {d:+.3f}{ci} over {_pairs_word(comp, r.n)}, ahead in {ahead} of {r.n}."
            )
        out.append(_significance(comp, r))
    out.extend(_strata_sentences(comp))
    if comp.contrast is None and comp.groups:
        ranked = sorted(comp.groups, key=lambda g: -np.nan_to_num(g.stats[comp.metric].mean, nan=-1))
        best, worst = ranked[0], ranked[-1]
        if len(ranked) > 1:
            out.append(
                f"No paired comparison is possible here; best on test {name}: `{best.label}` "
                f"({_f(best.stats[comp.metric].mean, 3)}, n={best.stats[comp.metric].n}), worst: "
                f"`{worst.label}` ({_f(worst.stats[comp.metric].mean, 3)}, "
                f"n={worst.stats[comp.metric].n})."
            )
        else:
            out.append(
                f"A single setting: test {name} {_f(best.stats[comp.metric].mean, 3)} "
                f"(n={best.stats[comp.metric].n}); nothing to compare."
            )
    if comp.kfold:
        out.append(
            "Folds share most of their training data, so fold results are not independent and "
            "the p-values and CIs are optimistic."
        )
    out.append(binary_accuracy_statement(comp))
    return " ".join(s for s in out if s)


def _significance(comp: Comparison, r: Paired) -> str:
    if r.n < 2:
        return "With a single pair no test is possible; run more seeds."
    t_sig, w_sig = r.t_p < comp.alpha, r.wilcoxon_p < comp.alpha
    tests = f"paired t {_p_is(r.t_p)}, Wilcoxon {_p_is(r.wilcoxon_p)}"
    if t_sig and w_sig:
        text = f"The difference is significant at {comp.alpha:g} ({tests})."
    elif t_sig:
        text = (
            f"The difference is significant at {comp.alpha:g} by the paired t-test but not by the "
            f"Wilcoxon signed-rank test ({tests})."
        )
    elif w_sig:
        text = (
            f"The difference is significant at {comp.alpha:g} by the Wilcoxon signed-rank test but not "
            f"by the paired t-test ({tests})."
        )
    else:
        text = f"The difference is not significant at {comp.alpha:g} ({tests}): these runs cannot tell the two apart."
    if min_wilcoxon_p(r.n) >= comp.alpha:
        text += (
            f" With only {r.n} pairs the Wilcoxon test cannot reach p < {comp.alpha:g} at all (its "
            f"smallest two-sided p is 2/2^{r.n} = {min_wilcoxon_p(r.n):.4f}); "
            "at least 6 pairs are needed."
        )
    elif r.n < 10:
        text += f" With {r.n} pairs, treat this as indicative."
    return text


def _strata_sentences(comp: Comparison) -> list[str]:
    strata = [st for st in dict.fromkeys(p.stratum for p in comp.paired) if st != "all"]
    parts = []
    for stratum in strata:
        for r in comp.paired_result(comp.metric, stratum):
            parts.append(f"{stratum}: {r.b} − {r.a} = {r.diff.mean:+.3f} (n={r.n}, t {_p_is(r.t_p)})")
    return [f"Within each setting: {'; '.join(parts)}."] if parts else []


def binary_accuracy_statement(comp: Comparison) -> str:
    """The honest line about binary_accuracy: how far each run sits above predicting no class at all."""
    floor = TRIVIAL_BINARY_ACCURACY
    if comp.contrast == "loss":
        by_level = {
            lv: summarize(j.value("binary_accuracy") for j in comp.done if comp.level_of(j) == lv) for lv in comp.levels
        }
    else:
        by_level = {g.label: g.stats["binary_accuracy"] for g in comp.groups}
    parts = [
        f"{lv} {_f(s.mean, 3)} ({(s.mean - floor) * 100:+.1f} points)"
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
                f" Here {_name(comp, higher)} even has the higher binary_accuracy (by "
                f"{abs(ba.diff.mean):.4f}) while being worse on {_metric_name(comp.metric)}: binary_accuracy "
                "ranks the two the wrong way."
            )
    return text


def claim_line(comp: Comparison) -> str:
    """binary_accuracy of each loss/group next to the trivial 11/12 and the claimed 92.3%."""
    groups = (
        {lv: [j for j in comp.done if comp.level_of(j) == lv] for lv in comp.levels}
        if comp.contrast == "loss"
        else {g.label: g.jobs for g in comp.groups}
    )
    parts = []
    for label, members in groups.items():
        s = summarize(j.value("binary_accuracy") for j in members)
        parts.append(f"{label} {_f(s.mean)} (n={s.n})")
    return (
        f"binary_accuracy: {', '.join(parts)}; a model that predicts no class at all: 11/12 = "
        f"{TRIVIAL_BINARY_ACCURACY:.4f}. The original {ORIGINAL_CLAIM:.1%} is "
        f"{(ORIGINAL_CLAIM - TRIVIAL_BINARY_ACCURACY) * 100:.1f} points above doing nothing."
    )


# ------------------------------------------------------------------------------------------- outputs


def _md_cell(text: Any) -> str:
    s = " ".join(str(text).split())
    s = s if len(s) <= ERROR_CHARS else s[: ERROR_CHARS - 1] + "…"
    return s.replace("|", "\\|")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _ci(s: Summary) -> str:
    return f"[{_f(s.ci_low)}, {_f(s.ci_high)}]" if math.isfinite(s.ci_low) else "–"


def _status_counts(jobs: Sequence[Job]) -> str:
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j.status] = counts.get(j.status, 0) + 1
    words = {"ok": "completed", "missing": "without metrics.json", "not run": "without a folder"}
    return ", ".join(f"{n} {words.get(s, s)}" for s, n in counts.items())


def render_markdown(comp: Comparison, figures: Sequence[Path]) -> str:
    lines = [f"# Sweep comparison: `{comp.sweep_dir}`", ""]
    lines.append(f"{len(comp.jobs)} jobs: {_status_counts(comp.jobs)}.")
    varied = ", ".join(f"`{k}`" for k in comp.varied) or "nothing"
    lines.append(
        f"Varied: {varied}. Grouped by: {', '.join(comp.group_keys) or '–'}. "
        f"Paired over: {', '.join(comp.match_keys) or '–'}."
    )
    lines += [
        "All numbers are test-set metrics; mean ± sd over runs, 95% CI of the mean from the t distribution.",
        *comp.notes,
        "",
    ]
    lines += ["## Where 92.3% comes from", "", claim_line(comp), "", "## Verdict", "", verdict(comp), ""]

    lines += ["## Per group", ""]
    for g in comp.groups:
        lines += [f"### {g.label} (n={len(g.jobs)})", ""]
        lines += _table(
            ["metric", "n", "mean", "sd", "95% CI"],
            [(_metric_name(m), s.n, _f(s.mean), _f(s.sd), _ci(s)) for m, s in g.stats.items()],
        )
        lines.append("")

    if comp.paired:
        lines += ["## Paired differences", ""]
        for stratum in dict.fromkeys(p.stratum for p in comp.paired):
            for a, b in dict.fromkeys((p.a, p.b) for p in comp.paired):
                rows = [p for p in comp.paired if p.stratum == stratum and (p.a, p.b) == (a, b)]
                title = f"{b} − {a}" + (f", {stratum}" if stratum != "all" else "")
                unpaired = max((p.unpaired for p in rows), default=0)
                lines += [f"### {title}", ""]
                lines += _table(
                    ["metric", "pairs", a, b, "mean diff", "95% CI", "t-test p", "Wilcoxon p", f"{b} ahead"],
                    [
                        (
                            _metric_name(p.metric),
                            p.n,
                            _f(p.mean_a),
                            _f(p.mean_b),
                            _f(p.diff.mean),
                            _ci(p.diff),
                            _p(p.t_p),
                            _p(p.wilcoxon_p),
                            f"{p.b_ahead}/{p.n}",
                        )
                        for p in rows
                    ],
                )
                if unpaired:
                    lines.append(f"\n{unpaired} run(s) had no partner (the counterpart failed or is missing).")
                lines.append("")

    if comp.kfold:
        lines += ["## Cross-validation (per fold)", ""]
        for table in comp.kfold:
            lines += [f"### {table.group}", ""]
            fold_rows: list[list[Any]] = [[f, n, *(_f(v[m]) for m in SCALARS)] for f, n, v in table.rows]
            fold_rows.append(
                [
                    "**CV mean ± sd**",
                    sum(r[1] for r in table.rows),
                    *(f"{_f(table.cv[m].mean)} ± {_f(table.cv[m].sd)}" for m in SCALARS),
                ]
            )
            lines += _table(["fold", "runs", *(_metric_name(m) for m in SCALARS)], fold_rows)
            lines.append("")

    lines += ["## Failed or missing jobs", ""]
    if comp.problems:
        problems = [(j.id, j.status, " ".join(j.overrides) or "–", j.error or "–") for j in comp.problems]
        lines += _table(["job", "status", "overrides", "error"], problems)
    else:
        lines.append("None: every job completed.")
    lines += ["", "## Figures", ""]
    lines += [f"![{p.stem}]({p.name})" for p in figures] or ["None written (--no-plots)."]
    return "\n".join(lines) + "\n"


CSV_META = ("loss", "seed", "split", "fold", "epochs", "epoch_time_s", "wall_time_s")


def csv_rows(comp: Comparison) -> tuple[list[str], list[dict[str, Any]]]:
    """One row per job: id, status, varied parameters, every scalar metric, error."""
    meta = [k for k in CSV_META if k not in comp.varied]
    best = [f"best_val_{k}" for k in (*SCALARS, "epoch")]
    header = [
        "job",
        "status",
        "group",
        *comp.varied,
        *SCALARS,
        "trivial_binary_accuracy",
        *best,
        *meta,
        "overrides",
        "error",
    ]
    rows = []
    for job in comp.jobs:
        row: dict[str, Any] = {
            "job": job.id,
            "status": job.status,
            "overrides": " ".join(job.overrides),
            "error": job.error,
        }
        group = _label(comp.group_keys, [job.params.get(k) for k in comp.group_keys])
        row["group"] = group if job.params else ""
        row.update({k: job.params.get(k, "") for k in comp.varied})
        row.update({k: job.metrics.get(k, "") for k in (*SCALARS, "trivial_binary_accuracy", *meta)})
        best_val = job.metrics.get("best_val") or {}
        row.update({f"best_val_{k}": best_val.get(k, "") for k in (*SCALARS, "epoch")})
        rows.append({k: "" if v is None else v for k, v in row.items()})
    return header, rows


def metric_figure(comp: Comparison, metric: str) -> Figure:
    """Every run as a point per group, with the group mean and its 95% CI; pairs joined by lines."""
    fig, ax = plt.subplots(figsize=(max(4.5, 1.8 * len(comp.groups) + 1.5), 4.2))
    positions: dict[tuple[int, tuple], tuple[float, float]] = {}
    for i, g in enumerate(comp.groups):
        members = sorted(
            (j for j in g.jobs if math.isfinite(j.value(metric))), key=lambda j: _sort_key(comp.match_of(j))
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
    if metric == "binary_accuracy":
        ax.axhline(TRIVIAL_BINARY_ACCURACY, ls="--", color="tab:red", lw=1, label="predicts no class (11/12)")
        ax.axhline(ORIGINAL_CLAIM, ls=":", color="tab:purple", lw=1, label="original claim (92.3%)")
    ax.set_xticks(
        range(len(comp.groups)),
        [g.label for g in comp.groups],
        rotation=15 if len(comp.groups) > 3 else 0,
        fontsize=8,
    )
    ax.set_xlim(-0.6, len(comp.groups) - 0.4)
    ax.set_ylabel(_metric_name(metric))
    ax.set_title(f"test {_metric_name(metric)}, one point per run")
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
    for ax, (label, n, mean) in zip(axes.flat, panels, strict=False):
        confusion_figure(mean, CLASSES, title=f"{label}: mean of {n} runs (rows normalized)", ax=ax)
    for ax in list(axes.flat)[len(panels) :]:
        ax.remove()
    return fig


def write_outputs(comp: Comparison, out_dir: str | Path, plots: bool = True) -> dict[str, Path]:
    """comparison.md, comparison.csv and figures into out_dir; returns their paths by name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    figures: list[Path] = []
    if plots and comp.groups:
        for metric in SCALARS:
            figures.append(save_figure(metric_figure(comp, metric), out_dir / f"compare_{metric}.png"))
        fig = confusion_panels(comp)
        if fig is not None:
            figures.append(save_figure(fig, out_dir / "compare_confusion.png"))
    written.update({p.stem: p for p in figures})
    header, rows = csv_rows(comp)
    with (out_dir / "comparison.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    written["csv"] = out_dir / "comparison.csv"
    written["md"] = out_dir / "comparison.md"
    written["md"].write_text(render_markdown(comp, figures))
    return written


def summary_text(comp: Comparison) -> str:
    """The few lines printed to stdout."""
    name = _metric_name(comp.metric)
    lines = [f"ser.compare: {comp.sweep_dir}: {len(comp.jobs)} jobs ({_status_counts(comp.jobs)})"]
    width = max((len(g.label) for g in comp.groups), default=0)
    for g in comp.groups:
        s, ba = g.stats[comp.metric], g.stats["binary_accuracy"]
        lines.append(f"  {g.label:<{width}}  {name} {_f(s.mean)} ± {_f(s.sd)} (n={s.n})  binary_accuracy {_f(ba.mean)}")
    for r in comp.paired_result(comp.metric):
        lines.append(
            f"  {r.b} − {r.a} {name}: {_f(r.diff.mean)} {_ci(r.diff)}, paired t {_p_is(r.t_p)}, "
            f"Wilcoxon {_p_is(r.wilcoxon_p)} (n={r.n})"
        )
    for t in comp.kfold:
        cv = t.cv[comp.metric]
        lines.append(f"  {t.group} cross-validated {name}: {_f(cv.mean)} ± {_f(cv.sd)} over {cv.n} folds")
    lines.append(f"  a model predicting no class: binary_accuracy {TRIVIAL_BINARY_ACCURACY:.4f} (11/12)")
    lines += [_problem_line(j) for j in comp.problems[:MAX_LISTED]]
    if len(comp.problems) > MAX_LISTED:
        lines.append(f"  ... and {len(comp.problems) - MAX_LISTED} more failed or missing jobs")
    return "\n".join(lines)


def _problem_line(job: Job) -> str:
    error = " ".join(job.error.split())
    return f"  job {job.id} {job.status}: {' '.join(job.overrides)}: {error[:160]}"


class CompareError(Exception):
    """Nothing to compare; ``jobs`` holds what was found, for the message."""

    def __init__(self, message: str, jobs: Sequence[Job] = ()) -> None:
        super().__init__(message)
        self.jobs = list(jobs)


def compare(
    sweep_dir: str | Path,
    out: str | Path | None = None,
    metric: str = "uar",
    alpha: float = 0.05,
    group_by: Sequence[str] | None = None,
    pair_by: Sequence[str] | None = None,
    plots: bool = True,
) -> Comparison:
    """Load, analyze and write the report of one sweep; CompareError when no job completed."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise CompareError(f"no completed job in {sweep_dir}: no such folder")
    jobs = load_sweep(sweep_dir)
    if not any(j.status == "ok" for j in jobs):
        found = f"{len(jobs)} job(s), none completed" if jobs else "no numbered job folders"
        raise CompareError(f"no completed job in {sweep_dir} ({found})", jobs)
    comp = analyze(jobs, metric, alpha, group_by, pair_by, sweep_dir)
    write_outputs(comp, out if out is not None else sweep_dir, plots=plots)
    return comp


def _keys(text: str | None) -> list[str] | None:
    return None if text is None else [k.strip() for k in text.split(",") if k.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ser-compare",
        description="Compare the runs of a Hydra sweep: per-group statistics, paired tests between the "
        "losses, a verdict, figures; writes comparison.md and comparison.csv.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a sweep folder: outputs/multirun/<time>/")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the sweep folder)")
    parser.add_argument("--metric", default="uar", choices=SCALARS, help="headline metric of the verdict")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    parser.add_argument(
        "--group-by",
        default=None,
        help="comma-separated keys to group by (default: every varied key except seed/fold)",
    )
    parser.add_argument(
        "--pair-by", default=None, help=f"comma-separated repetition keys (default: {','.join(PAIRING_KEYS)})"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")
    args = parser.parse_args(argv)
    try:
        comp = compare(
            args.sweep_dir,
            args.out,
            args.metric,
            args.alpha,
            _keys(args.group_by),
            _keys(args.pair_by),
            plots=not args.no_plots,
        )
    except CompareError as exc:
        print(f"ser.compare: {exc}", file=sys.stderr)
        for job in exc.jobs[:MAX_LISTED]:
            print(_problem_line(job), file=sys.stderr)
        return 1
    print(summary_text(comp))
    print(f"  wrote {(args.out or args.sweep_dir) / 'comparison.md'}")
    return 0


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
