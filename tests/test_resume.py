"""Exact resume: atomic checkpoints, last.ckpt after every epoch, RNG states, and a killed run continued."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ser.models import checkpointing as C
from ser.models.checkpoint import load_checkpoint
from ser.train import run

# Enough batches per epoch that a kill lands mid-epoch; few enough to stay quick on a CPU.
CLI_OVERRIDES = [
    "data=demo",
    "num_threads=1",
    "model.hidden_size=16",
    "model.dense_size=16",
    "model.dropout=0.3",  # dropout draws from the global torch RNG: a resume that forgets it differs
    "augment=specaugment",  # and the module's augmentation generator
    "scheduler.patience=1",  # the plateau scheduler steps after last.ckpt is written
    "trainer.max_epochs=6",
    "callbacks.early_stopping=null",
    "progress=none",
]


def _draws(module) -> list:
    return [
        torch.rand(3).tolist(),
        np.random.rand(3).tolist(),
        random.random(),
        torch.rand(2, generator=module._augment_rng).tolist(),
    ]


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    module = torch.nn.Module()
    module._augment_rng = torch.Generator().manual_seed(7)
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    C.atomic_torch_save({"states": C.rng_states(module)}, tmp_path / "x.ckpt")
    expected = _draws(module)
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    module._augment_rng = None  # a fresh module has no generator yet: it is made from the saved state
    saved = torch.load(tmp_path / "x.ckpt", weights_only=True)["states"]
    C.restore_rng_states(saved, module)
    assert _draws(module) == expected


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    C.atomic_torch_save({"epoch": 1}, path)

    def full_disk(obj, fh):
        fh.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(C.torch, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        C.atomic_torch_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_last_ckpt_follows_every_epoch_and_carries_the_resume_state(train_config, tmp_path):
    run(train_config("trainer.max_epochs=3", "optimizer.lr=1e-6"))  # no learning: val UAR plateaus after epoch 0
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.ckpt", "last.ckpt"]  # no temporary files
    last = load_checkpoint(folder / "last.ckpt")  # the safe (weights_only) loader reads it
    best = load_checkpoint(folder / "best.ckpt")
    assert last["epoch"] == 2 and best["epoch"] <= last["epoch"]
    saved = last[C.RESUME_KEY]
    assert set(saved["rng"]) >= {"torch", "numpy", "python"} and saved["module"]["best_val"]
    assert len(saved["module"]["epoch_times"]) == 3


# ---------------------------------------------------------------------------------------- end to end


def _start(out: Path, env: dict, *args: str) -> subprocess.Popen:
    console = (out.parent / f"{out.name}.console").open("w")  # a file, not a pipe: a full pipe would block the run
    return subprocess.Popen(
        [sys.executable, "-m", "ser.train", *CLI_OVERRIDES, f"hydra.run.dir={out}", *args],
        stdout=console,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=env["SER_ROOT"],
    )


def _wait_for_epoch(out: Path, proc: subprocess.Popen, epoch: int, timeout: float = 300) -> None:
    """Until ``last.ckpt`` holds the end of ``epoch`` (read through the log: the file itself is replaced)."""
    deadline = time.time() + timeout
    log = out / "train.log"
    while time.time() < deadline:
        assert proc.poll() is None, (out.parent / f"{out.name}.console").read_text()[-2000:]
        if log.is_file() and f"epoch {epoch} |" in log.read_text() and (out / "checkpoints" / "last.ckpt").is_file():
            return
        time.sleep(0.05)
    raise AssertionError(f"epoch {epoch} never ended")


def _finish(proc: subprocess.Popen) -> int:
    return proc.wait(timeout=600)


def _record(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(cli_env, shared_cache, tmp_path):
    env = {**cli_env}
    cache = f"paths.cache_dir={shared_cache}"
    whole = _start(tmp_path / "whole", env, cache)
    assert _finish(whole) == 0
    expected = _record(tmp_path / "whole")

    out = tmp_path / "killed"
    proc = _start(out, env, cache)
    _wait_for_epoch(out, proc, 2)
    time.sleep(0.2)  # into epoch 3
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _record(out)["status"] == "running"  # killed outright: what ser.compare lists as running/killed

    resumed = subprocess.run(
        [sys.executable, "-m", "ser.train", f"resume={out}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=env["SER_ROOT"],
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = _record(out)
    assert got["status"] == "ok" and got["epochs"] == expected["epochs"]
    for key in ("accuracy", "uar", "macro_f1", "binary_accuracy", "confusion", "best_val"):
        assert got[key] == expected[key], key
    assert Path(got["best_checkpoint"]).parent == out / "checkpoints"  # best-score tracking continued in place
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


@pytest.mark.slow
def test_sigterm_saves_records_interrupted_and_exits_non_zero(cli_env, shared_cache, tmp_path):
    out = tmp_path / "run"
    proc = _start(out, cli_env, f"paths.cache_dir={shared_cache}")
    _wait_for_epoch(out, proc, 0)
    proc.send_signal(signal.SIGTERM)
    assert _finish(proc) == 143
    record = _record(out)
    assert record["status"] == "interrupted" and "SIGTERM" in record["error"]
    assert record["last_checkpoint"] and Path(record["last_checkpoint"]).is_file()
    assert record["resume"] == f"python -m ser.train resume={out}"
    assert out.is_dir()  # not renamed -FAILED: it is resumed in place
