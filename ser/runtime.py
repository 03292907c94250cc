"""How a job runs in its process: seeding, torch threads and the logging set-up of the commands.

Lightning is imported only where it is needed, so the prediction and export commands start without it.
DDP inside Hydra multirun lives in :mod:`ser.ddp`: its strategy subclasses Lightning's at import time.
"""

from __future__ import annotations

import logging
import os
import sys

from omegaconf import DictConfig, OmegaConf


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


def seed_everything(seed: int | None) -> None:
    """Seed every RNG. ``None`` means unseeded; 0 is a seed like any other."""
    if seed is not None:
        import lightning as L

        L.seed_everything(int(seed), workers=True)
