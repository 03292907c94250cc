"""TESS: ``OAF_angry/OAF_back_angry.wav`` (or flat); the emotion is the file name's last part, two female speakers."""

from __future__ import annotations

import re
from pathlib import Path

from ser.data.corpus import Corpus, Listing, Recording, check_corpus_root, unparsed, wrong_corpus_error

NAME = "tess"
DEFAULT_FOLDER = "tess"
HELP = """\
TESS (2 female speakers, 2,800 clips): https://www.kaggle.com/datasets/ejlok1/toronto-emotional-speech-set-tess
  or the official release https://tspace.library.utoronto.ca/handle/1807/24487.
  Layout: <tess root>/OAF_angry/OAF_back_angry.wav, flat, or nested (the Kaggle copy's
  'TESS Toronto emotional speech set data/...'); folder names do not matter and copies found twice are read once."""

# The speaker prefix, as the files spell it: some copies have "OA" for OAF (e.g. OA_bite_neutral.wav).
SPEAKERS: dict[str, str] = {"OAF": "OAF", "OA": "OAF", "YAF": "YAF"}
DESCRIPTIONS = {"OAF": "older adult female (aged 64)", "YAF": "younger adult female (aged 26)"}
GENDERS = dict.fromkeys(DESCRIPTIONS, "female")
# The emotion part of a file name (lower case) -> TESS' code; the copies spell some of them differently.
SPELLINGS: dict[str, str] = {
    "angry": "angry",
    "anger": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "happy": "happy",
    "happiness": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "sadness": "sad",
    "ps": "ps",
    "pleasant_surprise": "ps",
    "pleasant_surprised": "ps",
}
# TESS' code -> the scheme's emotion; pleasant surprise has no class in the 12-class scheme.
EMOTIONS: dict[str, str | None] = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "ps": None,
}
NATIVE_NAMES = {"ps": "pleasant surprise (ps)"}
_SPELLING = "|".join(sorted(SPELLINGS, key=len, reverse=True))
_SPEAKER = "|".join(sorted(SPEAKERS, key=len, reverse=True))
PATTERN = re.compile(rf"^(?P<speaker>{_SPEAKER})_(?P<word>[a-z]+)_(?P<emotion>{_SPELLING})$", re.IGNORECASE)
EXPECTED = "SPEAKER_WORD_EMOTION (e.g. OAF_back_angry, YAF_youth_ps)"


def parse_tess(stem: str) -> tuple[str, str, str] | None:
    """(speaker OAF/YAF, word, TESS emotion code) of a file name without suffix, or None."""
    m = PATTERN.match(stem)
    if not m:
        return None
    return SPEAKERS[m["speaker"].upper()], m["word"].lower(), SPELLINGS[m["emotion"].lower()]


def index_tess(root: Path, progress: bool = False) -> Listing:
    """Every TESS recording below ``root``; the clip id is the same whatever the copy's spelling."""
    files = check_corpus_root(NAME, root, HELP)
    listing = Listing(roots={NAME: str(root)})
    for path in files:
        parsed = parse_tess(path.stem)
        if parsed is None:
            listing.excluded.append(unparsed(path, NAME, EXPECTED))
            continue
        speaker, word, code = parsed
        listing.recordings.append(
            Recording(
                clip_id=f"{NAME}/{speaker}_{word}_{code}",
                path=str(path),
                corpus=NAME,
                speaker=f"{NAME}/{speaker}",
                gender=GENDERS[speaker],
                emotion=EMOTIONS[code],
                native=NATIVE_NAMES.get(code, code),
                sentence=word,
            )
        )
    if not listing.recordings:
        raise wrong_corpus_error(NAME, root, files, listing.excluded, EXPECTED, HELP)
    return listing


CORPUS = Corpus(name=NAME, default_folder=DEFAULT_FOLDER, help=HELP, index=index_tess)
