"""Lightning's training epoch against a plain PyTorch loop over the same model and batches.

    .venv/bin/python bench/bench_training.py                 # both corpora under data/, full epoch
    .venv/bin/python bench/bench_training.py --batches 20    # the first 20 batches of the epoch
    .venv/bin/python bench/bench_training.py --demo          # the synthetic demo corpus
    .venv/bin/python bench/bench_training.py --val           # validation inside the epoch, in both

Target: Lightning epoch time / plain-loop epoch time <= 1.15, measured in the same run.

Both sides get the same things: the DataModule of the default config (conf/train.yaml composed by Hydra:
data=default, features=logmel, model=lstm, loss=categorical, optimizer=adamw), the module from
``ser.train.build_module`` with the same initial weights, the same batches (``dm.train_dataloader()``, the
length-bucketed sampler at epoch 0) and per step: forward, loss, the finite-loss check, train metrics
update (StageMetrics + MeanMetric), zero_grad, backward, ``clip_grad_norm_(1.0)``, AdamW step; at the
epoch's end the train metrics are computed and reset. Only Lightning does its own bookkeeping (hooks,
loops, ``self.log`` of train/loss). No checkpointing, logger, progress bar, model summary, sanity check
or LR scheduler (scheduler=none: one per-epoch step costs nothing). With ``--val`` both run the
validation batches (no grad, val metrics) at the epoch's end; without it ``limit_val_batches=0``.

Lightning's epoch time is the module's own (``SERModule.epoch_times``: on_train_epoch_start to
on_train_epoch_end, what metrics.json reports); the plain loop's is timed over the same span. ``fit``
wall time (including the module's set-up: feature statistics, class counts, optimizer) is shown too.
Runs alternate (Lightning, plain, Lightning, plain, ...) after one short untimed warm-up of each; the
script checks that both end with the same weights (same dropout masks: both reseed at the first batch).

Threads: one intra-op thread by default (as ser.train gives each job of a 2-job sweep on 2 cores). On a
2-core machine shared with other jobs, torch's default of 2 threads measures OpenMP threads waiting for
each other at the LSTM's many small ops (tens of times slower), not the training; ``--threads 0`` keeps it.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import add_training_args, compose_train, interleave, load_note, median, print_table, start_training_bench

SEED = 1234


def build(args: argparse.Namespace):
    from ser.train import build_datamodule

    overrides = [f"paths.cache_dir={args.cache_dir}", "scheduler=none", "logger=none", "callbacks=none"]
    overrides += ["data=demo"] if args.demo else [f"data.root={args.data_root}"]
    cfg = compose_train(overrides)
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    return cfg, dm


def new_module(cfg, dm):
    from ser.train import build_module

    torch.manual_seed(SEED)
    return build_module(cfg, dm.input_dim, dm.feature_stats(), dm.class_counts())


def lightning_run(cfg, dm, batches: int, val_batches: int) -> tuple[float, float, object]:
    import lightning as L
    from hydra.utils import instantiate

    class Reseed(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx == 0:
                torch.manual_seed(SEED + 1)

    module = new_module(cfg, dm)
    trainer = instantiate(
        cfg.trainer,
        max_epochs=1,
        min_epochs=1,
        limit_train_batches=batches or 1.0,
        limit_val_batches=val_batches,
        num_sanity_val_steps=0,
        logger=False,
        callbacks=[Reseed()],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    wall = time.perf_counter() - start
    return module.epoch_times[-1], wall, module


def plain_run(cfg, dm, batches: int, val_batches: int, clip: float) -> tuple[float, float, object]:
    from ser.labels import NUM_CLASSES

    module = new_module(cfg, dm)
    start = time.perf_counter()
    # What SERModule.setup("fit") and configure_optimizers do inside Trainer.fit.
    mean, std = dm.feature_stats()
    module.net.normalizer.set_stats(mean, std)
    counts = torch.bincount(torch.tensor(dm.datasets["train"].labels), minlength=NUM_CLASSES)
    module.loss_fn.set_class_counts(counts)
    optimizer = module.configure_optimizers()
    module.train()
    epoch_start = time.perf_counter()
    for i, batch in enumerate(dm.train_dataloader()):
        if batches and i >= batches:
            break
        if i == 0:
            torch.manual_seed(SEED + 1)
        logits = module(batch.features, batch.lengths)
        loss = module.loss_fn(logits, batch.labels)
        if not torch.isfinite(loss):
            raise FloatingPointError("non-finite loss")
        module.train_metrics.update(module.probabilities(logits.detach()), batch.labels)
        module.train_loss.update(loss.detach(), weight=batch.labels.shape[0])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        optimizer.step()
    if val_batches:
        module.eval()
        with torch.no_grad():
            for i, batch in enumerate(dm.val_dataloader()):
                if i >= val_batches:
                    break
                logits = module(batch.features, batch.lengths)
                module.loss_fn(logits, batch.labels)
                module.val_metrics.update(module.probabilities(logits), batch.labels)
        module.val_metrics.compute()
        module.val_metrics.compute_confusion()
        module.val_metrics.reset()
        module.train()
    module.train_metrics.compute()
    module.train_loss.compute()
    module.train_metrics.reset()
    module.train_loss.reset()
    end = time.perf_counter()
    return end - epoch_start, end - start, module


@torch.no_grad()
def max_weight_diff(a, b) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(parser, "each")
    parser.add_argument("--val", action="store_true", help="run the validation batches inside the epoch too")
    parser.add_argument("--val-batches", type=int, default=0, help="with --val: batches (0: all)")
    args = parser.parse_args()
    start_training_bench(args.threads)

    cfg, dm = build(args)
    n_train = len(dm.train_dataloader())
    batches = min(args.batches, n_train) if args.batches else n_train
    val_batches = 0
    if args.val:
        n_val = len(dm.val_dataloader())
        val_batches = min(args.val_batches, n_val) if args.val_batches else n_val
    clip = float(cfg.trainer.gradient_clip_val)
    print(
        f"data: {'demo' if args.demo else 'crema_d + savee'}, {len(dm.datasets['train'])} train clips, "
        f"batch size {cfg.data.batch_size}; epoch = {batches} of {n_train} train batches"
        + (f" + {val_batches} val batches" if val_batches else " (no validation)")
        + f"; gradient clip {clip}"
    )

    warm = min(3, batches)  # untimed warm-up: first-call costs of both paths
    lightning_run(cfg, dm, warm, min(val_batches, 1))
    plain_run(cfg, dm, warm, min(val_batches, 1), clip)

    results: dict[str, list] = {"lightning": [], "plain": []}

    def step(name: str, fn):
        def run() -> float:
            epoch, wall, module = fn()
            results[name].append((epoch, wall, module))
            return epoch

        return run

    times = interleave(
        [
            ("lightning", step("lightning", lambda: lightning_run(cfg, dm, batches, val_batches))),
            ("plain", step("plain", lambda: plain_run(cfg, dm, batches, val_batches, clip))),
        ],
        args.repeats,
    )
    diff = max_weight_diff(results["lightning"][-1][2], results["plain"][-1][2])
    lit, plain = median(times["lightning"]), median(times["plain"])
    lit_wall = median([r[1] for r in results["lightning"]])
    plain_wall = median([r[1] for r in results["plain"]])
    ratio = lit / plain
    print_table(
        [
            ("Lightning epoch s (median)", f"{lit:.2f}  (runs: {', '.join(f'{t:.2f}' for t in times['lightning'])})"),
            ("plain loop epoch s (median)", f"{plain:.2f}  (runs: {', '.join(f'{t:.2f}' for t in times['plain'])})"),
            (
                "ratio Lightning / plain (epoch)",
                f"{ratio:.3f}  (target <= 1.15: {'MET' if ratio <= 1.15 else 'NOT MET'})",
            ),
            ("epoch ms per train batch: L / plain", f"{1000 * lit / batches:.1f} / {1000 * plain / batches:.1f}"),
            (
                "fit wall s: Lightning / plain",
                f"{lit_wall:.2f} / {plain_wall:.2f}  (ratio {lit_wall / plain_wall:.3f})",
            ),
            ("same final weights (max |dw|)", f"{diff:.2e}"),
        ],
        f"bench_training: medians of {args.repeats} interleaved epochs (Lightning, plain, ...)",
    )
    print(load_note())
    if diff > 1e-4:
        print("WARNING: the two loops ended with different weights; they did not do the same steps")


if __name__ == "__main__":
    main()
