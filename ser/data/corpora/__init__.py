"""Corpus registry: each module here declares one ``CORPUS``; ``build_index`` reads and labels the chosen ones."""

# Adding a corpus is one module in this package (parser, label mapping, speaker genders, download help,
# default folder), one option in conf/data/ and one entry in tests/test_corpora.py: nothing here names a corpus.

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ser import labels
from ser.data.corpus import (
    NO_LABEL,
    TRY_DEMO,
    UNKNOWN_GENDER,
    Clip,
    Corpus,
    CorpusIndex,
    DataError,
    Exclusion,
    Listing,
    Recording,
)

ALL = "all"  # data.corpora=[all]: every corpus (with in_all) whose folder is found under data.root
UNKNOWN_GENDER_CHOICES = ("exclude", "keep")

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
    """Which corpora to read and where: ``roots[name]``, else ``root/<the corpus' default folder>``.

    ``options[name]`` are the corpus' own options (data.options.<name>); ``unknown_gender=keep`` keeps clips
    whose gender is unknown with label NO_LABEL (for emotion-only evaluation; training refuses them).
    """

    names: tuple[str, ...] = ("crema_d", "savee")
    root: str = "data"
    roots: Mapping[str, str | None] = field(default_factory=dict)
    strict: bool = False  # a file name that does not parse is an error instead of an exclusion
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    unknown_gender: str = "exclude"

    def __post_init__(self) -> None:
        if ALL in self.names:
            # Nothing found: resolved_roots() and index() raise it, as for a missing corpus folder.
            with contextlib.suppress(DataError):
                object.__setattr__(self, "names", self._expand_all())

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> CorpusSet:
        """The corpus set of a plain ``data`` config group (data.corpora, root, roots, strict, options, ...)."""
        return cls(
            names=tuple(data["corpora"]),
            root=str(data["root"]),
            roots=dict(data.get("roots") or {}),
            strict=bool(data.get("strict", False)),
            options={k: dict(v or {}) for k, v in (data.get("options") or {}).items()},
            unknown_gender=str(data.get("unknown_gender", "exclude")),
        )

    def _expand_all(self) -> tuple[str, ...]:
        # "all" stands for the corpora found on disk, in registry order; explicitly named ones stay.
        def on_disk(name: str) -> bool:
            return Path(self.roots.get(name) or f"{self.root}/{CORPORA[name].default_folder}").exists()

        found = [name for name in sorted(CORPORA) if CORPORA[name].in_all and on_disk(name)]
        names = [n for n in self.names if n != ALL]
        names += [n for n in found if n not in names]
        if not names:
            folders = ", ".join(c.default_folder for c in CORPORA.values() if c.in_all)
            raise DataError(
                f"data.corpora=[{ALL}]: no corpus folder found under {self.root} (looked for {folders}):\n"
                + "\n".join(CORPORA[k].help for k in sorted(CORPORA) if CORPORA[k].in_all)
                + f"\nSet data.root=<parent folder> or data.roots.<corpus>=<folder>.\n{TRY_DEMO}"
            )
        return tuple(names)

    def resolved_roots(self) -> dict[str, str]:
        if ALL in self.names:
            self._expand_all()  # raises: no corpus folder was found when the set was made
        out = {}
        for name in self.names:
            given = self.roots.get(name)
            out[name] = str(given) if given else f"{self.root}/{corpus(name).default_folder}"
        return out

    def index(self, progress: bool = True) -> CorpusIndex:
        return build_index(
            self.names,
            self.resolved_roots(),
            strict=self.strict,
            progress=progress,
            options=self.options,
            unknown_gender=self.unknown_gender,
        )


def label(recording: Recording, keep_unknown_gender: bool = False) -> Clip | Exclusion:
    """The label scheme, applied once for every corpus: a recording outside it is an exclusion.

    A recording of unknown gender (a manifest without a gender column) has no class of the 12; with
    ``keep_unknown_gender`` it is kept with label NO_LABEL so that its emotion can still be scored.
    """
    r = recording
    if r.emotion in labels.EMOTIONS and r.gender == UNKNOWN_GENDER:
        if not keep_unknown_gender:
            return Exclusion(
                r.path,
                r.corpus,
                f"no class: gender unknown, the {labels.NUM_CLASSES} labels need it "
                "(give a gender column, or data.unknown_gender=keep to score emotions only)",
            )
        return Clip(
            clip_id=r.clip_id,
            path=r.path,
            corpus=r.corpus,
            speaker=r.speaker,
            gender=r.gender,
            emotion=r.emotion,
            label=NO_LABEL,
            sentence=r.sentence,
            intensity=r.intensity,
        )
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


def labelled(listing: Listing, keep_unknown_gender: bool = False) -> CorpusIndex:
    """The clips of a listing under the label scheme, in file order, with its exclusions."""
    index = CorpusIndex(excluded=list(listing.excluded), roots=dict(listing.roots))
    for recording in listing.recordings:
        item = label(recording, keep_unknown_gender)
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
    options: Mapping[str, Mapping[str, Any]] | None = None,
    unknown_gender: str = "exclude",
) -> CorpusIndex:
    """Index and label the chosen corpora. ``strict`` turns any unparsed file name into an error.

    ``options[name]`` overrides the options corpus ``name`` declares (e.g. ravdess calm_as_neutral);
    options of corpora not chosen are ignored, so one config can hold them all.
    """
    corpora = list(corpora)
    if not corpora:
        raise DataError(f"data.corpora is empty: choose one or more of {sorted(CORPORA)}")
    if unknown_gender not in UNKNOWN_GENDER_CHOICES:
        raise DataError(f"data.unknown_gender={unknown_gender!r}: expected one of {UNKNOWN_GENDER_CHOICES}")
    index = CorpusIndex()
    for name in corpora:
        found = corpus(name)
        if name not in roots:
            raise DataError(f"data.roots.{name} is not set: give the folder of the {name} corpus")
        listing = found.index(Path(roots[name]), progress, **corpus_options(found, (options or {}).get(name)))
        bad = [e for e in listing.excluded if e.reason.startswith("name does not parse")]
        if strict and bad:
            shown = "\n".join(f"  {e.path}" for e in bad[:20])
            raise DataError(
                f"{name}: {len(bad)} file name(s) do not parse (data.strict=true):\n{shown}\n"
                "Rename or remove them, or set data.strict=false to skip and list them."
            )
        part = labelled(listing, keep_unknown_gender=unknown_gender == "keep")
        if not part.clips:
            why = part.excluded[len(listing.excluded) :]
            raise DataError(
                f"{name}: none of the {len(listing.recordings)} recordings below {roots[name]} has a class in "
                f"the {labels.NUM_CLASSES} labels" + (f" (e.g. {why[0].reason})" if why else "")
            )
        index.extend(part)
    ids = [c.clip_id for c in index.clips]
    if len(ids) != len(set(ids)):
        index = _drop_duplicates(index)
    return index


def corpus_options(found: Corpus, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The corpus' option defaults updated with ``given``; an option it does not declare is a DataError."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(found.options))
    if unknown:
        takes = ", ".join(f"{k} (default {v!r})" for k, v in found.options.items()) or "no options"
        raise DataError(f"data.options.{found.name}: unknown option(s) {unknown}; {found.name} takes {takes}")
    return {**found.options, **given}


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
