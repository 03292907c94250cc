"""RAVDESS, TESS, EmoDB and the manifest corpus, on files named with each corpus' real naming scheme."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from audio_fixtures import make_emodb_tree, make_ravdess_tree, make_tess_tree, write_manifest, write_wav

from ser import labels
from ser.data.corpora import CorpusSet, build_index
from ser.data.corpus import NO_LABEL, DataError
from ser.data.splits import SplitError, make_split


def _reasons(index) -> Counter[str]:
    return Counter(e.reason for e in index.excluded)


# ---------------------------------------------------------------------------------------------- RAVDESS


def test_ravdess_labels_genders_and_exclusions(tmp_path: Path) -> None:
    root = tmp_path / "ravdess"
    make_ravdess_tree(root, actors=(1, 2))
    index = build_index(["ravdess"], {"ravdess": root})
    assert index.speakers() == ["ravdess/Actor_01", "ravdess/Actor_02"]
    assert {c.speaker: c.gender for c in index.clips} == {"ravdess/Actor_01": "male", "ravdess/Actor_02": "female"}
    by_code = {Path(c.path).stem.split("-")[2]: c.emotion for c in index.clips if c.speaker.endswith("01")}
    assert by_code == {"01": "neutral", "03": "happy", "04": "sad", "05": "angry", "06": "fear", "07": "disgust"}
    assert _reasons(index) == {
        "no class: calm (02) is not in the 12 labels": 2,
        "no class: surprised (08) is not in the 12 labels": 2,
    }
    clip = next(c for c in index.clips if c.clip_id.endswith("01-05-01-01-01-01"))
    assert clip.clip_id == "ravdess/01-05-01-01-01-01" and clip.intensity == "normal" and clip.sentence == "01"
    assert clip.label == labels.class_index("male_angry")


def test_ravdess_calm_as_neutral_is_an_option(tmp_path: Path) -> None:
    root = tmp_path / "ravdess"
    make_ravdess_tree(root, actors=(3,), emotions=("01", "02", "08"))
    default = build_index(["ravdess"], {"ravdess": root})
    assert [c.emotion for c in default.clips] == ["neutral"]
    data = {"corpora": ["ravdess"], "root": str(tmp_path), "options": {"ravdess": {"calm_as_neutral": True}}}
    calm = CorpusSet.from_config(data).index(progress=False)
    assert [c.emotion for c in calm.clips] == ["neutral", "neutral"]
    assert [e.reason for e in calm.excluded] == ["no class: surprised (08) is not in the 12 labels"]
    with pytest.raises(DataError, match=r"data.options.ravdess: unknown option\(s\) \['calm'\]; .*calm_as_neutral"):
        build_index(["ravdess"], {"ravdess": root}, options={"ravdess": {"calm": True}})


def test_ravdess_song_and_video_are_excluded_with_a_reason(tmp_path: Path) -> None:
    root = tmp_path / "ravdess"
    make_ravdess_tree(root, actors=(1,), emotions=("03",))
    make_ravdess_tree(root, actors=(1,), emotions=("04",), channel="02")
    make_ravdess_tree(root, actors=(1,), emotions=("05",), modality="02")
    index = build_index(["ravdess"], {"ravdess": root})
    assert [c.emotion for c in index.clips] == ["happy"]
    assert sorted(e.reason.split(":")[0] for e in index.excluded) == ["song", "video-only"]
    songs = tmp_path / "songs"
    make_ravdess_tree(songs, actors=(1,), emotions=("03",), channel="02")
    with pytest.raises(DataError, match="song recordings .*Audio_Speech_Actors_01-24"):
        build_index(["ravdess"], {"ravdess": songs})


def test_ravdess_kaggle_copy_nested_twice_is_read_once(tmp_path: Path) -> None:
    root = tmp_path / "ravdess"
    make_ravdess_tree(root, actors=(1, 2), emotions=("03", "04"))
    make_ravdess_tree(root, actors=(1, 2), emotions=("03", "04"), nested="audio_speech_actors_01-24")
    index = build_index(["ravdess"], {"ravdess": root})
    assert len(index.clips) == 4 and len({c.clip_id for c in index.clips}) == 4
    assert [e.reason.split(" ")[0] for e in index.excluded] == ["duplicate"] * 4
    make_tess_tree(tmp_path / "tess", speakers=("OAF",), emotions=("sad",))
    with pytest.raises(DataError, match="is this another corpus"):
        build_index(["ravdess"], {"ravdess": tmp_path / "tess"})


# ---------------------------------------------------------------------------------------------- TESS


def test_tess_emotion_comes_from_the_file_name_whatever_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "tess"
    odd_folders = {"fear": "Fear", "ps": "pleasant_surprised", "sad": "Sad"}
    make_tess_tree(root / "TESS Toronto emotional speech set data", folder_names=odd_folders)
    index = build_index(["tess"], {"tess": root})
    assert index.speakers() == ["tess/OAF", "tess/YAF"] and {c.gender for c in index.clips} == {"female"}
    assert sorted({c.emotion for c in index.clips}) == sorted(labels.EMOTIONS)
    assert _reasons(index) == {"no class: pleasant surprise (ps) is not in the 12 labels": 2}
    assert "tess/OAF_back_fear" in {c.clip_id for c in index.clips}


def test_tess_flat_variants_spellings_and_duplicate_copies(tmp_path: Path) -> None:
    root = tmp_path / "tess"
    make_tess_tree(root / "a", speakers=("YAF",), emotions=("angry", "ps"), layout="flat")
    # A second copy with other spellings of the same clips, and spellings the common copies have.
    for stem in ("yaf_back_Angry", "YAF_back_pleasant_surprised", "OA_bite_neutral", "OAF_bite_pleasant_surprise"):
        write_wav(root / "b" / f"{stem}.wav", seconds=0.1)
    write_wav(root / "b" / "YAF_back_calm.wav", seconds=0.1)
    index = build_index(["tess"], {"tess": root})
    assert sorted(c.clip_id for c in index.clips) == ["tess/OAF_bite_neutral", "tess/YAF_back_angry"]
    kinds = Counter(e.reason.split(":")[0].split(" of ")[0] for e in index.excluded)
    assert kinds == {
        "no class": 3,
        "duplicate": 1,
        "name does not parse as SPEAKER_WORD_EMOTION (e.g. OAF_back_angry, YAF_youth_ps)": 1,
    }


# ---------------------------------------------------------------------------------------------- EmoDB


def test_emodb_genders_emotions_and_boredom(tmp_path: Path) -> None:
    root = tmp_path / "emodb"
    make_emodb_tree(root, speakers=("03", "08", "10", "16"))
    write_wav(root / "wav" / "99a01Wa.wav", seconds=0.1)  # not one of the documented speakers
    write_wav(root / "wav" / "readme.wav", seconds=0.1)
    index = build_index(["emodb"], {"emodb": root})
    genders = {c.speaker: c.gender for c in index.clips}
    assert genders == {"emodb/03": "male", "emodb/08": "female", "emodb/10": "male", "emodb/16": "female"}
    letters = {Path(c.path).stem[5]: c.emotion for c in index.clips}
    assert letters == {"W": "angry", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}
    kinds = Counter(e.reason.split(":")[0] for e in index.excluded)
    assert kinds == {
        "no class": 4,
        "unknown speaker": 1,
        "name does not parse as SPEAKER TEXT EMOTION VERSION (e.g. 03a01Fa)": 1,
    }
    assert "no class: boredom (L, Langeweile) is not in the 12 labels" in _reasons(index)
    assert next(c for c in index.clips if c.clip_id == "emodb/03a01Fa").sentence == "a01"


# ---------------------------------------------------------------------------------------------- manifest


def _audio(root: Path, *names: str) -> None:
    for name in names:
        write_wav(root / name, seconds=0.1)


def test_manifest_synonyms_relative_paths_and_reported_problems(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    _audio(root, "clips/a.wav", "clips/b.wav", "clips/c.wav", "clips/d.wav", "e.wav")
    rows = [
        ("clips/a.wav", "alice", "Anger", "F"),
        ("clips/b.wav", "alice", "happiness", "female"),
        ("clips/c.wav", "bob", "JOY", "m"),
        ("clips/d.wav", "bob", "surprise", "male"),
        ("clips/missing.wav", "bob", "sad", "male"),
        ("e.wav", "carol", "sadness", ""),
    ]
    csv = write_manifest(root / "manifest.csv", rows)
    for given in (root, csv):  # the folder (holding manifest.csv) or the file itself
        index = build_index(["manifest"], {"manifest": given})
        got = [(c.clip_id, c.speaker, c.gender, c.emotion) for c in index.clips]
        assert got == [
            ("manifest/clips/a", "manifest/alice", "female", "angry"),
            ("manifest/clips/b", "manifest/alice", "female", "happy"),
            ("manifest/clips/c", "manifest/bob", "male", "happy"),
        ]
        assert _reasons(index) == {
            "no class: emotion 'surprise' is not in the 12 labels": 1,
            "missing file: line 6 of manifest.csv names a file that does not exist": 1,
            "no class: gender unknown, the 12 labels need it (give a gender column, or data.unknown_gender=keep "
            "to score emotions only)": 1,
        }


def test_manifest_without_gender_keeps_clips_only_when_asked(tmp_path: Path) -> None:
    _audio(tmp_path, "a.wav", "b.wav")
    csv = write_manifest(
        tmp_path / "m.csv", [("a.wav", "s1", "sad"), ("b.wav", "s2", "fearful")], "path,speaker,emotion"
    )
    with pytest.raises(DataError, match="none of the 2 recordings .* gender unknown, .*data.unknown_gender=keep"):
        build_index(["manifest"], {"manifest": csv}, unknown_gender="exclude")
    kept = build_index(["manifest"], {"manifest": csv}, unknown_gender="keep").clips
    assert [(c.gender, c.emotion, c.label) for c in kept] == [
        ("unknown", "sad", NO_LABEL),
        ("unknown", "fear", NO_LABEL),
    ]
    with pytest.raises(SplitError, match="data.unknown_gender=exclude"):
        make_split(kept)
    with pytest.raises(DataError, match="data.unknown_gender='maybe'"):
        build_index(["manifest"], {"manifest": csv}, unknown_gender="maybe")


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        ("path,speaker", [("a.wav", "s1")], r"m.csv: missing column\(s\) emotion; .*header path,speaker,emotion"),
        ("file,who,feeling", [("a.wav", "s1", "sad")], r"missing column\(s\) path, speaker, emotion"),
        ("path,speaker,emotion", [], "lists no clips"),
        ("path,speaker,emotion", [("nope.wav", "s1", "sad")], "none of its 1 rows is a usable clip .*missing file"),
    ],
)
def test_manifest_errors_name_the_csv_and_what_to_do(tmp_path: Path, header: str, rows: list, message: str) -> None:
    _audio(tmp_path, "a.wav")
    csv = write_manifest(tmp_path / "m.csv", rows, header)
    with pytest.raises(DataError, match=message) as err:
        build_index(["manifest"], {"manifest": csv})
    assert str(csv) in str(err.value)
    if "column" in message:
        assert "\n" not in str(err.value)


def test_manifest_folder_without_a_csv_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no manifest.csv in the folder") as err:
        build_index(["manifest"], {"manifest": tmp_path / "empty"})
    assert "data.roots.manifest" in str(err.value)


# ---------------------------------------------------------------------------------------------- sets


def _four_corpora(root: Path) -> None:
    make_ravdess_tree(root / "ravdess", actors=(1, 2, 3), emotions=("01", "02", "05"))
    make_tess_tree(root / "tess", emotions=("sad", "ps"))
    make_emodb_tree(root / "emodb", speakers=("03", "08", "09"), letters=("W", "L", "T"))
    _audio(root / "manifest", "x.wav", "y.wav")
    write_manifest(root / "manifest" / "manifest.csv", [("x.wav", "u1", "neutral", "m"), ("y.wav", "u2", "sad", "f")])


def test_all_is_every_corpus_found_under_the_root(tmp_path: Path) -> None:
    _four_corpora(tmp_path)
    found = CorpusSet(names=("all",), root=str(tmp_path))
    assert found.names == ("emodb", "manifest", "ravdess", "tess")
    assert CorpusSet(names=("savee", "all"), root=str(tmp_path)).names == (
        "savee",
        "emodb",
        "manifest",
        "ravdess",
        "tess",
    )
    index = found.index(progress=False)
    assert Counter(c.corpus for c in index.clips) == {"ravdess": 6, "tess": 2, "emodb": 6, "manifest": 2}
    with pytest.raises(DataError, match=r"(?s)data.corpora=\[all\]: no corpus folder found under .*kaggle.com") as err:
        CorpusSet(names=("all",), root=str(tmp_path / "nothing")).index(progress=False)
    assert "data=demo" in str(err.value) and "demo (built in" not in str(err.value)


def test_data_report_cli_covers_every_new_corpus(tmp_path: Path, cli_env: dict, shared_cache: Path) -> None:
    _four_corpora(tmp_path / "corpora")
    args = ["data=all", f"data.root={tmp_path / 'corpora'}", "data.progress=false", f"paths.cache_dir={shared_cache}"]
    args += ["split=cross_corpus", "split.test_corpus=tess"]
    res = subprocess.run(
        [sys.executable, "-m", "ser.data", *args],
        capture_output=True,
        text=True,
        env=cli_env,
        cwd=tmp_path,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    (run_dir,) = (tmp_path / "outputs" / "data").iterdir()
    report = json.loads((run_dir / "data_report.json").read_text())
    assert set(report["corpora"]) == {"ravdess", "tess", "emodb", "manifest"}
    assert report["corpora"]["ravdess"]["excluded"] == {"no class": 3}
    assert report["corpora"]["emodb"]["speakers"] == {"female": 2, "male": 1}
    manifest = json.loads((run_dir / "split_manifest.json").read_text())
    assert manifest["strategy"] == "cross_corpus" and manifest["held_out"] == "tess"
    assert manifest["test"]["speakers"] == ["tess/OAF", "tess/YAF"]
    # TESS alone has two speakers: no speaker split (ser.data says so in one line, exit status 2).
    tess = build_index(["tess"], {"tess": tmp_path / "corpora" / "tess"}).clips
    with pytest.raises(SplitError, match="speaker split left the val part empty"):
        make_split(tess)
