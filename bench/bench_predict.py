"""Prediction speed: latency of one 3-second clip and the real-time factor of sliding-window timelines.

    .venv/bin/python bench/bench_predict.py --ckpt outputs/train/<time>/checkpoints/best.ckpt
    .venv/bin/python bench/bench_predict.py                       # default-size model, random weights

Targets (issue "Predict emotions in new recordings"): one 3 s clip, features + network with the model
loaded, <= 15 ms median; sliding-window mode (3 s windows, 1 s hop) real-time factor <= 0.01.

Speed depends on the model's size, not its weights, so without ``--ckpt`` the default configs
(conf/model/lstm.yaml, conf/features/logmel.yaml) are built with random weights. Each figure comes
with a same-run reference, the network's forward pass alone on precomputed features, so the ratio
(what features, batching and bookkeeping add) can be compared across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ser.inference.predictor import Predictor  # noqa: E402


def default_predictor(batch_size: int) -> Predictor:
    """The default model and features with random weights (timing does not depend on weights)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    features = OmegaConf.load(ROOT / "conf/features/logmel.yaml")
    features.sample_rate = 16000
    extractor = instantiate(features)
    net = instantiate(OmegaConf.load(ROOT / "conf/model/lstm.yaml"), input_dim=extractor.out_dim)
    return Predictor(
        net, extractor, lambda z: z.softmax(-1), [f"c{i}" for i in range(12)], 16000, batch_size=batch_size
    )


