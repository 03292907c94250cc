"""SAVEE: original ``AudioData/DC/a01.wav`` or Kaggle ``ALL/DC_a01.wav`` layouts; four male speakers."""

from __future__ import annotations

import re
from pathlib import Path

from ser.data.corpus import Corpus, Listing, Recording, check_corpus_root, unparsed, wrong_corpus_error

NAME = "savee"
DEFAULT_FOLDER = "savee"
HELP = """\
SAVEE (4 male speakers, 480 clips): https://www.kaggle.com/datasets/ejlok1/surrey-audiovisual-expressed-emotion-savee
  or the official site http://kahlan.eps.surrey.ac.uk/savee/.
  Layouts: original <savee root>/AudioData/DC/a01.wav, or Kaggle <savee root>/ALL/DC_a01.wav."""

SPEAKERS = ("DC", "JE", "JK", "KL")
GENDERS = dict.fromkeys(SPEAKERS, "male")
# Native emotion code -> the scheme's emotion; surprise has no class in the 12-class scheme.
CODES: dict[str, str | None] = {
    "a": "angry",
    "d": "disgust",
    "f": "fear",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": None,
}
# SAVEE's own names of its codes, as exclusions report them.
NATIVE_NAMES = {
    "a": "anger",
    "d": "disgust",
    "f": "fear",
    "h": "happiness",
    "n": "neutral",
    "sa": "sadness",
    "su": "surprise",
}
_CODE = "|".join(sorted(CODES, key=len, reverse=True))  # "sa"/"su" before "a"
KAGGLE = re.compile(rf"^(?P<speaker>{'|'.join(SPEAKERS)})_(?P<code>{_CODE})(?P<take>\d{{2}})$")
ORIGINAL = re.compile(rf"^(?P<code>{_CODE})(?P<take>\d{{2}})$")
EXPECTED = "SAVEE AudioData/<speaker>/<code><nn> or ALL/<speaker>_<code><nn> (e.g. DC/a01, DC_a01)"


def parse_savee(path: Path) -> tuple[str, str, str] | None:
    """(speaker, code, take) of a SAVEE file in either layout, or None."""
    m = KAGGLE.match(path.stem)
    if m:
        return m["speaker"], m["code"], m["take"]
    m = ORIGINAL.match(path.stem)
    if m and path.parent.name in SPEAKERS:
        return path.parent.name, m["code"], m["take"]
    return None


def index_savee(root: Path, progress: bool = False) -> Listing:
    """Every SAVEE recording below ``root``; surprise (``su``) ones carry no scheme emotion."""
    files = check_corpus_root(NAME, root, HELP)
    listing = Listing(roots={NAME: str(root)})
    for path in files:
        parsed = parse_savee(path)
        if parsed is None:
            listing.excluded.append(unparsed(path, NAME, EXPECTED))
            continue
        speaker, code, take = parsed
        listing.recordings.append(
            Recording(
                clip_id=f"{NAME}/{speaker}_{code}{take}",
                path=str(path),
                corpus=NAME,
                speaker=f"{NAME}/{speaker}",
                gender=GENDERS[speaker],
                emotion=CODES[code],
                native=f"{NATIVE_NAMES[code]} ({code})",
                sentence=take,
            )
        )
    if not listing.recordings:
        raise wrong_corpus_error(NAME, root, files, listing.excluded, EXPECTED, HELP)
    return listing


CORPUS = Corpus(name=NAME, default_folder=DEFAULT_FOLDER, help=HELP, index=index_savee)
