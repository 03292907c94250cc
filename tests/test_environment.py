"""The environment kept in each run record: code version, libraries, device."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from ser.environment import device_name, git_commit, run_environment

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout.strip()


@needs_git
def test_git_commit_names_the_checkout_and_says_when_it_is_dirty(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    _git(repo, "add", "a.py")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    head = _git(repo, "rev-parse", "HEAD")
    assert git_commit(repo) == head
    (repo / "untracked.txt").write_text("not part of the code\n")
    assert git_commit(repo) == head  # untracked files do not make it dirty
    (repo / "a.py").write_text("x = 2\n")
    assert git_commit(repo) == head + "+dirty"
    # A package installed inside some other repository must not report that repository's commit.
    (repo / "site" / "ser").mkdir(parents=True)
    assert git_commit(repo / "site") is None


def test_git_commit_is_none_outside_a_checkout(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None


@pytest.mark.parametrize("failure", [FileNotFoundError("git"), subprocess.TimeoutExpired("git", 10)])
def test_git_commit_is_none_when_git_is_missing_or_hangs(monkeypatch, failure: Exception) -> None:
    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(subprocess, "run", fail)
    assert git_commit() is None


def test_run_environment_describes_this_process() -> None:
    env = run_environment()
    assert env["device"] == device_name(torch.device("cpu")) and env["device"].startswith("cpu (")
    assert env["torch"] == torch.__version__ and env["threads"] == torch.get_num_threads()
    assert env["python"].count(".") == 2 and env["ser"] and env["host"]
    assert env["devices"] == 1
    assert set(env) == {"ser", "git", "python", "torch", "lightning", "host", "device", "devices", "threads", "cpus"}
