"""Built-in synthetic demo corpus (``data=demo``): a tiny CREMA-D + SAVEE look-alike made of numpy tones.

It is the default corpus of the main command and what the test suite trains on, so it is small,
deterministic (byte-identical files for the same :class:`DemoSpec` and numpy build) and quick to make,
and its classes differ in acoustic cues the way acted emotional speech roughly does:

- gender: fundamental frequency (~115 Hz male, ~215 Hz female) and formant positions;
- emotion: pitch level and contour, pitch jitter/tremolo, loudness, syllable rate and spectral tilt.

Per-speaker and per-clip random variation keeps the task from being trivially separable. The files
use the real naming schemes and folder layouts so the real loaders read them unchanged::

    <folder>/crema-d/AudioWAV/{actor}_{sentence}_{EMO}_{LEVEL}.wav     16 kHz mono PCM_16
    <folder>/crema-d/VideoDemographics.csv
    <folder>/savee/AudioData/{SPK}/{code}{nn:02d}.wav                  44.1 kHz mono PCM_16

plus SAVEE ``su`` (surprise) clips, which have no class here, and the silent clip
``1076_MTI_SAD_XX.wav`` that the real CREMA-D release ships, to exercise the loaders' exclusions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from filelock import FileLock
from tqdm import tqdm

from ser.data import crema_d, savee
from ser.labels import EMOTIONS, GENDERS

__all__ = [
    "CREMA_EMOTION_CODES",
    "DEMO_VERSION",
    "SAVEE_EMOTION_CODES",
    "SILENT_CLIP",
    "DemoSpec",
    "crema_gender",
    "demo_folder_name",
    "ensure_demo_corpus",
    "synthesize_clip",
]

# Bump whenever the synthesis or layout changes: it is part of the folder name, so audio made by an
# older version is never picked up by mistake.
DEMO_VERSION: int = 1

COMPLETE_MARKER = ".complete"

# The corpora's own code tables, so the demo writes exactly what the loaders parse.
CREMA_EMOTION_CODES: dict[str, str] = crema_d.EMOTIONS
# SAVEE also has "su" (surprise), which has no class in the 12-label scheme; the demo writes some.
SAVEE_EMOTION_CODES: dict[str, str] = {code: emotion or "surprise" for code, emotion in savee.CODES.items()}
SAVEE_SPEAKERS: tuple[str, ...] = savee.SPEAKERS

# The real CREMA-D release has this all-zero file; the demo copies it so the silent-clip exclusion runs.
SILENT_CLIP = "1076_MTI_SAD_XX.wav"
_SILENT_ACTOR = 1076

# Real demographics rows of the demo's default actors; other actors get a neutral placeholder row.
_CREMA_DEMOGRAPHICS: dict[int, tuple[int, str, str]] = {
    1001: (51, "Caucasian", "Not Hispanic"),
    1002: (21, "Caucasian", "Not Hispanic"),
    1003: (21, "Caucasian", "Not Hispanic"),
    1004: (42, "Caucasian", "Not Hispanic"),
    1005: (29, "African American", "Not Hispanic"),
    1006: (58, "Caucasian", "Not Hispanic"),
    1007: (38, "African American", "Not Hispanic"),
    1008: (46, "Caucasian", "Not Hispanic"),
    1011: (32, "Caucasian", "Not Hispanic"),
    1014: (24, "Caucasian", "Not Hispanic"),
    1015: (32, "African American", "Not Hispanic"),
    1016: (61, "Caucasian", "Not Hispanic"),
    1076: (25, "Caucasian", "Not Hispanic"),
}


def crema_gender(actor: int) -> str:
    """Real gender ("male"/"female") of a CREMA-D actor id (1001-1091)."""
    if not 1001 <= actor <= 1091:
        raise ValueError(f"CREMA-D actor ids run from 1001 to 1091, got {actor}")
    return crema_d.BUILTIN_GENDERS[str(actor)]


@dataclass(frozen=True)
class DemoSpec:
    """What the demo corpus contains; every field is part of the folder name's hash."""

    crema_actors: tuple[int, ...] = (1001, 1005, 1011, 1014, 1015, 1016, 1002, 1003, 1004, 1006, 1007, 1008)
    savee_speakers: tuple[str, ...] = ("DC", "JE", "JK", "KL")
    crema_sentences: tuple[str, ...] = ("IEO", "TIE", "IOM", "DFA")
    savee_takes: int = 4  # per emotion per SAVEE speaker
    savee_surprise_takes: int = 2  # "su" clips per SAVEE speaker, which the loader must drop
    sample_rate_crema: int = 16000
    sample_rate_savee: int = 44100  # SAVEE's real rate, so resampling is exercised
    seed: int = 0

    def __post_init__(self) -> None:
        for actor in self.crema_actors:
            crema_gender(actor)  # raises on ids that are not CREMA-D actors
        if _SILENT_ACTOR in self.crema_actors:
            raise ValueError(f"actor {_SILENT_ACTOR} is reserved for the silent clip {SILENT_CLIP}")
        if len(set(self.crema_actors)) != len(self.crema_actors):
            raise ValueError("crema_actors has duplicates")
        bad = [s for s in self.savee_speakers if s not in SAVEE_SPEAKERS]
        if bad or len(set(self.savee_speakers)) != len(self.savee_speakers):
            raise ValueError(f"savee_speakers must be distinct values from {SAVEE_SPEAKERS}, got {bad or 'dups'}")
        bad = [s for s in self.crema_sentences if not (len(s) == 3 and s.isalpha() and s.isupper())]
        if bad or len(set(self.crema_sentences)) != len(self.crema_sentences):
            raise ValueError(f"crema_sentences must be distinct 3-letter upper-case codes, got {bad or 'dups'}")
        if not 1 <= self.savee_takes <= 99 or not 0 <= self.savee_surprise_takes <= 99:
            raise ValueError("savee_takes must be 1..99 and savee_surprise_takes 0..99 (two-digit numbers)")
        # The synthesis band-limits to 7 kHz, so anything below 16 kHz would alias.
        if min(self.sample_rate_crema, self.sample_rate_savee) < 16000:
            raise ValueError("demo sample rates must be at least 16000 Hz")


