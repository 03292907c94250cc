"""Which parameters of a sweep's jobs vary, which follow from others, and how their values sort and print."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ser.sweeps import NAMED_GROUPS, Job

# Keys whose values are repetitions of one setting, not settings: runs are paired over them.
# (split.* since split became its own config group; data.* in older sweeps; the held-out corpus of a
# leave-one-corpus-out sweep and the held-out speaker of a leave-one-speaker-out sweep are folds too.)
PAIRING_KEYS: tuple[str, ...] = (
    "seed",
    "fold",
    "split.fold",
    "split.seed",
    "data.fold",
    "data.split_seed",
    "split.test_corpus",
    "split.speaker",
)

# Keys that say where and how a run executed, not what it computes (threads, device, folders, progress
# output): never a group of their own, but runs are paired only within one setting of them, so a sweep
# finished partly on a GPU and partly on a CPU pairs each fold's runs run on the same device.
EXECUTION_KEYS: tuple[str, ...] = (
    "num_threads",
    "progress",
    "device",
    "trainer.accelerator",
    "data.progress",
    "data.num_workers",
    "data.feature_workers",
)
EXECUTION_PREFIXES: tuple[str, ...] = ("paths.", "hydra.")
# The trainer options that only pick the device; trainer=ddp changes the effective batch, so it is a setting.
ONE_DEVICE_TRAINERS = frozenset({"default", "cpu", "gpu"})


def execution_keys(jobs: Sequence[Job], keys: Sequence[str]) -> list[str]:
    """Those of ``keys`` that only say where the jobs executed (``trainer`` only while it picks one device)."""
    out = []
    for key in keys:
        if key == "trainer":
            if all(str(j.params[key]) in ONE_DEVICE_TRAINERS for j in jobs if key in j.params):
                out.append(key)
        elif key in EXECUTION_KEYS or key.startswith(EXECUTION_PREFIXES):
            out.append(key)
    return out


def sort_key(value: Any, baseline: Any = None) -> tuple:
    """Numbers in order, then text with the baseline first (so differences read "other − baseline")."""
    if isinstance(value, tuple):
        return tuple(sort_key(v, baseline) for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0 if baseline is not None and value == baseline else 1.0, str(value))


def hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def varied_keys(jobs: Sequence[Job], first: str | None = None) -> list[str]:
    """Override keys whose value differs between the jobs that have one.

    ``first`` (the contrast) comes first, then the named config groups (``model``), repetitions last. A job
    without the key (one that never started and so has no record of its chosen options) does not make it vary.
    """
    known = [j for j in jobs if j.params]
    order: dict[str, None] = {}
    for job in known:
        order.update(dict.fromkeys(job.params))
    varied = [k for k in order if len({hashable(j.params[k]) for j in known if k in j.params}) > 1]
    return sorted(varied, key=lambda k: (k != first, k not in NAMED_GROUPS, k in PAIRING_KEYS))


def determined_keys(jobs: Sequence[Job], keys: Sequence[str], keep: Sequence[str] = ()) -> list[str]:
    """Keys whose value follows from the keys before them (``experiment`` from ``model``), in order.

    Grouping by such a key adds nothing but a longer label, so the default grouping leaves it out.
    ``keep`` keys are never dropped.
    """
    known = [j for j in jobs if j.params]
    kept: list[str] = []
    dropped: list[str] = []
    for key in keys:
        seen: dict[tuple, set] = {}
        for job in known:
            seen.setdefault(tuple(hashable(job.params.get(k)) for k in kept), set()).add(hashable(job.params.get(key)))
        if kept and key not in keep and all(len(values) == 1 for values in seen.values()):
            dropped.append(key)
        else:
            kept.append(key)
    return dropped


def label(keys: Sequence[str], values: Sequence[Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True)) or "all runs"


def is_alias(jobs: Sequence[Job], key: str, other: str) -> bool:
    """True when key and other determine each other (e.g. experiment=a always ran loss=binary)."""
    pairs = {(hashable(j.params.get(key)), hashable(j.params.get(other))) for j in jobs}
    return len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs})
