"""CREMA-D: ``ACTOR_SENTENCE_EMOTION_LEVEL`` file names, gender from VideoDemographics.csv."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ser.data.corpus import Corpus, DataError, Listing, Recording, check_corpus_root, unparsed, wrong_corpus_error

NAME = "crema_d"
DEFAULT_FOLDER = "crema-d"
HELP = """\
CREMA-D (91 actors, 7,442 clips): https://www.kaggle.com/datasets/ejlok1/cremad
  or the official release https://github.com/CheyneyComputerScience/CREMA-D (AudioWAV/ and
  VideoDemographics.csv, which gives each actor's sex; without it ser uses its built-in table).
  Layout: <crema_d root>/AudioWAV/1001_DFA_ANG_XX.wav (any sub-folder and any format libsndfile reads)."""

# Native emotion code -> the scheme's emotion (all six are in the 12-class scheme).
EMOTIONS: dict[str, str | None] = {
    "SAD": "sad",
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
}
SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
LEVELS = ("LO", "MD", "HI", "XX")
PATTERN = re.compile(
    rf"^(?P<actor>\d{{4}})_(?P<sentence>{'|'.join(SENTENCES)})_(?P<emotion>{'|'.join(EMOTIONS)})"
    rf"_(?P<level>{'|'.join(LEVELS)})$"
)
EXPECTED = "ACTOR_SENTENCE_EMOTION_LEVEL (e.g. 1001_DFA_ANG_XX)"

# The Sex column of the official VideoDemographics.csv, for downloads that ship only the audio.
_MALE = (
    "1001 1005 1011 1014 1015 1016 1017 1019 1022 1023 1026 1027 1031 1032 1033 1034 1035 1036 1038 1039 "
    "1040 1041 1042 1044 1045 1048 1050 1051 1057 1059 1062 1064 1065 1066 1067 1068 1069 1070 1071 1077 "
    "1080 1081 1083 1085 1086 1087 1088 1090"
)
_FEMALE = (
    "1002 1003 1004 1006 1007 1008 1009 1010 1012 1013 1018 1020 1021 1024 1025 1028 1029 1030 1037 1043 "
    "1046 1047 1049 1052 1053 1054 1055 1056 1058 1060 1061 1063 1072 1073 1074 1075 1076 1078 1079 1082 "
    "1084 1089 1091"
)
BUILTIN_GENDERS: dict[str, str] = {a: "male" for a in _MALE.split()} | {a: "female" for a in _FEMALE.split()}


def read_demographics(path: Path) -> dict[str, str]:
    """ActorID -> "male"/"female" from a VideoDemographics.csv."""
    genders: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"ActorID", "Sex"} <= set(reader.fieldnames):
            raise DataError(f"{path}: expected columns ActorID and Sex (CREMA-D VideoDemographics.csv)")
        for row in reader:
            sex = row["Sex"].strip().lower()
            if sex not in ("male", "female"):
                raise DataError(f"{path}: actor {row['ActorID']} has Sex {row['Sex']!r}, expected Male/Female")
            genders[row["ActorID"].strip()] = sex
    return genders


def find_demographics(root: Path) -> Path | None:
    hits = sorted(root.rglob("VideoDemographics.csv"))
    return hits[0] if hits else None


def index_crema_d(root: Path, progress: bool = False) -> Listing:
    """Every CREMA-D recording below ``root``."""
    files = check_corpus_root(NAME, root, HELP)
    demographics = find_demographics(root)
    genders = read_demographics(demographics) if demographics else BUILTIN_GENDERS
    listing = Listing(roots={NAME: str(root)})
    unknown_actors: set[str] = set()
    for path in files:
        m = PATTERN.match(path.stem)
        if not m:
            listing.excluded.append(unparsed(path, NAME, EXPECTED))
            continue
        actor = m["actor"]
        gender = genders.get(actor) or BUILTIN_GENDERS.get(actor)
        if gender is None:
            unknown_actors.add(actor)
            continue
        listing.recordings.append(
            Recording(
                clip_id=f"{NAME}/{path.stem}",
                path=str(path),
                corpus=NAME,
                speaker=f"{NAME}/{actor}",
                gender=gender,
                emotion=EMOTIONS[m["emotion"]],
                native=m["emotion"],
                sentence=m["sentence"],
                intensity=m["level"],
            )
        )
    if unknown_actors:
        where = f"{demographics}" if demographics else "no VideoDemographics.csv under the corpus folder"
        raise DataError(
            f"crema_d: actor(s) {sorted(unknown_actors)} are in neither the demographics file ({where}) nor "
            "the 91 actors of the official release; their gender is unknown. Add them to "
            "VideoDemographics.csv (columns ActorID, Sex) or remove their clips."
        )
    if not listing.recordings:
        raise wrong_corpus_error(NAME, root, files, listing.excluded, EXPECTED, HELP)
    return listing


CORPUS = Corpus(name=NAME, default_folder=DEFAULT_FOLDER, help=HELP, index=index_crema_d)