def speechlike(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Harmonic tone with a wandering pitch and syllable-rate loudness (no silent windows)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 150 * (1 + 0.2 * np.sin(2 * np.pi * 0.3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wave = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2 * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def timed(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def bench_clip(pred: Predictor, seconds: float, repeats: int) -> dict[str, float]:
    """Median latency of one clip: end to end (wave in, probabilities out), features, network."""
    wave = speechlike(seconds, pred.sample_rate, seed=1)
    wave_t = torch.from_numpy(wave)[None]
    with torch.inference_mode():
        feats, frames = pred.extractor(wave_t, None)

    def features() -> None:
        with torch.inference_mode():
            pred.extractor(wave_t, None)

    def network() -> None:
        with torch.inference_mode():
            pred.net(feats, frames)

    full = timed(lambda: pred.predict_waves([wave]), repeats, warmup=10)
    return {
        "clip_s": seconds,
        "full_median_ms": 1e3 * statistics.median(full),
        "full_p90_ms": 1e3 * float(np.percentile(full, 90)),
        "features_median_ms": 1e3 * statistics.median(timed(features, repeats, warmup=5)),
        "network_median_ms": 1e3 * statistics.median(timed(network, repeats, warmup=5)),
    }


def recording(pred: Predictor, minutes: float, audio: str | None) -> np.ndarray:
    """``minutes`` of audio: the clips of ``audio`` (file or folder) end to end, else synthetic."""
    sr = pred.sample_rate
    if not audio:
        return speechlike(minutes * 60, sr, seed=2)
    from ser.data.audio import load_audio
    from ser.inference.predictor import expand_inputs

    need, parts, have = round(minutes * 60 * sr), [], 0
    for path in expand_inputs([audio]):
        if isinstance(path, str):
            parts.append(load_audio(path, sr))
            have += parts[-1].size
        if have >= need:
            break
    if not parts:
        raise SystemExit(f"--audio {audio}: no readable audio")
    wave = np.concatenate(parts)
    return np.tile(wave, -(-need // wave.size))[:need]


def bench_folder(pred: Predictor, folder: str) -> dict[str, float]:
    """Files per second of ``predict_files`` over a folder: decoding, resampling, features, network."""
    start = time.perf_counter()
    results = pred.predict_files([folder])
    elapsed = time.perf_counter() - start
    return {"files": len(results), "seconds": elapsed, "files_per_s": len(results) / elapsed}


def bench_timeline(pred: Predictor, wave: np.ndarray, window: float, hop: float, repeats: int) -> dict[str, float]:
    """Real-time factor of a sliding-window timeline, and of the network alone on the same windows."""
    sr = pred.sample_rate
    rows = pred.timeline(wave, window, hop)  # warm-up, and the window count
    full = timed(lambda: pred.timeline(wave, window, hop), repeats, warmup=0)
    win, step = round(window * sr), round(hop * sr)
    starts = [round(r.start * sr) for r in rows if round((r.end - r.start) * sr) == win]
    batches = []
    with torch.inference_mode():
        for b in range(0, len(starts), pred.batch_size):
            chunk = torch.stack([torch.from_numpy(wave[s : s + win]) for s in starts[b : b + pred.batch_size]])
            batches.append(pred.extractor(chunk, None))

    def network() -> None:
        with torch.inference_mode():
            for feats, frames in batches:
                pred.net(feats, frames)

    net = timed(network, repeats, warmup=1)
    audio_s = wave.size / sr
    return {
        "audio_s": audio_s,
        "window_s": window,
        "hop_s": hop,
        "windows": len(rows),
        "full_median_s": statistics.median(full),
        "rtf": statistics.median(full) / audio_s,
        "network_median_s": statistics.median(net),
        "network_rtf": statistics.median(net) / audio_s,
        "hop_samples": step,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", help="checkpoint written by ser.train (default: default-size random model)")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--batch-size", type=int, default=64, help="windows per forward pass (default: 64)")
    ap.add_argument("--clip-seconds", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=100, help="timed runs of the clip benchmark")
    ap.add_argument("--minutes", type=float, default=10.0, help="audio for the sliding-window benchmark")
    ap.add_argument("--window", type=float, default=3.0)
    ap.add_argument("--hop", type=float, default=1.0)
    ap.add_argument("--timeline-repeats", type=int, default=3)
    ap.add_argument("--audio", help="file or folder whose clips, end to end, replace the synthetic recording")
    ap.add_argument("--folder", help="also time predict_files over this folder (files per second)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    pred = (
        Predictor.from_checkpoint(args.ckpt, batch_size=args.batch_size)
        if args.ckpt
        else default_predictor(args.batch_size)
    )
    params = sum(p.numel() for p in pred.net.parameters())
    print(f"model: {args.ckpt or 'default config, random weights'} ({params:,} parameters)")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}"
    )

    clip = bench_clip(pred, args.clip_seconds, args.repeats)
    print(
        f"\none {clip['clip_s']:.0f} s clip, median of {args.repeats} (target <= 15 ms):\n"
        f"  features + network  {clip['full_median_ms']:7.2f} ms  (p90 {clip['full_p90_ms']:.2f} ms)\n"
        f"  features alone      {clip['features_median_ms']:7.2f} ms\n"
        f"  network alone       {clip['network_median_ms']:7.2f} ms  (reference)\n"
        f"  ratio full/network  {clip['full_median_ms'] / clip['network_median_ms']:7.2f}"
    )
    long = recording(pred, args.minutes, args.audio)
    tl = bench_timeline(pred, long, args.window, args.hop, args.timeline_repeats)
    print(
        f"\nsliding window over {tl['audio_s'] / 60:.0f} min of {args.audio or 'synthetic'} audio "
        f"({tl['windows']} windows of {tl['window_s']:g} s every {tl['hop_s']:g} s, batch {args.batch_size}), "
        f"median of {args.timeline_repeats} (target RTF <= 0.01):\n"
        f"  timeline            {tl['full_median_s']:7.2f} s   RTF {tl['rtf']:.4f}  "
        f"(1 h of audio in {tl['rtf'] * 3600:.1f} s)\n"
        f"  network alone       {tl['network_median_s']:7.2f} s   RTF {tl['network_rtf']:.4f}  (reference)\n"
        f"  ratio full/network  {tl['full_median_s'] / tl['network_median_s']:7.2f}"
    )
    results: dict[str, object] = {"clip": clip, "timeline": tl, "threads": torch.get_num_threads()}
    if args.folder:
        results["folder"] = fo = bench_folder(pred, args.folder)
        print(f"\nfolder {args.folder}: {fo['files']} files in {fo['seconds']:.2f} s ({fo['files_per_s']:.0f} files/s)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
