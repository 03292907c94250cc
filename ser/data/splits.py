"""Train/val/test splits (config group ``split``): speaker-disjoint (default), k-fold, cross-corpus, LOSO, random.

Speaker and k-fold splits are stratified by (corpus, gender) so every part has both genders and
both corpora; cross-corpus tests on held-out corpora and leave-one-speaker-out (loso) on one speaker.
All but random are checked for speaker overlap every time they are made, not only in tests.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from ser.data.corpus import Clip

log = logging.getLogger(__name__)

STRATEGIES = ("speaker", "kfold", "cross_corpus", "loso", "random")
PARTS = ("train", "val", "test")


class SplitError(ValueError):
    """A split that cannot be made, or that would leak speakers between parts."""


@dataclass(frozen=True)
class SplitSpec:
    """How to split: one option of conf/split/ (``split=speaker|kfold|cross_corpus|loso|random``), checked when made."""

    strategy: str = "speaker"
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15  # speaker and random; a k-fold split tests on one fold
    num_folds: int = 5  # kfold only
    fold: int = 0  # kfold only
    test_corpus: Any = None  # cross_corpus only: a corpus name or a list of them
    speaker: int | str | None = None  # loso only: index into the sorted speaker ids, or an id
    val_speakers: int = 1  # loso only

    def __post_init__(self) -> None:
        # Hydra hands a list as a ListConfig; a tuple keeps the spec hashable and plain.
        object.__setattr__(self, "test_corpus", corpus_names(self.test_corpus))

    def make(self, clips: Sequence[Clip]) -> Split:
        return make_split(
            clips,
            self.strategy,
            seed=self.seed,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            num_folds=self.num_folds,
            fold=self.fold,
            test_corpus=self.test_corpus,
            speaker=self.speaker,
            val_speakers=self.val_speakers,
        )


def corpus_names(value: Any) -> tuple[str, ...]:
    """``"savee"`` or ``["savee", "tess"]`` (or None) as a tuple of names."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


@dataclass
class Split:
    strategy: str
    seed: int
    train: list[int]
    val: list[int]
    test: list[int]
    fold: int | None = None  # kfold: the test fold; loso: the test speaker's index
    num_folds: int | None = None  # kfold: the folds; loso: the speakers
    held_out: str | None = None  # cross_corpus: the test corpora; loso: the test speaker

    @property
    def speaker_independent(self) -> bool:
        return self.strategy != "random"

    def part(self, name: str) -> list[int]:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def manifest(self, clips: Sequence[Clip]) -> dict:
        """Which speakers and clips went where: written with every run so results can be audited."""
        out: dict = {
            "strategy": self.strategy,
            "seed": self.seed,
            "fold": self.fold,
            "num_folds": self.num_folds,
            "held_out": self.held_out,
            "speaker_independent": self.speaker_independent,
        }
        for name in PARTS:
            idx = self.part(name)
            out[name] = {
                "clips": len(idx),
                "speakers": sorted({clips[i].speaker for i in idx}),
                "per_label": dict(sorted(Counter(clips[i].label for i in idx).items())),
                "clip_ids": [clips[i].clip_id for i in idx],
            }
        return out


