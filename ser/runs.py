"""Run folders and their life: unique names, status records, signals, resuming a run, finishing a sweep.

``python -m ser.runs finish <sweep folder>`` completes an interrupted sweep in place.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from ser.results import RECORD_FILE, read_record, write_record
from ser.sweeps import expected_overrides
from ser.validate import ConfigError

log = logging.getLogger("ser.runs")

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
# Exit codes of a run stopped by a signal, as a shell reports them (128 + signal number).
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


# ------------------------------------------------------------------------------------------ names


def unique_dir(base: str) -> str:
    """``<base>_<4 hex>``, a folder made here (``mkdir`` is atomic, also on shared file systems), so two runs
    started in the same second, on one machine or on two, never share one. One answer per ``base`` and process."""
    if base in _UNIQUE:
        return _UNIQUE[base]
    for _ in range(100):
        candidate = f"{base}_{uuid.uuid4().hex[:4]}"
        try:
            Path(candidate).mkdir(parents=True)
        except FileExistsError:
            continue
        except OSError:  # not writable: Hydra's own mkdir fails next, with the message run_command gives
            pass
        _UNIQUE[base] = candidate
        return candidate
    raise FileExistsError(f"no free folder name {base}_XXXX after 100 tries")


_UNIQUE: dict[str, str] = {}


def run_label(choices: Any, sep: str = "") -> str:
    """``categorical_lstm``: the loss and model options a run chose (for folder and TensorBoard run names),
    after ``sep``; empty for commands that choose neither."""
    picked = choices if isinstance(choices, Mapping) else {}
    parts = [str(picked[k]).replace("/", "-") for k in ("loss", "model") if picked.get(k)]
    return sep + "_".join(parts) if parts else ""


def register_resolvers() -> None:
    """``${ser.unique:...}`` and ``${ser.label:...}`` of conf/hydra/default.yaml (registered on import).

    ``use_cache``: Hydra copies resolver caches into every job's config (also in a submitit job's process),
    so a sweep folder named once stays that folder.
    """
    if not OmegaConf.has_resolver("ser.unique"):
        OmegaConf.register_new_resolver("ser.unique", unique_dir, use_cache=True)
    if not OmegaConf.has_resolver("ser.label"):
        OmegaConf.register_new_resolver("ser.label", run_label)


register_resolvers()


# ---------------------------------------------------------------------------------------- status


def is_rank_zero() -> bool:
    """Before Lightning exists: false in DDP child ranks and in SLURM tasks other than the first."""
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))


def is_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # not inside a Hydra app
        return False


class RunStatus:
    """The ``status`` of a run folder's metrics.json over the run: ``running`` from the start, then ``ok``
    (ser.train's record), ``failed`` or ``interrupted``. A job killed outright stays ``running``: ser.compare
    lists it as running or killed, apart from jobs that never started."""

    def __init__(self, out_dir: str | Path, overrides: Sequence[str]) -> None:
        self.out_dir = Path(out_dir)
        self.overrides = [str(o) for o in overrides if not str(o).startswith("resume=")]
        self.started = time.time()
        try:
            self.previous = read_record(self.out_dir)
        except (OSError, ValueError):
            self.previous = None
        self.reason = "interrupted"

    @property
    def finished(self) -> dict[str, Any] | None:
        """The record of this folder when it already holds a completed run of the same overrides."""
        if not self.previous or self.previous.get("status") != "ok":
            return None
        theirs = self.previous.get("overrides")
        if theirs is not None and sorted(map(str, theirs)) != sorted(self.overrides):
            raise ConfigError(
                f"{self.out_dir} holds a finished job of other overrides ({' '.join(theirs)}); "
                "it is kept: give the sweep a new hydra.sweep.dir"
            )
        return self.previous

    def _write(self, record: dict[str, Any]) -> None:
        if is_rank_zero():
            write_record(self.out_dir, record)

    def running(self) -> None:
        self._write(
            {
                "status": "running",
                "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "overrides": self.overrides,
            }
        )

    def interrupted(self, exc: BaseException) -> int:
        """Record an interrupted run; returns the exit code the process should end with (never 0)."""
        signum = received_signal()
        how = signal.Signals(signum).name if signum else type(exc).__name__
        self.reason = f"interrupted by {how}"
        last = self.out_dir / LAST_CHECKPOINT
        self._write(
            {
                "status": "interrupted",
                "error": self.reason,
                "overrides": self.overrides,
                "last_checkpoint": str(last) if last.is_file() else None,
                "resume": resume_hint(self.out_dir).split(": ", 1)[-1],
            }
        )
        if signum:
            return SIGNAL_EXIT.get(signal.Signals(signum), 128 + int(signum))
        code = exc.code if isinstance(exc, SystemExit) else 1
        return code if isinstance(code, int) and code != 0 else 1

    def undo(self) -> None:
        """A user's mistake stopped the run before work: the folder's previous record back (a refused resume
        leaves the run as it was), else none in a single run (its folder is then removed as before)."""
        if not is_rank_zero():
            return
        if self.previous is not None:
            write_record(self.out_dir, self.previous)
        elif not is_multirun():
            (self.out_dir / RECORD_FILE).unlink(missing_ok=True)


# --------------------------------------------------------------------------------------- signals


_RECEIVED: list[int] = []


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT: Lightning handles it as Ctrl+C (callbacks' on_exception, teardown), then main records it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


def received_signal() -> int | None:
    """The signal that stopped this run (SIGTERM or SIGINT), or None."""
    return _RECEIVED[-1] if _RECEIVED else None


def _raise_interrupted(signum: int, frame: Any) -> None:
    _RECEIVED.append(signum)
    raise RunInterrupted(signum)


@contextmanager
def catch_signals() -> Iterator[None]:
    """SIGTERM (what SLURM and `kill` send) and SIGINT raise :class:`RunInterrupted` while the block runs.

    Under submitit SIGTERM is left to submitit (it requeues preempted jobs on its own signal and ignores
    SIGTERM); only the main thread may install handlers.
    """
    _RECEIVED.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = [signal.SIGINT] + ([] if os.environ.get("SUBMITIT_EXECUTOR") else [signal.SIGTERM])
    previous = {s: signal.getsignal(s) for s in signals}
    for s in signals:
        signal.signal(s, _raise_interrupted)
    done = threading.Event()
    parent = pool_parent()
    if parent is not None:
        threading.Thread(target=stop_when_orphaned, args=(parent, done), daemon=True).start()
    try:
        yield
    finally:
        done.set()
        for s, handler in previous.items():
            signal.signal(s, handler)


def pool_parent() -> int | None:
    """The sweep process's pid, in a worker process of the joblib launcher (loky runs jobs in its main thread).

    The pid that started the worker, not ``os.getppid()`` now: a worker orphaned before its job began is
    already someone else's child.
    """
    import multiprocessing

    if not multiprocessing.current_process().name.startswith("LokyProcess"):
        return None
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None else None


def stop_when_orphaned(parent: int, done: threading.Event, every_s: float = 2.0) -> None:
    """SIGTERM to this job once its sweep process is gone.

    A `kill` of a joblib sweep reaches only the sweep process; its workers would train on unattended (and
    start the jobs queued to them). Stopped this way, the job is recorded as interrupted and
    ``ser.runs finish`` resumes it.
    """
    while not done.wait(every_s):
        if os.getppid() != parent:
            log.warning("the sweep process (pid %d) is gone: stopping this job", parent)
            _ORPHANED.set()
            os.kill(os.getpid(), signal.SIGTERM)
            return


_ORPHANED = threading.Event()


def exit(code: int) -> None:
    """End the run's process with ``code``: ``sys.exit``, or, in a pool worker whose sweep process is gone,
    the whole worker (nobody is left to take its result or give it the next job)."""
    if _ORPHANED.is_set():
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


# ---------------------------------------------------------------------------------------- resume


def resume_hint(out_dir: str | Path) -> str:
    """How to continue: the resume command of a single run, the finish command of a sweep."""
    if is_multirun():
        from hydra.core.hydra_config import HydraConfig

        return f"finish the sweep with: python -m ser.runs finish {HydraConfig.get().sweep.dir}"
    return f"resume with: python -m ser.train resume={out_dir}"


class ResumeError(ConfigError):
    """``resume=`` names no run that can be continued, or conflicts with other overrides; a sweep that cannot
    be finished in place."""


# ---------------------------------------------------------------------------------------- finish


def _read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def sweep_plan(sweep_dir: Path) -> tuple[list[str], dict[str, list[str]]]:
    """The command that finishes a sweep and the job numbers by what happens to them.

    Raises ResumeError when the folder is not a basic-sweeper sweep of ser.train or a job folder holds
    other overrides than its number stands for (finishing would overwrite it).
    """
    config = _read_yaml(sweep_dir / "multirun.yaml")
    if not isinstance(config, dict):
        raise ResumeError(f"{sweep_dir}: no multirun.yaml: not a sweep folder")
    expected = expected_overrides(sweep_dir)
    if expected is None:
        raise ResumeError(f"{sweep_dir}: not a grid sweep (a tuning study continues with python -m ser.tune)")
    hydra_cfg = config.get("hydra") or {}
    plan: dict[str, list[str]] = {"kept (ok)": [], "resumed from last.ckpt": [], "run again": [], "not started": []}
    for num, overrides in enumerate(expected):
        folder = sweep_dir / str(num)
        saved = _read_yaml(folder / ".hydra" / "overrides.yaml") if folder.is_dir() else None
        if isinstance(saved, list) and sorted(map(str, saved)) != sorted(map(str, overrides)):
            raise ResumeError(
                f"{folder} holds other overrides ({' '.join(map(str, saved))}) than job {num} of this sweep "
                f"({' '.join(overrides)}); nothing was run"
            )
        try:
            record = read_record(folder) if folder.is_dir() else None
        except (OSError, ValueError):
            record = None
        if not folder.is_dir():
            plan["not started"].append(str(num))
        elif record and record.get("status") == "ok":
            plan["kept (ok)"].append(str(num))
        elif (folder / LAST_CHECKPOINT).is_file():
            plan["resumed from last.ckpt"].append(str(num))
        else:
            plan["run again"].append(str(num))
    task = [str(o) for o in (hydra_cfg.get("overrides") or {}).get("task") or []]
    dropped = ("hydra.sweep.dir=", "hydra.mode=", "hydra.run.dir=")
    hydra_over = [str(o) for o in (hydra_cfg.get("overrides") or {}).get("hydra") or []]
    hydra_over = [o for o in hydra_over if not o.startswith(dropped)]
    command = [sys.executable, "-m", "ser.train", "-m", *task, *hydra_over, f"hydra.sweep.dir={sweep_dir}"]
    return command, plan


def finish(sweep_dir: str | Path, extra: Sequence[str] = (), dry_run: bool = False) -> int:
    """Run the jobs of a sweep that did not finish, each in its own numbered folder; finished jobs are kept."""
    sweep_dir = Path(sweep_dir)
    command, plan = sweep_plan(sweep_dir)
    changing = [o for o in extra if not o.lstrip("+").startswith("hydra")]
    if changing:
        raise ResumeError(
            f"finish takes launcher settings only (hydra/launcher=..., hydra.launcher.*); {' '.join(changing)} "
            "would give the unfinished jobs another config than the finished ones"
        )
    command += list(extra)
    for what, nums in plan.items():
        if nums:
            print(f"ser.runs: {len(nums)} job(s) {what}: {' '.join(nums)}", file=sys.stderr)
    if not any(nums for what, nums in plan.items() if what != "kept (ok)"):
        print(f"ser.runs: every job of {sweep_dir} finished; nothing to do", file=sys.stderr)
        return 0
    print("ser.runs: " + " ".join(command[1:]), file=sys.stderr)
    if dry_run:
        return 0
    return subprocess.call(command)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ser.runs", description="Run folders: finish an interrupted sweep.")
    sub = parser.add_subparsers(dest="command", required=True)
    fin = sub.add_parser(
        "finish",
        help="run the unfinished jobs of a sweep in their own folders (finished jobs are kept)",
        description="Re-launch a ser.train sweep into its folder: jobs whose metrics.json says ok are kept, jobs "
        "with a checkpoints/last.ckpt resume from it, the others run again. Extra overrides (e.g. "
        "hydra/launcher=slurm) are passed on.",
    )
    fin.add_argument("sweep_dir", help="the sweep folder (outputs/multirun/<time>_<id>/)")
    fin.add_argument("overrides", nargs="*", help="Hydra overrides for the launch (launcher, resources)")
    fin.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    args = parser.parse_args(argv)
    try:
        return finish(args.sweep_dir, args.overrides, args.dry_run)
    except ResumeError as exc:
        print(f"ser.runs: {exc}", file=sys.stderr)
        return 2


def cli() -> None:
    """``python -m ser.runs`` / ``ser-runs``."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
