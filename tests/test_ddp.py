"""DDP inside Hydra multirun: each job's child ranks re-create that job, not the sweep."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ser.ddp import job_subprocess_cmd


def test_child_command_re_creates_the_job_not_the_sweep(train_config, tmp_path):
    cfg = train_config("seed=3", "loss=binary")  # compose() records these as the job's task overrides
    command, _ = job_subprocess_cmd(local_rank=1)
    assert "-m" not in command[2:] and "--multirun" not in command
    assert "loss=binary" in command and "seed=3" in command
    assert f'hydra.run.dir="{tmp_path}"' in command
    assert "hydra.output_subdir=null" in command
    assert cfg.seed == 3


@pytest.mark.slow
def test_ddp_multirun_two_jobs_two_ranks(cli_env, shared_cache, tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "ser.train",
            "-m",
            "data=demo",
            "trainer=ddp",
            "trainer.devices=2",
            "trainer.accelerator=cpu",
            "seed=0,1",
            "debug=fast",
            f"paths.cache_dir={shared_cache}",
            "callbacks.progress_bar.refresh_rate=0",
            "model.hidden_size=16",
        ],
        capture_output=True,
        text=True,
        env=cli_env,
        cwd=tmp_path,
        timeout=400,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "multirun").iterdir()
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["status"] == "ok"
        manifest = json.loads((job / "split_manifest.json").read_text())
        # Both ranks' test batches are in the (synced) confusion matrix, limited by debug=fast to 2 batches each.
        assert sum(map(sum, metrics["confusion"])) <= manifest["test"]["clips"]
        assert sum(map(sum, metrics["confusion"])) > 0
    # No child re-ran the sweep: exactly one sweep folder, no single-run folders.
    assert len(list((tmp_path / "outputs" / "multirun").iterdir())) == 1
    assert not (tmp_path / "outputs" / "train").exists()
