"""Run the benchmarks with quick defaults (``make bench``); each prints its own table and target checks.

    .venv/bin/python bench/run_all.py                   # quick: 3-7 minutes on 2 cores
    .venv/bin/python bench/run_all.py --full            # each script's own (longer) defaults
    .venv/bin/python bench/run_all.py --only training   # one of: features, lstm, training, predict, models, speedups

Every figure is a ratio against a reference measured in the same run (see bench/README.md); the machine
may be loaded, so the absolute seconds are for orientation only. Without the real corpora under
``--data-root`` the feature benchmark is skipped and the training and model benchmarks use the demo corpus.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

QUICK = {
    "features": ["--repeats", "2"],
    "lstm": ["--batches", "2", "--repeats", "3"],
    "training": ["--batches", "20", "--repeats", "3"],
    "predict": ["--minutes", "5"],
    "models": ["--batches", "20", "--repeats", "3"],
    "speedups": ["--batches", "20", "--repeats", "3"],
}
SCRIPTS = {
    "features": "bench_features.py",
    "lstm": "bench_lstm_padding.py",
    "training": "bench_training.py",
    "predict": "bench_predict.py",
    "models": "bench_models.py",
    "speedups": "bench_speedups.py",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(ROOT / "data"), help="folder holding crema-d/ and savee/")
    parser.add_argument("--full", action="store_true", help="the scripts' own defaults instead of quick ones")
    parser.add_argument("--only", choices=sorted(SCRIPTS), action="append", help="run only these (repeatable)")
    args = parser.parse_args()

    data = Path(args.data_root)
    real = (data / "crema-d").is_dir() and (data / "savee").is_dir()
    failed = []
    for name in args.only or list(SCRIPTS):
        cmd = [sys.executable, str(HERE / SCRIPTS[name])] + ([] if args.full else QUICK[name])
        if name == "features":
            if not real:
                print(f"\n=== features: skipped, no crema-d/ and savee/ under {data}")
                continue
            cmd += ["--data-root", str(data)]
        if name in ("training", "models", "speedups"):
            cmd += ["--data-root", str(data)] if real else ["--demo"]
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call(cmd, cwd=ROOT)
        print(f"=== {name}: exit {rc}, {time.perf_counter() - start:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
