"""The study side of ser.tune: file-backed storage, killed trials, and what a study writes (CSV, best, plots)."""

from __future__ import annotations

import csv
import io
import logging
import os
import socket
import uuid
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ser.results import write_json
from ser.tuning.space import override_value

log = logging.getLogger("ser.tune")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def open_storage(spec: str, study_dir: Path) -> optuna.storages.BaseStorage:
    """An RDB storage for a URL, else an Optuna journal file (file locks work for several processes and on NFS)."""
    if "://" in spec:
        # Heartbeats let another process fail a trial whose process was killed, and retry its values.
        return optuna.storages.RDBStorage(
            spec,
            heartbeat_interval=60,
            grace_period=180,
            failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=1),
        )
    from optuna.storages.journal import JournalFileBackend

    path = Path(spec) if spec else study_dir / "study.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return True  # someone else's process, or no pid recorded: leave the trial alone
    return True


def requeue_killed_trials(study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
    """Trials left RUNNING by a killed process of this host are failed and queued again with their values.

    A journal file has no heartbeats, so only this host's processes can be checked (by pid).
    """
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("host") == host and not _alive(t.user_attrs.get("pid")):
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            log.warning(
                "trial %d was left running by a killed process: marked failed, its values queued again", t.number
            )


def _write_text(path: Path, text: str) -> None:
    """Written atomically: several workers may finish at once, and a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def trials_csv(study: optuna.Study) -> str:
    """One row per trial: number, state, value, last epoch reported, duration, folder, each parameter."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({k for t in trials for k in t.params})
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["number", "state", "value", "last_epoch", "duration_s", "folder", *names])
    for t in trials:
        duration = t.duration.total_seconds() if t.duration is not None else None
        writer.writerow(
            [t.number, t.state.name, t.value, t.last_step, duration, t.user_attrs.get("folder", "")]
            + [t.params.get(n) for n in names]
        )
    return buf.getvalue()


def save_plots(study: optuna.Study, study_dir: Path) -> list[str]:
    """Optuna's matplotlib plots as PNGs; a plot that needs more trials is skipped with a note."""
    from optuna.visualization import matplotlib as plots

    from ser.plots import save_figure

    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    wanted = [
        ("optimization_history", plots.plot_optimization_history, 1),
        ("intermediate_values", plots.plot_intermediate_values, 1),
        ("parallel_coordinate", plots.plot_parallel_coordinate, 1),
        ("param_importances", plots.plot_param_importances, 2),
    ]
    saved = []
    for name, plot, needed in wanted:
        if complete < needed:
            log.info("%s.png skipped: it needs %d complete trials, the study has %d", name, needed, complete)
            continue
        try:
            with warnings.catch_warnings():
                # Experimental-API notes and remarks on tiny studies (flat axes, equal importances).
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.simplefilter("ignore", UserWarning)
                ax = plot(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            save_figure(fig, study_dir / f"{name}.png")
            saved.append(f"{name}.png")
        except Exception as exc:  # e.g. importances of parameters that never varied
            log.info("%s.png skipped: %s", name, exc)
    return saved


def write_results(study: optuna.Study, study_dir: Path, metric: str) -> dict[str, Any]:
    """trials.csv, and with a complete trial best_overrides.txt, best.json and the plots."""
    _write_text(study_dir / "trials.csv", trials_csv(study))
    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        log.warning("no complete trial yet: no best_overrides.txt (trials: %s)", counts)
        return {"study": study.study_name, "trials": counts}
    best = study.best_trial
    overrides = [str(o) for o in best.user_attrs.get("overrides") or []]
    overrides = overrides or [f"{k}={override_value(v)}" for k, v in best.params.items()]
    _write_text(study_dir / "best_overrides.txt", "\n".join(overrides) + "\n")
    command = "python -m ser.train " + " ".join(overrides)
    record = {
        "study": study.study_name,
        "metric": metric,
        "direction": study.direction.name.lower(),
        "value": best.value,
        "trial": best.number,
        "params": best.params,
        "overrides": overrides,
        "command": command,
        "folder": best.user_attrs.get("folder"),
        "trials": counts,
    }
    record["plots"] = save_plots(study, study_dir)
    write_json(study_dir / "best.json", record)
    return record


def progress(total: int, metric: str):
    """An Optuna callback that logs one line per finished trial."""

    def report(study: optuna.Study, t: FrozenTrial) -> None:
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        if t.state == TrialState.COMPLETE:
            outcome = f"{metric} {t.value:.4f}"
        elif t.state == TrialState.PRUNED:
            outcome = f"pruned after epoch {t.last_step}"
        else:
            outcome = t.state.name.lower() + (f" ({t.user_attrs['error']})" if "error" in t.user_attrs else "")
        try:
            best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:
            best = "no best yet"
        params = " ".join(f"{k}={override_value(v)}" for k, v in t.params.items())
        seconds = t.duration.total_seconds() if t.duration else 0.0
        log.info(
            "trial %d %s | %s | %d/%d finished | %.0f s | %s", t.number, outcome, best, finished, total, seconds, params
        )

    return report
