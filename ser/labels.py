"""The 12-class label scheme: gender x emotion, in the order the original work listed them.

Index 0-5 are male sad, angry, disgust, fear, happy, neutral; 6-11 the same emotions for female
speakers. Everything that needs a class name or index goes through this module.
"""

from __future__ import annotations

GENDERS: tuple[str, ...] = ("male", "female")
EMOTIONS: tuple[str, ...] = ("sad", "angry", "disgust", "fear", "happy", "neutral")
CLASSES: tuple[str, ...] = tuple(f"{g}_{e}" for g in GENDERS for e in EMOTIONS)
NUM_CLASSES = len(CLASSES)
NUM_EMOTIONS = len(EMOTIONS)
NUM_GENDERS = len(GENDERS)

_CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}


def label_index(gender: str, emotion: str) -> int:
    """Class index of a (gender, emotion) pair, e.g. ("female", "angry") -> 7."""
    if gender not in GENDERS:
        raise ValueError(f"unknown gender {gender!r}; expected one of {GENDERS}")
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {EMOTIONS}")
    return GENDERS.index(gender) * NUM_EMOTIONS + EMOTIONS.index(emotion)


def class_index(name: str) -> int:
    """Class index of a class name such as ``"male_sad"``."""
    try:
        return _CLASS_INDEX[name]
    except KeyError:
        raise ValueError(f"unknown class {name!r}; expected one of {CLASSES}") from None


def split_label(index: int) -> tuple[str, str]:
    """(gender, emotion) of a class index."""
    if not 0 <= index < NUM_CLASSES:
        raise ValueError(f"class index {index} out of range 0..{NUM_CLASSES - 1}")
    return GENDERS[index // NUM_EMOTIONS], EMOTIONS[index % NUM_EMOTIONS]


def emotion_of(index: int) -> int:
    """6-emotion view: the emotion index of a class index (gender ignored)."""
    return index % NUM_EMOTIONS


def gender_of(index: int) -> int:
    """2-gender view: 0 for male, 1 for female."""
    return index // NUM_EMOTIONS
