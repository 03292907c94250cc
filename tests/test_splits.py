"""Splits: speaker-disjoint (default), speaker-grouped k-fold and the speaker-dependent random split."""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest
from audio_fixtures import fake_clips

from ser.data.corpus import Clip
from ser.data.splits import PARTS, Split, SplitError, SplitSpec, check_speaker_disjoint, make_split

CLIPS = fake_clips(crema_male=8, crema_female=8, savee=4, per_emotion=2)  # 20 speakers, 12 clips each


def _speakers(split: Split, part: str, clips: list[Clip] = CLIPS) -> set[str]:
    return {clips[i].speaker for i in split.part(part)}


def _assignment(split: Split) -> dict[str, set[str]]:
    return {p: _speakers(split, p) for p in PARTS}


def test_speaker_split_is_disjoint_and_complete() -> None:
    split = make_split(CLIPS)  # speaker is the default
    assert split.strategy == "speaker" and split.speaker_independent
    all_idx = split.train + split.val + split.test
    assert sorted(all_idx) == list(range(len(CLIPS)))
    parts = _assignment(split)
    assert not parts["train"] & parts["val"]
    assert not parts["train"] & parts["test"]
    assert not parts["val"] & parts["test"]
    # A speaker's clips all go to the part its speaker is in.
    for part in PARTS:
        assert len(split.part(part)) == 12 * len(parts[part])


def test_speaker_split_balances_gender_and_corpus() -> None:
    for seed in range(5):
        split = make_split(CLIPS, seed=seed)
        for part in PARTS:
            strata = Counter((CLIPS[i].corpus, CLIPS[i].gender) for i in split.part(part))
            assert set(strata) == {("crema_d", "male"), ("crema_d", "female"), ("savee", "male")}, (
                seed,
                part,
            )
        # 15% of 8 speakers rounds to 1, of 4 to at least 1: the same counts for every stratum and seed.
        by_stratum = Counter(
            (part, CLIPS[i].corpus, CLIPS[i].gender) for part in PARTS for i in split.part(part) if i % 12 == 0
        )
        assert by_stratum[("test", "crema_d", "male")] == by_stratum[("test", "crema_d", "female")] == 1
        assert by_stratum[("train", "crema_d", "male")] == by_stratum[("train", "crema_d", "female")] == 6
        assert by_stratum[("test", "savee", "male")] == by_stratum[("val", "savee", "male")] == 1


def test_speaker_split_is_deterministic_from_the_seed() -> None:
    assert make_split(CLIPS, seed=0) == make_split(CLIPS, seed=0)
    assert make_split(CLIPS, seed=7) == make_split(list(CLIPS), seed=7)
    # Seed 0 is a seed like any other, not "no seed": it differs from 1 (and from the others).
    assignments = [_assignment(make_split(CLIPS, seed=s)) for s in range(4)]
    assert assignments[0] != assignments[1]
    assert len({json.dumps({k: sorted(v) for k, v in a.items()}) for a in assignments}) == 4


def test_speaker_split_alone_corpora() -> None:
    savee_only = [c for c in CLIPS if c.corpus == "savee"]
    split = make_split(savee_only, seed=0)
    assert [len(_speakers(split, p, savee_only)) for p in PARTS] == [2, 1, 1]
    crema_only = [c for c in CLIPS if c.corpus == "crema_d"]
    split = make_split(crema_only, seed=3)
    check_speaker_disjoint(split, crema_only)
    assert {crema_only[i].gender for i in split.test} == {"male", "female"}


def test_too_few_speakers_is_an_error() -> None:
    two = [c for c in CLIPS if c.speaker in ("savee/DC", "savee/JE")]
    with pytest.raises(SplitError, match="left the val part empty"):
        make_split(two)


