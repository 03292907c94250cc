"""The seed's data analysis: loudness and pitch per class x gender, example clips, durations; figures + numbers.

The original work looked at the classes by amplitude and frequency (loud when angry, quiet when sad, male and
female voices apart). Per clip: the mean of openSMILE's eGeMAPS ``Loudness_sma3`` over all frames, the median
of ``F0semitoneFrom27.5Hz_sma3nz`` over voiced frames (F0 > 0; also in Hz), and the duration. openSMILE runs
20-35x faster than real time on one core, so the per-clip values are cached by file identity (path, size,
mtime) under the cache directory and a rerun, or another corpus set sharing files, recomputes nothing.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from filelock import FileLock
from tqdm.auto import tqdm

from ser import labels
from ser.data.audio import AudioError, load_audio
from ser.data.cache import file_identity
from ser.data.corpus import Clip
from ser.plots import plt  # the headless Agg backend
from ser.results import write_text

ANALYSIS_VERSION = 1
LOUDNESS = "Loudness_sma3"
F0 = "F0semitoneFrom27.5Hz_sma3nz"
FLUSH_EVERY = 200  # clips between writes of the per-clip cache: an interrupted pass keeps most of its work
FIGURES = ("loudness", "pitch", "examples", "durations")


def semitones_to_hz(st: float) -> float:
    """eGeMAPS F0 is in semitones above 27.5 Hz."""
    return 27.5 * 2 ** (st / 12)


def clip_descriptors(wave: np.ndarray, sample_rate: int, extractor=None) -> dict[str, float]:
    """Mean loudness, median voiced F0 (semitones and Hz; NaN without a voiced frame) and seconds of one clip."""
    if extractor is None:
        from ser.features.egemaps import EGeMAPS  # openSMILE: imported only when the analysis runs

        extractor = EGeMAPS(sample_rate)
    names = extractor.names
    values = extractor._clip(wave)  # [T, 25], NaN -> 0
    loud = values[:, names.index(LOUDNESS)]
    f0 = values[:, names.index(F0)]
    voiced = f0[f0 > 0]
    st = float(np.median(voiced)) if voiced.size else math.nan
    return {
        "loudness": float(loud.mean()) if loud.size else math.nan,
        "f0_semitones": st,
        "f0_hz": semitones_to_hz(st) if voiced.size else math.nan,
        "seconds": wave.size / sample_rate,
    }


class DescriptorCache:
    """Per-file descriptors in one JSON file under the cache directory, keyed by (path, size, mtime)."""

    def __init__(self, cache_dir: str | Path, sample_rate: int) -> None:
        self.path = Path(cache_dir) / f"analysis-egemaps-v{ANALYSIS_VERSION}-{sample_rate}.json"
        self.values: dict[str, dict[str, float]] = self._read()
        self.dirty = 0

    @staticmethod
    def key(clip: Clip) -> str:
        return "|".join(str(x) for x in file_identity(clip.path))

    def _read(self) -> dict[str, dict[str, float]]:
        try:
            return dict(json.loads(self.path.read_text()))
        except (OSError, ValueError):  # missing or damaged: recomputed
            return {}

    def flush(self) -> None:
        """Merge with what other jobs wrote meanwhile and replace the file atomically."""
        if not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"):
            merged = self._read() | self.values
            write_text(self.path, json.dumps(merged))
        self.values, self.dirty = merged, 0


def describe_clips(
    clips: Sequence[Clip], cache_dir: str | Path, sample_rate: int = 16000, progress: bool = True
) -> tuple[list[dict[str, float]], list[str]]:
    """Descriptors of each clip (NaN for an unreadable one) and the paths that could not be read."""
    cache = DescriptorCache(cache_dir, sample_rate)
    out: list[dict[str, float]] = []
    failed: list[str] = []
    extractor = None
    todo = sum(DescriptorCache.key(c) not in cache.values for c in clips)
    bar = tqdm(total=todo, desc="analysis (openSMILE)", unit="clip", disable=not progress or not todo)
    try:
        for clip in clips:
            key = DescriptorCache.key(clip)
            if key not in cache.values:
                if extractor is None:
                    from ser.features.egemaps import EGeMAPS

                    extractor = EGeMAPS(sample_rate)
                try:
                    cache.values[key] = clip_descriptors(load_audio(clip.path, sample_rate), sample_rate, extractor)
                except (AudioError, RuntimeError) as exc:  # too short for openSMILE, undecodable: not cached
                    failed.append(f"{clip.path}: {exc}")
                    out.append(dict.fromkeys(("loudness", "f0_semitones", "f0_hz", "seconds"), math.nan))
                    bar.update(1)
                    continue
                cache.dirty += 1
                bar.update(1)
                if cache.dirty >= FLUSH_EVERY:
                    cache.flush()
            out.append(cache.values[key])
    finally:
        bar.close()
        cache.flush()
    return out, failed


def _stats(values: Sequence[float]) -> dict[str, float | int | None]:
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if not x.size:
        return {"n": 0, "mean": None, "sd": None, "median": None}
    return {
        "n": int(x.size),
        "mean": round(float(x.mean()), 4),
        "sd": round(float(x.std(ddof=1)), 4) if x.size > 1 else 0.0,
        "median": round(float(np.median(x)), 4),
    }


def summarize(clips: Sequence[Clip], desc: Sequence[Mapping[str, float]]) -> dict:
    """The numbers behind the figures: per class (gender_emotion) and per gender / emotion / corpus."""
    groups: dict[str, dict[str, list[int]]] = {"class": defaultdict(list), "gender": defaultdict(list)}
    groups["emotion"], groups["corpus"] = defaultdict(list), defaultdict(list)
    for i, c in enumerate(clips):
        groups["class"][f"{c.gender}_{c.emotion}"].append(i)
        groups["gender"][c.gender].append(i)
        groups["emotion"][c.emotion].append(i)
        groups["corpus"][c.corpus].append(i)
    order = {"class": labels.CLASSES, "gender": labels.GENDERS, "emotion": labels.EMOTIONS}
    out: dict = {
        "descriptors": {
            "loudness": f"mean of eGeMAPS {LOUDNESS} over the clip (openSMILE's loudness, sone-like units)",
            "f0_semitones": f"median of eGeMAPS {F0} over voiced frames (semitones above 27.5 Hz)",
            "f0_hz": "the same median in Hz",
            "seconds": "clip duration",
        },
        "clips": len(clips),
        "unvoiced_clips": sum(not math.isfinite(d["f0_semitones"]) for d in desc),
    }
    for by in ("class", "gender", "emotion"):
        names = [k for k in order[by] if k in groups[by]] + sorted(set(groups[by]) - set(order[by]))
        out[f"by_{by}"] = {
            k: {m: _stats([desc[i][m] for i in groups[by][k]]) for m in ("loudness", "f0_semitones", "f0_hz")}
            for k in names
        }
    out["durations_by_corpus"] = {k: _stats([desc[i]["seconds"] for i in ix]) for k, ix in groups["corpus"].items()}
    return out


# ------------------------------------------------------------------ figures


def _box_figure(clips: Sequence[Clip], desc: Sequence[Mapping[str, float]], key: str, ylabel: str, title: str):

    fig, ax = plt.subplots(figsize=(10, 4.8))
    emotions = [e for e in labels.EMOTIONS if any(c.emotion == e for c in clips)]
    colors = {"male": "tab:blue", "female": "tab:red"}
    for g_i, gender in enumerate(labels.GENDERS):
        data, pos = [], []
        for e_i, emo in enumerate(emotions):
            v = [d[key] for c, d in zip(clips, desc, strict=True) if c.gender == gender and c.emotion == emo]
            v = [x for x in v if math.isfinite(x)]
            if v:
                data.append(v)
                pos.append(e_i * 3 + g_i)
        if data:
            parts = ax.boxplot(data, positions=pos, widths=0.8, patch_artist=True, showfliers=False)
            for box in parts["boxes"]:
                box.set(facecolor=colors[gender], alpha=0.45)
            ax.plot([], [], color=colors[gender], lw=6, alpha=0.45, label=gender)
    ax.set_xticks([e_i * 3 + 0.5 for e_i in range(len(emotions))], emotions)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _examples_figure(clips: Sequence[Clip], desc: Sequence[Mapping[str, float]], sample_rate: int):
    """One clip per class (the one whose duration is nearest the class median): waveform and log-mel."""
    import torch

    from ser.features import LogMel

    chosen: list[tuple[str, Clip]] = []
    for name in labels.CLASSES:
        members = [(c, d) for c, d in zip(clips, desc, strict=True) if f"{c.gender}_{c.emotion}" == name]
        members = [(c, d) for c, d in members if math.isfinite(d["seconds"])]
        if members:
            mid = float(np.median([d["seconds"] for _, d in members]))
            chosen.append((name, min(members, key=lambda cd: (abs(cd[1]["seconds"] - mid), cd[0].clip_id))[0]))
    mel = LogMel(sample_rate)
    waves = [load_audio(clip.path, sample_rate) for _, clip in chosen]
    with torch.inference_mode():
        mels = [mel(torch.from_numpy(w)[None])[0][0].T.numpy() for w in waves]
    # One amplitude and one dB scale for all rows: loud and quiet classes must look it.
    peak = max((float(np.abs(w).max()) for w in waves), default=1.0)
    top = max((float(m.max()) for m in mels), default=0.0)
    fig, axes = plt.subplots(len(chosen), 2, figsize=(12, 1.5 * len(chosen) + 0.6), squeeze=False)
    for row, ((name, clip), wave, spec) in enumerate(zip(chosen, waves, mels, strict=True)):
        seconds = max(wave.size / sample_rate, 1 / sample_rate)
        lo, hi = _envelope(wave)
        color = "tab:blue" if clip.gender == "male" else "tab:red"
        axes[row, 0].fill_between(np.linspace(0, seconds, lo.size), lo, hi, color=color, lw=0)
        axes[row, 0].set(xlim=(0, seconds), ylim=(-peak, peak))
        axes[row, 0].set_ylabel(name, fontsize=8)
        axes[row, 0].set_title(f"{clip.corpus} {Path(clip.path).name}", fontsize=7, loc="left")
        axes[row, 1].imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                            extent=(0, seconds, 0, spec.shape[0]))  # fmt: skip
        axes[row, 1].set_ylabel("mel band", fontsize=7)
    axes[-1, 0].set_xlabel("seconds")
    axes[-1, 1].set_xlabel("seconds")
    fig.suptitle("One clip per class (nearest the class's median duration): waveform and log-mel, common scales")
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    return fig


def _envelope(wave: np.ndarray, points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of ``points`` blocks: the waveform's outline, without plotting every sample."""
    block = max(1, wave.size // points)
    usable = wave[: wave.size // block * block].reshape(-1, block) if wave.size >= block else wave.reshape(-1, 1)
    return usable.min(axis=1), usable.max(axis=1)


def _durations_figure(clips: Sequence[Clip], desc: Sequence[Mapping[str, float]]):

    fig, ax = plt.subplots(figsize=(8, 4))
    every = [d["seconds"] for d in desc if math.isfinite(d["seconds"])] or [0.0, 1.0]
    bins = np.linspace(min(every), max(every), 61)  # the same bins for every corpus
    for corpus in sorted({c.corpus for c in clips}):
        sec = [d["seconds"] for c, d in zip(clips, desc, strict=True) if c.corpus == corpus]
        sec = [s for s in sec if math.isfinite(s)]
        ax.hist(sec, bins=bins, alpha=0.5, label=f"{corpus} ({len(sec)} clips, median {np.median(sec):.2f} s)")
    ax.set_xlabel("clip duration (s)")
    ax.set_ylabel("clips")
    ax.set_title("Clip durations per corpus")
    ax.legend()
    fig.tight_layout()
    return fig


def analysis_figures(clips: Sequence[Clip], desc: Sequence[Mapping[str, float]], sample_rate: int) -> dict:
    """name -> matplotlib figure, for ``FIGURES``."""
    return {
        "loudness": _box_figure(
            clips,
            desc,
            "loudness",
            "mean loudness (eGeMAPS Loudness_sma3)",
            "Loudness per emotion and gender (one value per clip)",
        ),
        "pitch": _box_figure(
            clips,
            desc,
            "f0_hz",
            "median F0 of voiced frames (Hz)",
            "Pitch (F0) per emotion and gender (one value per clip)",
        ),
        "examples": _examples_figure(clips, desc, sample_rate),
        "durations": _durations_figure(clips, desc),
    }


def run_analysis(
    clips: Sequence[Clip],
    out_dir: str | Path,
    cache_dir: str | Path,
    sample_rate: int = 16000,
    progress: bool = True,
    tensorboard: Callable[[], object] | None = None,
) -> dict:
    """Describe every clip, write ``analysis_<figure>.png`` into ``out_dir`` (and to TensorBoard), return the numbers.

    ``tensorboard``: makes a writer with ``add_figure`` (default: a SummaryWriter in ``out_dir/tensorboard``
    when tensorboard is installed; pass ``lambda: None`` for none).
    """

    desc, failed = describe_clips(clips, cache_dir, sample_rate, progress)
    kept = [(c, d) for c, d in zip(clips, desc, strict=True) if math.isfinite(d["seconds"])]
    clips_ok, desc_ok = [c for c, _ in kept], [d for _, d in kept]
    summary = summarize(clips_ok, desc_ok)
    summary["failed"] = failed
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    writer = (tensorboard or _summary_writer(out / "tensorboard"))()
    summary["figures"] = []
    for name, fig in analysis_figures(clips_ok, desc_ok, sample_rate).items():
        path = out / f"analysis_{name}.png"
        fig.savefig(path, dpi=80 if name == "examples" else 110)  # the spectrograms: ~0.8 MB instead of 1.4
        summary["figures"].append(path.name)
        if writer is not None:
            writer.add_figure(f"data/{name}", fig, close=False)
        plt.close(fig)
    if writer is not None:
        writer.close()
    return summary


def _summary_writer(log_dir: Path) -> Callable[[], object]:
    def make() -> object:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional here: the PNGs are written anyway
            return None
        return SummaryWriter(log_dir=os.fspath(log_dir))

    return make


def format_analysis(summary: Mapping) -> str:
    """Lines for the console: loudness and F0 per class, and the headline contrasts."""
    lines = [f"Data analysis ({summary['clips']} clips; openSMILE eGeMAPS):"]
    lines.append(f"{'class':<16}{'n':>6}{'loudness':>16}{'F0 Hz (median)':>18}")
    for name, s in summary["by_class"].items():
        loud, f0 = s["loudness"], s["f0_hz"]
        lines.append(
            f"{name:<16}{loud['n']:>6}"
            + (f"{loud['mean']:>10.3f} ± {loud['sd']:<5.3f}" if loud["n"] else f"{'-':>16}")
            + (f"{f0['median']:>18.1f}" if f0["n"] else f"{'-':>18}")
        )
    if summary["failed"]:
        lines.append(f"{len(summary['failed'])} clips could not be analysed (see data_report.json)")
    return "\n".join(lines)
