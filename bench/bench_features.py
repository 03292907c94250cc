"""Feature extraction of the real corpora: cold build, warm start, cache size and peak memory.

    .venv/bin/python bench/bench_features.py                 # both corpora under data/, 3 repeats
    .venv/bin/python bench/bench_features.py --subset 1000   # a fixed random 1000 clips, quicker
    .venv/bin/python bench/bench_features.py --breakdown     # + decode / extraction alone, 1 vs N threads
    .venv/bin/python bench/bench_features.py --before        # + cold builds as before the cache's thread fix
    .venv/bin/python bench/bench_features.py --profile       # + one cold build under py-spy (if installed)

Targets: the cold build of both corpora (index, decode, resample, features, cache write; what
``SERDataModule.prepare_data()`` does on an empty cache) at >= 1,000x real time; the warm start
(``SERDataModule(...).prepare_data(); .setup("fit")`` on a cache hit) in <= 3 s.

Reference, measured in the same run and interleaved with the cold builds: librosa per clip, the way the
original work computed its features (``librosa.load(path, sr=16000)`` + ``librosa.feature.mfcc(n_mfcc=40)``
with librosa's defaults, one clip after the other), on a fixed random subset of the same clips,
extrapolated per second of audio. Each cold build and each librosa pass runs in a fresh subprocess
(imports not timed), so the peak RSS reported is that build's own and the cache is really cold (the
cache folder's features/ is deleted before each build). The audio files themselves are in the OS page
cache after the first pass, for both sides alike.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    ROOT,
    compose_train,
    emit,
    interleave,
    load_note,
    machine_note,
    maxrss_mb,
    median,
    parse_child,
    print_table,
)

HERE = Path(__file__).resolve()


# -- data ------------------------------------------------------------------------------------------------


def make_datamodule(data_root: str, cache_dir: str, features: str):
    from ser.train import build_datamodule

    cfg = compose_train([f"data.root={data_root}", f"paths.cache_dir={cache_dir}", f"features={features}"])
    return build_datamodule(cfg)


def subset_root(data_root: Path, n: int, seed: int, where: Path) -> Path:
    """A data root of symlinks to a fixed random ``n`` clips (plus the corpora's small metadata files)."""
    from ser.data.corpora import build_index

    clips = build_index(["crema_d", "savee"], {"crema_d": data_root / "crema-d", "savee": data_root / "savee"}).clips
    chosen = random.Random(seed).sample(clips, min(n, len(clips)))
    out = where / f"subset-{len(chosen)}-seed{seed}"
    if out.exists():
        shutil.rmtree(out)
    extra = [p for p in data_root.rglob("*") if p.suffix.lower() in (".csv", ".txt") and p.is_file()]
    for src in [Path(c.path) for c in chosen] + extra:
        dst = out / src.resolve().relative_to(data_root.resolve())
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src.resolve())
    return out


def audio_seconds(paths: list[str]) -> float:
    import soundfile as sf

    return float(sum(sf.info(p).duration for p in paths))


def dir_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


# -- children (each in its own process) ------------------------------------------------------------------


def child_cold(args: argparse.Namespace) -> None:
    """One cold build: index the corpora, then prepare_data() on an empty cache."""
    import contextlib

    import torch

    if args.unpinned:  # the build as it was before FeatureCache extracted with one torch thread
        import ser.data.cache

        ser.data.cache.torch_threads = lambda n: contextlib.nullcontext()

    dm = make_datamodule(args.data_root, args.cache_dir, args.features)
    start = time.perf_counter()
    clips = dm.build_index().clips
    index_s = time.perf_counter() - start
    dm.prepare_data()
    total_s = time.perf_counter() - start
    peak_mb = maxrss_mb()  # before the counts are read back below
    fs = dm.feature_cache().load_or_build(clips)  # a cache hit now: only to read the counts
    emit(
        {
            "index_s": index_s,
            "cold_s": total_s,
            "clips": len(fs),
            "excluded": len(fs.excluded),
            "frames": int(fs.features.shape[0]),
            "dim": fs.dim,
            "threads": torch.get_num_threads(),
            "maxrss_mb": peak_mb,
        }
    )