def test_random_split_is_stratified_and_logged_as_speaker_dependent(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ser.data.splits"):
        split = make_split(CLIPS, "random", seed=0, val_fraction=0.2, test_fraction=0.25)
    assert "speaker-DEPENDENT" in caplog.text
    assert split.strategy == "random" and not split.speaker_independent
    assert sorted(split.train + split.val + split.test) == list(range(len(CLIPS)))
    per_label = Counter(c.label for c in CLIPS)
    for part, fraction in (("test", 0.25), ("val", 0.2), ("train", 0.55)):
        got = Counter(CLIPS[i].label for i in split.part(part))
        for label, n in per_label.items():
            assert abs(got[label] - n * fraction) <= 1.5, (part, label, got[label], n * fraction)
    # Speaker-dependent indeed: test speakers also occur in training.
    assert _speakers(split, "test") & _speakers(split, "train")
    assert make_split(CLIPS, "random", seed=0, val_fraction=0.2, test_fraction=0.25) == split
    assert make_split(CLIPS, "random", seed=1, val_fraction=0.2, test_fraction=0.25).test != split.test


def test_speaker_split_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ser.data.splits"):
        make_split(CLIPS, "speaker")
        make_split(CLIPS, "kfold")
    assert "speaker-DEPENDENT" not in caplog.text


@pytest.mark.parametrize("k", [3, 5])
def test_kfold_test_parts_partition_the_speakers(k: int) -> None:
    folds = [make_split(CLIPS, "kfold", seed=11, num_folds=k, fold=f) for f in range(k)]
    tests = [_speakers(s, "test") for s in folds]
    everyone = {c.speaker for c in CLIPS}
    assert set().union(*tests) == everyone
    assert sum(len(t) for t in tests) == len(everyone)  # pairwise disjoint
    sizes = [len(t) for t in tests]
    assert max(sizes) - min(sizes) <= 1
    for f, split in enumerate(folds):
        assert (split.strategy, split.fold, split.num_folds) == ("kfold", f, k)
        assert split.speaker_independent
        parts = _assignment(split)
        assert not (parts["train"] & parts["val"]) and not (parts["train"] | parts["val"]) & parts["test"]
        assert parts["train"] | parts["val"] | parts["test"] == everyone
        assert parts["val"]


def test_kfold_is_deterministic_and_seeded() -> None:
    a = [_speakers(make_split(CLIPS, "kfold", seed=0, fold=f), "test") for f in range(5)]
    b = [_speakers(make_split(CLIPS, "kfold", seed=0, fold=f), "test") for f in range(5)]
    c = [_speakers(make_split(CLIPS, "kfold", seed=1, fold=f), "test") for f in range(5)]
    assert a == b
    assert a != c


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strategy": "leave_one_out"}, "split.strategy='leave_one_out'"),
        ({"strategy": "kfold", "num_folds": 1}, "at least 2"),
        ({"strategy": "kfold", "num_folds": 5, "fold": 5}, r"must be in 0\.\.4"),
        ({"strategy": "kfold", "fold": -1}, r"must be in 0\.\.4"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "v\\+t < 1"),
    ],
)
def test_invalid_split_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(SplitError, match=match):
        make_split(CLIPS, **kwargs)


def test_check_speaker_disjoint_raises_on_overlap() -> None:
    dc = [i for i, c in enumerate(CLIPS) if c.speaker == "savee/DC"]
    others = [i for i, c in enumerate(CLIPS) if c.speaker != "savee/DC"]
    ok = Split("speaker", 0, train=others[:-24], val=others[-24:-12], test=others[-12:] + dc)
    check_speaker_disjoint(ok, CLIPS)
    leaky = Split("speaker", 0, train=others[:-24] + dc[:1], val=others[-24:-12], test=others[-12:] + dc[1:])
    with pytest.raises(SplitError, match="speaker savee/DC is in both train and test"):
        check_speaker_disjoint(leaky, CLIPS)
    leaky_val = Split("speaker", 0, train=others[:-24], val=others[-24:-12] + dc[:1], test=others[-12:] + dc[1:])
    with pytest.raises(SplitError, match="savee/DC is in both val and test"):
        check_speaker_disjoint(leaky_val, CLIPS)


