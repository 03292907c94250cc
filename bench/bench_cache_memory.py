"""Memory of training jobs that share one feature cache entry: memory-mapped (``mmap=True``) vs full load.

    nice -n 19 .venv/bin/python bench/bench_cache_memory.py            # ~1-3 min
    .venv/bin/python bench/bench_cache_memory.py --actors 30 --frames 400

Three set-ups, each measured with the entry memory-mapped (what ``FeatureCache`` does) and with the old full
``torch.load`` (``ser.data.cache.load_state(mmap=False)``), alternating, in fresh child processes:

(a) the corpus once; (b) the corpus four times over (4x the speakers, 4x the features); (c) two jobs of (a)
at the same time, as two sweep jobs or two DDP ranks on one machine.

A job is what ``python -m ser.train`` does with the default config (``data.corpora=[crema_d]``, log-mel,
LSTM, split=speaker): index, ``prepare_data`` + ``setup("fit")`` (load the cache entry, split, statistics),
then ``--steps`` training steps (forward, loss, backward, AdamW). The corpus is synthetic: tiny CREMA-D-named
WAV files, and a cache entry under the exact key the job computes, filled with random features of
``--frames`` frames per clip (extraction is not what is measured here; bench/bench_memory.py measures it).

Printed per job: peak RSS (``VmHWM``) and, at the end of the job while all jobs of the set-up are still
alive, from ``/proc/<pid>/smaps_rollup``: RSS, PSS (shared pages divided among the processes mapping them)
and private memory; then the set-up's total (sum of PSS), against the entry's size on disk. With the full
load each job holds its own copy (private); mapped, the pages are file-backed and shared: the sum of PSS
of two jobs stays about one copy.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import ROOT, emit, load_note, machine_note, parse_child, print_table

EMOTIONS = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
SENTENCES = ["DFA", "IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "ITS", "TSI", "WSI"]
RATE = 16000


def make_corpus(folder: Path, actors: int) -> Path:
    """``actors`` CREMA-D speakers x 12 sentences x 6 emotions, 0.2-s WAVs (their features are synthetic)."""
    import soundfile as sf

    wavs = folder / "crema-d" / "AudioWAV"
    if not wavs.exists():
        wavs.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for a in range(1001, 1001 + actors):
            for s in SENTENCES:
                for e in EMOTIONS:
                    sf.write(wavs / f"{a}_{s}_{e}_XX.wav", 0.1 * rng.standard_normal(RATE // 5), RATE, "PCM_16")
    return folder


def _overrides(corpus: Path, cache: Path) -> list[str]:
    return [
        f"paths.cache_dir={cache}",
        f"data.root={corpus}",
        "data.corpora=[crema_d]",
        "logger=none",
        "callbacks=none",
        "scheduler=none",
    ]


def prepare_entry(corpus: Path, cache: Path, frames: int) -> Path:
    """The cache entry the job will look up, with random features: ``frames`` +-20% frames per clip."""
    import torch
    from _common import compose_train

    from ser.data.cache import FeatureSet
    from ser.train import build_datamodule

    dm = build_datamodule(compose_train(_overrides(corpus, cache)))
    clips = dm.build_index().clips
    fc = dm.feature_cache()
    path = fc.path_for(clips)
    if not path.exists():
        gen = torch.Generator().manual_seed(0)
        lengths = torch.randint(int(frames * 0.8), int(frames * 1.2) + 1, (len(clips),), generator=gen)
        fs = FeatureSet(
            clip_ids=[c.clip_id for c in clips],
            features=torch.randn(int(lengths.sum()), dm.input_dim, generator=gen),
            offsets=torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lengths, 0)]),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(fs.to_state(), path)
    return path


# ------------------------------------------------------------------ child: one job


def _proc(pid: int, name: str, keys: tuple[str, ...]) -> dict[str, float]:
    """Fields (kB -> MB) of /proc/<pid>/<name>."""
    out = {}
    for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            out[key] = int(value.split()[0]) / 1024
    return out


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    from _common import compose_train

    import ser.data.cache as cache_mod
    from ser.train import build_datamodule, build_module

    if not args.mmap:  # the old full load, for the comparison
        full = cache_mod.load_state
        cache_mod.load_state = lambda path, mmap=False: full(path, mmap=False)
    cfg = compose_train(_overrides(Path(args.corpus), Path(args.cache)))
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    module = build_module(cfg, dm.input_dim, dm.feature_stats(), dm.class_counts())
    optimizer = module.configure_optimizers()
    if isinstance(optimizer, dict):
        optimizer = optimizer["optimizer"]
    module.train()
    for step, batch in enumerate(dm.train_dataloader()):
        if step == args.steps:
            break
        loss = module.loss_fn(module(batch.features, batch.lengths), batch.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # Wait for the other jobs of the set-up: PSS divides shared pages among the processes alive now.
    Path(args.barrier, f"done-{os.getpid()}").touch()
    deadline = time.monotonic() + 300
    while len(list(Path(args.barrier).glob("done-*"))) < args.jobs and time.monotonic() < deadline:
        time.sleep(0.2)
    result = _proc(os.getpid(), "status", ("VmHWM", "RssAnon", "RssFile"))
    result |= _proc(os.getpid(), "smaps_rollup", ("Rss", "Pss", "Private_Clean", "Private_Dirty"))
    result["features_mb"] = dm.feature_set.features.numel() * 4 / 2**20
    Path(args.barrier, f"measured-{os.getpid()}").touch()
    while len(list(Path(args.barrier).glob("measured-*"))) < args.jobs and time.monotonic() < deadline:
        time.sleep(0.2)  # stay alive (and mapped) until every job has read its PSS
    emit(result)


# ------------------------------------------------------------------ parent


def run_jobs(corpus: Path, cache: Path, jobs: int, mmap: bool, steps: int, barrier: Path) -> list[dict]:
    barrier.mkdir(parents=True, exist_ok=True)
    for f in barrier.glob("*"):
        f.unlink()
    cmd = [sys.executable, __file__, "--child", "--corpus", str(corpus), "--cache", str(cache)]
    cmd += ["--jobs", str(jobs), "--steps", str(steps), "--barrier", str(barrier)] + (["--mmap"] if mmap else [])
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
        for _ in range(jobs)
    ]
    results = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"job failed ({p.returncode}) on {corpus}:\n{err[-3000:]}")
        results.append(parse_child(out))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/ser-bench-cache-memory", help="corpora and caches (kept)")
    parser.add_argument("--actors", type=int, default=20, help="speakers of the corpus once (x4: up to 91)")
    parser.add_argument("--frames", type=int, default=300, help="mean frames per clip of the synthetic features")
    parser.add_argument("--steps", type=int, default=5, help="training steps per job")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mmap", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--barrier", help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if 4 * args.actors > 91:
        raise SystemExit("--actors: at most 22 (CREMA-D has 91 speakers; x4 must stay within them)")

    print(machine_note())
    work = Path(args.work)
    start = time.perf_counter()
    cache = work / "cache"
    setups = {
        "(a) corpus once": (make_corpus(work / "once", args.actors), 1),
        "(b) corpus x4": (make_corpus(work / "x4", 4 * args.actors), 1),
        "(c) 2 jobs of (a)": (work / "once", 2),
    }
    sizes = {
        name: prepare_entry(corpus, cache, args.frames).stat().st_size / 2**20 for name, (corpus, _) in setups.items()
    }
    print(f"corpora and cache entries under {work} ready ({time.perf_counter() - start:.0f} s)")
    rows = []
    for name, (corpus, jobs) in setups.items():
        for mmap in (True, False):
            runs = run_jobs(corpus, cache, jobs, mmap, args.steps, work / "barrier")
            how = "mmap" if mmap else "full load"
            peaks = " + ".join(f"{r['VmHWM']:.0f}" for r in runs)
            total = {key: sum(r[key] for r in runs) for key in ("Rss", "RssAnon", "RssFile", "Pss")}
            rows.append(
                (
                    f"{name}, {how}",
                    f"entry {sizes[name]:5.0f} | peak RSS {peaks:>11} | now: RSS {total['Rss']:5.0f} = anon "
                    f"{total['RssAnon']:5.0f} + file {total['RssFile']:4.0f} | PSS sum {total['Pss']:5.0f}",
                )
            )
    print_table(rows, "memory of the jobs of each set-up, MB (2^20 bytes), summed over its jobs")
    print(
        "anon: each job's own memory (a fully loaded entry is here, once per job). file: mapped files (libraries;"
        " a mapped entry), shared between jobs and reclaimable page cache. PSS sum: the set-up's share of physical"
        " memory, shared pages counted once in all. Peak RSS (VmHWM) counts mapped pages too, so it does not"
        " fall with mmap; anon and PSS do."
    )
    print(load_note())


if __name__ == "__main__":
    main()
