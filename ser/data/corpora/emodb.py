"""EmoDB (Berlin): ``wav/03a01Fa.wav`` = speaker, text, emotion letter (German), version; genders documented."""

from __future__ import annotations

import re
from pathlib import Path

from ser.data.corpus import Corpus, Exclusion, Listing, Recording, check_corpus_root, unparsed, wrong_corpus_error

NAME = "emodb"
DEFAULT_FOLDER = "emodb"
HELP = """\
EmoDB, Berlin Database of Emotional Speech (10 speakers, 535 clips): http://emodb.bilderbar.info/download/
  or https://www.kaggle.com/datasets/piyushagni5/berlin-database-of-emotional-speech-emodb.
  Layout: <emodb root>/wav/03a01Fa.wav (any sub-folder)."""

# The speakers of the corpus documentation (http://emodb.bilderbar.info/docu/) and their sex.
GENDERS: dict[str, str] = {
    "03": "male",
    "08": "female",
    "09": "female",
    "10": "male",
    "11": "male",
    "12": "male",
    "13": "female",
    "14": "female",
    "15": "male",
    "16": "female",
}
# German emotion letter -> (its name, the scheme's emotion); boredom (Langeweile) has no class.
EMOTIONS: dict[str, tuple[str, str | None]] = {
    "W": ("anger (W, Wut)", "angry"),
    "L": ("boredom (L, Langeweile)", None),
    "E": ("disgust (E, Ekel)", "disgust"),
    "A": ("fear (A, Angst)", "fear"),
    "F": ("happiness (F, Freude)", "happy"),
    "T": ("sadness (T, Trauer)", "sad"),
    "N": ("neutral (N)", "neutral"),
}
_LETTERS = "".join(EMOTIONS)
PATTERN = re.compile(rf"^(?P<speaker>\d{{2}})(?P<text>[ab]\d{{2}})(?P<emotion>[{_LETTERS}])(?P<version>[a-z])$")
EXPECTED = "SPEAKER TEXT EMOTION VERSION (e.g. 03a01Fa)"


def index_emodb(root: Path, progress: bool = False) -> Listing:
    """Every EmoDB recording below ``root``; a speaker outside the documentation has no known gender."""
    files = check_corpus_root(NAME, root, HELP)
    listing = Listing(roots={NAME: str(root)})
    for path in files:
        m = PATTERN.match(path.stem)
        if not m:
            listing.excluded.append(unparsed(path, NAME, EXPECTED))
            continue
        speaker = m["speaker"]
        if speaker not in GENDERS:
            reason = f"unknown speaker: {speaker} is not one of EmoDB's 10 speakers {sorted(GENDERS)}"
            listing.excluded.append(Exclusion(str(path), NAME, reason))
            continue
        native, emotion = EMOTIONS[m["emotion"]]
        listing.recordings.append(
            Recording(
                clip_id=f"{NAME}/{path.stem}",
                path=str(path),
                corpus=NAME,
                speaker=f"{NAME}/{speaker}",
                gender=GENDERS[speaker],
                emotion=emotion,
                native=native,
                sentence=m["text"],
            )
        )
    if not listing.recordings:
        raise wrong_corpus_error(NAME, root, files, listing.excluded, EXPECTED, HELP)
    return listing


CORPUS = Corpus(name=NAME, default_folder=DEFAULT_FOLDER, help=HELP, index=index_emodb)
