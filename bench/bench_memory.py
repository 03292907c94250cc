"""Peak memory of indexing, feature extraction and one training step, with and without very long clips.

    .venv/bin/python bench/bench_memory.py                  # 360 short clips; + a 10-min clip; + 10- and 30-min
    .venv/bin/python bench/bench_memory.py --repeats 3      # interleaved repeats, medians
    .venv/bin/python bench/bench_memory.py --long 600 1800 3600

Target: the peak RSS with the long clips stays within ~1.5x of the short-clip reference, and does not grow from
a 10-minute to a 30-minute clip (before: 0.66 GB -> 4.16 GB -> 11.2 GB for extraction alone, and the first
training step asked for 29.7 GB).

A synthetic CREMA-D-named corpus (16 kHz mono 16-bit WAV, clips of 1.5-4 s) is written once; the variants
add one or more long clips with valid names to a copy of it (hard links: the short clips are shared), and a
last one adds the same hours in 4-s clips instead (features in memory grow with hours of audio). Each
measurement is a fresh child process (so ``ru_maxrss`` is its own, imports included) with an empty feature
cache, running what ``python -m ser.train`` runs with the default config (data=default with
``data.corpora=[crema_d]``, features=logmel, model=lstm, split=speaker): index, ``prepare_data`` +
``setup("fit")`` (decode, extract, write and reload the cache entry, split, statistics), then one training
step (forward, loss, backward, AdamW step) on the batch with the most padded frames among the train, val
and test loaders, i.e. the one holding the longest clip wherever the split put it. It reports the peak RSS
after each stage. Variants alternate (reference, long, longer, reference, ...); ratios are against the
reference of the same run.

``--unbounded`` adds data.max_seconds=null data.max_batch_frames=null (no crop, no batch cap) to the long
variants' *extraction only*: their training step is skipped, as it would ask for tens of GB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import ROOT, emit, load_note, machine_note, maxrss_mb, median, parse_child, print_table

ACTORS = ["1001", "1002", "1003", "1004", "1005", "1006", "1007", "1008", "1009", "1010"]
EMOTIONS = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
SENTENCES = ["DFA", "IEO", "TIE", "IOM", "IWW", "TAI"]
RATE = 16000
ACTORS_2 = [str(a) for a in range(1011, 1021)]
SENTENCES_2 = ["DFA", "IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "ITS", "TSI", "WSI"]


def write_clip(path: Path, seconds: float, seed: int, block_seconds: float = 30.0) -> None:
    """A noisy tone, written in blocks (a 30-minute clip never in memory here either)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    total = int(seconds * RATE)
    freq = 120.0 + seed % 200
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as f:
        for start in range(0, total, int(block_seconds * RATE)):
            n = min(int(block_seconds * RATE), total - start)
            t = (start + np.arange(n)) / RATE
            x = 0.3 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
            f.write((x + 0.02 * rng.standard_normal(n)).astype(np.float32))


