"""SERDataModule end to end on a tiny synthetic tree: index, cache, split, statistics, batches, report."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from audio_fixtures import make_crema_tree, make_savee_tree, write_wav
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import BatchSampler, RandomSampler

from ser import labels
from ser.data.audio import AudioError
from ser.data.cache import CacheSettings, FeatureCache
from ser.data.corpora import CorpusSet
from ser.data.corpora import demo as demo_mod
from ser.data.corpus import DataError
from ser.data.datamodule import SERDataModule
from ser.data.splits import SplitSpec

FEATURES = {"_target_": "ser.features.LogMel", "sample_rate": 16000, "n_mels": 16}
SILENT = "1002_MTI_SAD_XX.wav"
BAD_NAME = "1001_DFA_ANG_XX (1).wav"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """CREMA-D: 3 male + 3 female actors x 6 emotions x 2 sentences, one silent clip, one bad name.
    SAVEE (original layout, 44.1 kHz): 4 speakers x 7 codes (su included) x 2 takes."""
    root = tmp_path_factory.mktemp("data")
    make_crema_tree(root / "crema-d")
    write_wav(root / "crema-d" / "AudioWAV" / SILENT, seconds=0.8, silent=True)
    write_wav(root / "crema-d" / "AudioWAV" / BAD_NAME, seconds=0.5)
    make_savee_tree(root / "savee", "original")
    return {"crema_d": str(root / "crema-d"), "savee": str(root / "savee")}


def _make(
    roots: dict[str, str],
    cache_dir: Path,
    corpora: tuple[str, ...] = ("crema_d", "savee"),
    on_error: str = "raise",
    **kwargs,
) -> SERDataModule:
    return SERDataModule(
        CorpusSet(names=tuple(corpora), roots=roots),
        instantiate(FEATURES),
        cache=CacheSettings(dir=str(cache_dir), features=FEATURES, on_error=on_error),
        **kwargs,
    )


def _dm(tree: dict[str, str], cache_dir: Path, **kwargs) -> SERDataModule:
    kwargs.setdefault("batch_size", 8)
    return _make(tree, cache_dir, progress=False, **kwargs)


@pytest.fixture(scope="module")
def dm(tree: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> SERDataModule:
    out = tmp_path_factory.mktemp("run")
    module = _dm(tree, out / "cache", output_dir=str(out / "outputs"))
    module.prepare_data()
    module.setup("fit")
    return module


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = FeatureCache.build

    def counting(self, clips):
        calls.append(len(clips))
        return original(self, clips)

    monkeypatch.setattr(FeatureCache, "build", counting)
    return calls


def test_prepare_data_builds_index_and_cache_once(
    tree: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = _count_builds(monkeypatch)
    first = _dm(tree, tmp_path)
    first.prepare_data()
    assert builds == [72 + 1 + 48]  # every parsed clip (the silent one too; su and the bad name are not clips)
    assert len(list((tmp_path / "features").glob("features-*.pt"))) == 1
    assert first.split is None  # prepare_data only prepares
    first.setup()
    second = _dm(tree, tmp_path)  # e.g. the next run, or another DDP rank
    second.prepare_data()
    second.setup()
    assert builds == [121]
    assert second.split is not None and second.split.test == first.split.test
    assert torch.equal(second.feature_set.features, first.feature_set.features)


def test_setup_splits_by_speaker(dm: SERDataModule) -> None:
    split = dm.split
    assert split.strategy == "speaker" and split.seed == 0
    assert len(dm.clips) == 120 and SILENT not in {Path(c.path).name for c in dm.clips}
    speakers = {p: {dm.clips[i].speaker for i in split.part(p)} for p in ("train", "val", "test")}
    assert not (speakers["train"] & speakers["val"]) and not (speakers["train"] | speakers["val"]) & speakers["test"]
    for part in ("train", "val", "test"):
        strata = {(dm.clips[i].corpus, dm.clips[i].gender) for i in split.part(part)}
        assert strata == {("crema_d", "male"), ("crema_d", "female"), ("savee", "male")}
        assert len(dm.datasets[part]) == len(split.part(part))
    assert dm.speaker_ids == {s: i for i, s in enumerate(sorted({c.speaker for c in dm.clips}))}
    assert dm.input_dim == 16
    summary = dm.summary()
    assert summary["clips"] == {p: len(split.part(p)) for p in ("train", "val", "test")}
    assert summary["speakers"] == {p: len(speakers[p]) for p in ("train", "val", "test")}
    assert summary["speaker_independent"] is True and summary["excluded"] == 1 + 1 + 8


@pytest.mark.parametrize("part", ["train", "val", "test"])
def test_batches_carry_padded_features_lengths_labels_and_speakers(dm: SERDataModule, part: str) -> None:
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}[part]()
    order = list(loader.batch_sampler)  # the sampler replays the same order for the same epoch
    ds = dm.datasets[part]
    clip_of = dm.split.part(part)
    seen = []
    for batch, idx in zip(loader, order, strict=True):
        assert batch.features.shape == (len(idx), int(batch.lengths.max()), 16)
        for row, i in enumerate(idx):
            clip = dm.clips[clip_of[i]]
            n = int(batch.lengths[row])
            assert n == ds.lengths[i]
            assert torch.equal(batch.features[row, :n], dm.feature_set.get(ds.rows[i]))
            assert torch.all(batch.features[row, n:] == 0)
            assert int(batch.labels[row]) == clip.label == labels.label_index(clip.gender, clip.emotion)
            assert int(batch.speakers[row]) == dm.speaker_ids[clip.speaker]
            seen.append(i)
    assert sorted(seen) == list(range(len(ds)))


def test_bucketing_pads_less_than_random_batching(dm: SERDataModule) -> None:
    def padding(batches) -> float:
        lengths = dm.datasets["train"].lengths
        return sum(max(lengths[i] for i in b) * len(b) for b in batches) / sum(lengths) - 1

    bucketed = padding(list(dm.train_dataloader().batch_sampler))
    n = len(dm.datasets["train"])
    random = np.mean(
        [
            padding(BatchSampler(RandomSampler(range(n), generator=torch.Generator().manual_seed(s)), 8, False))
            for s in range(10)
        ]
    )
    assert random > 0.2
    assert bucketed < random / 2


def test_feature_stats_come_from_the_training_part_only(dm: SERDataModule) -> None:
    mean, std = dm.feature_stats()
    fs = dm.feature_set
    train = torch.cat([fs.get(r) for r in dm.datasets["train"].rows]).double()
    torch.testing.assert_close(mean, train.mean(0).float(), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(std, train.std(0, unbiased=False).float(), atol=1e-4, rtol=1e-5)
    everything = fs.features.double()
    assert not torch.allclose(mean, everything.mean(0).float(), atol=0.1)
    assert not torch.allclose(std, everything.std(0, unbiased=False).float(), atol=0.1)
    assert mean.shape == std.shape == (16,) and torch.all(std > 0)


def test_data_report_and_manifest_are_saved(dm: SERDataModule, tree: dict[str, str]) -> None:
    out = dm.output_dir
    report = json.loads((out / "data_report.json").read_text())
    assert report == json.loads(json.dumps(dm.report))
    assert report["clips"] == 120
    crema, savee = report["corpora"]["crema_d"], report["corpora"]["savee"]
    assert crema["per_class"] == dict.fromkeys(labels.CLASSES, 6)  # the silent female_sad clip is out
    assert savee["per_class"] == {name: (8 if name.startswith("male") else 0) for name in labels.CLASSES}
    assert (crema["clips"], savee["clips"]) == (72, 48)
    assert crema["speakers"] == {"female": 3, "male": 3} and savee["speakers"] == {"male": 4}
    assert crema["excluded"] == {
        "silent": 1,
        "name does not parse as ACTOR_SENTENCE_EMOTION_LEVEL (e.g. 1001_DFA_ANG_XX)": 1,
    }
    assert savee["excluded"] == {"no class": 8}
    # Every exclusion is listed with its file and reason.
    assert len(report["excluded"]) == 10
    listed = {Path(e["path"]).relative_to(Path(tree[e["corpus"]])).as_posix(): e for e in report["excluded"]}
    assert listed[f"AudioWAV/{SILENT}"]["reason"].startswith("silent")
    assert listed[f"AudioWAV/{BAD_NAME}"]["reason"].startswith("name does not parse")
    surprise = [k for k, e in listed.items() if e["reason"].startswith("no class: surprise")]
    assert sorted(surprise) == sorted(f"AudioData/{s}/su0{t}.wav" for s in ("DC", "JE", "JK", "KL") for t in (1, 2))
    # Hours: the clips' durations (frames are 10 ms, so each clip counts at most one hop more; the
    # report rounds to 1e-4 h).
    seconds = sum(sf.info(clip.path).duration for clip in dm.clips)
    assert report["hours"] == pytest.approx(seconds / 3600, abs=120 * 0.011 / 3600 + 1e-4)
    assert report["roots"] == tree

    text = (out / "data_report.txt").read_text()
    assert text.startswith("Data report: 120 clips")
    assert "female_sad" in text and "crema_d: 72 clips" in text and "savee: 48 clips" in text
    assert "speakers: 3 female, 3 male" in text
    assert "excluded     8  no class" in text and "excluded     1  silent" in text
    assert f"{Path(tree['crema_d']) / 'AudioWAV' / SILENT}: silent" in text

    manifest = json.loads((out / "split_manifest.json").read_text())
    assert manifest == json.loads(json.dumps(dm.split.manifest(dm.clips)))
    assert manifest["test"]["clip_ids"] == [dm.clips[i].clip_id for i in dm.split.test]


def test_either_corpus_alone(tree: dict[str, str], tmp_path: Path) -> None:
    savee = _dm(tree, tmp_path, corpora=["savee"])
    savee.setup()
    assert {c.corpus for c in savee.clips} == {"savee"} and len(savee.clips) == 48
    assert {c.label for c in savee.clips} == set(range(6))
    assert list(savee.report["corpora"]) == ["savee"]
    crema = _dm(tree, tmp_path, corpora=["crema_d"])
    crema.setup()
    assert {c.corpus for c in crema.clips} == {"crema_d"} and len(crema.clips) == 72


def test_kfold_and_random_through_the_datamodule(
    tree: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folds = []
    for fold in range(3):
        # val_fraction 0.4: validation speakers are drawn per (corpus, gender) stratum, and with only 2
        # non-test speakers in a stratum the default 0.15 rounds to none, so fold 0 would have no val part.
        module = _dm(tree, tmp_path, split=SplitSpec("kfold", seed=4, val_fraction=0.4, num_folds=3, fold=fold))
        module.setup()
        assert module.summary()["fold"] == fold
        folds.append({module.clips[i].speaker for i in module.split.test})
    assert sum(len(f) for f in folds) == len(set().union(*folds)) == 10
    with caplog.at_level(logging.WARNING, logger="ser.data.splits"):
        rnd = _dm(tree, tmp_path, split=SplitSpec("random"))
        rnd.setup()
    assert "speaker-DEPENDENT" in caplog.text
    assert rnd.summary()["speaker_independent"] is False


def test_split_seed_reaches_the_split(tree: dict[str, str], tmp_path: Path) -> None:
    tests = []
    for seed in (0, 1, 0):
        module = _dm(tree, tmp_path, split=SplitSpec(seed=seed))
        module.setup()
        tests.append(sorted({module.clips[i].speaker for i in module.split.test}))
    assert tests[0] == tests[2] and tests[0] != tests[1]


def test_unreadable_file_raise_or_skip(tmp_path: Path) -> None:
    root = tmp_path / "crema-d"
    make_crema_tree(root, actors=["1001", "1005", "1011", "1002", "1003", "1004"], sentences=["DFA"])
    (root / "AudioWAV" / "1003_IEO_HAP_XX.wav").write_bytes(b"RIFF....WAVEfmt broken")
    strict = _make({"crema_d": str(root)}, tmp_path, corpora=("crema_d",))
    with pytest.raises(AudioError, match="1003_IEO_HAP_XX"):
        strict.prepare_data()
    lenient = _make({"crema_d": str(root)}, tmp_path, corpora=("crema_d",), on_error="skip", progress=False)
    lenient.setup()
    assert len(lenient.clips) == 36
    (excluded,) = lenient.report["excluded"]
    assert excluded["reason"].startswith("unreadable") and "1003_IEO_HAP_XX.wav" in excluded["reason"]


def test_bad_input_fails_before_any_work(tmp_path: Path) -> None:
    module = _make(
        {"crema_d": str(tmp_path / "none"), "savee": str(tmp_path / "none")}, tmp_path / "cache", progress=False
    )
    with pytest.raises(DataError) as err:
        module.prepare_data()
    assert "corpus folder not found" in str(err.value) and "data=demo" in str(err.value)
    assert "kaggle.com/datasets/ejlok1/cremad" in str(err.value)
    assert not (tmp_path / "cache").exists()
    with pytest.raises(DataError, match="unknown corpus 'iemocap'"):
        _make({}, tmp_path / "cache", corpora=("iemocap",)).prepare_data()


SMALL_DEMO = demo_mod.DemoSpec(
    crema_actors=(1001, 1005, 1011, 1002, 1003, 1004),  # 3 per gender: one each for train, val, test
    savee_speakers=("DC", "JE"),
    crema_sentences=("IEO",),
    savee_takes=1,
    savee_surprise_takes=1,
)


def test_demo_corpus_through_the_real_loaders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = demo_mod.ensure_demo_corpus
    monkeypatch.setattr(demo_mod, "ensure_demo_corpus", lambda root, progress=True: real(root, SMALL_DEMO, progress))
    module = _make({"demo": str(tmp_path / "demo")}, tmp_path, corpora=("demo",), progress=False, batch_size=16)
    module.prepare_data()
    module.setup()
    roots = module.report["roots"]  # the folders the CREMA-D and SAVEE loaders read inside the demo corpus
    assert Path(roots["crema_d"]).parent.parent == Path(roots["savee"]).parent.parent == tmp_path / "demo"
    assert {c.corpus for c in module.clips} == {"crema_d", "savee"}  # same strata (and split) as the real corpora
    assert Counter(c.corpus for c in module.clips) == {"crema_d": 6 * 6, "savee": 2 * 6}
    reasons = Counter(e["reason"].split(":")[0] for e in module.report["excluded"])
    assert reasons == {"silent": 1, "no class": 2}  # the demo's all-zero 1076 clip and its su clips
    assert module.summary()["corpora"] == ["demo"]
    batch = next(iter(module.train_dataloader()))
    assert batch.features.shape[-1] == 16 and batch.labels.max() < 12


def test_from_config_builds_one_extractor_and_reads_every_group(train_config) -> None:
    from ser.train import build_datamodule

    cfg = train_config("split=kfold", "split.fold=2", "seed=3", "data.batch_size=5")
    module = build_datamodule(cfg)
    assert module.corpora.names == ("demo",) and module.batch_size == 5
    assert module.split_spec == SplitSpec("kfold", seed=3, num_folds=5, fold=2)
    assert module.sample_rate == module.extractor.sample_rate == cfg.data.sample_rate == 16000
    assert module.input_dim == module.extractor.out_dim
    # The cache key's config is what it was before the extractor was handed in: existing caches stay valid.
    features = OmegaConf.to_container(cfg.features, resolve=True)
    assert module.feature_config() == {"sample_rate": 16000, "features": features} and features["sample_rate"] == 16000
    assert module.feature_cache().make_extractor() is module.extractor
    assert module.resolved_roots() == {"demo": f"{cfg.paths.cache_dir}/demo"}


@pytest.mark.parametrize(
    ("setting", "terminal", "bars"),
    [("auto", False, False), ("auto", True, True), ("bar", False, True), ("none", True, False)],
)
def test_data_progress_draws_bars_only_where_asked(train_config, monkeypatch, setting, terminal, bars) -> None:
    # Default auto: a script that drives the DataModule itself, into a log file, gets no bar redraws.
    from ser.train import build_datamodule

    monkeypatch.setattr("ser.logs.is_terminal", lambda: terminal)
    assert OmegaConf.load(Path(__file__).parents[1] / "conf" / "data" / "default.yaml").progress == "auto"
    assert build_datamodule(train_config(f"data.progress={setting}")).progress is bars


def test_class_counts_are_training_clips_per_class(dm: SERDataModule) -> None:
    counts = dm.class_counts()
    assert counts.shape == (labels.NUM_CLASSES,) and int(counts.sum()) == len(dm.datasets["train"])
    assert counts.tolist() == [dm.datasets["train"].labels.count(k) for k in range(labels.NUM_CLASSES)]
