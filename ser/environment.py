"""Where a run ran: the code version, the libraries and the device, kept in its run record.

A CPU and a GPU (or two library versions) give the same recipe slightly different numbers, so a report that
pools runs from several machines needs to know which ran where (``Job.device`` in :mod:`ser.sweeps`,
:func:`ser.analysis.checks.mixed_devices`).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from ser import ser_version

# The folder that holds the ``ser`` package: a git checkout when running from a clone.
SOURCE = Path(__file__).resolve().parents[1]


def _git(folder: Path, *args: str) -> str:
    # --no-optional-locks: `git status` must not take the index lock from under the user's own git commands.
    command = ["git", "--no-optional-locks", "-C", str(folder), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=10, check=True).stdout.strip()


def git_commit(folder: Path = SOURCE) -> str | None:
    """The commit of the checkout ``folder`` is the top of, ``+dirty`` when tracked files differ from it.

    None when ``folder`` is not itself a checkout: an installed package inside some other repository must not
    report that repository's commit.
    """
    try:
        if Path(_git(folder, "rev-parse", "--show-toplevel")).resolve() != folder.resolve():
            return None
        commit = _git(folder, "rev-parse", "HEAD")
        dirty = _git(folder, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def device_name(device: torch.device) -> str:
    """'cuda (NVIDIA H100 80GB HBM3)', 'cpu (x86_64)' or the device type."""
    if device.type == "cuda" and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({platform.machine()})"
    return device.type


def run_environment(device: torch.device | None = None, devices: int = 1) -> dict[str, Any]:
    """The code, libraries and hardware of this process; ``device`` is where the model ran (CPU when None),
    ``devices`` how many of them (DDP)."""
    return {
        "ser": ser_version(),
        "git": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": _version("lightning"),
        "host": socket.gethostname(),
        "device": device_name(device if device is not None else torch.device("cpu")),
        "devices": int(devices),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
    }
