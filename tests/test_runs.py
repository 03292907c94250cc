"""Run folders: unique names, status records, signals, resume command lines and finishing a sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ser import resume, runs
from ser.results import read_record, write_record


def test_unique_dir_never_hands_out_a_taken_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "_UNIQUE", {})
    base = str(tmp_path / "2026-01-01_00-00-00_categorical_lstm")
    first = runs.unique_dir(base)
    assert runs.unique_dir(base) == first  # one answer per process: Hydra resolves the name more than once
    monkeypatch.setattr(runs, "_UNIQUE", {})  # another process, same second
    second = runs.unique_dir(base)
    assert second != first and Path(first).is_dir() and Path(second).is_dir()
    assert Path(second).name.startswith("2026-01-01_00-00-00_categorical_lstm_")


def test_two_cli_processes_in_the_same_second_get_their_own_folders(tmp_path):
    code = (
        "import sys; sys.argv=['x']; from omegaconf import OmegaConf; import ser.runs;"
        f"print(OmegaConf.create({{'d': '${{ser.unique:{tmp_path}/same}}'}}).d)"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    names = {p.communicate()[0].strip() for p in procs}
    assert len(names) == 3


def test_run_label_names_loss_and_model():
    assert runs.run_label({"loss": "binary", "model": "crnn", "data": "demo"}) == "binary_crnn"
    assert runs.run_label({"loss": "binary", "model": "crnn"}, "_") == "_binary_crnn"
    assert runs.run_label({}, "_") == ""


def test_status_goes_running_then_interrupted_with_a_non_zero_code(tmp_path):
    status = runs.RunStatus(tmp_path, ["loss=binary"])
    status.running()
    record = read_record(tmp_path)
    assert record["status"] == "running" and record["pid"] == os.getpid() and record["overrides"] == ["loss=binary"]
    runs._RECEIVED[:] = [signal.SIGTERM]
    try:
        assert status.interrupted(runs.RunInterrupted(signal.SIGTERM)) == 143
    finally:
        runs._RECEIVED.clear()
    record = read_record(tmp_path)
    assert record["status"] == "interrupted" and "SIGTERM" in record["error"]
    assert runs.RunStatus(tmp_path, []).interrupted(SystemExit(-1)) == -1  # submitit's requeue exit stays


def test_a_refused_run_puts_the_previous_record_back(tmp_path):
    write_record(tmp_path, {"status": "interrupted"})
    status = runs.RunStatus(tmp_path, [])
    status.running()
    status.undo()
    assert read_record(tmp_path) == {"status": "interrupted"}
    fresh = runs.RunStatus(tmp_path / "new", [])
    fresh.running()
    fresh.undo()
    assert read_record(tmp_path / "new") is None  # a single run's folder is then removed as before


def test_a_finished_job_is_kept_and_one_of_other_overrides_refused(tmp_path):
    write_record(tmp_path, {"status": "ok", "uar": 0.5, "overrides": ["seed=1", "loss=binary"]})
    assert runs.RunStatus(tmp_path, ["loss=binary", "seed=1"]).finished["uar"] == 0.5
    with pytest.raises(runs.ConfigError, match="other overrides"):
        _ = runs.RunStatus(tmp_path, ["loss=categorical", "seed=1"]).finished
    write_record(tmp_path, {"status": "failed"})
    assert runs.RunStatus(tmp_path, []).finished is None


def test_sigterm_raises_run_interrupted_inside_catch_signals():
    with pytest.raises(runs.RunInterrupted), runs.catch_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0.5) if hasattr(signal, "sigtimedwait") else None
    assert runs.received_signal() == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is not runs._raise_interrupted  # handlers put back


def _run_folder(tmp_path: Path, overrides: list[str]) -> Path:
    folder = tmp_path / "run"
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / ".hydra" / "config.yaml").write_text("seed: 0\n")
    return folder


def test_resume_argv_reuses_the_runs_own_overrides_and_folder(tmp_path):
    folder = _run_folder(tmp_path, ["data=demo", "loss=binary"])
    argv = resume.resume_argv([f"resume={folder}", "progress=none"])
    assert argv[:2] == ["data=demo", "loss=binary"]
    assert f"hydra.run.dir={folder}" in argv and f"resume={folder}" in argv and "progress=none" in argv
    assert resume.resume_argv(["loss=binary"]) == ["loss=binary"]  # no resume: untouched


@pytest.mark.parametrize(
    ("extra", "needle"),
    [("loss=categorical", "drop loss=categorical (the run had other values)"), ("-m", "ser.runs finish")],
)
def test_resume_refuses_overrides_that_change_the_run(tmp_path, extra, needle):
    folder = _run_folder(tmp_path, ["data=demo", "loss=binary"])
    with pytest.raises(runs.ResumeError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        resume.resume_argv([f"resume={folder}", extra])
    with pytest.raises(runs.ResumeError, match="no such folder"):
        resume.resume_argv([f"resume={tmp_path / 'nothing'}"])


def _sweep(tmp_path: Path, statuses: dict[int, str | None]) -> Path:
    """A basic-sweeper sweep of loss=categorical,binary x seed=0,1 with job folders in the given states."""
    sweep = tmp_path / "sweep"
    sweep.mkdir(parents=True)
    multirun = {
        "hydra": {
            "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
            "overrides": {"task": ["loss=categorical,binary", "seed=0,1"], "hydra": ["hydra.mode=MULTIRUN"]},
        }
    }
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    jobs = [["loss=categorical", "seed=0"], ["loss=categorical", "seed=1"], ["loss=binary", "seed=0"]]
    jobs.append(["loss=binary", "seed=1"])
    for num, status in statuses.items():
        folder = sweep / str(num)
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(jobs[num]))
        if status == "ckpt":
            (folder / "checkpoints").mkdir()
            (folder / "checkpoints" / "last.ckpt").write_bytes(b"x")
            status = "running"
        if status:
            write_record(folder, {"status": status})
    return sweep


def test_finish_plans_each_job_and_keeps_finished_ones(tmp_path, capsys):
    sweep = _sweep(tmp_path, {0: "ok", 1: "ckpt", 2: None})
    command, plan = runs.sweep_plan(sweep)
    assert plan == {"kept (ok)": ["0"], "resumed from last.ckpt": ["1"], "run again": ["2"], "not started": ["3"]}
    assert command[1:5] == ["-m", "ser.train", "-m", "loss=categorical,binary"]
    assert f"hydra.sweep.dir={sweep}" in command and "hydra.mode=MULTIRUN" not in command
    assert runs.main(["finish", str(sweep), "hydra/launcher=slurm", "--dry-run"]) == 0
    assert "hydra/launcher=slurm" in capsys.readouterr().err


def test_finish_refuses_to_run_over_a_job_of_other_overrides(tmp_path, capsys):
    sweep = _sweep(tmp_path, {0: "ok"})
    (sweep / "0" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["loss=binary", "seed=5"]))
    assert runs.main(["finish", str(sweep), "--dry-run"]) == 2
    assert "holds other overrides" in capsys.readouterr().err
    assert runs.main(["finish", str(_sweep(tmp_path / "b", {0: "ok"})), "trainer.max_epochs=3"]) == 2
    assert "launcher settings only" in capsys.readouterr().err


def test_finish_has_nothing_to_do_when_every_job_is_ok(tmp_path, capsys):
    sweep = _sweep(tmp_path, {0: "ok", 1: "ok", 2: "ok", 3: "ok"})
    assert runs.main(["finish", str(sweep)]) == 0
    assert "nothing to do" in capsys.readouterr().err


def test_compare_tells_killed_jobs_from_jobs_that_never_started(tmp_path):
    from ser.sweeps import load_sweep

    sweep = _sweep(tmp_path, {0: "ok", 1: "running", 2: "interrupted"})
    write_record(sweep / "1", {"status": "running", "started": "2026-01-01 10:00:00", "host": "node7", "pid": 42})
    jobs = {j.id: j for j in load_sweep(sweep)}
    assert jobs["1"].status == "running/killed" and "node7 (pid 42)" in jobs["1"].error
    assert jobs["2"].status == "interrupted" and jobs["3"].status == "not run"


def test_a_pool_worker_stops_its_job_when_the_sweep_process_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A joblib worker whose sweep process was killed sends itself SIGTERM (recorded as interrupted, resumable)."""
    import threading

    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(runs.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    runs.stop_when_orphaned(parent=-1, done=threading.Event(), every_s=0.01)  # -1: never our parent
    assert sent == [(os.getpid(), signal.SIGTERM)]
    done = threading.Event()
    watcher = threading.Thread(target=runs.stop_when_orphaned, args=(os.getppid(), done, 0.01))
    watcher.start()
    done.set()  # the job ended normally: the watcher leaves without a signal
    watcher.join(timeout=5)
    assert not watcher.is_alive() and len(sent) == 1