def test_manifest_content() -> None:
    split = make_split(CLIPS, "kfold", seed=2, num_folds=4, fold=1)
    manifest = json.loads(json.dumps(split.manifest(CLIPS)))  # JSON-able as written with every run
    assert {k: manifest[k] for k in ("strategy", "seed", "fold", "num_folds", "speaker_independent")} == {
        "strategy": "kfold",
        "seed": 2,
        "fold": 1,
        "num_folds": 4,
        "speaker_independent": True,
    }
    for part in PARTS:
        entry = manifest[part]
        idx = split.part(part)
        assert entry["clips"] == len(idx)
        assert entry["clip_ids"] == [CLIPS[i].clip_id for i in idx]
        assert entry["speakers"] == sorted(_speakers(split, part))
        assert {int(k): v for k, v in entry["per_label"].items()} == dict(Counter(CLIPS[i].label for i in idx))
    random_manifest = make_split(CLIPS, "random").manifest(CLIPS)
    assert random_manifest["speaker_independent"] is False and random_manifest["fold"] is None


def test_split_spec_makes_the_split_it_names() -> None:
    spec = SplitSpec("kfold", seed=3, num_folds=4, fold=2)
    assert spec.make(CLIPS) == make_split(CLIPS, "kfold", seed=3, num_folds=4, fold=2)
    assert SplitSpec().make(CLIPS) == make_split(CLIPS)
    with pytest.raises(SplitError, match=r"split\.fold=4: must be in 0\.\.3 for split\.num_folds=4"):
        SplitSpec("kfold", num_folds=4, fold=4).make(CLIPS)


@pytest.mark.parametrize("option", ["speaker", "kfold", "random"])
def test_split_group_options(train_config, option: str) -> None:
    from hydra.utils import instantiate

    cfg = train_config(f"split={option}", "seed=7")
    spec = instantiate(cfg.split)
    assert isinstance(spec, SplitSpec) and spec.strategy == option and spec.seed == 7
    assert train_config().split.strategy == "speaker"  # the default
    if option == "kfold":
        assert instantiate(train_config("split=kfold", "split.fold=2").split).fold == 2


# ------------------------------------------------------------------------------ cross-corpus and LOSO


def test_cross_corpus_tests_on_the_held_out_corpus_and_validates_on_the_others() -> None:
    for seed in range(3):
        split = make_split(CLIPS, "cross_corpus", seed=seed, test_corpus="savee")
        check_speaker_disjoint(split, CLIPS)
        assert _speakers(split, "test") == {f"savee/{s}" for s in ("DC", "JE", "JK", "KL")}
        assert {CLIPS[i].corpus for i in split.train + split.val} == {"crema_d"}
        # One validation speaker per (corpus, gender) stratum of the training corpora, by speaker.
        assert Counter(CLIPS[i].gender for i in split.val if i % 12 == 0) == {"male": 1, "female": 1}
        assert split.held_out == "savee" and split.fold is None
        assert sorted(split.train + split.val + split.test) == list(range(len(CLIPS)))
    other = make_split(CLIPS, "cross_corpus", test_corpus=["crema_d"])
    assert _speakers(other, "val") | _speakers(other, "train") == {f"savee/{s}" for s in ("DC", "JE", "JK", "KL")}
    assert len(_speakers(other, "val")) == 1 and other.manifest(CLIPS)["held_out"] == "crema_d"


def test_cross_corpus_spec_from_the_config_group() -> None:
    from omegaconf import OmegaConf

    spec = SplitSpec(strategy="cross_corpus", test_corpus=OmegaConf.create(["savee"]))
    assert spec.test_corpus == ("savee",) and spec.make(CLIPS).held_out == "savee"
    assert SplitSpec(strategy="cross_corpus", test_corpus="savee") == spec


@pytest.mark.parametrize(
    ("test_corpus", "message"),
    [
        (None, r"needs split.test_corpus: the held-out corpus, one of \['crema_d', 'savee'\]"),
        ("tess", "split.test_corpus='tess' is not among the corpora of the data .* add it to data.corpora"),
        (["crema_d", "savee"], "holds out every corpus of the data"),
    ],
)
def test_cross_corpus_errors(test_corpus, message: str) -> None:
    with pytest.raises(SplitError, match=message):
        make_split(CLIPS, "cross_corpus", test_corpus=test_corpus)


SAVEE = [c for c in CLIPS if c.corpus == "savee"]