def demo_folder_name(spec: DemoSpec = DemoSpec()) -> str:
    """``demo-v{DEMO_VERSION}-{hash}``: a stable name for the corpus a spec describes."""
    blob = json.dumps(asdict(spec), sort_keys=True).encode()
    return f"demo-v{DEMO_VERSION}-{hashlib.sha1(blob).hexdigest()[:10]}"


# --------------------------------------------------------------------------------------------------
# Synthesis
# --------------------------------------------------------------------------------------------------

_BASE_F0 = {"male": 115.0, "female": 215.0}
_FORMANTS = np.array([500.0, 1500.0, 2500.0, 3500.0])  # male; female ones are ~16% higher
_FORMANT_BW = np.array([90.0, 140.0, 200.0, 260.0])
_FORMANT_GAIN = np.array([1.0, 0.6, 0.35, 0.15])
_FORMANT_SCALE = {"male": 1.0, "female": 1.16}
_BAND_LIMIT_HZ = 7000.0  # below CREMA-D's 8 kHz Nyquist, so both corpora carry the same band


@dataclass(frozen=True)
class _Emotion:
    pitch: float  # f0 relative to the speaker's neutral level
    slope: float  # relative f0 change from start to end of the clip
    curve: float  # >0: fall-rise (U-shaped) contour
    accent: float  # random per-syllable pitch accents (relative)
    jitter: float  # fast random f0 wobble (relative sd)
    tremolo: float  # 7-9 Hz f0 and amplitude tremolo depth
    rate: float  # syllables per second
    level_db: float  # peak level, dBFS
    tilt_hz: float  # harmonic amplitudes fall as exp(-f / tilt_hz): higher is brighter
    breath: float  # aspiration noise relative to the voiced part


_EMOTIONS: dict[str, _Emotion] = {
    "sad": _Emotion(0.85, -0.30, 0.0, 0.03, 0.006, 0.0, 2.5, -20.0, 350.0, 0.10),
    "angry": _Emotion(1.18, 0.0, 0.0, 0.04, 0.008, 0.0, 6.0, -4.0, 1400.0, 0.04),
    "disgust": _Emotion(0.90, -0.10, 0.45, 0.04, 0.010, 0.0, 3.2, -14.0, 550.0, 0.12),
    "fear": _Emotion(1.32, 0.05, 0.0, 0.04, 0.030, 0.05, 6.2, -11.0, 700.0, 0.25),
    "happy": _Emotion(1.22, 0.25, 0.0, 0.12, 0.008, 0.0, 4.8, -9.0, 850.0, 0.05),
    "neutral": _Emotion(1.00, 0.0, 0.0, 0.03, 0.006, 0.0, 4.0, -14.0, 600.0, 0.05),
    # SAVEE's surprise: has no class, but must still sound like speech.
    "surprise": _Emotion(1.30, 0.50, 0.0, 0.06, 0.010, 0.0, 4.0, -8.0, 800.0, 0.08),
}


