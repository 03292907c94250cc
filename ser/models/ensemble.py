"""Ensembles of checkpoints: find them (file, list, sweep folder), check that they agree, average probabilities.

Members may differ in features, normalization, network and loss; each extracts its own features.
They must share the class names (and, to be fed the same decoded audio, the sample rate where that
matters: :mod:`ser.inference.ensemble`). Probabilities are averaged with equal weights: softmax
outputs of categorical models and sigmoid outputs of binary ones alike, the predicted class being the
argmax of the mean.

A member's :attr:`~ser.models.checkpoint.RebuiltModel.data` record says which speakers trained and
validated it; :func:`held_out_members` tells, for each speaker, which members never saw it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ser.models.checkpoint import CheckpointError, RebuiltModel, rebuild

BEST = Path("checkpoints") / "best.ckpt"


def _job_order(path: Path) -> tuple:
    """Sweep jobs in numeric order (2 before 10), whatever depth they sit at."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.as_posix()))


def _best_checkpoints_below(folder: Path) -> Iterable[Path]:
    """Every ``checkpoints/best.ckpt`` below ``folder``, through symbolic links to job folders too (a hand-made
    ensemble folder of links to the jobs of several sweeps), each real folder once, so a link loop ends."""
    seen: set[str] = set()
    for root, dirs, _ in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        candidate = Path(root) / BEST
        if candidate.is_file():
            yield candidate


def checkpoints_in(folder: Path) -> list[Path]:
    """``folder/checkpoints/best.ckpt`` of a run folder, or every job's of a sweep folder (numeric job order)."""
    if (folder / BEST).is_file():
        return [folder / BEST]
    found = sorted(_best_checkpoints_below(folder), key=_job_order)
    if not found:
        raise CheckpointError(
            f"{folder}: no {BEST.as_posix()} in this folder or in any job folder below it "
            "(give a .ckpt file, a run folder or a sweep folder of ser.train)"
        )
    return found


def resolve_checkpoints(spec: str | Path | Iterable[str | Path] | None) -> list[Path]:
    """The checkpoint files of ``ckpt=``: a file, a run or sweep folder, or a list of any of them."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        raise CheckpointError("no checkpoint given: ckpt=PATH (a .ckpt file, a list [a.ckpt,b.ckpt] or a sweep folder)")
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)
    if not items:
        raise CheckpointError("ckpt=[]: the list of checkpoints is empty")
    paths: list[Path] = []
    for item in items:
        path = Path(str(item))
        if path.is_dir():
            paths.extend(checkpoints_in(path))
        elif not path.exists():
            raise CheckpointError(f"{path}: checkpoint not found")
        else:
            paths.append(path)
    dups = sorted({str(p) for p in paths if paths.count(p) > 1})
    if dups:
        raise CheckpointError(f"checkpoint given more than once: {', '.join(dups)}")
    return paths


def check_members(members: Sequence[RebuiltModel], same_sample_rate: bool = False) -> None:
    """All members predict the same classes (and, if asked, decode audio at the same rate)."""
    if not members:
        raise CheckpointError("an ensemble needs at least one checkpoint")
    first = members[0]
    for m in members[1:]:
        if m.classes != first.classes:
            raise CheckpointError(
                f"{m.source}: its classes {list(m.classes)} differ from those of {first.source} "
                f"{list(first.classes)}; ensemble members must share the classes"
            )
        if same_sample_rate and m.sample_rate != first.sample_rate:
            raise CheckpointError(
                f"{m.source}: sample rate {m.sample_rate} Hz differs from {first.sample_rate} Hz of {first.source}; "
                "ensemble members that share decoded audio must share the rate"
            )


def load_members(spec: str | Path | Iterable[str | Path] | None, same_sample_rate: bool = False) -> list[RebuiltModel]:
    """Rebuild every checkpoint of ``spec`` (see :func:`resolve_checkpoints`) and check that they agree."""
    members = [rebuild(p) for p in resolve_checkpoints(spec)]
    check_members(members, same_sample_rate)
    return members


def average(probabilities: Sequence[np.ndarray]) -> np.ndarray:
    """Equal-weight mean of the members' probabilities [N, C] (float32, like a single member's)."""
    if not probabilities:
        raise ValueError("nothing to average: no member probabilities")
    return np.mean(np.stack([np.asarray(p, dtype=np.float64) for p in probabilities]), axis=0).astype(np.float32)


def seen_speakers(member: RebuiltModel) -> set[str] | None:
    """Speakers the member was trained or validated on; None when its checkpoint does not record them."""
    record = member.data
    if not isinstance(record, Mapping) or not isinstance(record.get("speakers"), Mapping):
        return None
    speakers = record["speakers"]
    return {str(s) for part in ("train", "val") for s in speakers.get(part) or []}


def tested_speakers(member: RebuiltModel) -> set[str]:
    """The test speakers of the run that trained the member (empty when not recorded)."""
    record = member.data if isinstance(member.data, Mapping) else {}
    return {str(s) for s in (record.get("speakers") or {}).get("test") or []}


def held_out_members(members: Sequence[RebuiltModel], speakers: Iterable[str]) -> dict[str, list[int]]:
    """For each speaker, the indices of the members that neither trained nor validated on it.

    A member without a data record counts as having seen everyone: overlap cannot be ruled out.
    """
    seen = [seen_speakers(m) for m in members]
    return {s: [i for i, k in enumerate(seen) if k is not None and s not in k] for s in speakers}
