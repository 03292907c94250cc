"""Speed of ``model=crnn`` against the default ``model=lstm``: training epoch, training frames/s, predict latency.

    .venv/bin/python bench/bench_models.py                   # both corpora under data/, full epochs
    .venv/bin/python bench/bench_models.py --batches 20      # the first 20 train batches of each epoch
    .venv/bin/python bench/bench_models.py --demo            # the synthetic demo corpus

Target (issue 9): predict latency of one 3 s clip with a crnn checkpoint <= 15 ms; the rest are ratios.

Training, per recipe: one epoch of ``Trainer.fit`` (max_epochs=1, no validation, checkpointing, logger,
progress bar or model summary) of crnn and of the LSTM on the same DataModule and batches
(``dm.train_dataloader()``, epoch 0 of the length-bucketed sampler), both from the configs ``ser.train``
composes (conf/train.yaml). Two recipes:

* ``default``: the default config with ``model=lstm`` (reference) or ``model=crnn`` (batch 64, global
  normalization, no augmentation; scheduler=none: the plateau scheduler needs validation and steps once
  per epoch).
* ``strongest``: ``experiment=strongest`` (crnn; batch 32, per-speaker normalization, SpecAugment, label
  smoothing, one-cycle schedule per step) and the same with ``model=lstm`` as reference.

Epoch time is the module's own (``SERModule.epoch_times``, what metrics.json reports). Training throughput
is log-mel frames (10 ms each, before the crnn's strided front-end) per second of training steps: a callback
times ``on_train_batch_start`` -> ``on_train_batch_end`` (forward, loss, metrics, backward, clipping,
optimizer and scheduler step), so data loading and epoch bookkeeping are left out. Runs alternate (lstm,
crnn, lstm, crnn, ...) after one short untimed warm-up of each; medians are reported.

Prediction: checkpoints written by the Trainer of the last timed run of each model (real ``ser``
checkpoints; their weights have seen only the timed batches, which does not change the speed), loaded as
``ser.predict`` loads ``ckpt=`` (``ser.inference.ensemble.load_predictor``: a ``Predictor``, or for several
checkpoints an ``EnsemblePredictor``, whose members each extract their own features; probabilities averaged).
One 3 s clip at a time through ``predict_waves`` (audio in, probabilities out), after a warm-up, the models
alternating call by call; wall time (the target) and this thread's CPU time (``time.thread_time``: with one
torch thread it holds all the work, and other jobs disturb it far less). The LSTM of the first recipe is the
reference. The 5-model ensemble is 5 crnn checkpoints of the strongest recipe (copies of one run's weights:
the speed is the same).

Training throughput is also given per CPU second of the steps (``time.thread_time``), which other jobs
on the machine disturb far less than the wall clock.

Threads: one intra-op thread by default, as in bench_training.py (``--threads 0``: torch's default).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from _common import add_training_args, compose_train, interleave, load_note, median, print_table, start_training_bench

SEED = 1234
FRAME_S = 0.01  # conf/features/logmel.yaml: hop 160 at 16 kHz
RECIPES = {
    # scheduler=none: the plateau scheduler steps once per epoch on val/uar (no validation here; costs nothing)
    "default": {"lstm": ["model=lstm", "scheduler=none"], "crnn": ["model=crnn", "scheduler=none"]},
    "strongest": {"lstm": ["experiment=strongest", "model=lstm"], "crnn": ["experiment=strongest"]},
}
ENSEMBLE_SIZE = 5


def build(args: argparse.Namespace, overrides: Sequence[str]):
    from ser.train import build_datamodule

    fixed = [f"paths.cache_dir={args.cache_dir}", "logger=none", "callbacks=none"]
    fixed += ["data=demo"] if args.demo else [f"data.root={args.data_root}"]
    cfg = compose_train([*fixed, *overrides])
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    return cfg, dm


def fit(cfg, dm, batches: int) -> dict:
    """One training epoch of ``batches`` batches: epoch time, summed step time, frames, the trainer."""
    import lightning as L
    from hydra.utils import instantiate

    from ser.train import build_module

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.step_s = 0.0
            self.step_cpu_s = 0.0
            self._cpu = 0.0
            self.frames = 0
            self._start = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.frames += int(batch.lengths.sum())
            self._start = time.perf_counter()
            self._cpu = time.thread_time()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.step_s += time.perf_counter() - self._start
            self.step_cpu_s += time.thread_time() - self._cpu

    torch.manual_seed(SEED)
    module = build_module(cfg, dm.input_dim, dm.feature_stats(), dm.class_counts())
    timer = StepTimer()
    trainer = instantiate(
        cfg.trainer,
        max_epochs=1,
        min_epochs=1,
        limit_train_batches=batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    torch.manual_seed(SEED + 1)
    trainer.fit(module, datamodule=dm)
    return {
        "epoch_s": module.epoch_times[-1],
        "step_s": timer.step_s,
        "step_cpu_s": timer.step_cpu_s,
        "frames": timer.frames,
        "trainer": trainer,
    }


def bench_training(args: argparse.Namespace, recipe: str) -> dict:
    """Interleaved epochs of the LSTM and crnn under one recipe; the last trainer of each is kept."""
    built = {name: build(args, overrides) for name, overrides in RECIPES[recipe].items()}
    (cfg_l, dm), (cfg_c, _) = built["lstm"], built["crnn"]
    n_train = len(dm.train_dataloader())
    batches = min(args.batches, n_train) if args.batches else n_train
    warm = min(3, batches)
    for cfg in (cfg_l, cfg_c):  # untimed: first-call costs (kernels, allocator) of both models
        fit(cfg, dm, warm)
    runs: dict[str, list[dict]] = {"lstm": [], "crnn": []}

    def step(name: str, cfg) -> Callable[[], float]:
        def run() -> float:
            runs[name].append(fit(cfg, dm, batches))
            return runs[name][-1]["epoch_s"]

        return run

    times = interleave([("lstm", step("lstm", cfg_l)), ("crnn", step("crnn", cfg_c))], args.repeats)
    params = {n: sum(p.numel() for p in runs[n][-1]["trainer"].lightning_module.parameters()) for n in runs}
    return {
        "recipe": recipe,
        "batch_size": int(cfg_l.data.batch_size),
        "normalization": str(cfg_l.data.normalization),
        "clips": len(dm.datasets["train"]),
        "batches": batches,
        "n_train": n_train,
        "epoch": {n: times[n] for n in runs},
        "step_s": {n: [r["step_s"] for r in runs[n]] for n in runs},
        "step_cpu_s": {n: [r["step_cpu_s"] for r in runs[n]] for n in runs},
        "frames": {n: runs[n][-1]["frames"] for n in runs},
        "params": params,
        "trainers": {n: runs[n][-1]["trainer"] for n in runs},
    }


def training_rows(res: dict) -> list[tuple[str, str]]:
    r = res["recipe"]
    ep = {n: median(res["epoch"][n]) for n in ("lstm", "crnn")}
    fps = {n: res["frames"][n] / median(res["step_s"][n]) for n in ("lstm", "crnn")}
    cpu_fps = {n: res["frames"][n] / median(res["step_cpu_s"][n]) for n in ("lstm", "crnn")}
    runs = {n: ", ".join(f"{t:.2f}" for t in res["epoch"][n]) for n in ("lstm", "crnn")}
    scale = res["n_train"] / res["batches"]
    rows = [
        (f"[{r}] lstm epoch s (median)", f"{ep['lstm']:.2f}  (runs: {runs['lstm']})"),
        (f"[{r}] crnn epoch s (median)", f"{ep['crnn']:.2f}  (runs: {runs['crnn']})"),
        (f"[{r}] ratio crnn / lstm (epoch)", f"{ep['crnn'] / ep['lstm']:.3f}"),
    ]
    if scale > 1:
        rows.append(
            (
                f"[{r}] full epoch s, extrapolated",
                f"lstm {ep['lstm'] * scale:.1f} / crnn {ep['crnn'] * scale:.1f}  ({res['n_train']} batches)",
            )
        )
    for n in ("lstm", "crnn"):
        rows.append(
            (
                f"[{r}] {n} train frames/s",
                f"{fps[n]:,.0f}  (= {fps[n] * FRAME_S:,.0f} s of audio per s; per CPU s: {cpu_fps[n]:,.0f}; "
                f"{res['frames'][n]:,} frames)",
            )
        )
    rows.append(
        (
            f"[{r}] ratio crnn / lstm (frames/s)",
            f"{fps['crnn'] / fps['lstm']:.3f}  (per CPU s: {cpu_fps['crnn'] / cpu_fps['lstm']:.3f})",
        )
    )
    return rows


def save_checkpoints(trainer, folder: Path, name: str, copies: int = 1) -> list[Path]:
    paths = []
    for i in range(copies):
        paths.append(folder / f"{name}-{i}.ckpt")
        trainer.save_checkpoint(paths[-1])
    return paths


def load_predict(paths: Sequence[Path]) -> tuple[Callable[[list[np.ndarray]], np.ndarray], str]:
    """``predict_waves`` of one checkpoint or an ensemble, loaded as ``ser.predict`` loads ``ckpt=``, and how."""
    try:
        from ser.inference.ensemble import load_predictor
    except ImportError:  # without the ensemble module: the mean of one Predictor per checkpoint
        from ser.inference.predictor import Predictor

        preds = [Predictor.from_checkpoint(p) for p in paths]
        return (
            lambda waves: np.mean([p.predict_waves(waves) for p in preds], axis=0),
            f"mean of {len(preds)} Predictors' probabilities (no ser.inference.ensemble)",
        )
    pred = load_predictor([str(p) for p in paths])
    return pred.predict_waves, f"ser.inference.ensemble.load_predictor -> {type(pred).__name__}"


def bench_latency(ckpts: dict[str, list[Path]], seconds: float, repeats: int) -> tuple[dict, dict, str]:
    """Seconds (wall, and CPU of this thread) of each call with one clip, models alternating call by call;
    plus how the ensemble ran."""
    from bench_predict import speechlike

    fns: dict[str, Callable[[list[np.ndarray]], np.ndarray]] = {}
    how = ""
    for name, paths in ckpts.items():
        fns[name], how = load_predict(paths)  # the last one is the ensemble
    waves = [speechlike(seconds, 16000, seed=1)]
    for fn in fns.values():  # warm-up
        for _ in range(10):
            fn(waves)

    cpu: dict[str, list[float]] = {n: [] for n in fns}

    def timed(name: str, fn) -> Callable[[], float]:
        def run() -> float:
            start, start_cpu = time.perf_counter(), time.thread_time()
            fn(waves)
            cpu[name].append(time.thread_time() - start_cpu)
            return time.perf_counter() - start

        return run

    return interleave([(n, timed(n, fn)) for n, fn in fns.items()], repeats), cpu, how


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(parser, "each model")
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=list(RECIPES))
    parser.add_argument("--clip-seconds", type=float, default=3.0)
    parser.add_argument("--predict-repeats", type=int, default=100, help="timed predict calls of each model")
    args = parser.parse_args()
    start_training_bench(args.threads)

    rows: list[tuple[str, str]] = []
    trainers: dict[str, object] = {}
    for recipe in args.recipes:
        res = bench_training(args, recipe)
        print(
            f"[{recipe}] data: {'demo' if args.demo else 'crema_d + savee'}, {res['clips']} train clips, batch "
            f"{res['batch_size']}, normalization {res['normalization']}; epoch = {res['batches']} of "
            f"{res['n_train']} train batches (no validation); parameters lstm {res['params']['lstm']:,} / "
            f"crnn {res['params']['crnn']:,}",
            flush=True,
        )
        rows += training_rows(res)
        for n, trainer in res["trainers"].items():
            trainers[f"{n}/{recipe}"] = trainer

    with tempfile.TemporaryDirectory(prefix="ser-bench-models-") as tmp:
        ckpts: dict[str, list[Path]] = {}
        ref = f"lstm/{args.recipes[0]}"  # the reference of the latency ratios
        for key in (ref, *(f"crnn/{r}" for r in RECIPES)):
            if key in trainers:
                ckpts[key] = save_checkpoints(trainers[key], Path(tmp), key.replace("/", "-"))
        crnn_key = "crnn/strongest" if "crnn/strongest" in trainers else "crnn/default"
        ens_key = f"{ENSEMBLE_SIZE} x {crnn_key}"
        ckpts[ens_key] = save_checkpoints(trainers[crnn_key], Path(tmp), "ensemble", ENSEMBLE_SIZE)
        lat, cpu, how = bench_latency(ckpts, args.clip_seconds, args.predict_repeats)
    print(f"ensemble: {how}")
    for name, times in lat.items():
        ms = 1e3 * median(times)
        p90 = 1e3 * float(np.percentile(times, 90))
        cpu_ms = 1e3 * median(cpu[name])
        note = f" vs lstm {ms / (1e3 * median(lat[ref])):.2f}x" if name != ref else " (reference)"
        if name.startswith("crnn"):
            note += f"; target <= 15 ms: {'MET' if ms <= 15 else 'NOT MET'}"
            if ms > 15 >= cpu_ms:  # the work fits; the wall clock waited for other jobs
                note += " (its CPU time meets it: the machine is loaded)"
        value = f"{ms:.2f}  (p90 {p90:.2f}, CPU {cpu_ms:.2f}){note}"
        rows.append((f"predict {args.clip_seconds:g} s clip, {name} ms", value))
    ens = 1e3 * median(lat[ens_key])
    rows.append(("ratio ensemble / one crnn (predict)", f"{ens / (1e3 * median(lat[crnn_key])):.2f}"))

    print_table(
        rows,
        f"bench_models: medians of {args.repeats} interleaved epochs (lstm, crnn, ...) per recipe and of "
        f"{args.predict_repeats} interleaved predict calls; {torch.get_num_threads()} thread(s)",
    )
    print(load_note())


if __name__ == "__main__":
    main()