def child_librosa(args: argparse.Namespace) -> None:
    """librosa per clip, as the original work did: load at 16 kHz, then 40 MFCCs with the defaults."""
    import librosa

    paths = Path(args.paths_file).read_text().splitlines()
    y, sr = librosa.load(paths[0], sr=16000)  # untimed warm-up: lazy imports, resampler set-up
    librosa.feature.mfcc(y=y, sr=sr, n_mfcc=40)
    audio = 0.0
    start = time.perf_counter()
    for p in paths:
        y, sr = librosa.load(p, sr=16000)
        librosa.feature.mfcc(y=y, sr=sr, n_mfcc=40)
        audio += y.size / sr
    emit({"seconds": time.perf_counter() - start, "audio_s": audio, "clips": len(paths)})


def child_warm(args: argparse.Namespace) -> None:
    """Warm start, alternating with its reference: a raw torch.load of the cache entry alone."""
    import torch

    from ser.train import build_datamodule

    cfg = compose_train(
        [f"data.root={args.data_root}", f"paths.cache_dir={args.cache_dir}", f"features={args.features}"]
    )
    entry: list[Path] = []

    def setup() -> float:
        start = time.perf_counter()
        dm = build_datamodule(cfg)
        dm.prepare_data()
        dm.setup("fit")
        elapsed = time.perf_counter() - start
        entry[:] = entry or [dm.feature_cache().path_for(dm.build_index().clips)]  # untimed
        return elapsed

    def raw_load() -> float:
        start = time.perf_counter()
        torch.load(entry[0], weights_only=True, map_location="cpu")
        return time.perf_counter() - start

    # The set-up goes first: its first time is the one a training run sees (fresh process).
    times = interleave([("setup", setup), ("raw_load", raw_load)], args.repeats)
    if args.profile_warm:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        setup()
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    emit({**times, "maxrss_mb": maxrss_mb()})


