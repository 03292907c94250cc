"""How a job runs in its process: seeding, torch threads and the logging set-up of the commands.

Lightning is imported only where it is needed, so the prediction and export commands start without it.
DDP inside Hydra multirun lives in :mod:`ser.ddp`: its strategy subclasses Lightning's at import time.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ser.runs import is_multirun
from ser.runs import register_resolvers as register_run_names

# Set by a command's task function when it starts: an OSError before it is Hydra failing to make the run folder.
_TASK_STARTED = False


def setup_logging(prefix: str) -> None:
    """Messages of the ``ser`` loggers to stderr as ``<prefix>: message``; other libraries' loggers are left alone."""
    logger = logging.getLogger("ser")
    logger.setLevel(logging.INFO)
    if not any(getattr(h, "_ser_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
        handler._ser_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def configure_threads(cfg: DictConfig) -> int:
    """Torch threads for this job: ``num_threads`` if set, else the cores shared among parallel sweep jobs.

    Without this, jobs run in parallel by the joblib launcher each start one thread per core and the
    oversubscribed OpenMP pools slow every job down many times over.
    """
    import torch

    threads = cfg.get("num_threads")
    if threads is None:
        n_jobs = OmegaConf.select(cfg, "hydra.launcher.n_jobs", default=None) if "hydra" in cfg else None
        if n_jobs is None:
            try:
                from hydra.core.hydra_config import HydraConfig

                n_jobs = OmegaConf.select(HydraConfig.get(), "launcher.n_jobs", default=None)
            except ValueError:  # not inside a Hydra app
                n_jobs = None
        if n_jobs is None:
            return torch.get_num_threads()
        cores = os.cpu_count() or 1
        parallel = cores if int(n_jobs) < 0 else max(1, int(n_jobs))
        threads = max(1, cores // parallel)
    torch.set_num_threads(int(threads))
    return int(threads)


def configure_matmul_precision(cfg: DictConfig) -> str:
    """Apply ``matmul_precision`` (torch.set_float32_matmul_precision); null keeps torch's ``highest``.

    ``high``/``medium`` let a GPU's tensor cores run float32 matmuls in TF32/bf16: faster, no longer
    bit-comparable with a CPU run. Returns the precision in force.
    """
    import torch

    from ser.validate import MATMUL_CHOICES, MATMUL_PRECISIONS

    precision = cfg.get("matmul_precision")
    if precision is not None:
        if precision not in MATMUL_PRECISIONS:  # ser.eval has no validate() pass of its own for this key
            raise ValueError(f"matmul_precision={precision!r}: {MATMUL_CHOICES}")
        torch.set_float32_matmul_precision(str(precision))
    return torch.get_float32_matmul_precision()


def seed_everything(seed: int | None) -> None:
    """Seed every RNG. ``None`` means unseeded; 0 is a seed like any other."""
    if seed is not None:
        import lightning as L

        L.seed_everything(int(seed), workers=True)


# --------------------------------------------------------------------------------- run folders


def runs_subdir(corpora: Any) -> str:
    """``demo/`` for runs on the synthetic demo corpus alone, so they land apart from real-data runs."""
    names = [corpora] if isinstance(corpora, str) else list(corpora or [])
    return "demo/" if [str(n) for n in names] == ["demo"] else ""


def register_resolvers() -> None:
    """``${ser.runs:${data.corpora}}`` in conf/hydra/default.yaml (registered on import of this module)."""
    if not OmegaConf.has_resolver("ser.runs"):
        OmegaConf.register_new_resolver("ser.runs", runs_subdir)
    register_run_names()  # ${ser.unique:...}, ${ser.label:...}


register_resolvers()


def task_started() -> None:
    """Called first thing by a command's task function (see :func:`run_command`)."""
    global _TASK_STARTED
    _TASK_STARTED = True


def mark_failed(out_dir: str | Path) -> Path | None:
    """The folder of a failed single run: removed when it holds only Hydra's config copy and logs, else renamed
    ``<name>-FAILED``. Sweep job folders keep their number (the sweep report lists their failure)."""
    out_dir = Path(out_dir)
    if is_multirun() or not out_dir.is_dir():
        return out_dir if out_dir.is_dir() else None
    own = [p for p in out_dir.iterdir() if p.name != ".hydra" and p.suffix != ".log"]
    if not own:
        shutil.rmtree(out_dir, ignore_errors=True)
        return None
    target = out_dir.with_name(out_dir.name + "-FAILED")
    try:
        out_dir.rename(target)
    except OSError:
        return out_dir
    return target


def run_command(main: Callable[[], Any], prog: str, config_dir: str, config_name: str) -> None:
    """Run a ``@hydra.main`` function; a mistake in the command line is one line on stderr and exit code 2.

    Covers what Hydra reports before the task runs: an unknown config key or group option (with the nearest
    that exists), an override that does not parse, and a run folder that cannot be created.
    """
    from hydra.errors import ConfigCompositionException, OverrideParseException

    from ser.validate import explain_hydra_error

    previous = os.environ.get("HYDRA_FULL_ERROR")
    # Hydra then raises instead of printing its own message with a hint about '+key'.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except (ConfigCompositionException, OverrideParseException) as exc:
        overrides = [a for a in sys.argv[1:] if not a.startswith("-")]
        print(f"{prog}: {explain_hydra_error(exc, config_dir, config_name, overrides)}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:  # `... --help | head`: the reader left; nothing to report
        sys.exit(0)
    except OSError as exc:
        if _TASK_STARTED:
            raise
        where = exc.filename or "the run folder"
        print(
            f"{prog}: cannot create {where}: {exc.strerror or exc}; "
            "point paths.log_dir (or hydra.run.dir) at a writable folder",
            file=sys.stderr,
        )
        sys.exit(2)
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous
