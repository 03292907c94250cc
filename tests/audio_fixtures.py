"""Small synthetic audio trees with the real file-naming schemes of each corpus, for the data tests.

A plain module (not a conftest): import what you need, e.g.
``from audio_fixtures import make_crema_tree``. Nothing here touches the real datasets.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from ser import labels
from ser.data.corpus import Clip

CREMA_CODES: dict[str, str] = {
    "SAD": "sad",
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
}
SAVEE_CODES: dict[str, str | None] = {
    "a": "angry",
    "d": "disgust",
    "f": "fear",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": None,  # surprise: no class in the 12-label scheme
}
SAVEE_SPEAKERS: tuple[str, ...] = ("DC", "JE", "JK", "KL")
CREMA_MALE: tuple[str, ...] = ("1001", "1005", "1011")  # male in the official VideoDemographics.csv
CREMA_FEMALE: tuple[str, ...] = ("1002", "1003", "1004")


def stable_seed(text: str) -> int:
    """A seed that depends on ``text`` only (not on Python's per-process str hash salt)."""
    return zlib.crc32(text.encode())


def tone(
    seconds: float,
    sr: int = 16000,
    channels: int = 1,
    freq: float = 220.0,
    seed: int = 0,
    amplitude: float = 0.3,
) -> np.ndarray:
    """A sine at ``freq`` plus a little seeded noise: float32 [n] (mono) or [n, channels]."""
    n = round(seconds * sr)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    x = amplitude * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) + 0.01 * rng.standard_normal(n)
    if channels == 1:
        return x.astype(np.float32)
    # Channels differ (different gains), so a mixdown is not the same as taking one channel.
    gains = np.linspace(1.0, 0.25, channels)
    return (x[:, None] * gains[None, :]).astype(np.float32)


