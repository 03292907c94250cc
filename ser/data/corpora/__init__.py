"""Corpus registry: each module here declares one ``CORPUS``; ``build_index`` reads and labels the chosen ones."""

# Adding a corpus is one module in this package (parser, label mapping, speaker genders, download help,
# default folder), one option in conf/data/ and one entry in tests/test_corpora.py: nothing here names a corpus.

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ser import labels
from ser.data.corpus import TRY_DEMO, Clip, Corpus, CorpusIndex, DataError, Exclusion, Listing, Recording

CORPORA: dict[str, Corpus] = {}


def register(corpus: Corpus) -> Corpus:
    """Make ``corpus`` available to ``build_index`` and ``data.corpora`` (modules here are found by themselves)."""
    CORPORA[corpus.name] = corpus
    return corpus


def _discover() -> None:
    # Each public module of this package is one corpus; importing it by name keeps this file corpus-free.
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            register(importlib.import_module(f"{__name__}.{info.name}").CORPUS)


def corpus(name: str) -> Corpus:
    """The registered corpus ``name``, or a DataError listing every corpus and where to get it."""
    if name not in CORPORA:
        raise DataError(
            f"data.corpora: unknown corpus {name!r}; expected one of {sorted(CORPORA)}:\n"
            + "\n".join(CORPORA[k].help for k in sorted(CORPORA))
            + f"\n{TRY_DEMO}"
        )
    return CORPORA[name]


@dataclass(frozen=True)
class CorpusSet:
    """Which corpora to read and where: ``roots[name]``, else ``root/<the corpus' default folder>``."""

    names: tuple[str, ...] = ("crema_d", "savee")
    root: str = "data"
    roots: Mapping[str, str | None] = field(default_factory=dict)
    strict: bool = False  # a file name that does not parse is an error instead of an exclusion

    def resolved_roots(self) -> dict[str, str]:
        out = {}
        for name in self.names:
            given = self.roots.get(name)
            out[name] = str(given) if given else f"{self.root}/{corpus(name).default_folder}"
        return out

    def index(self, progress: bool = True) -> CorpusIndex:
        return build_index(self.names, self.resolved_roots(), strict=self.strict, progress=progress)


def label(recording: Recording) -> Clip | Exclusion:
    """The label scheme, applied once for every corpus: a recording outside it is an exclusion."""
    r = recording
    if r.emotion not in labels.EMOTIONS or r.gender not in labels.GENDERS:
        what = r.native if r.emotion not in labels.EMOTIONS else f"gender {r.gender!r}"
        return Exclusion(r.path, r.corpus, f"no class: {what} is not in the {labels.NUM_CLASSES} labels")
    return Clip(
        clip_id=r.clip_id,
        path=r.path,
        corpus=r.corpus,
        speaker=r.speaker,
        gender=r.gender,
        emotion=r.emotion,
        label=labels.label_index(r.gender, r.emotion),
        sentence=r.sentence,
        intensity=r.intensity,
    )


def labelled(listing: Listing) -> CorpusIndex:
    """The clips of a listing under the label scheme, in file order, with its exclusions."""
    index = CorpusIndex(excluded=list(listing.excluded), roots=dict(listing.roots))
    for recording in listing.recordings:
        item = label(recording)
        if isinstance(item, Clip):
            index.clips.append(item)
        else:
            index.excluded.append(item)
    return index


def build_index(
    corpora: Iterable[str],
    roots: Mapping[str, str | Path],
    strict: bool = False,
    progress: bool = False,
) -> CorpusIndex:
    """Index and label the chosen corpora. ``strict`` turns any unparsed file name into an error."""
    corpora = list(corpora)
    if not corpora:
        raise DataError(f"data.corpora is empty: choose one or more of {sorted(CORPORA)}")
    index = CorpusIndex()
    for name in corpora:
        found = corpus(name)
        if name not in roots:
            raise DataError(f"data.roots.{name} is not set: give the folder of the {name} corpus")
        listing = found.index(Path(roots[name]), progress)
        bad = [e for e in listing.excluded if e.reason.startswith("name does not parse")]
        if strict and bad:
            shown = "\n".join(f"  {e.path}" for e in bad[:20])
            raise DataError(
                f"{name}: {len(bad)} file name(s) do not parse (data.strict=true):\n{shown}\n"
                "Rename or remove them, or set data.strict=false to skip and list them."
            )
        part = labelled(listing)
        if not part.clips:
            raise DataError(
                f"{name}: none of the {len(listing.recordings)} recordings below {roots[name]} has a class in "
                f"the {labels.NUM_CLASSES} labels"
            )
        index.extend(part)
    ids = [c.clip_id for c in index.clips]
    if len(ids) != len(set(ids)):
        index = _drop_duplicates(index)
    return index


def _drop_duplicates(index: CorpusIndex) -> CorpusIndex:
    """Keep the first copy of a recording found twice (e.g. SAVEE in both layouts under one root)."""
    seen: set[str] = set()
    out = CorpusIndex(excluded=list(index.excluded), roots=dict(index.roots))
    for clip in index.clips:
        if clip.clip_id in seen:
            out.excluded.append(Exclusion(clip.path, clip.corpus, f"duplicate of {clip.clip_id}"))
        else:
            seen.add(clip.clip_id)
            out.clips.append(clip)
    return out


_discover()
