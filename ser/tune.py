"""Hyperparameter search with Optuna: ``python -m ser.tune [search_space=NAME] [tune.n_trials=N] [train overrides]``.

Each trial composes ``conf/tune.yaml`` (the train config plus the search settings) with the trial's
values as overrides, trains with ``test=false`` and reports the best validation value of
``optimized_metric``; a Lightning callback prunes trials that fall behind. The study lives in a file
(an Optuna journal by default), so a killed search continues and several processes share one study.
The study folder gets ``best_overrides.txt`` (``python -m ser.train $(cat best_overrides.txt)`` trains
and tests the best trial), ``best.json``, ``trials.csv`` and Optuna's plots.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import optuna
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from ser.data.corpus import DataError
from ser.results import failure_record, write_record
from ser.runtime import run_command
from ser.tuning.space import Param, SearchSpaceError, override_key, override_value, parse_search_space
from ser.tuning.study import FINISHED, open_storage, progress, requeue_killed_trials, write_results

log = logging.getLogger("ser.tune")

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
# Top-level keys of conf/tune.yaml that configure the search, not a trial.
SEARCH_KEYS = ("tune", "search_space")


class TuneError(ValueError):
    """A tune setting that cannot work; the message is one line."""


# Trials running in this process, by number: the pruning callback's config names its trial this way.
_ACTIVE: dict[int, optuna.Trial] = {}


# ------------------------------------------------------------------------------------------- trials


def pruning_callback(trial: int, monitor: str) -> Any:
    """Optuna's Lightning pruning callback for a trial running in this process (named in its config by number)."""
    from optuna_integration import PyTorchLightningPruningCallback

    return PyTorchLightningPruningCallback(_ACTIVE[int(trial)], monitor=monitor)