def write_wav(
    path: str | Path,
    seconds: float = 0.5,
    sr: int = 16000,
    channels: int = 1,
    freq: float = 220.0,
    seed: int = 0,
    amplitude: float = 0.3,
    silent: bool = False,
    subtype: str | None = None,
) -> Path:
    """Write a tone (or all zeros with ``silent``); the format follows the suffix (.wav, .flac, .ogg, ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = tone(seconds, sr, channels, freq, seed, amplitude)
    if silent:
        data = np.zeros_like(data)
    sf.write(str(path), data, sr, subtype=subtype)
    return path


def _duration(key: str, seconds: float | tuple[float, float]) -> float:
    if isinstance(seconds, tuple):
        lo, hi = seconds
        return float(np.random.default_rng(stable_seed(key)).uniform(lo, hi))
    return float(seconds)


def write_demographics(path: str | Path, genders: Mapping[str, str]) -> Path:
    """A VideoDemographics.csv in the official format (quoted header and strings, bare numbers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ['"ActorID","Age","Sex","Race","Ethnicity"']
    lines += [f'{a},30,"{g.capitalize()}","Caucasian","Not Hispanic"' for a, g in sorted(genders.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_crema_tree(
    root: str | Path,
    actors: Iterable[str | int] = CREMA_MALE + CREMA_FEMALE,
    emotions: Sequence[str] = tuple(CREMA_CODES),
    sentences: Sequence[str] = ("DFA", "IEO"),
    level: str = "XX",
    sr: int = 16000,
    ext: str = ".wav",
    seconds: float | tuple[float, float] = (0.3, 1.2),
    subdir: str = "AudioWAV",
    demographics: Mapping[str, str] | None = None,
    demographics_at: str = "VideoDemographics.csv",
) -> list[Path]:
    """``<root>/<subdir>/{ACTOR}_{SENTENCE}_{EMO}_{LEVEL}{ext}`` for every combination; returns the paths.

    Each file's content and length depend only on its stem, so the same clip written as WAV and FLAC
    holds the same samples. ``demographics`` (actor -> "male"/"female") writes a VideoDemographics.csv
    at ``<root>/<demographics_at>``.
    """
    root = Path(root)
    paths = []
    for actor in actors:
        for sentence in sentences:
            for code in emotions:
                stem = f"{actor}_{sentence}_{code}_{level}"
                seed = stable_seed(stem)
                paths.append(
                    write_wav(
                        root / subdir / f"{stem}{ext}",
                        _duration(stem, seconds),
                        sr,
                        freq=150.0 + seed % 200,
                        seed=seed,
                    )
                )
    if demographics is not None:
        write_demographics(root / demographics_at, demographics)
    return paths


def make_savee_tree(
    root: str | Path,
    layout: str = "original",
    speakers: Sequence[str] = SAVEE_SPEAKERS,
    codes: Sequence[str] = tuple(SAVEE_CODES),
    takes: int = 2,
    sr: int = 44100,
    ext: str = ".wav",
    seconds: float | tuple[float, float] = (0.3, 1.2),
) -> list[Path]:
    """SAVEE in its original (``AudioData/DC/a01.wav``) or Kaggle (``ALL/DC_a01.wav``) layout.

    The same (speaker, code, take) holds the same samples in both layouts.
    """
    if layout not in ("original", "kaggle"):
        raise ValueError(f"layout must be original or kaggle, got {layout!r}")
    root = Path(root)
    paths = []
    for speaker in speakers:
        for code in codes:
            for take in range(1, takes + 1):
                key = f"{speaker}_{code}{take:02d}"
                if layout == "original":
                    path = root / "AudioData" / speaker / f"{code}{take:02d}{ext}"
                else:
                    path = root / "ALL" / f"{key}{ext}"
                seed = stable_seed(key)
                paths.append(write_wav(path, _duration(key, seconds), sr, freq=120.0 + seed % 150, seed=seed))
    return paths


def make_ravdess_tree(
    root: str | Path,
    actors: Iterable[int] = (1, 2),
    emotions: Sequence[str] = ("01", "02", "03", "04", "05", "06", "07", "08"),
    channel: str = "01",
    modality: str = "03",
    statements: Sequence[str] = ("01",),
    nested: str = "",
    sr: int = 16000,
    seconds: float = 0.2,
) -> list[Path]:
    """RAVDESS ``<root>/<nested>/Actor_NN/MM-CC-EE-II-SS-RR-NN.wav`` (intensity 01, repetition 01)."""
    root = Path(root) / nested if nested else Path(root)
    paths = []
    for actor in actors:
        for emotion in emotions:
            for statement in statements:
                stem = f"{modality}-{channel}-{emotion}-01-{statement}-01-{actor:02d}"
                seed = stable_seed(stem)
                path = root / f"Actor_{actor:02d}" / f"{stem}.wav"
                paths.append(write_wav(path, seconds, sr, freq=150.0 + seed % 200, seed=seed))
    return paths


TESS_EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "ps")


def make_tess_tree(
    root: str | Path,
    speakers: Sequence[str] = ("OAF", "YAF"),
    words: Sequence[str] = ("back",),
    emotions: Sequence[str] = TESS_EMOTIONS,
    layout: str = "folders",
    folder_names: Mapping[str, str] | None = None,
    sr: int = 24414,
    seconds: float = 0.2,
) -> list[Path]:
    """TESS ``<root>/<SPK>_<emotion>/<SPK>_<word>_<emotion>.wav`` (``layout="folders"``) or flat files.

    ``folder_names`` maps an emotion to the folder suffix a copy uses (e.g. {"fear": "Fear"}); the file
    names keep the emotion as given (e.g. "ps" or "pleasant_surprised").
    """
    if layout not in ("folders", "flat"):
        raise ValueError(f"layout must be folders or flat, got {layout!r}")
    root = Path(root)
    paths = []
    for speaker in speakers:
        for emotion in emotions:
            folder = root / f"{speaker}_{(folder_names or {}).get(emotion, emotion)}" if layout == "folders" else root
            for word in words:
                stem = f"{speaker}_{word}_{emotion}"
                seed = stable_seed(stem.upper())
                paths.append(write_wav(folder / f"{stem}.wav", seconds, sr, freq=200.0 + seed % 100, seed=seed))
    return paths


def make_emodb_tree(
    root: str | Path,
    speakers: Sequence[str] = ("03", "08"),
    letters: Sequence[str] = ("W", "L", "E", "A", "F", "T", "N"),
    texts: Sequence[str] = ("a01",),
    version: str = "a",
    sr: int = 16000,
    seconds: float = 0.2,
) -> list[Path]:
    """EmoDB ``<root>/wav/<speaker><text><letter><version>.wav``."""
    paths = []
    for speaker in speakers:
        for text in texts:
            for letter in letters:
                stem = f"{speaker}{text}{letter}{version}"
                seed = stable_seed(stem)
                paths.append(
                    write_wav(Path(root) / "wav" / f"{stem}.wav", seconds, sr, freq=130.0 + seed % 150, seed=seed)
                )
    return paths


def write_manifest(
    path: str | Path, rows: Sequence[Sequence[str]], header: str = "path,speaker,emotion,gender"
) -> Path:
    """A manifest CSV with ``header`` and ``rows`` (no audio: write the files with ``write_wav``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *(",".join(r) for r in rows)]) + "\n", encoding="utf-8")
    return path


def fake_clips(crema_male: int = 8, crema_female: int = 8, savee: int = 4, per_emotion: int = 2) -> list[Clip]:
    """Clip records (no audio behind them) for split tests: every speaker says every emotion."""
    clips = []
    speakers = [("crema_d", f"{1001 + i}", "male") for i in range(crema_male)]
    speakers += [("crema_d", f"{1001 + crema_male + i}", "female") for i in range(crema_female)]
    speakers += [("savee", SAVEE_SPEAKERS[i], "male") for i in range(savee)]
    for corpus, spk, gender in speakers:
        for emotion in labels.EMOTIONS:
            for take in range(per_emotion):
                cid = f"{corpus}/{spk}_{emotion}_{take}"
                clips.append(
                    Clip(
                        clip_id=cid,
                        path=f"/nonexistent/{cid}.wav",
                        corpus=corpus,
                        speaker=f"{corpus}/{spk}",
                        gender=gender,
                        emotion=emotion,
                        label=labels.label_index(gender, emotion),
                    )
                )
    return clips


class CountingExtractor:
    """Picklable ``make_extractor`` for FeatureCache that appends one line to ``marker`` per build.

    FeatureCache calls ``make_extractor`` exactly once per build, so the marker's line count is the
    number of builds, across processes too. ``delay`` keeps a build running long enough for a second
    process to arrive while it is in progress.
    """

    def __init__(self, marker: str | Path, n_mels: int = 16, delay: float = 0.0) -> None:
        self.marker = str(marker)
        self.n_mels = n_mels
        self.delay = delay

    def __call__(self):
        from ser.features import LogMel

        with open(self.marker, "a") as f:
            f.write("build\n")
        if self.delay:
            time.sleep(self.delay)
        return LogMel(sample_rate=16000, n_mels=self.n_mels)

    def builds(self) -> int:
        try:
            return len(Path(self.marker).read_text().splitlines())
        except FileNotFoundError:
            return 0
