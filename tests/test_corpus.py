"""Corpus index: CREMA-D and SAVEE file names, genders, exclusions, layouts, formats and bad input."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from audio_fixtures import (
    CREMA_CODES,
    SAVEE_CODES,
    SAVEE_SPEAKERS,
    make_crema_tree,
    make_savee_tree,
    write_demographics,
    write_wav,
)

from ser import labels
from ser.data.corpora import build_index, crema_d
from ser.data.corpus import DataError

CREMA_KAGGLE = "https://www.kaggle.com/datasets/ejlok1/cremad"
SAVEE_KAGGLE = "https://www.kaggle.com/datasets/ejlok1/surrey-audiovisual-expressed-emotion-savee"


def _signature(index) -> list[tuple]:
    """Everything about the clips except where the files are."""
    return sorted(
        (c.clip_id, c.corpus, c.speaker, c.gender, c.emotion, c.label, c.sentence, c.intensity) for c in index.clips
    )


# ------------------------------------------------------------------------------------------------ CREMA-D


def test_crema_record_fields(tmp_path: Path) -> None:
    root = tmp_path / "crema-d"
    make_crema_tree(root, actors=["1001", "1002"], sentences=["DFA"], seconds=0.05)
    write_wav(root / "AudioWAV" / "1001_IEO_HAP_HI.wav", seconds=0.05)
    index = build_index(["crema_d"], {"crema_d": root})
    assert len(index) == 13 and index.excluded == []
    by_id = {c.clip_id: c for c in index.clips}
    clip = by_id["crema_d/1001_IEO_HAP_HI"]
    assert clip.path == str(root / "AudioWAV" / "1001_IEO_HAP_HI.wav")
    assert clip.corpus == "crema_d"
    assert clip.speaker == "crema_d/1001"
    assert (clip.gender, clip.emotion) == ("male", "happy")
    assert clip.label == labels.class_index("male_happy") == 4
    assert (clip.sentence, clip.intensity) == ("IEO", "HI")
    assert clip.to_dict()["label"] == 4
    # Every emotion code maps to its emotion, for both genders.
    for code, emotion in CREMA_CODES.items():
        assert by_id[f"crema_d/1001_DFA_{code}_XX"].label == labels.label_index("male", emotion)
        assert by_id[f"crema_d/1002_DFA_{code}_XX"].label == labels.label_index("female", emotion)
    assert index.speakers() == ["crema_d/1001", "crema_d/1002"]


def test_crema_all_levels_parse(tmp_path: Path) -> None:
    root = tmp_path / "crema-d"
    for level in ("LO", "MD", "HI", "XX"):
        write_wav(root / f"1005_IEO_ANG_{level}.wav", seconds=0.05)
    index = build_index(["crema_d"], {"crema_d": root})
    assert sorted(c.intensity for c in index.clips) == ["HI", "LO", "MD", "XX"]


BAD_CREMA_NAMES = [
    "1001_DFA_ANG_XX_copy.wav",  # trailing junk
    "1001_DFA_ANG.wav",  # no level
    "1001_dfa_ang_xx.wav",  # lower case
    "1001_ABC_ANG_XX.wav",  # unknown sentence
    "1001_DFA_SUR_XX.wav",  # unknown emotion
    "101_DFA_ANG_XX.wav",  # 3-digit actor
    "1001_DFA_ANG_XL.wav",  # unknown level
    "1001-DFA-ANG-XX.wav",  # wrong separator
]


def test_crema_names_are_parsed_strictly_and_never_guessed(tmp_path: Path) -> None:
    root = tmp_path / "crema-d"
    make_crema_tree(root, actors=["1001"], sentences=["DFA"], seconds=0.05)
    for name in BAD_CREMA_NAMES:
        write_wav(root / "AudioWAV" / name, seconds=0.05)
    (root / "AudioWAV" / "README.txt").write_text("not audio")
    index = build_index(["crema_d"], {"crema_d": root})
    assert len(index) == 6
    assert sorted(Path(e.path).name for e in index.excluded) == sorted(BAD_CREMA_NAMES)
    assert all(e.reason.startswith("name does not parse as ACTOR_SENTENCE_EMOTION_LEVEL") for e in index.excluded)
    assert all(e.corpus == "crema_d" for e in index.excluded)

    with pytest.raises(DataError) as err:
        build_index(["crema_d"], {"crema_d": root}, strict=True)
    message = str(err.value)
    assert f"{len(BAD_CREMA_NAMES)} file name(s) do not parse" in message
    for name in BAD_CREMA_NAMES:
        assert name in message


def test_crema_gender_from_demographics_anywhere_under_the_root(tmp_path: Path) -> None:
    root = tmp_path / "crema-d"
    make_crema_tree(root, actors=["1001", "1002"], sentences=["DFA"], seconds=0.05)
    # Deliberately the opposite of the official sexes, nested two folders deep: the file must win.
    write_demographics(root / "meta" / "docs" / "VideoDemographics.csv", {"1001": "female", "1002": "male"})
    index = build_index(["crema_d"], {"crema_d": root})
    genders = {c.speaker: c.gender for c in index.clips}
    assert genders == {"crema_d/1001": "female", "crema_d/1002": "male"}
    assert {c.label for c in index.clips if c.speaker == "crema_d/1001"} == set(range(6, 12))


def test_crema_demographics_with_bom_and_crlf(tmp_path: Path) -> None:
    root = tmp_path / "crema-d"
    make_crema_tree(root, actors=["1092"], emotions=["NEU"], sentences=["DFA"], seconds=0.05)
    text = '"ActorID","Age","Sex","Race","Ethnicity"\r\n1092,30,"Female","Asian","Not Hispanic"\r\n'
    (root / "VideoDemographics.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    (clip,) = build_index(["crema_d"], {"crema_d": root}).clips
    assert (clip.speaker, clip.gender, clip.label) == ("crema_d/1092", "female", 11)


def test_crema_builtin_table_covers_the_91_actors() -> None:
    assert set(crema_d.BUILTIN_GENDERS) == {str(a) for a in range(1001, 1092)}
    assert Counter(crema_d.BUILTIN_GENDERS.values()) == {"male": 48, "female": 43}
    # A few rows of the official VideoDemographics.csv.
    assert [crema_d.BUILTIN_GENDERS[a] for a in ("1001", "1002", "1076", "1090", "1091")] == [
        "male",
        "female",
        "female",
        "male",
        "female",
    ]


def test_crema_without_demographics_uses_builtin_table(tmp_path: Path) -> None:
    root = tmp_path / "crema-d"
    actors = ["1001", "1002", "1011", "1091", "1090"]
    make_crema_tree(root, actors=actors, emotions=["SAD"], sentences=["DFA"], seconds=0.05)
    genders = {c.speaker.split("/")[1]: c.gender for c in build_index(["crema_d"], {"crema_d": root}).clips}
    assert genders == {a: crema_d.BUILTIN_GENDERS[a] for a in actors}
    assert genders["1001"] == "male" and genders["1002"] == "female"


def test_crema_demographics_missing_an_actor_falls_back_to_builtin(tmp_path: Path) -> None:
    root = tmp_path / "crema-d"
    make_crema_tree(root, actors=["1002", "1093"], emotions=["SAD"], sentences=["DFA"], seconds=0.05)
    write_demographics(root / "VideoDemographics.csv", {"1093": "male"})
    genders = {c.speaker: c.gender for c in build_index(["crema_d"], {"crema_d": root}).clips}
    assert genders == {"crema_d/1002": "female", "crema_d/1093": "male"}


def test_crema_unknown_actor_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "crema-d"
    make_crema_tree(root, actors=["1001", "1092"], emotions=["SAD"], sentences=["DFA"], seconds=0.05)
    with pytest.raises(DataError, match=r"'1092'.*in neither.*no VideoDemographics.csv"):
        build_index(["crema_d"], {"crema_d": root})
    write_demographics(root / "VideoDemographics.csv", {"1001": "male"})
    with pytest.raises(DataError, match=r"'1092'.*in neither"):
        build_index(["crema_d"], {"crema_d": root})


def test_crema_bad_demographics_file(tmp_path: Path) -> None:
    root = tmp_path / "crema-d"
    make_crema_tree(root, actors=["1001"], emotions=["SAD"], sentences=["DFA"], seconds=0.05)
    (root / "VideoDemographics.csv").write_text("Actor,Gender\n1001,M\n")
    with pytest.raises(DataError, match="ActorID and Sex"):
        build_index(["crema_d"], {"crema_d": root})
    (root / "VideoDemographics.csv").write_text('"ActorID","Sex"\n1001,"Unknown"\n')
    with pytest.raises(DataError, match="expected Male/Female"):
        build_index(["crema_d"], {"crema_d": root})


# -------------------------------------------------------------------------------------------------- SAVEE


def test_savee_layouts_give_the_same_index(tmp_path: Path) -> None:
    make_savee_tree(tmp_path / "orig", "original", takes=2, seconds=0.05)
    make_savee_tree(tmp_path / "kaggle", "kaggle", takes=2, seconds=0.05)
    original = build_index(["savee"], {"savee": tmp_path / "orig"})
    kaggle = build_index(["savee"], {"savee": tmp_path / "kaggle"})
    assert _signature(original) == _signature(kaggle)
    assert len(original) == 4 * 6 * 2
    assert Path(kaggle.clips[0].path).parent.name == "ALL"
    assert Path(original.clips[0].path).parts[-3] == "AudioData"
    # Surprise is excluded and counted, with its reason, in both layouts.
    for index in (original, kaggle):
        assert len(index.excluded) == 4 * 2
        assert all(e.reason.startswith("no class: surprise") for e in index.excluded)
        assert all(Path(e.path).stem.split("_")[-1].startswith("su") for e in index.excluded)


def test_savee_speakers_genders_and_codes(tmp_path: Path) -> None:
    make_savee_tree(tmp_path / "savee", "kaggle", takes=1, seconds=0.05)
    index = build_index(["savee"], {"savee": tmp_path / "savee"})
    assert index.speakers() == [f"savee/{s}" for s in SAVEE_SPEAKERS]
    assert {c.gender for c in index.clips} == {"male"}
    by_id = {c.clip_id: c for c in index.clips}
    for code, emotion in SAVEE_CODES.items():
        if emotion is None:
            assert "savee/DC_su01" not in by_id
            continue
        clip = by_id[f"savee/JK_{code}01"]
        assert (clip.emotion, clip.label, clip.speaker) == (
            emotion,
            labels.label_index("male", emotion),
            "savee/JK",
        )
        assert clip.sentence == "01"
    # "sa" (sad) is not read as "s" + "a" (angry) or vice versa.
    assert by_id["savee/DC_sa01"].emotion == "sad" and by_id["savee/DC_a01"].emotion == "angry"


BAD_SAVEE = [
    "ALL/DC_b01.wav",  # unknown code
    "ALL/DC_a1.wav",  # one-digit take
    "ALL/XY_a01.wav",  # unknown speaker
    "ALL/a01.wav",  # original-style name outside a speaker folder
    "AudioData/XY/a01.wav",  # unknown speaker folder
    "AudioData/DC/a01_copy.wav",
]


def test_savee_unparsed_names_are_listed_or_an_error(tmp_path: Path) -> None:
    root = tmp_path / "savee"
    make_savee_tree(root, "original", speakers=["DC"], codes=["a", "n"], takes=1, seconds=0.05)
    for rel in BAD_SAVEE:
        write_wav(root / rel, seconds=0.05)
    index = build_index(["savee"], {"savee": root})
    assert sorted(c.clip_id for c in index.clips) == ["savee/DC_a01", "savee/DC_n01"]
    listed = sorted(Path(e.path).relative_to(root).as_posix() for e in index.excluded)
    assert listed == sorted(BAD_SAVEE)
    assert all(e.reason.startswith("name does not parse as SAVEE") for e in index.excluded)
    with pytest.raises(DataError, match=f"{len(BAD_SAVEE)} file name"):
        build_index(["savee"], {"savee": root}, strict=True)


def test_savee_strict_does_not_reject_surprise(tmp_path: Path) -> None:
    make_savee_tree(tmp_path / "savee", "original", speakers=["DC"], codes=["a", "su"], takes=1, seconds=0.05)
    index = build_index(["savee"], {"savee": tmp_path / "savee"}, strict=True)
    assert [c.clip_id for c in index.clips] == ["savee/DC_a01"]
    assert len(index.excluded) == 1


def test_savee_both_layouts_under_one_root_are_deduplicated(tmp_path: Path) -> None:
    root = tmp_path / "savee"
    make_savee_tree(root, "original", speakers=["DC"], codes=["a", "h"], takes=1, seconds=0.05)
    make_savee_tree(root, "kaggle", speakers=["DC"], codes=["a", "h"], takes=1, seconds=0.05)
    index = build_index(["savee"], {"savee": root})
    assert sorted(c.clip_id for c in index.clips) == ["savee/DC_a01", "savee/DC_h01"]
    assert sorted(e.reason for e in index.excluded) == [
        "duplicate of savee/DC_a01",
        "duplicate of savee/DC_h01",
    ]


# ---------------------------------------------------------------------------------------- both / formats


def test_either_corpus_alone_or_both(tmp_path: Path) -> None:
    make_crema_tree(tmp_path / "crema-d", actors=["1001", "1002"], sentences=["DFA"], seconds=0.05)
    make_savee_tree(tmp_path / "savee", "kaggle", takes=1, seconds=0.05)
    roots = {"crema_d": tmp_path / "crema-d", "savee": tmp_path / "savee"}
    crema = build_index(["crema_d"], {"crema_d": roots["crema_d"]})
    sav = build_index(["savee"], {"savee": roots["savee"]})
    both = build_index(["crema_d", "savee"], roots)
    assert {c.corpus for c in crema.clips} == {"crema_d"} and len(crema) == 12
    assert {c.corpus for c in sav.clips} == {"savee"} and len(sav) == 24
    assert _signature(both) == sorted(_signature(crema) + _signature(sav))
    assert len(both.excluded) == len(sav.excluded) == 4
    assert len(both.speakers()) == 6


def test_any_libsndfile_format(tmp_path: Path) -> None:
    make_crema_tree(tmp_path / "wav", actors=["1001"], sentences=["DFA"], seconds=0.05)
    make_crema_tree(tmp_path / "flac", actors=["1001"], sentences=["DFA"], seconds=0.05, ext=".flac")
    make_savee_tree(tmp_path / "sav-wav", "original", speakers=["KL"], takes=1, seconds=0.05)
    make_savee_tree(tmp_path / "sav-ogg", "original", speakers=["KL"], takes=1, seconds=0.05, ext=".ogg")
    make_savee_tree(tmp_path / "sav-flac", "kaggle", speakers=["KL"], takes=1, seconds=0.05, ext=".FLAC")
    wav = build_index(["crema_d"], {"crema_d": tmp_path / "wav"})
    flac = build_index(["crema_d"], {"crema_d": tmp_path / "flac"})
    assert _signature(wav) == _signature(flac) and len(flac) == 6
    assert all(c.path.endswith(".flac") for c in flac.clips)
    sav = _signature(build_index(["savee"], {"savee": tmp_path / "sav-wav"}))
    assert sav == _signature(build_index(["savee"], {"savee": tmp_path / "sav-ogg"}))
    assert sav == _signature(build_index(["savee"], {"savee": tmp_path / "sav-flac"}))
    assert len(sav) == 6


# -------------------------------------------------------------------------------------------- bad input


def _assert_helpful(message: str, corpus: str) -> None:
    assert "data=demo" in message
    assert (CREMA_KAGGLE if corpus == "crema_d" else SAVEE_KAGGLE) in message
    assert f"data.roots.{corpus}" in message


def test_missing_corpus_folder(tmp_path: Path) -> None:
    for corpus in ("crema_d", "savee"):
        with pytest.raises(DataError) as err:
            build_index([corpus], {corpus: tmp_path / "nowhere"})
        assert "corpus folder not found" in str(err.value)
        assert str(tmp_path / "nowhere") in str(err.value)
        _assert_helpful(str(err.value), corpus)


def test_empty_corpus_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    for corpus in ("crema_d", "savee"):
        with pytest.raises(DataError) as err:
            build_index([corpus], {corpus: tmp_path / "empty"})
        assert "no audio files" in str(err.value)
        _assert_helpful(str(err.value), corpus)


def test_savee_files_in_the_crema_root(tmp_path: Path) -> None:
    make_savee_tree(tmp_path / "crema-d", "original", speakers=["DC"], takes=1, seconds=0.05)
    with pytest.raises(DataError) as err:
        build_index(["crema_d", "savee"], {"crema_d": tmp_path / "crema-d", "savee": tmp_path / "crema-d"})
    message = str(err.value)
    assert "none of the 7 audio files is named ACTOR_SENTENCE_EMOTION_LEVEL" in message
    assert "another corpus" in message
    assert "Layout: <crema_d root>/AudioWAV/1001_DFA_ANG_XX.wav" in message
    _assert_helpful(message, "crema_d")


def test_crema_files_in_the_savee_root(tmp_path: Path) -> None:
    make_crema_tree(tmp_path / "savee", actors=["1001"], sentences=["DFA"], seconds=0.05)
    with pytest.raises(DataError) as err:
        build_index(["savee"], {"savee": tmp_path / "savee"})
    message = str(err.value)
    assert "none of the 6 audio files is named SAVEE" in message and "another corpus" in message
    _assert_helpful(message, "savee")


def test_unknown_corpus_name(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        build_index(["iemocap"], {"iemocap": tmp_path})
    message = str(err.value)
    assert "unknown corpus 'iemocap'" in message
    assert "crema_d" in message and "savee" in message
    assert CREMA_KAGGLE in message and SAVEE_KAGGLE in message and "data=demo" in message


def test_no_corpus_or_no_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.corpora is empty"):
        build_index([], {})
    with pytest.raises(DataError, match=r"data\.roots\.savee is not set"):
        build_index(["savee"], {"crema_d": tmp_path})


def test_index_does_not_read_audio(tmp_path: Path) -> None:
    """Indexing is by name only: an undecodable file is indexed here and reported by the decoder later."""
    root = tmp_path / "crema-d"
    make_crema_tree(root, actors=["1001"], emotions=["SAD"], sentences=["DFA"], seconds=0.05)
    (root / "AudioWAV" / "1001_IEO_SAD_XX.wav").write_bytes(b"not a wav file")
    assert len(build_index(["crema_d"], {"crema_d": root})) == 2