def make_split(
    clips: Sequence[Clip],
    strategy: str = "speaker",
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    num_folds: int = 5,
    fold: int = 0,
    test_corpus: Any = None,
    speaker: int | str | None = None,
    val_speakers: int = 1,
) -> Split:
    """Split clip indices into train/val/test, deterministically from ``seed``."""
    if strategy not in STRATEGIES:
        raise SplitError(f"split.strategy={strategy!r}: choose one of {STRATEGIES} (split={'|'.join(STRATEGIES)})")
    unlabelled = sum(c.label < 0 for c in clips)
    if unlabelled:
        raise SplitError(
            f"{unlabelled} clips have no class of the 12 labels (gender unknown, kept by data.unknown_gender=keep): "
            "training needs data.unknown_gender=exclude; score such clips with ser.eval"
        )
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise SplitError(
            f"split.val_fraction={val_fraction}, split.test_fraction={test_fraction}: need 0 < v, t and v+t < 1"
        )
    rng = np.random.default_rng(seed)
    if strategy == "random":
        split = _random_split(clips, seed, val_fraction, test_fraction)
    elif strategy == "speaker":
        split = _speaker_split(clips, rng, seed, val_fraction, test_fraction)
    elif strategy == "cross_corpus":
        split = _cross_corpus_split(clips, rng, seed, val_fraction, corpus_names(test_corpus))
    elif strategy == "loso":
        split = _loso_split(clips, rng, seed, speaker, val_speakers)
    else:
        if not num_folds >= 2:
            raise SplitError(f"split.num_folds={num_folds}: need at least 2")
        if not 0 <= fold < num_folds:
            raise SplitError(f"split.fold={fold}: must be in 0..{num_folds - 1} for split.num_folds={num_folds}")
        split = _kfold_split(clips, rng, seed, val_fraction, num_folds, fold)
    for name in PARTS:
        if not split.part(name):
            n = len({c.speaker for c in clips})
            hint = (
                " (or test on this corpus from others: split=cross_corpus split.test_corpus=<corpus>)" if n < 3 else ""
            )
            raise SplitError(
                f"{strategy} split left the {name} part empty ({len(clips)} clips, "
                f"{n} speakers); use more data or change the fractions{hint}"
            )
    if split.speaker_independent:
        check_speaker_disjoint(split, clips)
    else:
        log.warning("split=random is speaker-DEPENDENT: test speakers are also in training")
    return split


def check_speaker_disjoint(split: Split, clips: Sequence[Clip]) -> None:
    """Raise SplitError if any speaker appears in two parts."""
    seen: dict[str, str] = {}
    for name in PARTS:
        for i in split.part(name):
            other = seen.setdefault(clips[i].speaker, name)
            if other != name:
                raise SplitError(f"speaker {clips[i].speaker} is in both {other} and {name}")


def _strata(clips: Sequence[Clip]) -> dict[tuple[str, str], list[str]]:
    groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    for c in clips:
        groups[(c.corpus, c.gender)].add(c.speaker)
    return {k: sorted(v) for k, v in sorted(groups.items())}


def _take(n: int, fraction: float, minimum_pool: int) -> int:
    """How many of n speakers go to a held-out part: at least one when the stratum can spare it."""
    k = round(n * fraction)
    return max(k, 1) if n >= minimum_pool else k


def _indices(clips: Sequence[Clip], speakers: set[str]) -> list[int]:
    return [i for i, c in enumerate(clips) if c.speaker in speakers]


def _speaker_split(clips, rng, seed, val_fraction, test_fraction) -> Split:
    parts: dict[str, set[str]] = {p: set() for p in PARTS}
    for speakers in _strata(clips).values():
        order = [speakers[i] for i in rng.permutation(len(speakers))]
        n_test = _take(len(order), test_fraction, 2)
        n_val = _take(len(order), val_fraction, 3)
        parts["test"].update(order[:n_test])
        parts["val"].update(order[n_test : n_test + n_val])
        parts["train"].update(order[n_test + n_val :])
    return Split("speaker", seed, *(_indices(clips, parts[p]) for p in PARTS))


def _kfold_split(clips, rng, seed, val_fraction, num_folds, fold) -> Split:
    parts: dict[str, set[str]] = {p: set() for p in PARTS}
    offset = 0
    for speakers in _strata(clips).values():
        order = [speakers[i] for i in rng.permutation(len(speakers))]
        # Dealing round-robin, continuing across strata, keeps fold sizes within one speaker.
        folds = [(offset + j) % num_folds for j in range(len(order))]
        offset += len(order)
        test = [s for s, f in zip(order, folds, strict=True) if f == fold]
        rest = [s for s, f in zip(order, folds, strict=True) if f != fold]
        n_val = _take(len(rest), val_fraction, 3)
        parts["test"].update(test)
        parts["val"].update(rest[:n_val])
        parts["train"].update(rest[n_val:])
    _spare_val(parts, rng)
    return Split("kfold", seed, *(_indices(clips, parts[p]) for p in PARTS), fold=fold, num_folds=num_folds)


