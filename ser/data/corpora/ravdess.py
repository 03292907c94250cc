"""RAVDESS speech: ``Actor_01/03-01-05-01-02-01-01.wav`` (seven numeric fields); odd actors male, even female."""

from __future__ import annotations

import re
from pathlib import Path

from ser.data.corpus import (
    Corpus,
    DataError,
    Exclusion,
    Listing,
    Recording,
    check_corpus_root,
    unparsed,
    wrong_corpus_error,
)

NAME = "ravdess"
DEFAULT_FOLDER = "ravdess"
HELP = """\
RAVDESS speech (24 actors, 1,440 clips): https://www.kaggle.com/datasets/uwrfkaggler/ravdess-emotional-speech-audio
  or the official release https://zenodo.org/records/1188976 (Audio_Speech_Actors_01-24.zip).
  Layout: <ravdess root>/Actor_01/03-01-05-01-02-01-01.wav (any depth, e.g. the Kaggle copy's
  audio_speech_actors_01-24/Actor_01/...; copies found twice are read once)."""

# Native emotion code -> (RAVDESS' name, the scheme's emotion); calm and surprised have no class.
EMOTIONS: dict[str, tuple[str, str | None]] = {
    "01": ("neutral", "neutral"),
    "02": ("calm", None),
    "03": ("happy", "happy"),
    "04": ("sad", "sad"),
    "05": ("angry", "angry"),
    "06": ("fearful", "fear"),
    "07": ("disgust", "disgust"),
    "08": ("surprised", None),
}
INTENSITIES = {"01": "normal", "02": "strong"}
PATTERN = re.compile(
    r"^(?P<modality>0[1-3])-(?P<channel>0[12])-(?P<emotion>0[1-8])-(?P<intensity>0[12])"
    r"-(?P<statement>0[12])-(?P<repetition>0[12])-(?P<actor>\d{2})$"
)
EXPECTED = "MODALITY-CHANNEL-EMOTION-INTENSITY-STATEMENT-REPETITION-ACTOR (e.g. 03-01-05-01-02-01-01)"
SPEECH, SONG = "01", "02"
VIDEO_ONLY = "02"


def gender(actor: str) -> str:
    """RAVDESS' documented convention: odd-numbered actors are male, even-numbered female."""
    return "male" if int(actor) % 2 else "female"


def index_ravdess(root: Path, progress: bool = False, calm_as_neutral: bool = False) -> Listing:
    """Every RAVDESS speech recording below ``root``; song and video-only files are excluded with a reason.

    ``calm_as_neutral`` labels calm (02) as neutral, as some papers do; by default calm is outside the scheme.
    """
    files = check_corpus_root(NAME, root, HELP)
    listing = Listing(roots={NAME: str(root)})
    for path in files:
        m = PATTERN.match(path.stem)
        if not m:
            listing.excluded.append(unparsed(path, NAME, EXPECTED))
            continue
        if m["channel"] == SONG:
            listing.excluded.append(Exclusion(str(path), NAME, "song: sung (vocal channel 02), only speech is used"))
            continue
        if m["modality"] == VIDEO_ONLY:
            listing.excluded.append(Exclusion(str(path), NAME, "video-only: modality 02 has no audio"))
            continue
        native, emotion = EMOTIONS[m["emotion"]]
        if calm_as_neutral and native == "calm":
            emotion = "neutral"
        actor = m["actor"]
        # Without the modality: the audio-only file and the audio of the audio-visual one are the same take.
        take = "-".join(m[k] for k in ("channel", "emotion", "intensity", "statement", "repetition", "actor"))
        listing.recordings.append(
            Recording(
                clip_id=f"{NAME}/{take}",
                path=str(path),
                corpus=NAME,
                speaker=f"{NAME}/Actor_{actor}",
                gender=gender(actor),
                emotion=emotion,
                native=f"{native} ({m['emotion']})",
                sentence=m["statement"],
                intensity=INTENSITIES[m["intensity"]],
            )
        )
    if not listing.recordings:
        songs = sum(e.reason.startswith("song") for e in listing.excluded)
        if songs:
            raise DataError(
                f"{NAME}: the {songs} RAVDESS files below {root} are song recordings (vocal channel 02); "
                f"ser reads the speech ones (Audio_Speech_Actors_01-24).\n{HELP}"
            )
        raise wrong_corpus_error(NAME, root, files, listing.excluded, EXPECTED, HELP)
    return listing


CORPUS = Corpus(
    name=NAME,
    default_folder=DEFAULT_FOLDER,
    help=HELP,
    index=index_ravdess,
    options={"calm_as_neutral": False},
)
