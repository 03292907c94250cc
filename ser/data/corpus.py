"""Corpus vocabulary: clips, exclusions, the index, what a corpus module declares, and data errors."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf

log = logging.getLogger(__name__)

# The label of a clip whose gender is unknown, kept for emotion-only scoring (data.unknown_gender=keep).
NO_LABEL = -1
UNKNOWN_GENDER = "unknown"

TRY_DEMO = "To try ser now without any download, run with the built-in synthetic corpus: data=demo"


class DataError(RuntimeError):
    """Missing, empty or malformed corpus data; the message says what was expected and what to do."""


@dataclass(frozen=True)
class Recording:
    """One clip as its corpus names it, before the label scheme is applied.

    ``emotion`` is the scheme's emotion, or None for a corpus class the scheme does not have;
    ``native`` is the corpus' own name for it, as an exclusion reports it (e.g. "surprise (su)").
    """

    clip_id: str
    path: str
    corpus: str
    speaker: str
    gender: str
    emotion: str | None
    native: str
    sentence: str = ""
    intensity: str = ""


@dataclass(frozen=True)
class Clip:
    """One labelled clip. ``clip_id`` is stable across layouts and formats of the same recording."""

    clip_id: str
    path: str
    corpus: str
    speaker: str
    gender: str
    emotion: str
    label: int  # class index of the 12; NO_LABEL for a clip kept without gender (unknown_gender=keep)
    sentence: str = ""
    intensity: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Exclusion:
    """A file left out of the index, and why."""

    path: str
    corpus: str
    reason: str


@dataclass
class Listing:
    """What one corpus module read below its root: recordings, files it could not use, folders it read."""

    recordings: list[Recording] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)
    roots: dict[str, str] = field(default_factory=dict)

    def extend(self, other: Listing) -> None:
        self.recordings.extend(other.recordings)
        self.excluded.extend(other.excluded)
        self.roots.update(other.roots)


@dataclass
class CorpusIndex:
    """Clips of one or more corpora, everything that was excluded on the way, and the folders read."""

    clips: list[Clip] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)
    roots: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.clips)

    def extend(self, other: CorpusIndex) -> None:
        self.clips.extend(other.clips)
        self.excluded.extend(other.excluded)
        self.roots.update(other.roots)

    def speakers(self) -> list[str]:
        return sorted({c.speaker for c in self.clips})


@dataclass(frozen=True)
class Corpus:
    """What a module in ``ser.data.corpora`` declares as ``CORPUS``; the registry finds it there."""

    name: str  # the key in data.corpora and data.roots
    default_folder: str  # below data.root when data.roots.<name> is not set
    help: str  # where to get the corpus and how it is laid out: part of every "data not found" error
    # (root, progress, **options) -> recordings; raises DataError if unusable
    index: Callable[..., Listing]
    # Options the corpus takes (data.options.<name>.<option>) and their defaults, passed to ``index``.
    options: Mapping[str, Any] = field(default_factory=dict)
    in_all: bool = True  # data.corpora=[all] takes it when its folder is found (False: generated corpora)


def audio_extensions() -> frozenset[str]:
    """Lower-case suffixes of every format this libsndfile build can read (wav, flac, ogg, mp3, ...)."""
    exts = {f".{fmt.lower()}" for fmt in sf.available_formats()}
    # libsndfile names container formats, not every suffix users have.
    exts |= {".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff"}
    if "MP3" in sf.available_formats():
        exts.add(".mp3")
    return frozenset(exts)


def _folder_key(path: str) -> tuple[int, int]:
    st = os.stat(path)  # follows links: two ways to one folder give one key
    return st.st_dev, st.st_ino


def walk_files(root: Path) -> Iterator[Path]:
    """Every file below ``root``, through links to folders too (``Path.rglob`` does not follow them before
    Python 3.13, so a linked speaker folder was silently left out), each real folder read once.

    A link back to a folder above it (a loop) or to a folder read already is not followed, and an
    unreadable folder is skipped; each is named in a warning, as is a broken link with an audio suffix.
    """
    seen = {_folder_key(str(root))}

    def unreadable(err: OSError) -> None:
        log.warning("%s: cannot read this folder (%s); its files are not indexed", err.filename, err.strerror)

    for folder, subfolders, files in os.walk(root, onerror=unreadable, followlinks=True):
        keep = []
        for name in sorted(subfolders):
            sub = os.path.join(folder, name)
            key = _folder_key(sub)
            if key in seen:
                target, here = os.path.realpath(sub), os.path.realpath(folder)
                if os.path.commonpath([target, here]) == target:
                    log.warning("%s: a link to %s, a folder that contains it (a loop); not followed", sub, target)
                else:
                    log.warning("%s: a link to %s, which is indexed already; not read twice", sub, target)
                continue
            seen.add(key)
            keep.append(name)
        subfolders[:] = keep  # os.walk descends only into these
        for name in files:
            yield Path(folder) / name


def find_audio_files(root: Path) -> list[Path]:
    """Every audio file below ``root`` (recursively, through folder links), sorted for a deterministic index."""
    exts = audio_extensions()
    found = []
    for path in walk_files(root):
        if path.suffix.lower() not in exts:
            continue
        if path.is_file():
            found.append(path)
        elif path.is_symlink() and not path.exists():
            log.warning("%s: a broken link (to %s); skipped", path, os.readlink(path))
    return sorted(found)


def missing_corpus_message(corpus: str, root: str, problem: str, help: str) -> str:
    return (
        f"{corpus}: {problem} ({root}).\n{help}\n"
        f"Set data.roots.{corpus}=<folder> (or data.root=<parent folder>) to point elsewhere.\n{TRY_DEMO}"
    )


def check_corpus_root(corpus: str, root: Path, help: str) -> list[Path]:
    """The audio files of a corpus root, or a DataError saying what is missing and where to get it."""
    if not root.is_dir():
        raise DataError(missing_corpus_message(corpus, str(root), "corpus folder not found", help))
    files = find_audio_files(root)
    if not files:
        raise DataError(missing_corpus_message(corpus, str(root), "no audio files in the corpus folder", help))
    return files


def unparsed(path: Path, corpus: str, expected: str) -> Exclusion:
    return Exclusion(str(path), corpus, f"name does not parse as {expected}")


def wrong_corpus_error(corpus: str, root: Path, files: list[Path], excluded: list[Exclusion], expected: str, help: str):
    """The DataError for a folder none of whose audio files is named as the corpus names its files."""
    example = Path(excluded[0].path).name if excluded else "?"
    return DataError(
        missing_corpus_message(
            corpus,
            str(root),
            f"none of the {len(files)} audio files is named {expected}, e.g. {example!r}; "
            "is this another corpus' folder?",
            help,
        )
    )
