"""A sweep's jobs without torch: each job folder's overrides, config and run record, and the jobs a sweep expected."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ser.results import read_record

# What a run was, beside its metrics (the columns a sweep table shows when they did not vary).
META_FIELDS: tuple[str, ...] = ("loss", "seed", "split", "fold", "epochs", "epoch_time_s", "wall_time_s")
# Config groups whose chosen option stands for the group in a sweep's parameters, whichever way it was chosen
# (on the command line or by an experiment): the loss by the record's loss name, the network by its option.
NAMED_GROUPS: tuple[str, ...] = ("loss", "model")


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
    def device(self) -> str | None:
        """'cpu', 'cuda', ...: where the run ran, from its record (:mod:`ser.environment`), else from the
        accelerator its config asked for (runs recorded before the environment was kept); None where neither says.
        """
        environment = self.metrics.get("environment")
        recorded = environment.get("device") if isinstance(environment, dict) else None
        if isinstance(recorded, str) and recorded:
            return recorded.split(" ", 1)[0]
        trainer = self.config.get("trainer")
        asked = trainer.get("accelerator") if isinstance(trainer, dict) else None
        return {"gpu": "cuda", "cuda": "cuda", "cpu": "cpu", "mps": "mps"}.get(str(asked).lower())

    @property
    def split(self) -> str | None:
        # The record says which split was made; the config only for jobs that left no record.
        split = self.metrics.get("split") or _split_config(self.config).get("strategy")
        return str(split) if split is not None else None

    @property
    def fold(self) -> Any:
        if self.metrics.get("fold") is not None:
            return self.metrics["fold"]
        for key in ("split.fold", "data.fold", "fold", "split.test_corpus", "split.speaker"):
            if key in self.params:
                return self.params[key]
        return _split_config(self.config).get("fold") if self.split == "kfold" else None


def _split_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A job config's split settings: the ``split`` group, or ``data.split``/``data.fold`` of older runs."""
    group = config.get("split")
    if isinstance(group, dict):
        return group
    data = config.get("data")
    data = data if isinstance(data, dict) else {}
    return {"strategy": data.get("split"), "fold": data.get("fold")}


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
            key = item[1:].split("=", 1)[0]
            if not key.startswith("hydra"):
                params[key] = "<deleted>"
            continue
        key, sep, value = item.lstrip("+").partition("=")
        if sep and not key.startswith("hydra"):
            params[key] = _parse_value(value)
    return params


def job_params(
    overrides: Sequence[str], metrics: Mapping[str, Any], choices: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The overrides of a job, with each named group (``loss``) taken from what actually ran.

    The record names the object (an experiment may have chosen it); a job without a record falls back
    on Hydra's recorded choice of the config group, then on the override.
    """
    params = parse_overrides(overrides)
    for group in NAMED_GROUPS:
        override = params.pop(group, None)
        params.pop(f"{group}._target_", None)
        name = metrics.get(group) or (choices or {}).get(group) or override
        if name is not None:
            params[group] = name
    return params


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None


def _choices(folder: Path) -> dict[str, Any]:
    """Hydra's record of which option of each config group a job ran ({"loss": "binary", ...})."""
    try:
        choices = _read_yaml(folder / ".hydra" / "hydra.yaml")["hydra"]["runtime"]["choices"]
    except (KeyError, TypeError):
        return {}
    return choices if isinstance(choices, dict) else {}


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
    try:
        record = read_record(folder)
    except (OSError, ValueError) as exc:
        record, status, error = None, "failed", f"unreadable metrics.json: {exc}"
    else:
        if record is None:
            status = "missing"
            hint = _log_hint(folder)
            error = "no metrics.json (the job died before writing it)" + (f"; {hint}" if hint else "")
        else:
            metrics = record
            status = str(metrics.get("status", "ok"))
            error = str(metrics.get("error") or "")
            if status == "running":  # no end record: still running, or killed outright (SIGKILL, node failure)
                status = "running/killed"
                where = f"{metrics.get('host', '?')} (pid {metrics.get('pid', '?')})"
                error = f"started {metrics.get('started', '?')} on {where}; no result"
    if not isinstance(overrides, list):
        overrides = metrics.get("overrides") or list(expected or [])
    overrides = [str(o) for o in overrides]
    return Job(
        id=folder.name,
        status=status,
        path=folder,
        overrides=overrides,
        params=job_params(overrides, metrics, _choices(folder)),
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


def config_value(config: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted key of a job's resolved config (``split.fold``), or None."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, (str, int, float, bool)) else None


def load_sweeps(sweep_dirs: Sequence[str | Path]) -> list[Job]:
    """The jobs of several sweeps as one set: ids prefixed by their sweep folder's name.

    A key one sweep set on its command line and another left to its config is filled in from each job's
    resolved config, so runs of different sweeps (``seed=0`` given in one, default in the other) still
    match on it.
    """
    dirs = [Path(d) for d in sweep_dirs]
    if len(dirs) == 1:
        return load_sweep(dirs[0])
    jobs: list[Job] = []
    for sweep in dirs:
        for job in load_sweep(sweep):
            job.id = f"{sweep.name}/{job.id}"
            jobs.append(job)
    keys = dict.fromkeys(k for j in jobs for k in j.params)
    for job in jobs:
        for key in keys:
            if key not in job.params and job.config:
                value = config_value(job.config, key)
                if value is not None:
                    job.params[key] = value
    return jobs


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
                    params=job_params(overrides, {}),
                    error="no job folder",
                )
            )
    return jobs