def _smooth_noise(rng: np.random.Generator, n: int, sample_rate: int, knots_hz: float) -> np.ndarray:
    """Unit-sd random curve, linearly interpolated between knots: cheap band-limited wobble."""
    n_knots = int(np.ceil(n / sample_rate * knots_hz)) + 2
    knots = rng.standard_normal(n_knots)
    return np.interp(np.arange(n) * (knots_hz / sample_rate), np.arange(n_knots), knots).astype(np.float32)


def _fast_fft_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _vary(rng: np.random.Generator, value: float, rel: float) -> float:
    """value scaled by a clipped log-normal factor of relative sd rel."""
    return value * float(np.exp(np.clip(rng.normal(0.0, rel), -2 * rel, 2 * rel)))


def synthesize_clip(gender: str, emotion: str, speaker_seed: int, clip_seed: int, sample_rate: int) -> np.ndarray:
    """One 1-2 s float32 mono clip in [-1, 1] of a speaker (speaker_seed) saying something (clip_seed).

    emotion is one of ``ser.labels.EMOTIONS`` or "surprise". Pure function of its arguments.
    """
    if gender not in GENDERS:
        raise ValueError(f"unknown gender {gender!r}; expected one of {GENDERS}")
    if emotion not in _EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {(*EMOTIONS, 'surprise')}")
    if sample_rate < 2 * _BAND_LIMIT_HZ:
        raise ValueError(f"sample_rate must be at least {2 * _BAND_LIMIT_HZ:.0f} Hz")
    emo = _EMOTIONS[emotion]

    # Speaker traits: constant over a speaker's clips, so held-out speakers are a real generalisation test.
    spk = np.random.default_rng(speaker_seed)
    spk_f0 = _BASE_F0[gender] * spk.uniform(0.92, 1.08)
    spk_formant = _FORMANT_SCALE[gender] * spk.uniform(0.94, 1.06)
    spk_rate = spk.uniform(0.85, 1.15)
    spk_tilt = spk.uniform(0.75, 1.25)
    spk_level_db = spk.uniform(-3.0, 3.0)

    # Per-clip variation (10-25% on most cues) blurs the class boundaries.
    rng = np.random.default_rng(clip_seed)
    n = round(rng.uniform(1.0, 2.0) * sample_rate)
    # Per-sample maths in float32 (twice as fast); only the phase accumulators need float64.
    t = (np.arange(n) / sample_rate).astype(np.float32)
    pitch = _vary(rng, emo.pitch, 0.10)
    slope = emo.slope + rng.normal(0.0, 0.12)
    curve = emo.curve + rng.normal(0.0, 0.12)
    rate = _vary(rng, emo.rate * spk_rate, 0.15)
    tilt_hz = _vary(rng, emo.tilt_hz * spk_tilt, 0.20)
    breath = _vary(rng, emo.breath, 0.25)
    jitter = _vary(rng, emo.jitter, 0.25)
    # Capped at -1 dBFS: the peak normalisation below must never push a clip into hard clipping.
    level_db = min(emo.level_db + spk_level_db + float(np.clip(rng.normal(0.0, 3.0), -6.0, 6.0)), -1.0)
    trem_hz = rng.uniform(7.0, 9.0)

    # Syllables: a half-wave-rectified sine at a slightly wandering rate gives voiced bursts and gaps.
    syl_rate = rate * (1 + 0.15 * _smooth_noise(rng, n, sample_rate, 3.0))
    syl_cycles = np.cumsum(syl_rate, dtype=np.float64) / sample_rate + rng.uniform(-0.5, 0.0)
    syl_index = np.floor(syl_cycles).astype(np.int64)
    syl_index -= syl_index[0]
    n_syl = int(syl_index[-1]) + 1
    syl_phase = (2 * np.pi * (syl_cycles % 1.0)).astype(np.float32)
    syl_env = np.sqrt(np.clip(np.sin(syl_phase), 0.0, None))
    syl_env *= (1 + 0.3 * rng.uniform(-1.0, 1.0, n_syl)).astype(np.float32)[syl_index]
    # Leading and trailing silence, as in real recordings, with 20 ms ramps against clicks.
    lead, trail = (float(v) for v in rng.uniform(0.08, 0.2, 2))
    gate = np.clip(np.minimum(t - lead, t[-1] - trail - t) / 0.02, 0.0, 1.0)
    amp = syl_env * gate
    if emo.tremolo:  # only fear trembles; skipping the sines for the rest saves a fifth of the time
        trem_phase = 2 * np.pi * trem_hz * t
        amp *= 1 + 4 * emo.tremolo * np.sin(trem_phase)

    # f0 contour: level * (slope + fall-rise) * syllable accents * jitter (* tremolo).
    u = t / t[-1] - 0.5
    contour = 1 + slope * u + curve * (4 * u * u - 1 / 3)
    accents = 1 + emo.accent * rng.standard_normal(n_syl, dtype=np.float32)[syl_index] * syl_env
    wobble = 1 + jitter * _smooth_noise(rng, n, sample_rate, 40.0)
    f0 = spk_f0 * pitch * np.clip(contour, 0.6, 1.6) * accents * wobble
    if emo.tremolo:
        f0 *= 1 + emo.tremolo * np.sin(trem_phase + rng.uniform(0, 2 * np.pi))
    f0 = np.clip(f0, 60.0, 600.0)

    # Harmonic source sum_{k<=K} r^k sin(k theta) in closed form (geometric series), so the cost does not
    # grow with the number of harmonics; r = exp(-f0/tilt) makes the tilt a function of frequency.
    cycles = np.cumsum(f0, dtype=np.float64) / sample_rate + rng.uniform(0.0, 1.0)
    theta = (2 * np.pi * (cycles % 1.0)).astype(np.float32)  # wrapped, so float32 keeps its precision
    r = np.exp(-f0 / tilt_hz)
    n_harm = np.floor(_BAND_LIMIT_HZ / f0)
    r_top = np.exp(-(n_harm + 1) * f0 / tilt_hz)  # r ** (K + 1), without the slow float power
    voiced = (r * np.sin(theta) - r_top * np.sin((n_harm + 1) * theta) + r_top * r * np.sin(n_harm * theta)) / (
        1 - 2 * r * np.cos(theta) + r * r
    )
    voiced *= amp
    voiced /= np.sqrt(np.mean(voiced**2)) + 1e-12
    noise = rng.standard_normal(n, dtype=np.float32) * amp * breath
    source = voiced + noise

    # Formant envelope and a 7 kHz roll-off, applied in the frequency domain (one FFT per clip).
    n_fft = _fast_fft_len(n)  # zero-padding to a 5-smooth length avoids pocketfft's slow prime sizes
    # The envelope is smooth, so evaluate it on a 10 Hz grid and interpolate: far cheaper than per FFT bin.
    grid = np.arange(0.0, sample_rate / 2 + 10.0, 10.0)
    formants = _FORMANTS * spk_formant
    peaks = _FORMANT_GAIN * np.exp(-0.5 * ((grid[:, None] - formants) / (_FORMANT_BW * spk_formant)) ** 2)
    envelope_grid = (0.12 + peaks.sum(axis=1)) / (1 + (grid / _BAND_LIMIT_HZ) ** 8)
    envelope = np.interp(np.fft.rfftfreq(n_fft, 1 / sample_rate), grid, envelope_grid).astype(np.float32)
    x = np.fft.irfft(np.fft.rfft(source, n_fft) * envelope, n_fft)[:n]

    x *= 10 ** (level_db / 20) / (np.max(np.abs(x)) + 1e-12)
    # Room-noise floor: no real recording is digital silence.
    x += 1e-3 * rng.standard_normal(n, dtype=np.float32)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Corpus layout
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Clip:
    relpath: str  # relative to the corpus folder, "/"-separated
    gender: str
    emotion: str  # "" for the silent clip
    speaker: str  # stable speaker key, e.g. "crema-d/1001"
    sample_rate: int