def make_corpora(work: Path, long_seconds: list[float]) -> dict[str, Path]:
    """The reference corpus and one variant per prefix of ``long_seconds`` (the first long clip, then two, ...)."""
    short = work / "short" / "crema-d" / "AudioWAV"
    if not short.exists():
        short.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i, (a, s, e) in enumerate((a, s, e) for a in ACTORS for s in SENTENCES for e in EMOTIONS):
            write_clip(short / f"{a}_{s}_{e}_XX.wav", float(rng.uniform(1.5, 4.0)), i)
    corpora = {"short clips": work / "short"}
    added: list[float] = []
    for k, seconds in enumerate(long_seconds):
        added.append(seconds)
        name = "+ " + " + ".join(f"{s / 60:g}-min" for s in added)
        folder = work / f"long{k}"
        if not folder.exists():
            shutil.copytree(work / "short", folder, copy_function=os.link)
            for j, sec in enumerate(added):
                # A valid CREMA-D name (actor j's neutral clip of sentence DFA at level HI) so it is indexed.
                write_clip(folder / "crema-d" / "AudioWAV" / f"{ACTORS[j]}_DFA_NEU_HI.wav", sec, 1000 + j)
        corpora[name] = folder
    # The same audio as the last variant's long clips, in 4-s clips of 10 more actors: what extraction
    # costs for that many hours of features, which no bound on clip length can remove.
    folder = work / f"spread{int(sum(long_seconds))}"
    if not folder.exists():
        shutil.copytree(work / "short", folder, copy_function=os.link)
        names = [f"{a}_{s}_{e}_XX.wav" for s in SENTENCES_2 for a in ACTORS_2 for e in EMOTIONS]
        for j, name in enumerate(names[: int(sum(long_seconds) // 4)]):
            write_clip(folder / "crema-d" / "AudioWAV" / name, 4.0, 2000 + j)
    corpora[f"+ {sum(long_seconds) / 60:g} min in 4-s clips"] = folder
    return corpora


# ------------------------------------------------------------------ child: one measurement


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    from _common import compose_train

    from ser.train import build_datamodule, build_module

    cache = Path(args.cache)
    shutil.rmtree(cache, ignore_errors=True)
    overrides = [
        f"paths.cache_dir={cache}",
        f"data.root={args.corpus}",
        "data.corpora=[crema_d]",
        "logger=none",
        "callbacks=none",
        "scheduler=none",
    ]
    if args.unbounded:
        overrides += ["data.max_seconds=null", "data.max_batch_frames=null"]
    cfg = compose_train(overrides)
    result: dict = {"base": maxrss_mb()}
    start = time.perf_counter()
    dm = build_datamodule(cfg)
    index = dm.build_index()
    result["index"], result["index_s"] = maxrss_mb(), time.perf_counter() - start
    start = time.perf_counter()
    dm.prepare_data()
    dm.setup("fit")
    result["extract"], result["extract_s"] = maxrss_mb(), time.perf_counter() - start
    result["clips"], result["audio_h"] = len(index), dm.report["hours"]
    result["longest_s"] = float(dm.feature_set.lengths.max()) * dm.extractor.hop_length / dm.sample_rate
    result["cropped"] = dm.report.get("cropped", {}).get("clips", "-")
    result["features_mb"] = dm.feature_set.features.numel() * 4 / 2**20
    if not (args.unbounded or args.no_step):
        start = time.perf_counter()
        batches = [b for loader in (dm.train_dataloader, dm.val_dataloader, dm.test_dataloader) for b in loader()]
        batch = max(batches, key=lambda b: b.features.shape[0] * b.features.shape[1])
        del batches
        result["batch"] = list(batch.features.shape[:2])
        module = build_module(cfg, dm.input_dim, dm.feature_stats(), dm.class_counts())
        optimizer = module.configure_optimizers()
        if isinstance(optimizer, dict):
            optimizer = optimizer["optimizer"]
        module.train()
        logits = module(batch.features, batch.lengths)
        loss = module.loss_fn(logits, batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        result["step"], result["step_s"] = maxrss_mb(), time.perf_counter() - start
    emit(result)


# ------------------------------------------------------------------ parent


def run_child(corpus: Path, cache: Path, unbounded: bool, no_step: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", "--corpus", str(corpus), "--cache", str(cache)]
    cmd += (["--unbounded"] if unbounded else []) + (["--no-step"] if no_step else [])
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT))
    if res.returncode != 0:
        raise SystemExit(f"child failed ({res.returncode}) on {corpus}:\n{res.stderr[-3000:]}")
    return parse_child(res.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/ser-bench-memory", help="corpora and caches (kept between runs)")
    parser.add_argument("--long", type=float, nargs="+", default=[600.0, 1800.0], help="long clips, seconds")
    parser.add_argument("--repeats", type=int, default=1, help="measurements of each variant, interleaved")
    parser.add_argument("--unbounded", action="store_true", help="long variants without crop/cap (no step)")
    parser.add_argument("--no-step", action="store_true", help="index and extraction only (e.g. on older code)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    print(machine_note())
    work = Path(args.work)
    start = time.perf_counter()
    corpora = make_corpora(work, args.long)
    print(f"corpora under {work} ready ({time.perf_counter() - start:.0f} s)")
    results: dict[str, list[dict]] = {name: [] for name in corpora}
    for _ in range(args.repeats):
        for k, (name, folder) in enumerate(corpora.items()):
            results[name].append(run_child(folder, work / "cache", args.unbounded and k > 0, args.no_step))

    ref = results["short clips"]
    stages = [("index", "index"), ("extract", "index + extraction + setup"), ("step", "+ one training step")]
    for key, label in stages:
        rows = []
        for name, runs in results.items():
            if key not in runs[0]:
                rows.append((name, "skipped (--unbounded or --no-step)"))
                continue
            peak = median([r[key] for r in runs])
            rows.append((name, f"{peak:8.0f} MB   x{peak / median([r[key] for r in ref]):.2f}"))
        print_table(rows, f"peak RSS after {label} (ratio to short clips, same run)")
    rows = []
    for name, runs in results.items():
        r = runs[0]
        batch = f", largest batch {r['batch'][0]} x {r['batch'][1]} frames" if "batch" in r else ""
        rows.append(
            (
                name,
                f"{r['clips']} clips, {r['audio_h']:.2f} h, longest {r['longest_s']:.0f} s, "
                f"{r['cropped']} cropped, features {r['features_mb']:.0f} MB{batch}; "
                f"extraction {median([x['extract_s'] for x in runs]):.1f} s",
            )
        )
    print_table(rows, "what was measured")
    print(load_note())


if __name__ == "__main__":
    main()
