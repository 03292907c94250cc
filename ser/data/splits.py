"""Train/val/test splits (config group ``split``): speaker-disjoint (default), speaker-grouped k-fold, or random.

Speaker and k-fold splits are stratified by (corpus, gender) so every part has both genders and
both corpora, and are checked for speaker overlap every time they are made, not only in tests.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from ser.data.corpus import Clip

log = logging.getLogger(__name__)

STRATEGIES = ("speaker", "kfold", "random")
PARTS = ("train", "val", "test")


class SplitError(ValueError):
    """A split that cannot be made, or that would leak speakers between parts."""


@dataclass(frozen=True)
class SplitSpec:
    """How to split: one option of conf/split/ (``split=speaker|kfold|random``), checked when it is made."""

    strategy: str = "speaker"
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15  # speaker and random; a k-fold split tests on one fold
    num_folds: int = 5  # kfold only
    fold: int = 0  # kfold only

    def make(self, clips: Sequence[Clip]) -> Split:
        return make_split(
            clips,
            self.strategy,
            seed=self.seed,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            num_folds=self.num_folds,
            fold=self.fold,
        )


@dataclass
class Split:
    strategy: str
    seed: int
    train: list[int]
    val: list[int]
    test: list[int]
    fold: int | None = None
    num_folds: int | None = None

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
) -> Split:
    """Split clip indices into train/val/test, deterministically from ``seed``."""
    if strategy not in STRATEGIES:
        raise SplitError(f"split.strategy={strategy!r}: choose one of {STRATEGIES} (split=speaker|kfold|random)")
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise SplitError(
            f"split.val_fraction={val_fraction}, split.test_fraction={test_fraction}: need 0 < v, t and v+t < 1"
        )
    rng = np.random.default_rng(seed)
    if strategy == "random":
        split = _random_split(clips, seed, val_fraction, test_fraction)
    elif strategy == "speaker":
        split = _speaker_split(clips, rng, seed, val_fraction, test_fraction)
    else:
        if not num_folds >= 2:
            raise SplitError(f"split.num_folds={num_folds}: need at least 2")
        if not 0 <= fold < num_folds:
            raise SplitError(f"split.fold={fold}: must be in 0..{num_folds - 1} for split.num_folds={num_folds}")
        split = _kfold_split(clips, rng, seed, val_fraction, num_folds, fold)
    for name in PARTS:
        if not split.part(name):
            raise SplitError(
                f"{strategy} split left the {name} part empty ({len(clips)} clips, "
                f"{len({c.speaker for c in clips})} speakers); use more data or change the fractions"
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
    if not parts["val"] and len(parts["train"]) > 1:
        # Small corpora: no stratum could spare a validation speaker; take one from the training speakers.
        spare = sorted(parts["train"])[int(rng.integers(len(parts["train"])))]
        parts["train"].discard(spare)
        parts["val"].add(spare)
    return Split("kfold", seed, *(_indices(clips, parts[p]) for p in PARTS), fold=fold, num_folds=num_folds)


def _random_split(clips, seed, val_fraction, test_fraction) -> Split:
    idx = np.arange(len(clips))
    y = np.array([c.label for c in clips])
    rest, test = train_test_split(idx, test_size=test_fraction, stratify=y, random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_fraction / (1 - test_fraction), stratify=y[rest], random_state=seed
    )
    return Split("random", seed, sorted(train.tolist()), sorted(val.tolist()), sorted(test.tolist()))
