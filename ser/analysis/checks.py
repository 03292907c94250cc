"""What makes a comparison less trustworthy than it looks: runs still improving, too few runs or pairs, runs
from different devices."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ser.analysis.stats import Comparison
from ser.sweeps import Job

# Pairs below which a paired test means little: the exact Wilcoxon test cannot reach p < 0.05 under 6 pairs.
MIN_PAIRS = 6
# Share of runs whose best validation epoch was their last above which the report says training was cut short.
STILL_IMPROVING_SHARE = 0.5


def caveats(comp: Comparison) -> list[str]:
    """Every warning that applies to a comparison, in the order a reader should weigh them."""
    return still_improving(comp.done) + too_few(comp) + mixed_devices(comp)


def still_improving(jobs: Sequence[Job]) -> list[str]:
    """A warning when most runs had their best validation epoch at their last: training stopped too soon."""
    known = [
        (j, int(j.metrics["best_val"]["epoch"]), int(j.metrics["epochs"]))
        for j in jobs
        if isinstance((j.metrics.get("best_val") or {}).get("epoch"), int) and isinstance(j.metrics.get("epochs"), int)
    ]
    last = [j for j, best, epochs in known if epochs > 0 and best >= epochs - 1]
    if not known or len(last) / len(known) <= STILL_IMPROVING_SHARE:
        return []
    return [
        f"{len(last)} of {len(known)} runs had their best validation epoch at their last epoch: they were still "
        "improving when training stopped, so these numbers understate what the settings can reach; "
        "raise trainer.max_epochs."
    ]


def too_few(comp: Comparison) -> list[str]:
    """Warnings when the sample is too small for the tests or CIs to mean much."""
    out = []
    pairs = [p.n for p in comp.paired_result(comp.metric)]
    if pairs and 0 < min(pairs) < MIN_PAIRS:
        out.append(
            f"Only {min(pairs)} paired runs: too few for a test to mean much (the Wilcoxon test cannot reach "
            f"p < 0.05 under {MIN_PAIRS} pairs, and a t-test on so few assumes what it cannot check); run more "
            "seeds or folds before drawing a conclusion."
        )
    small = [g.label for g in comp.groups if 0 < g.stats[comp.metric].n < 3]
    if small:
        named = ", ".join(small[:3]) + (", ..." if len(small) > 3 else "")
        out.append(f"{len(small)} group(s) with fewer than 3 runs ({named}): their sd and CI are missing or very wide.")
    return out


def mixed_devices(comp: Comparison) -> list[str]:
    """A note when the runs ran on more than one kind of device (CPU and GPU, say): their last digits differ.

    Pairs that each ran on one device still compare like with like; a pair across devices folds the device's
    numerical effect into its difference, and the note counts those pairs.
    """
    kinds = Counter(j.device for j in comp.done if j.device is not None)
    if len(kinds) < 2:
        return []
    listed = ", ".join(f"{n} on {kind}" for kind, n in sorted(kinds.items()))
    if not comp.paired:
        return [f"The runs ran on different devices ({listed}); the group means pool them."]
    # A pair is a setting of the match keys that ran at two or more levels; runs without a known device are
    # left out of the count rather than counted as a device of their own.
    levels: dict[tuple, set[str]] = {}
    devices: dict[tuple, set[str]] = {}
    for job in comp.done:
        levels.setdefault(comp.match_of(job), set()).add(comp.level_of(job))
        if job.device is not None:
            devices.setdefault(comp.match_of(job), set()).add(job.device)
    pairs = [m for m, seen in levels.items() if len(seen) > 1]
    mixed = sum(len(devices.get(m, ())) > 1 for m in pairs)
    if not mixed:
        return [
            f"The runs ran on different devices ({listed}); each pair ran on one device, so the paired "
            "differences compare like with like, while the group means pool devices."
        ]
    return [
        f"The runs ran on different devices ({listed}) and {mixed} of {len(pairs)} pairs mix them: those "
        "differences include the devices' numerical effect; rerun them on one device."
    ]
