"""The 12-class label scheme: order, (gender, emotion) mappings and the 6-emotion / 2-gender views."""

from __future__ import annotations

import pytest

from ser import labels

EXPECTED = (
    "male_sad",
    "male_angry",
    "male_disgust",
    "male_fear",
    "male_happy",
    "male_neutral",
    "female_sad",
    "female_angry",
    "female_disgust",
    "female_fear",
    "female_happy",
    "female_neutral",
)


def test_class_order_is_the_original_one() -> None:
    assert labels.CLASSES == EXPECTED
    assert labels.NUM_CLASSES == 12
    assert labels.EMOTIONS == ("sad", "angry", "disgust", "fear", "happy", "neutral")
    assert labels.GENDERS == ("male", "female")
    assert (labels.NUM_EMOTIONS, labels.NUM_GENDERS) == (6, 2)


@pytest.mark.parametrize(
    ("gender", "emotion", "index"),
    [
        ("male", "sad", 0),
        ("male", "neutral", 5),
        ("female", "sad", 6),
        ("female", "angry", 7),
        ("female", "neutral", 11),
    ],
)
def test_label_index_examples(gender: str, emotion: str, index: int) -> None:
    assert labels.label_index(gender, emotion) == index
    assert labels.split_label(index) == (gender, emotion)
    assert labels.class_index(f"{gender}_{emotion}") == index


def test_mappings_round_trip_for_every_class() -> None:
    for i, name in enumerate(EXPECTED):
        gender, emotion = name.split("_")
        assert labels.class_index(name) == i
        assert labels.split_label(i) == (gender, emotion)
        assert labels.label_index(*labels.split_label(i)) == i


def test_six_emotion_and_two_gender_views() -> None:
    emotions = [labels.emotion_of(i) for i in range(12)]
    genders = [labels.gender_of(i) for i in range(12)]
    assert emotions == [0, 1, 2, 3, 4, 5] * 2
    assert genders == [0] * 6 + [1] * 6
    for i in range(12):
        gender, emotion = labels.split_label(i)
        assert labels.EMOTIONS[labels.emotion_of(i)] == emotion
        assert labels.GENDERS[labels.gender_of(i)] == gender
    # The same emotion of both genders collapses to one emotion class.
    assert labels.emotion_of(labels.label_index("male", "fear")) == labels.emotion_of(
        labels.label_index("female", "fear")
    )


@pytest.mark.parametrize(
    ("call", "args", "match"),
    [
        (labels.label_index, ("other", "sad"), "unknown gender"),
        (labels.label_index, ("male", "surprise"), "unknown emotion"),
        (labels.label_index, ("Male", "sad"), "unknown gender"),
        (labels.class_index, ("male_surprise",), "unknown class"),
        (labels.class_index, ("sad",), "unknown class"),
        (labels.split_label, (12,), "out of range"),
        (labels.split_label, (-1,), "out of range"),
    ],
)
def test_invalid_inputs_raise(call, args, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(*args)