def compose_trial(overrides: Sequence[str], out_dir: Path, number: int) -> DictConfig:
    """The train config of one trial: conf/tune.yaml with the overrides, minus the search settings."""
    if GlobalHydra.instance().is_initialized():  # inside `python -m ser.tune`
        cfg = compose(config_name="tune", overrides=list(overrides), return_hydra_config=True)
    else:  # called from Python (tests)
        with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
            cfg = compose(config_name="tune", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        for key in SEARCH_KEYS:
            cfg.pop(key, None)
        cfg.test = False
        cfg.paths.output_dir = str(out_dir)
        cfg.hydra.runtime.output_dir = str(out_dir)
        cfg.hydra.job.num = number
        if not cfg.get("callbacks"):
            cfg.callbacks = {}
        cfg.callbacks.optuna_pruning = {
            "_target_": f"{__name__}.pruning_callback",
            "trial": number,
            "monitor": str(cfg.optimized_metric),
        }
    return cfg


@contextmanager
def _trial_context(cfg: DictConfig, out_dir: Path) -> Iterator[None]:
    """The trial's Hydra config as the current one, and its log lines also in <trial>/train.log."""
    out_dir.mkdir(parents=True, exist_ok=True)
    hydra_config = HydraConfig.instance()
    previous = hydra_config.cfg
    hydra_config.set_config(cfg)
    handler = logging.FileHandler(out_dir / "train.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        hydra_config.cfg = previous


def _save_job_files(cfg: DictConfig, overrides: Sequence[str], out_dir: Path) -> None:
    """.hydra/config.yaml and overrides.yaml as Hydra writes them, so sweep readers see a trial as a job."""
    hydra_dir = out_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    OmegaConf.save(plain, hydra_dir / "config.yaml", resolve=True)
    OmegaConf.save(OmegaConf.create(list(overrides)), hydra_dir / "overrides.yaml")


class Objective:
    """One trial: suggest, compose, train without test, return the best validation value."""

    def __init__(self, space: list[Param], base: list[str], study_dir: Path, metric: str) -> None:
        self.space, self.base, self.study_dir, self.metric = space, base, study_dir, metric

    def __call__(self, trial: optuna.Trial) -> float:
        from ser.train import run

        values = {p.key: p.suggest(trial) for p in self.space}
        overrides = [*self.base, *(f"{k}={override_value(v)}" for k, v in values.items())]
        out_dir = self.study_dir / "trials" / f"{trial.number:04d}"
        for name, value in (("overrides", overrides), ("folder", str(out_dir))):
            trial.set_user_attr(name, value)
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        cfg = compose_trial(overrides, out_dir, trial.number)  # a bad override stops the search here
        _ACTIVE[trial.number] = trial
        try:
            with _trial_context(cfg, out_dir):
                _save_job_files(cfg, overrides, out_dir)
                metrics = run(cfg)
        except optuna.TrialPruned as exc:
            write_record(out_dir, {"status": "pruned", "error": str(exc), "overrides": overrides})
            raise
        except DataError:
            raise  # no trial can run without the corpus
        except Exception as exc:  # one bad configuration (e.g. a diverging lr) must not end the search
            log.error("trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
            write_record(out_dir, failure_record(exc, overrides))
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            return float("nan")  # Optuna records the trial as failed
        finally:
            _ACTIVE.pop(trial.number, None)
        value = (metrics.get("best_val") or {}).get(self.metric.removeprefix("val/"))
        return float(value) if value is not None else float("nan")


# --------------------------------------------------------------------------------------------- run


def run(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run (or continue) the study of ``cfg.tune``; ``overrides`` are the command line's, applied to every trial."""
    space = parse_search_space(cfg.get("search_space"))
    for p in space:
        if OmegaConf.select(cfg, p.key, default=KeyError) is KeyError:
            raise SearchSpaceError(f"search_space.{p.key}: no such key in the train config")
    metric = str(cfg.optimized_metric)
    if not metric.startswith("val/"):
        raise TuneError(f"optimized_metric: ser.tune optimizes a validation metric (val/...), got {metric!r}")
    if str(cfg.trainer.get("devices", 1)) != "1" or int(cfg.trainer.get("num_nodes", 1) or 1) != 1:
        # A DDP child process would re-run the whole search; one worker per device shares the study instead.
        raise TuneError(
            "ser.tune trains each trial in one process: set trainer.devices=1 and start one worker per GPU "
            "(CUDA_VISIBLE_DEVICES=<i> python -m ser.tune ...), all on the same study"
        )
    tune = cfg.tune
    study_dir = Path(tune.dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    storage = open_storage(str(tune.storage or ""), study_dir)
    study = optuna.create_study(
        study_name=str(tune.study_name), storage=storage, direction=str(tune.direction), load_if_exists=True
    )
    sampler_cfg = OmegaConf.to_container(tune.sampler, resolve=True)
    if isinstance(sampler_cfg, dict) and sampler_cfg.get("seed") is not None:
        sampler_cfg["seed"] = int(sampler_cfg["seed"]) + len(study.trials)
    study.sampler = instantiate(sampler_cfg)
    study.pruner = instantiate(tune.pruner)
    requeue_killed_trials(study, storage)

    skip = {*SEARCH_KEYS, "test", *(p.key for p in space)}
    base = [o for o in overrides if override_key(o).split(".")[0] not in ("hydra", *SEARCH_KEYS)]
    base = [o for o in base if override_key(o) not in skip]
    total = int(tune.n_trials)
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    remaining = total - finished
    log.info(
        "study %s in %s: %d finished trials, %d to run (tune.n_trials=%d)",
        study.study_name,
        study_dir,
        finished,
        max(remaining, 0),
        total,
    )
    if remaining > 0:
        study.optimize(
            Objective(space, base, study_dir, metric),
            n_trials=remaining,
            timeout=tune.timeout,
            # Other workers of the same study count too: stop once the study has its trials.
            callbacks=[optuna.study.MaxTrialsCallback(total, states=FINISHED), progress(total, metric)],
            gc_after_trial=True,
        )
    result = write_results(study, study_dir, metric)
    if "command" in result:
        log.info(
            "best %s %.4f (trial %d); train and test it with:\n  %s",
            metric,
            result["value"],
            result["trial"],
            result["command"],
        )
    return result


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="tune")
def main(cfg: DictConfig) -> float | None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # ser.tune prints its own line per trial
    try:
        result = run(cfg, list(HydraConfig.get().overrides.task))
    except (DataError, SearchSpaceError, TuneError, HydraException) as exc:
        log.error("%s", exc)
        print(f"\nser.tune: {exc}", file=sys.stderr)
        sys.exit(2)
    return result.get("value")


def cli() -> None:
    """``python -m ser.tune`` / ``ser-tune``: a mistake in the command line is one line and exit code 2."""
    run_command(main, "ser.tune", CONFIG_DIR, "tune")


if __name__ == "__main__":
    cli()
