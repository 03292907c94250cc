"""Helpers shared by the benchmarks: machine note, interleaved repeats, medians, config, tables.

Every benchmark compares a candidate with a reference measured in the same run, alternating their
repeats (reference, candidate, reference, candidate, ...) and taking medians, so a background job
slows both about equally and the ratio stays meaningful while the absolute seconds do not.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHILD_PREFIX = "BENCH-RESULT "
RUN_DIR = "/tmp/ser-bench-run"  # stands in for Hydra's run directory (nothing is written there by default)


def machine_note() -> str:
    """Cores, threads and load average: the machine may be busy with other jobs."""
    import torch

    load = os.getloadavg()
    return (
        f"machine: {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} intra-op "
        f"threads, os.getloadavg() = ({load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f})\n"
        "NOTE: the machine may be loaded by other jobs; absolute seconds are noisy, compare the ratios "
        "(reference and candidate alternate within this run, medians are reported)."
    )


def load_note() -> str:
    load = os.getloadavg()
    return f"os.getloadavg() at the end: ({load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f})"


def interleave(steps: Sequence[tuple[str, Callable[[], float]]], repeats: int) -> dict[str, list[float]]:
    """Run the steps in turn ``repeats`` times (A, B, A, B, ...); each step returns its own seconds."""
    times: dict[str, list[float]] = {name: [] for name, _ in steps}
    for _ in range(repeats):
        for name, step in steps:
            times[name].append(step())
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def maxrss_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(result: dict) -> None:
    """A child process's result: one JSON line the parent picks out of stdout."""
    print(CHILD_PREFIX + json.dumps(result), flush=True)


def parse_child(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.startswith(CHILD_PREFIX):
            return json.loads(line[len(CHILD_PREFIX) :])
    raise RuntimeError(f"child printed no result:\n{stdout[-2000:]}")


def compose_train(overrides: Sequence[str]):
    """conf/train.yaml composed as ``python -m ser.train`` would, outside a Hydra app (no run directory)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        fixed = ["data.output_dir=null", "data.progress=false", f"paths.output_dir={RUN_DIR}"]
        cfg = compose(config_name="train", overrides=[*fixed, *overrides])
    GlobalHydra.instance().clear()
    return cfg


def print_table(rows: Sequence[tuple[str, str]], title: str) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}")
    print("-" * (width + 20))
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print("-" * (width + 20))


def add_training_args(parser: argparse.ArgumentParser, what: str = "each") -> None:
    """The options every training benchmark takes: which data, its cache, the epoch's size, repeats, threads."""
    parser.add_argument("--data-root", default=str(ROOT / "data"), help="folder holding crema-d/ and savee/")
    parser.add_argument("--demo", action="store_true", help="the synthetic demo corpus instead of data/")
    parser.add_argument("--cache-dir", default="/tmp/ser-bench-cache", help="feature cache (built if cold)")
    parser.add_argument("--batches", type=int, default=0, help="train batches per epoch (0: all)")
    parser.add_argument("--repeats", type=int, default=3, help=f"timed epochs of {what}, interleaved")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")


def start_training_bench(threads: int) -> None:
    """Set torch's threads, silence Lightning's per-fit chatter (only the figures are printed), note the machine."""
    import logging
    import warnings

    import torch

    if threads:
        torch.set_num_threads(threads)
    import lightning.pytorch  # noqa: F401  (it sets its loggers to INFO on import; quieten them after)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "ser"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (
        ".*does not have many workers.*",
        ".*is not supported by the model summary.*",
        ".*isinstance.treespec, LeafSpec.*",
    ):
        warnings.filterwarnings("ignore", message=message)
    print(machine_note())
