"""SAVEE: original ``AudioData/DC/a01.wav`` or Kaggle ``ALL/DC_a01.wav`` layouts; four male speakers."""

from __future__ import annotations

import re
from pathlib import Path

from ser.data.corpus import CorpusIndex, Exclusion, check_corpus_root, make_clip, unparsed
from ser.data.sources import DataError, missing_corpus_message

CORPUS = "savee"
SPEAKERS = ("DC", "JE", "JK", "KL")
CODES = {"a": "angry", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral", "sa": "sad", "su": None}
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


def index_savee(root: Path) -> CorpusIndex:
    """Index every SAVEE clip below ``root``; surprise (``su``) has no class and is excluded."""
    files = check_corpus_root(CORPUS, root)
    index = CorpusIndex()
    for path in files:
        parsed = parse_savee(path)
        if parsed is None:
            index.excluded.append(unparsed(path, CORPUS, EXPECTED))
            continue
        speaker, code, take = parsed
        emotion = CODES[code]
        if emotion is None:
            index.excluded.append(
                Exclusion(str(path), CORPUS, "no class: surprise (su) is not in the 12 labels")
            )
            continue
        index.clips.append(
            make_clip(
                f"{CORPUS}/{speaker}_{code}{take}",
                path,
                CORPUS,
                speaker=f"{CORPUS}/{speaker}",
                gender="male",
                emotion=emotion,
                sentence=take,
            )
        )
    if not index.clips:
        example = Path(index.excluded[0].path).name if index.excluded else "?"
        raise DataError(
            missing_corpus_message(
                CORPUS,
                str(root),
                f"none of the {len(files)} audio files is named {EXPECTED}, e.g. {example!r}; "
                "is this another corpus' folder?",
            )
        )
    return index