def _plan(spec: DemoSpec) -> list[_Clip]:
    """Every file of the corpus, in a fixed order."""
    clips: list[_Clip] = []
    for actor in spec.crema_actors:
        gender = crema_gender(actor)
        for sentence in spec.crema_sentences:
            # Real CREMA-D records IEO at three intensities and the rest unspecified (XX).
            level = "MD" if sentence == "IEO" else "XX"
            for code, emotion in CREMA_EMOTION_CODES.items():
                name = f"{actor}_{sentence}_{code}_{level}.wav"
                clips.append(
                    _Clip(
                        f"crema-d/AudioWAV/{name}",
                        gender,
                        emotion,
                        f"crema-d/{actor}",
                        spec.sample_rate_crema,
                    )
                )
    clips.append(
        _Clip(
            f"crema-d/AudioWAV/{SILENT_CLIP}",
            crema_gender(_SILENT_ACTOR),
            "",
            f"crema-d/{_SILENT_ACTOR}",
            spec.sample_rate_crema,
        )
    )
    for speaker in spec.savee_speakers:
        for code, emotion in SAVEE_EMOTION_CODES.items():
            takes = spec.savee_surprise_takes if emotion == "surprise" else spec.savee_takes
            for take in range(1, takes + 1):
                clips.append(
                    _Clip(
                        f"savee/AudioData/{speaker}/{code}{take:02d}.wav",
                        "male",  # all four SAVEE speakers are male
                        emotion,
                        f"savee/{speaker}",
                        spec.sample_rate_savee,
                    )
                )
    return clips


