"""Cluster launchers: the SLURM presets' job scripts, and a sweep through submitit with a preempted job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

from tests.conftest import CONF

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")


def _launcher_script(tmp_path: Path, monkeypatch, *overrides: str) -> str:
    """The sbatch script the launcher would submit for one job (nothing is submitted; srun is faked)."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONF):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.sweep.dir = str(tmp_path / "sweep")
        cfg.hydra.job.name = "train"
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    params.pop("_target_")
    launcher = SlurmLauncher(**params)
    launcher.config = cfg
    executors = []
    monkeypatch.setattr(submitit.AutoExecutor, "map_array", lambda self, fn, *args: executors.append(self) or [])
    launcher.launch([["seed=0"]], 0)
    GlobalHydra.instance().clear()
    return executors[0]._executor._make_submission_file_text("CMD", "uid")


def test_slurm_preset_asks_for_its_resources_time_and_requeue_signal(tmp_path, monkeypatch):
    script = _launcher_script(tmp_path, monkeypatch, "hydra/launcher=slurm", "hydra.launcher.partition=cpu")
    for line in ("--cpus-per-task=8", "--mem=32GB", "--time=240", "--partition=cpu", "--signal=USR2@120"):
        assert f"#SBATCH {line}" in script, line
    assert "gpus" not in script
    assert f"{tmp_path / 'sweep'}/.submitit/" in script  # submitit's files beside the job folders


def test_slurm_gpu_preset_asks_for_a_gpu(tmp_path, monkeypatch):
    script = _launcher_script(tmp_path, monkeypatch, "hydra/launcher=slurm_gpu", "hydra.launcher.timeout_min=600")
    assert "#SBATCH --gpus-per-node=1" in script and "#SBATCH --time=600" in script and "--mem=64GB" in script


def test_presets_requeue_jobs_that_reach_their_time_limit():
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONF):
        for preset in ("slurm", "slurm_gpu"):
            cfg = compose("train", overrides=[f"hydra/launcher={preset}"], return_hydra_config=True)
            assert cfg.hydra.launcher.max_num_timeout > 0
            assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    GlobalHydra.instance().clear()


@pytest.mark.slow
def test_submitit_sweep_requeues_a_preempted_job_which_resumes(cli_env, shared_cache, tmp_path):
    """Two jobs through submitit's local executor; job 0 is preempted (SIGUSR2, as SLURM signals) after an epoch:
    submitit requeues it, it resumes from its last.ckpt in its own folder, and both finish."""
    args = [
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "data=demo",
        f"paths.cache_dir={shared_cache}",
        "num_threads=1",
        "model.hidden_size=16",
        "model.dense_size=16",
        "trainer.max_epochs=5",
        "callbacks.early_stopping=null",
        "progress=none",
        "seed=0,1",
    ]
    console = (tmp_path / "console.txt").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ser.train", *args], stdout=console, stderr=subprocess.STDOUT, env=cli_env, cwd=tmp_path
    )
    sweeps = tmp_path / "outputs" / "demo" / "multirun"
    deadline = time.time() + 300
    job = None
    while time.time() < deadline and proc.poll() is None:
        logs = list(sweeps.glob("*/0/train.log"))
        if logs and "epoch 1 |" in logs[0].read_text() and (logs[0].parent / "checkpoints" / "last.ckpt").is_file():
            job = logs[0].parent
            break
        time.sleep(0.1)
    assert job is not None, (tmp_path / "console.txt").read_text()[-3000:]
    os.kill(json.loads((job / "metrics.json").read_text())["pid"], signal.SIGUSR2)  # what SLURM sends to preempt
    assert proc.wait(timeout=600) == 0, (tmp_path / "console.txt").read_text()[-3000:]

    (sweep,) = sweeps.iterdir()  # one sweep folder, named once although each job runs in its own process
    for num in ("0", "1"):
        record = json.loads((sweep / num / "metrics.json").read_text())
        assert record["status"] == "ok" and record["epochs"] == 5, num
    assert "resuming this job from" in (sweep / "0" / "train.log").read_text()
    finished = subprocess.run(
        [sys.executable, "-m", "ser.runs", "finish", str(sweep)], capture_output=True, text=True, env=cli_env
    )
    assert finished.returncode == 0 and "nothing to do" in finished.stderr