def child_breakdown(args: argparse.Namespace) -> None:
    """The build's two stages alone: decoding (thread pool) and extraction (torch threads N vs 1)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from ser.data.audio import load_audio
    from ser.data.cache import BATCH_SECONDS, FeatureCache

    dm = make_datamodule(args.data_root, args.cache_dir, args.features)
    clips = dm.build_index().clips
    workers = dm.feature_cache().num_workers
    order = sorted(clips, key=lambda c: os.path.getsize(c.path))
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        waves = list(pool.map(lambda c: load_audio(c.path, dm.sample_rate), order))
    decode_s = time.perf_counter() - start
    extractor = dm.extractor.eval()
    limit = int(BATCH_SECONDS * dm.sample_rate)
    batches, batch, n = [], [], 0
    for i, w in enumerate(waves):
        batch.append((i, w))
        n += w.size
        if n >= limit:
            batches.append(batch)
            batch, n = [], 0
    batches += [batch] if batch else []
    default_threads = torch.get_num_threads()

    def extract(threads: int) -> float:
        torch.set_num_threads(threads)
        begin = time.perf_counter()
        for b in batches:
            FeatureCache._extract(extractor, b, {})
        torch.set_num_threads(default_threads)
        return time.perf_counter() - begin

    times = interleave(
        [(f"extract_{default_threads}t", lambda: extract(default_threads)), ("extract_1t", lambda: extract(1))],
        args.repeats,
    )
    emit({"decode_s": decode_s, "workers": workers, "default_threads": default_threads, **times})


# -- parent ----------------------------------------------------------------------------------------------


def run_child(mode: str, args: argparse.Namespace, *extra: str, prefix: list[str] | None = None) -> dict:
    cmd = [*(prefix or []), sys.executable, str(HERE), "--child", mode, "--data-root", args.data_root]
    cmd += ["--cache-dir", args.cache_dir, "--features", args.features, "--repeats", str(args.repeats), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if mode == "warm" and args.profile_warm:
        print(proc.stdout)
    return parse_child(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(ROOT / "data"), help="folder holding crema-d/ and savee/")
    parser.add_argument("--subset", type=int, default=0, help="a fixed random N clips instead of all")
    parser.add_argument("--seed", type=int, default=0, help="seed of --subset and of the librosa subset")
    parser.add_argument("--cache-dir", default="/tmp/ser-bench-cache", help="emptied before each cold build")
    parser.add_argument("--features", default="logmel", choices=["logmel", "mfcc"], help="conf/features/ option")
    parser.add_argument("--repeats", type=int, default=3, help="cold builds (and librosa passes), interleaved")
    parser.add_argument("--librosa-clips", type=int, default=300, help="clips of the librosa reference")
    parser.add_argument("--breakdown", action="store_true", help="also time decoding and extraction alone")
    parser.add_argument(
        "--before",
        action="store_true",
        help="also time cold builds with torch's default threads during extraction (before the cache's fix)",
    )
    parser.add_argument(
        "--profile", metavar="OUT", nargs="?", const="/tmp/ser-bench-cold.pyspy.txt", help="py-spy a cold build"
    )
    parser.add_argument("--profile-warm", action="store_true", help="cProfile of one warm set-up")
    parser.add_argument("--child", choices=["cold", "librosa", "warm", "breakdown"], help=argparse.SUPPRESS)
    parser.add_argument("--paths-file", help=argparse.SUPPRESS)
    parser.add_argument("--unpinned", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        {"cold": child_cold, "librosa": child_librosa, "warm": child_warm, "breakdown": child_breakdown}[args.child](
            args
        )
        return

    print(machine_note())
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    data_root = Path(args.data_root).resolve()
    if args.subset:
        data_root = subset_root(data_root, args.subset, args.seed, cache / "subsets")
    args.data_root = str(data_root)

    from ser.data.corpora import build_index

    index = build_index(["crema_d", "savee"], {"crema_d": data_root / "crema-d", "savee": data_root / "savee"})
    paths = [c.path for c in index.clips]
    total_audio = audio_seconds(paths)
    print(f"clips: {len(paths)} ({args.features}), audio {total_audio / 3600:.3f} h, cache {cache}")

    lib_paths = random.Random(args.seed).sample(paths, min(args.librosa_clips, len(paths)))
    paths_file = cache / "librosa-paths.txt"
    paths_file.write_text("\n".join(lib_paths))

    features_dir = cache / "features"
    cold_runs: list[dict] = []
    lib_runs: list[dict] = []

    def cold() -> float:
        shutil.rmtree(features_dir, ignore_errors=True)  # really cold: no entry, no lock
        cold_runs.append(run_child("cold", args))
        return cold_runs[-1]["cold_s"]

    before_runs: list[dict] = []

    def cold_before() -> float:
        shutil.rmtree(features_dir, ignore_errors=True)
        before_runs.append(run_child("cold", args, "--unpinned"))
        return before_runs[-1]["cold_s"]

    def reference() -> float:
        lib_runs.append(run_child("librosa", args, "--paths-file", str(paths_file)))
        return lib_runs[-1]["seconds"]

    what = f"librosa on {len(lib_paths)} clips, " + ("cold build before the fix, " if args.before else "")
    print(f"{args.repeats} x ({what}cold build of all {len(paths)} clips), interleaved ...")
    steps = [("librosa", reference), *([("before", cold_before)] if args.before else []), ("cold", cold)]
    times = interleave(steps, args.repeats)
    cold_s = median(times["cold"])
    lib_rt = median([r["audio_s"] / r["seconds"] for r in lib_runs])
    cold_rt = total_audio / cold_s
    last = cold_runs[-1]
    cache_mb = dir_mb(features_dir)

    print(f"warm start: {args.repeats} x (DataModule set-up, raw torch.load of the entry) in one process ...")
    warm = run_child("warm", args)
    warm_first, warm_med, raw_med = warm["setup"][0], median(warm["setup"]), median(warm["raw_load"])

    rows = [
        ("clips (kept / excluded)", f"{last['clips']} / {last['excluded']}"),
        ("audio hours", f"{total_audio / 3600:.3f}"),
        ("features", f"{args.features}: {last['frames']} frames x {last['dim']}"),
        ("cold build s (median)", f"{cold_s:.2f}  (runs: {', '.join(f'{t:.2f}' for t in times['cold'])})"),
        ("  of which index s", f"{median([r['index_s'] for r in cold_runs]):.2f}"),
        ("cold x real time", f"{cold_rt:,.0f}  (target >= 1,000: {'MET' if cold_rt >= 1000 else 'NOT MET'})"),
        ("librosa x real time", f"{lib_rt:,.0f}  ({len(lib_paths)} clips, extrapolated per second of audio)"),
        ("speed-up vs librosa", f"{cold_rt / lib_rt:.1f}x"),
        ("warm set-up s (first)", f"{warm_first:.2f}  (target <= 3: {'MET' if warm_first <= 3 else 'NOT MET'})"),
        ("warm set-up s (median)", f"{warm_med:.2f}  ({warm_med / raw_med:.1f}x a raw torch.load: {raw_med:.2f})"),
        ("cache MB on disk", f"{cache_mb:.0f}"),
        ("peak RSS MB cold build", f"{median([r['maxrss_mb'] for r in cold_runs]):.0f}"),
        ("peak RSS MB warm process", f"{warm['maxrss_mb']:.0f}"),
    ]
    if args.before:
        before_s = median(times["before"])
        rows[8:8] = [
            ("before fix: cold build s", f"{before_s:.2f}  (runs: {', '.join(f'{t:.2f}' for t in times['before'])})"),
            ("before fix: x real time", f"{total_audio / before_s:,.0f}  (torch's default threads in extraction)"),
            ("before fix: peak RSS MB", f"{median([r['maxrss_mb'] for r in before_runs]):.0f}"),
            ("speed-up of the fix", f"{before_s / cold_s:.2f}x"),
        ]
    print_table(rows, "bench_features (ratios are within this run; absolute seconds depend on the machine's load)")
    print(load_note())

    if args.breakdown:
        b = run_child("breakdown", args)
        n = b["default_threads"]
        ext_n, ext_1 = median(b[f"extract_{n}t"]), median(b["extract_1t"])
        print_table(
            [
                (
                    f"decode all ({b['workers']} threads) s",
                    f"{b['decode_s']:.2f}  ({total_audio / b['decode_s']:,.0f}x)",
                ),
                (f"extract alone, torch {n} threads s", f"{ext_n:.2f}  ({total_audio / ext_n:,.0f}x RT)"),
                ("extract alone, torch 1 thread s", f"{ext_1:.2f}  ({total_audio / ext_1:,.0f}x RT)"),
                (f"{n} threads / 1 thread", f"{ext_n / ext_1:.2f}"),
            ],
            "breakdown: each stage alone (waves decoded up front; extraction interleaved N / 1 threads)",
        )

    if args.profile:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            print("--profile: py-spy not found (pip install py-spy into the venv); skipped")
            return
        rate = 100
        for unpinned in [True, False] if args.before else [False]:
            shutil.rmtree(features_dir, ignore_errors=True)
            out = args.profile + (".before" if unpinned else "")
            prefix = [spy, "record", "--threads", "--native", "--rate", str(rate), "--format", "raw", "-o", out, "--"]
            run_child("cold", args, *(["--unpinned"] if unpinned else []), prefix=prefix)
            print("\n" + ("BEFORE the fix (torch's default threads in extraction)" if unpinned else "with the fix"))
            summarize_profile(Path(out), rate)


def summarize_profile(path: Path, rate: int, top: int = 12) -> None:
    """py-spy's collapsed stacks within FeatureCache.build -> thread-seconds per thread and per ser/ line.

    A stack whose leaf is in libgomp is an OpenMP worker spinning or sleeping at a barrier.
    """
    import linecache
    from collections import Counter

    lines: Counter[str] = Counter()
    omp: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for row in path.read_text().splitlines():
        stack, _, count = row.rpartition(" ")
        frames = stack.split(";")
        if not any(f.startswith(("FeatureCache.build (", "FeatureCache.build.<locals>")) for f in frames):
            continue
        n = int(count)
        key = [f for f in frames if "(ser/" in f][-1]
        lines[key] += n
        omp[key] += n if "libgomp" in frames[-1] else 0
        threads[frames[0].partition(": ")[2] or frames[0]] += n
    total = sum(lines.values()) or 1
    print(f"\npy-spy --threads --native, {rate} Hz, one cold build ({path}); thread-seconds inside FeatureCache.build:")
    for name, n in threads.most_common():
        print(f"  {n / rate:7.2f} s  {name}")
    waits = sum(omp.values()) / rate
    print(f"by innermost ser/ line ({waits:.2f} of {total / rate:.2f} thread-s with a libgomp leaf: OpenMP waits):")
    for name, n in lines.most_common(top):
        where = name.rpartition("(")[2].rstrip(")")  # ser/features/spectral.py:172
        code = linecache.getline(str(ROOT / where.partition(":")[0]), int(where.partition(":")[2] or 0)).strip()
        share, wait = 100 * n / total, 100 * omp[name] / n
        print(f"  {n / rate:6.2f} s {share:5.1f}% (OpenMP wait {wait:3.0f}%) {where}: {code[:60]}")


if __name__ == "__main__":
    main()
