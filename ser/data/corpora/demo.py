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

from ser.data.corpora import crema_d, savee
from ser.data.corpus import Corpus, Listing
from ser.data.synthesis import synthesize_clip

__all__ = [
    "CORPUS",
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
CREMA_EMOTION_CODES: dict[str, str] = {code: str(emotion) for code, emotion in crema_d.EMOTIONS.items()}
# SAVEE also has "su" (surprise), which has no class in the 12-label scheme; the demo writes some.
SAVEE_EMOTION_CODES: dict[str, str] = {
    code: emotion or savee.NATIVE_NAMES[code] for code, emotion in savee.CODES.items()
}
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


# --------------------------------------------------------------------------------------------------
# The registered corpus
# --------------------------------------------------------------------------------------------------

NAME = "demo"
DEFAULT_FOLDER = "demo"
HELP = """\
demo (built in, no download): a tiny synthetic CREMA-D + SAVEE look-alike, generated on first use into
  <data.roots.demo> (data=demo puts it in the cache, paths.cache_dir/demo) and read by the real loaders."""


def index_demo(root: Path, progress: bool = False) -> Listing:
    """Generate the demo corpus below ``root`` if needed and read it with the CREMA-D and SAVEE loaders."""
    folder = ensure_demo_corpus(root, progress=progress)
    listing = crema_d.index_crema_d(folder / "crema-d")
    listing.extend(savee.index_savee(folder / "savee"))
    return listing


CORPUS = Corpus(name=NAME, default_folder=DEFAULT_FOLDER, help=HELP, index=index_demo, in_all=False)
