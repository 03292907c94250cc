"""Resuming: ``resume=<run folder>`` on the command line, the resumed config checked, the checkpoint to resume from."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from ser.runs import LAST_CHECKPOINT, ResumeError, is_multirun

log = logging.getLogger("ser.resume")

# Overrides a resumed run may change: they do not change what it computes.
RESUME_MAY_CHANGE = ("progress", "num_threads", "resume")
# The checkpoint rank 0 resumes from, for the DDP child ranks Lightning starts (they inherit the environment).
RESUME_ENV = "SER_RESUME_FROM"


def _read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


# The original config of the run that ``resume=`` continues (Hydra rewrites .hydra/ before the task runs).
_ORIGINAL: dict[str, str] = {}


def resume_argv(argv: Sequence[str]) -> list[str]:
    """The command line of ``python -m ser.train resume=<run folder> [...]``: that run's own overrides and
    ``hydra.run.dir=<run folder>``, so it continues in its folder with its config. Other overrides that would
    change what it computes are refused (:class:`ResumeError`); argv without ``resume=`` is returned as is."""
    args = list(argv)
    given = [a for a in args if a.split("=", 1)[0].lstrip("+") == "resume"]
    if not given or os.environ.get("LOCAL_RANK", "0") != "0":  # DDP child ranks get the resolved job command
        return args
    folder = Path(given[-1].split("=", 1)[1])
    if not folder.name or str(folder) in ("null", "None"):
        return args
    if "-m" in args or "--multirun" in args:
        raise ResumeError("resume= continues one run; an interrupted sweep: python -m ser.runs finish <sweep folder>")
    overrides = _read_yaml(folder / ".hydra" / "overrides.yaml")
    if not isinstance(overrides, list):
        why = "no such folder" if not folder.is_dir() else "no .hydra/overrides.yaml: not a ser.train run folder"
        raise ResumeError(f"resume={folder}: {why}")
    original = [str(o) for o in overrides if str(o).split("=", 1)[0].lstrip("+") != "resume"]
    keys = {o.split("=", 1)[0].lstrip("+~") for o in original}
    conflicts = [
        a
        for a in args
        if "=" in a
        and not a.startswith("-")
        and a not in original
        and a.split("=", 1)[0].lstrip("+~") not in RESUME_MAY_CHANGE
        and not (a.startswith("hydra.") or a.startswith("hydra/"))
    ]
    if conflicts:
        shown = " ".join(conflicts)
        other_values = any(c.split("=", 1)[0].lstrip("+~") in keys for c in conflicts)
        changed = " (the run had other values)" if other_values else ""
        raise ResumeError(
            f"resume={folder} continues that run with its own config; drop {shown}{changed}, or start a new run"
        )
    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        path = folder / ".hydra" / name
        if path.is_file():
            _ORIGINAL[name] = path.read_text()
    flags = [a for a in args if a.startswith("-")]
    extra = [a for a in args if "=" in a and a not in original and not a.startswith("-") and a not in given]
    return [*flags, *original, *extra, f"resume={folder}", f"hydra.run.dir={folder}"]


def check_resumed_config(cfg: Any, out_dir: Path) -> None:
    """The resumed run's composed config equals the one the run started with (the config files may have
    changed since); else the original .hydra/ files are put back and the run refused."""
    if "config.yaml" not in _ORIGINAL:
        return
    original = yaml.safe_load(_ORIGINAL["config.yaml"]) or {}
    current = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(current, dict)
    skip = set(RESUME_MAY_CHANGE)
    differ = sorted(k for k in set(original) | set(current) if k not in skip and original.get(k) != current.get(k))
    if differ:
        for name, text in _ORIGINAL.items():
            (out_dir / ".hydra" / name).write_text(text)
        raise ResumeError(
            f"resume={out_dir}: the config files changed since the run started ({', '.join(differ)} differ); "
            "the run would not continue with its own config"
        )


def resume_checkpoint(cfg: Any, out_dir: str | Path) -> str | None:
    """The checkpoint a run continues from: ``resume=<this folder>``, or, for a sweep job (a requeued SLURM job,
    ``ser.runs finish``), a ``last.ckpt`` its folder already holds. None: a fresh start."""
    if os.environ.get("LOCAL_RANK", "0") != "0" and RESUME_ENV in os.environ:
        return os.environ[RESUME_ENV] or None  # a DDP child rank continues from where rank 0 does
    path = _resume_checkpoint(cfg, Path(out_dir))
    os.environ[RESUME_ENV] = path or ""  # ser.train.run puts the environment back after the job
    return path


def _resume_checkpoint(cfg: Any, out_dir: Path) -> str | None:
    last = out_dir / LAST_CHECKPOINT
    resume = cfg.get("resume")
    if resume:
        if Path(resume).resolve() != out_dir.resolve():
            raise ResumeError(f"resume={resume}: resume continues in the run's own folder, not in {out_dir}")
        if cfg.get("ckpt_path"):
            raise ResumeError("resume= and ckpt_path= both set: resume continues a run, ckpt_path starts a new one")
        if not last.is_file():
            log.warning("%s holds no %s (stopped before an epoch ended): starting it again", out_dir, LAST_CHECKPOINT)
            return None
        return str(last)
    if is_multirun() and last.is_file() and not cfg.get("ckpt_path"):
        log.info("resuming this job from %s", last)
        return str(last)
    return None


def objective(cfg: Any, metrics: Mapping[str, Any]) -> float | None:
    """The value ser.train returns to sweepers: ``optimized_metric`` of a run record."""
    name = str(cfg.get("optimized_metric") or "")
    if name.startswith("val/"):
        value = (metrics.get("best_val") or {}).get(name[4:])
    else:
        value = metrics.get(name.removeprefix("test/"))
    return float(value) if value is not None else None