def _spare_val(parts: dict[str, set[str]], rng: np.random.Generator) -> None:
    if not parts["val"] and len(parts["train"]) > 1:
        # Small corpora: no stratum could spare a validation speaker; take one from the training speakers.
        spare = sorted(parts["train"])[int(rng.integers(len(parts["train"])))]
        parts["train"].discard(spare)
        parts["val"].add(spare)


def _cross_corpus_split(clips, rng, seed, val_fraction, held: tuple[str, ...]) -> Split:
    corpora = sorted({c.corpus for c in clips})
    if not held:
        raise SplitError(f"split=cross_corpus needs split.test_corpus: the held-out corpus, one of {corpora}")
    unknown = [h for h in held if h not in corpora]
    if unknown:
        raise SplitError(
            f"split.test_corpus={unknown[0]!r} is not among the corpora of the data {corpora}: add it to data.corpora"
        )
    if set(corpora) <= set(held):
        raise SplitError(
            f"split.test_corpus={list(held)} holds out every corpus of the data {corpora}: "
            "add the training corpora to data.corpora"
        )
    training = [c for c in clips if c.corpus not in held]
    parts: dict[str, set[str]] = {p: set() for p in PARTS}
    parts["test"] = {c.speaker for c in clips if c.corpus in held}
    for speakers in _strata(training).values():
        order = [speakers[i] for i in rng.permutation(len(speakers))]
        n_val = _take(len(order), val_fraction, 3)
        parts["val"].update(order[:n_val])
        parts["train"].update(order[n_val:])
    _spare_val(parts, rng)
    name = ",".join(held)
    return Split("cross_corpus", seed, *(_indices(clips, parts[p]) for p in PARTS), held_out=name)


def resolve_speaker(speakers: Sequence[str], speaker: int | str | None) -> int:
    """The index in ``speakers`` (sorted ids) of ``split.speaker``: an index, an id, or an id without corpus."""
    shown = ", ".join(speakers[:20]) + (" ..." if len(speakers) > 20 else "")
    if speaker is None:
        raise SplitError(f"split=loso needs split.speaker: an index 0..{len(speakers) - 1} or one of {shown}")
    if isinstance(speaker, int) or str(speaker).isdigit():
        i = int(speaker)
        if not 0 <= i < len(speakers):
            raise SplitError(f"split.speaker={i}: must be in 0..{len(speakers) - 1} for the {len(speakers)} speakers")
        return i
    if speaker in speakers:
        return list(speakers).index(speaker)
    matches = [i for i, s in enumerate(speakers) if s.split("/", 1)[-1] == speaker]
    if len(matches) == 1:
        return matches[0]
    what = "matches several speakers" if matches else "is not a speaker of the data"
    raise SplitError(f"split.speaker={speaker!r} {what}; give an index 0..{len(speakers) - 1} or one of {shown}")


def _loso_split(clips, rng, seed, speaker, val_speakers: int) -> Split:
    speakers = sorted({c.speaker for c in clips})
    if not 1 <= val_speakers <= len(speakers) - 2:
        raise SplitError(
            f"split=loso with split.val_speakers={val_speakers} needs at least {val_speakers + 2} speakers "
            f"(one to test, the rest to validate and train); the data have {len(speakers)}"
        )
    i = resolve_speaker(speakers, speaker)
    others = [s for s in speakers if s != speakers[i]]
    val = {others[j] for j in rng.permutation(len(others))[:val_speakers]}
    parts = {"train": set(others) - val, "val": val, "test": {speakers[i]}}
    return Split(
        "loso",
        seed,
        *(_indices(clips, parts[p]) for p in PARTS),
        fold=i,
        num_folds=len(speakers),
        held_out=speakers[i],
    )


def _random_split(clips, seed, val_fraction, test_fraction) -> Split:
    idx = np.arange(len(clips))
    y = np.array([c.label for c in clips])
    rest, test = train_test_split(idx, test_size=test_fraction, stratify=y, random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_fraction / (1 - test_fraction), stratify=y[rest], random_state=seed
    )
    return Split("random", seed, sorted(train.tolist()), sorted(val.tolist()), sorted(test.tolist()))
