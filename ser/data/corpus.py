"""Corpus index: one record per clip, built from file names on disk.

Each corpus module (``crema_d``, ``savee``) turns the audio files below its root into ``Clip``
records and ``Exclusion``s (names that do not parse, classes outside the scheme). ``build_index``
merges the corpora chosen in the config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from ser import labels
from ser.data.sources import HELP, TRY_DEMO, DataError, missing_corpus_message


@dataclass(frozen=True)
class Clip:
    """One labelled clip. ``clip_id`` is stable across layouts and formats of the same recording."""

    clip_id: str
    path: str
    corpus: str
    speaker: str
    gender: str
    emotion: str
    label: int
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
class CorpusIndex:
    """Clips of one or more corpora plus everything that was excluded on the way."""

    clips: list[Clip] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.clips)

    def extend(self, other: CorpusIndex) -> None:
        self.clips.extend(other.clips)
        self.excluded.extend(other.excluded)

    def speakers(self) -> list[str]:
        return sorted({c.speaker for c in self.clips})


def audio_extensions() -> frozenset[str]:
    """Lower-case suffixes of every format this libsndfile build can read (wav, flac, ogg, mp3, ...)."""
    exts = {f".{fmt.lower()}" for fmt in sf.available_formats()}
    # libsndfile names container formats, not every suffix users have.
    exts |= {".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff"}
    if "MP3" in sf.available_formats():
        exts.add(".mp3")
    return frozenset(exts)


def find_audio_files(root: Path) -> list[Path]:
    """Every audio file below ``root`` (recursively), sorted for a deterministic index."""
    exts = audio_extensions()
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in exts and p.is_file())


def check_corpus_root(corpus: str, root: Path) -> list[Path]:
    """The audio files of a corpus root, or a DataError saying what is missing and where to get it."""
    if not root.is_dir():
        raise DataError(missing_corpus_message(corpus, str(root), "corpus folder not found"))
    files = find_audio_files(root)
    if not files:
        raise DataError(missing_corpus_message(corpus, str(root), "no audio files in the corpus folder"))
    return files


def unparsed(path: Path, corpus: str, expected: str) -> Exclusion:
    return Exclusion(str(path), corpus, f"name does not parse as {expected}")


def build_index(
    corpora: Iterable[str],
    roots: Mapping[str, str | Path],
    strict: bool = False,
) -> CorpusIndex:
    """Index the chosen corpora. ``strict`` turns any unparsed file name into an error."""
    from ser.data import crema_d, savee

    readers = {"crema_d": crema_d.index_crema_d, "savee": savee.index_savee}
    corpora = list(corpora)
    if not corpora:
        raise DataError("data.corpora is empty: choose crema_d, savee or both")
    index = CorpusIndex()
    for name in corpora:
        if name not in readers:
            raise DataError(
                f"data.corpora: unknown corpus {name!r}; expected one of {sorted(readers)}:\n"
                + "\n".join(HELP[k] for k in sorted(readers))
                + f"\n{TRY_DEMO}"
            )
        if name not in roots:
            raise DataError(f"data.roots.{name} is not set: give the folder of the {name} corpus")
        part = readers[name](Path(roots[name]))
        bad = [e for e in part.excluded if e.reason.startswith("name does not parse")]
        if strict and bad:
            listing = "\n".join(f"  {e.path}" for e in bad[:20])
            raise DataError(
                f"{name}: {len(bad)} file name(s) do not parse (data.strict=true):\n{listing}\n"
                "Rename or remove them, or set data.strict=false to skip and list them."
            )
        index.extend(part)
    ids = [c.clip_id for c in index.clips]
    if len(ids) != len(set(ids)):
        index = _drop_duplicates(index)
    return index


def _drop_duplicates(index: CorpusIndex) -> CorpusIndex:
    """Keep the first copy of a recording found twice (e.g. SAVEE in both layouts under one root)."""
    seen: set[str] = set()
    out = CorpusIndex(excluded=list(index.excluded))
    for clip in index.clips:
        if clip.clip_id in seen:
            out.excluded.append(Exclusion(clip.path, clip.corpus, f"duplicate of {clip.clip_id}"))
        else:
            seen.add(clip.clip_id)
            out.clips.append(clip)
    return out


def make_clip(
    clip_id: str, path: Path, corpus: str, speaker: str, gender: str, emotion: str, **extra: str
) -> Clip:
    return Clip(
        clip_id=clip_id,
        path=str(path),
        corpus=corpus,
        speaker=speaker,
        gender=gender,
        emotion=emotion,
        label=labels.label_index(gender, emotion),
        **extra,
    )
