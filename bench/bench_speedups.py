"""What makes the strongest recipe's epoch cheaper: bfloat16 autocast and chunk training, against the recipe.

    .venv/bin/python bench/bench_speedups.py                  # both corpora under data/, full epochs
    .venv/bin/python bench/bench_speedups.py --batches 20     # the first 20 train batches of each epoch
    .venv/bin/python bench/bench_speedups.py --demo           # the synthetic demo corpus

One training epoch (``bench_models.fit``: ``Trainer.fit`` with max_epochs=1, no validation, checkpoint,
logger or progress bar) of ``experiment=strongest`` (the reference) and of each variant on the same
DataModule and batches, interleaved (recipe, variant, variant, ..., recipe, ...) after an untimed warm-up
of each; medians, and each variant's ratio to the recipe:

* ``ablation=bf16``: Lightning's ``bf16-mixed`` (torch.autocast on the CPU); fast only where the CPU has
  AMX or AVX512-BF16 (printed first), slower where it has neither;
* ``ablation=crop150``: each train clip cut to a random window of up to 150 frames (``augment.crop``);
* both together.

Validation, test and prediction never see crops, so a full training run saves less than the epoch ratio
(its validation passes are unchanged). One intra-op thread by default, as in bench_models.py.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from _common import add_training_args, compose_train, interleave, load_note, median, print_table, start_training_bench
from bench_models import build, fit

VARIANTS = {
    "recipe": [],
    "bf16": ["ablation=bf16"],
    "crop150": ["ablation=crop150"],
    "crop150 + bf16": ["ablation=crop150", "trainer.precision=bf16-mixed"],
}


def cpu_bf16_note() -> str:
    """Whether this CPU has a bfloat16 fast path (AMX tiles, AVX512-BF16), from /proc/cpuinfo's flags."""
    try:
        flags = next(
            (
                line.split(":", 1)[1].split()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("flags")
            ),
            [],
        )
    except OSError:
        return "CPU flags: unknown (no /proc/cpuinfo)"
    fast = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    return f"CPU bfloat16 support: {', '.join(fast) if fast else 'none (bf16 autocast will be slow)'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(parser, "each variant")
    args = parser.parse_args()
    start_training_bench(args.threads)
    print(cpu_bf16_note())

    _, dm = build(args, ["experiment=strongest"])
    fixed = [f"paths.cache_dir={args.cache_dir}", "logger=none", "callbacks=none"]
    fixed += ["data=demo"] if args.demo else [f"data.root={args.data_root}"]
    cfgs = {name: compose_train([*fixed, "experiment=strongest", *extra]) for name, extra in VARIANTS.items()}
    n_train = len(dm.train_dataloader())
    batches = min(args.batches, n_train) if args.batches else n_train
    for c in cfgs.values():  # untimed: first-call costs (kernels, allocator, autocast caches)
        fit(c, dm, min(3, batches))

    def step(c) -> Callable[[], float]:
        return lambda: fit(c, dm, batches)["epoch_s"]

    times = interleave([(name, step(c)) for name, c in cfgs.items()], args.repeats)
    ref = median(times["recipe"])
    rows = []
    for name, t in times.items():
        runs = ", ".join(f"{x:.2f}" for x in t)
        note = "  (reference)" if name == "recipe" else f"  ratio to the recipe {median(t) / ref:.3f}"
        rows.append((f"{name}: epoch s (median)", f"{median(t):.2f}{note}  (runs: {runs})"))
    print_table(
        rows,
        f"bench_speedups: experiment=strongest, {batches} of {n_train} train batches per epoch, medians of "
        f"{args.repeats} interleaved epochs; {torch.get_num_threads()} thread(s)",
    )
    print(load_note())


if __name__ == "__main__":
    main()