def test_loso_on_savee_is_four_folds_of_one_test_and_one_val_speaker() -> None:
    tested = []
    for fold in range(4):
        split = make_split(SAVEE, "loso", seed=0, speaker=fold)
        check_speaker_disjoint(split, SAVEE)
        parts = {p: _speakers(split, p, SAVEE) for p in PARTS}
        assert [len(parts[p]) for p in PARTS] == [2, 1, 1]
        assert (split.fold, split.num_folds, split.held_out) == (fold, 4, next(iter(parts["test"])))
        tested += parts["test"]
    assert tested == ["savee/DC", "savee/JE", "savee/JK", "savee/KL"]
    # A speaker id, with or without its corpus, names the same fold; the seed picks the val speaker.
    assert make_split(SAVEE, "loso", speaker="savee/JK") == make_split(SAVEE, "loso", speaker="JK")
    assert make_split(SAVEE, "loso", speaker="JK").fold == 2 == make_split(SAVEE, "loso", speaker="2").fold
    vals = {frozenset(_speakers(make_split(SAVEE, "loso", seed=s, speaker=0), "val", SAVEE)) for s in range(8)}
    assert len(vals) > 1
    two = make_split(CLIPS, "loso", speaker="savee/DC", val_speakers=2)
    assert len(_speakers(two, "val")) == 2 and len(_speakers(two, "train")) == 17


@pytest.mark.parametrize(
    ("speaker", "val_speakers", "clips", "message"),
    [
        (4, 1, SAVEE, r"split.speaker=4: must be in 0..3"),
        ("XX", 1, SAVEE, "split.speaker='XX' is not a speaker of the data; .* savee/DC, savee/JE"),
        (None, 1, SAVEE, "split=loso needs split.speaker"),
        (0, 3, SAVEE, "needs at least 5 speakers"),
        (0, 1, SAVEE[:24], "needs at least 3 speakers .* the data have 2"),
    ],
)
def test_loso_errors(speaker, val_speakers: int, clips: list[Clip], message: str) -> None:
    with pytest.raises(SplitError, match=message):
        make_split(clips, "loso", speaker=speaker, val_speakers=val_speakers)


def test_compare_pairs_held_out_corpora_and_speakers_like_folds() -> None:
    from ser.analysis.stats import PAIRING_KEYS, analyze
    from ser.results import SCALARS
    from ser.sweeps import Job

    assert {"split.test_corpus", "split.speaker"} <= set(PAIRING_KEYS)
    for key, split, folds in (
        ("split.test_corpus", "cross_corpus", ["crema_d", "savee", "tess"]),
        ("split.speaker", "loso", [0, 1, 2, 3]),
    ):
        jobs = []
        for loss, base in (("categorical", 0.5), ("binary", 0.4)):
            for j, fold in enumerate(folds):
                metrics = dict.fromkeys(SCALARS, base + j / 100)
                metrics.update(split=split, fold=fold if split == "loso" else None, loss=loss)
                jobs.append(Job(str(len(jobs)), "ok", None, params={"loss": loss, key: fold}, metrics=metrics))
        comp = analyze(jobs)
        assert comp.group_keys == ["loss"] and comp.match_keys == [key]
        assert [p.n for p in comp.paired if p.metric == "uar" and p.stratum == "all"] == [len(folds)]
        assert [row[0] for row in comp.kfold[0].rows] == folds


def test_protocol_presets_compose() -> None:
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    conf = str(Path(__file__).resolve().parents[1] / "conf")
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=conf):
        loco = compose("train", ["experiment=leave_one_corpus_out"], return_hydra_config=True)
        loso = compose("train", ["experiment=leave_one_speaker_out", "data=emodb"], return_hydra_config=True)
        one = compose("train", ["split=cross_corpus", "split.test_corpus=[savee,tess]"])
    GlobalHydra.instance().clear()
    assert loco.split.strategy == "cross_corpus" and list(loco.data.corpora) == [
        "crema_d",
        "savee",
        "ravdess",
        "tess",
        "emodb",
    ]
    assert loco.hydra.sweeper.params["split.test_corpus"] == "crema_d,savee,ravdess,tess,emodb"
    assert loso.split.strategy == "loso" and list(loso.data.corpora) == ["emodb"]
    assert loso.hydra.sweeper.params["split.speaker"] == "0,1,2,3"
    spec = instantiate({**one.split, "seed": 0})
    assert isinstance(spec, SplitSpec) and spec.test_corpus == ("savee", "tess")