def _seed(spec: DemoSpec, key: str) -> int:
    # crc32, not hash(): Python salts str hashes per process, which would break reproducibility.
    return zlib.crc32(f"{spec.seed}:{key}".encode())


def _render(clip: _Clip, spec: DemoSpec) -> np.ndarray:
    """int16 samples of one planned clip."""
    clip_seed = _seed(spec, clip.relpath)
    if not clip.emotion:
        n = round(np.random.default_rng(clip_seed).uniform(1.0, 2.0) * clip.sample_rate)
        return np.zeros(n, dtype=np.int16)
    x = synthesize_clip(clip.gender, clip.emotion, _seed(spec, clip.speaker), clip_seed, clip.sample_rate)
    # Quantise here rather than in libsndfile so the bytes depend on numpy alone.
    return np.round(x.astype(np.float64) * 32767.0).astype(np.int16)


def _demographics_csv(spec: DemoSpec) -> str:
    """VideoDemographics.csv in the real file's exact format (numbers bare, strings quoted)."""
    lines = ['"ActorID","Age","Sex","Race","Ethnicity"']
    for actor in sorted({*spec.crema_actors, _SILENT_ACTOR}):
        age, race, ethnicity = _CREMA_DEMOGRAPHICS.get(actor, (30, "Unknown", "Not Hispanic"))
        sex = crema_gender(actor).capitalize()
        lines.append(f'{actor},{age},"{sex}","{race}","{ethnicity}"')
    return "\n".join(lines) + "\n"


def _write_corpus(folder: Path, spec: DemoSpec, progress: bool) -> int:
    """Write every file of the corpus into folder (which must exist); returns the number of wav files."""
    clips = _plan(spec)
    (folder / "crema-d" / "AudioWAV").mkdir(parents=True)
    for speaker in spec.savee_speakers:
        (folder / "savee" / "AudioData" / speaker).mkdir(parents=True)
    (folder / "crema-d" / "VideoDemographics.csv").write_text(_demographics_csv(spec), encoding="utf-8")
    for clip in tqdm(clips, desc="demo corpus", unit="clip", disable=not progress, leave=False):
        sf.write(folder / clip.relpath, _render(clip, spec), clip.sample_rate, subtype="PCM_16", format="WAV")
    return len(clips)


def _is_complete(folder: Path) -> bool:
    """True when folder holds a finished corpus: marker present and its wav count still matches."""
    marker = folder / COMPLETE_MARKER
    try:
        expected = int(marker.read_text().strip())
    except (OSError, ValueError):
        return False
    return sum(1 for _ in folder.rglob("*.wav")) == expected


def ensure_demo_corpus(root: Path, spec: DemoSpec = DemoSpec(), progress: bool = True) -> Path:
    """Generate the demo corpus under root/f"demo-v{DEMO_VERSION}-{hash of spec}" once and return that folder.

    Safe when several processes (e.g. Hydra multirun jobs) call it at once: one generates into a
    temporary sibling under a file lock and renames it into place; the others wait and reuse it.
    """
    root = Path(root)
    name = demo_folder_name(spec)
    folder = root / name
    if _is_complete(folder):
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{name}.lock")):
        if _is_complete(folder):  # another process finished it while we waited
            return folder
        # Leftovers of a crashed run: a folder without marker or a temporary; nobody else can be
        # writing them because we hold the lock.
        if folder.exists():
            shutil.rmtree(folder)
        for stale in root.glob(f".{name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            count = _write_corpus(tmp, spec, progress)
            (tmp / COMPLETE_MARKER).write_text(f"{count}\n")
            os.replace(tmp, folder)  # atomic: readers see no folder or a finished one
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return folder
