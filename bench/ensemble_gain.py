"""What an ensemble gains over its members, per cross-validation fold, from ``ser.eval`` outputs.

Each ``ser.eval`` folder holds ``predictions.csv`` (one row per scored clip); the fold of each speaker comes
from the ``split_manifest.json`` of a k-fold sweep's jobs. Only ensembles whose members all held out the same
speakers are honest here (``ser.eval``'s held_out protocol on checkpoints of the same folds: e.g. the
categorical and binary models of each fold), so every clip is scored by models that never heard its speaker.

    python bench/ensemble_gain.py outputs/multirun/<kfold sweep> cat=outputs/eval/crnn_cat \
        bin=outputs/eval/crnn_bin both=outputs/eval/crnn_cat_bin_ensemble
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ser.labels import CLASSES


def fold_of_speakers(sweep: Path) -> dict[str, int]:
    """speaker -> the fold that tested it, from the jobs' split manifests."""
    folds: dict[str, int] = {}
    for manifest in sorted(sweep.glob("[0-9]*/split_manifest.json")):
        split = json.loads(manifest.read_text())
        folds.update({s: int(split["fold"]) for s in split["test"]["speakers"]})
    if not folds:
        raise SystemExit(f"{sweep}: no job with a split_manifest.json: not a k-fold sweep folder")
    return folds


def scores(rows: Sequence[dict[str, str]]) -> dict[str, float]:
    """UAR over the 12 classes and 6-emotion accuracy of prediction rows."""
    truth = [f"{r['gender']}_{r['emotion']}" for r in rows]
    pred = [r["predicted"] for r in rows]
    recalls = []
    for c in CLASSES:
        idx = [i for i, t in enumerate(truth) if t == c]
        if idx:
            recalls.append(np.mean([pred[i] == c for i in idx]))
    emotion = np.mean([p.split("_", 1)[1] == r["emotion"] for p, r in zip(pred, rows, strict=True)])
    return {"uar": float(np.mean(recalls)), "emotion_accuracy": float(emotion)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path, help="the k-fold sweep folder (for each speaker's fold)")
    parser.add_argument("evals", nargs="+", help="NAME=<ser.eval output folder>")
    args = parser.parse_args(argv)
    folds = fold_of_speakers(args.sweep)
    table: dict[str, dict[int | str, dict[str, float]]] = {}
    for item in args.evals:
        name, _, folder = item.partition("=")
        with (Path(folder) / "predictions.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        per: dict[int | str, dict[str, float]] = {}
        for fold in sorted(set(folds.values())):
            per[fold] = scores([r for r in rows if folds.get(r["speaker"]) == fold])
        per["pooled"] = scores(rows)
        table[name] = per
    keys = list(next(iter(table.values())))
    for metric in ("uar", "emotion_accuracy"):
        print(f"\n{metric}: " + " | ".join(f"{k}" for k in keys) + " | mean over folds")
        for name, per in table.items():
            fold_values = [per[k][metric] for k in keys if k != "pooled"]
            cells = " | ".join(f"{per[k][metric]:.4f}" for k in keys)
            print(f"  {name}: {cells} | {np.mean(fold_values):.4f} ± {np.std(fold_values, ddof=1):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
