"""Your own recordings: a CSV ``path,speaker,emotion[,gender]`` (paths relative to the CSV's folder)."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path, PurePath

from ser.data.corpus import (
    UNKNOWN_GENDER,
    Corpus,
    DataError,
    Exclusion,
    Listing,
    Recording,
    missing_corpus_message,
)

log = logging.getLogger(__name__)

NAME = "manifest"
DEFAULT_FOLDER = "manifest"
FILE_NAME = "manifest.csv"
HELP = """\
manifest (your own recordings): a CSV file with the header path,speaker,emotion[,gender], one clip per row;
  paths are relative to the CSV's folder (or absolute), emotion one of sad, angry, disgust, fear, happy,
  neutral (or a synonym such as anger, happiness, joy, sadness, fearful, disgusted), gender male/female (m/f)
  or empty. Select it with data=manifest data.roots.manifest=/path/to/file.csv (or its folder, holding
  manifest.csv)."""
REQUIRED = ("path", "speaker", "emotion")
HEADER = "path,speaker,emotion[,gender]"

# Accepted spellings (lower case) -> the scheme's emotion.
EMOTION_SYNONYMS: dict[str, str] = {
    "sad": "sad",
    "sadness": "sad",
    "angry": "angry",
    "anger": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "afraid": "fear",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "neutral": "neutral",
}
GENDER_SYNONYMS: dict[str, str] = {"male": "male", "m": "male", "female": "female", "f": "female"}
NO_GENDER = frozenset({"", "unknown", "na", "n/a", "none", "?"})


def find_csv(root: Path) -> Path:
    """The manifest CSV: ``root`` itself, ``root/manifest.csv``, or the only CSV in the folder ``root``."""
    if root.is_file():
        return root
    if not root.is_dir():
        raise DataError(missing_corpus_message(NAME, str(root), "manifest file or folder not found", HELP))
    if (root / FILE_NAME).is_file():
        return root / FILE_NAME
    found = sorted(root.glob("*.csv"))
    if len(found) == 1:
        return found[0]
    problem = f"no {FILE_NAME} in the folder" + (f" and {len(found)} other CSV files" if found else "")
    raise DataError(missing_corpus_message(NAME, str(root), problem, HELP))


def emotion_of(text: str) -> str | None:
    """The scheme's emotion of a manifest value, case-insensitively; None for anything else."""
    return EMOTION_SYNONYMS.get(text.strip().lower())


def gender_of(text: str | None) -> str:
    """male/female, UNKNOWN_GENDER for an empty value, or the value itself (which has no class)."""
    value = (text or "").strip().lower()
    if value in NO_GENDER:
        return UNKNOWN_GENDER
    return GENDER_SYNONYMS.get(value, value)


def clip_key(path_text: str) -> str:
    """A clip id part from the path as the CSV gives it: posix, without the suffix."""
    return PurePath(path_text.replace("\\", "/")).with_suffix("").as_posix()


def read_rows(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row with lower-case column names) of a manifest; a DataError if a column is missing."""
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise DataError(
                f"{csv_path}: missing column(s) {', '.join(missing)}; a manifest's first line must be the header "
                f"{HEADER} (found {','.join(columns) or 'an empty file'}): add it and run again"
            )
        rows = []
        for row in reader:
            clean = {k.strip().lower(): (v or "").strip() for k, v in row.items() if isinstance(k, str)}
            rows.append((reader.line_num, clean))
    return rows


def index_manifest(root: Path, progress: bool = False) -> Listing:
    """The clips a manifest lists; missing files, rows without a speaker and unknown emotions are reported."""
    csv_path = find_csv(root)
    rows = read_rows(csv_path)
    if not rows:
        raise DataError(f"{csv_path}: the manifest lists no clips (only a header); add one row per recording")
    listing = Listing(roots={NAME: str(csv_path.parent)})
    where = csv_path.name
    for line, row in rows:
        audio = csv_path.parent / row["path"]
        if not row["path"]:
            listing.excluded.append(Exclusion(f"{csv_path}:{line}", NAME, f"no path: line {line} of {where}"))
            continue
        if not audio.is_file():
            listing.excluded.append(
                Exclusion(str(audio), NAME, f"missing file: line {line} of {where} names a file that does not exist")
            )
            continue
        if not row["speaker"]:
            listing.excluded.append(Exclusion(str(audio), NAME, f"no speaker: line {line} of {where}"))
            continue
        raw = row["emotion"]
        listing.recordings.append(
            Recording(
                clip_id=f"{NAME}/{clip_key(row['path'])}",
                path=str(audio),
                corpus=NAME,
                speaker=f"{NAME}/{row['speaker']}",
                gender=gender_of(row.get("gender")),
                emotion=emotion_of(raw),
                native=f"emotion {raw!r}",
            )
        )
    _warn(csv_path, listing)
    if not listing.recordings:
        example = listing.excluded[0].reason if listing.excluded else "?"
        raise DataError(
            f"{csv_path}: none of its {len(rows)} rows is a usable clip (e.g. {example}); "
            f"paths are relative to {csv_path.parent}"
        )
    return listing


def _warn(csv_path: Path, listing: Listing) -> None:
    # The data report lists every exclusion; a one-line summary here catches a wrong folder or a typo early.
    missing = sum(e.reason.startswith("missing file") for e in listing.excluded)
    if missing:
        log.warning("%s: %d listed file(s) not found (see the data report)", csv_path, missing)
    unknown = Counter(r.native for r in listing.recordings if r.emotion is None)
    if unknown:
        shown = ", ".join(f"{k} x{n}" for k, n in unknown.most_common(10))
        log.warning("%s: emotions outside the scheme are excluded: %s", csv_path, shown)


CORPUS = Corpus(name=NAME, default_folder=DEFAULT_FOLDER, help=HELP, index=index_manifest)
