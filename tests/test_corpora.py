"""Corpus registry: every registered corpus goes index -> labels -> features; the scheme is applied once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from audio_fixtures import (
    make_crema_tree,
    make_emodb_tree,
    make_ravdess_tree,
    make_savee_tree,
    make_tess_tree,
    write_manifest,
    write_wav,
)
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from ser import labels
from ser.data import corpora
from ser.data.cache import FeatureCache
from ser.data.corpora import CORPORA, CorpusSet, build_index, label, register
from ser.data.corpora import demo as demo_mod
from ser.data.corpus import Corpus, DataError, Listing, Recording, check_corpus_root
from ser.features import LogMel

CONF = Path(__file__).resolve().parents[1] / "conf"

TINY_DEMO = demo_mod.DemoSpec(
    crema_actors=(1001, 1002), savee_speakers=("DC",), crema_sentences=("IEO",), savee_takes=1, savee_surprise_takes=1
)


def _demo_tree(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The demo corpus writes its own files on first use; a tiny spec keeps that quick.
    real = demo_mod.ensure_demo_corpus
    monkeypatch.setattr(demo_mod, "ensure_demo_corpus", lambda r, progress=True: real(r, TINY_DEMO, progress))


def _manifest_tree(root: Path, _: pytest.MonkeyPatch) -> None:
    for name in ("a/one.wav", "a/two.flac", "b/three.wav"):
        write_wav(root / "audio" / name, seconds=0.3)
    rows = [
        ("audio/a/one.wav", "s1", "Angry", "f"),
        ("audio/a/two.flac", "s1", "joy", "F"),
        ("audio/b/three.wav", "s2", "sad", "m"),
    ]
    write_manifest(root / "manifest.csv", rows)


# One tree maker per registered corpus: adding a corpus adds one line here (the test below insists).
TREES: dict[str, Callable[[Path, pytest.MonkeyPatch], None]] = {
    "crema_d": lambda root, _: make_crema_tree(root, actors=["1001", "1002"], sentences=["DFA"], seconds=0.3),
    "savee": lambda root, _: make_savee_tree(root, "original", speakers=["DC"], takes=1, seconds=0.3),
    "demo": _demo_tree,
    "ravdess": lambda root, _: make_ravdess_tree(root, actors=(1, 2), seconds=0.3),
    "tess": lambda root, _: make_tess_tree(root, seconds=0.3),
    "emodb": lambda root, _: make_emodb_tree(root, seconds=0.3),
    "manifest": _manifest_tree,
}


def test_every_registered_corpus_has_a_tree_a_config_option_and_help() -> None:
    assert set(CORPORA) >= {"crema_d", "savee", "demo", "ravdess", "tess", "emodb", "manifest"}
    assert set(CORPORA) == set(TREES)
    for name, corpus in CORPORA.items():
        assert corpus.name == name and corpus.default_folder and corpus.help
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
            cfg = compose(config_name="train", overrides=[f"data={name}"])
        assert name in cfg.data.corpora and name in cfg.data.roots
    GlobalHydra.instance().clear()


@pytest.mark.parametrize("name", sorted(TREES))
def test_index_labels_and_features_of_every_corpus(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / CORPORA[name].default_folder
    TREES[name](root, monkeypatch)
    index = build_index([name], {name: root})
    assert index.clips and len({c.clip_id for c in index.clips}) == len(index.clips)
    for clip in index.clips:
        assert clip.label == labels.label_index(clip.gender, clip.emotion)
        assert clip.speaker.startswith(f"{clip.corpus}/") and Path(clip.path).is_file()
    assert all(Path(r).is_dir() for r in index.roots.values())
    kinds = {e.reason.split(":")[0] for e in index.excluded}
    assert kinds <= {"no class", "name does not parse as ACTOR_SENTENCE_EMOTION_LEVEL (e.g. 1001_DFA_ANG_XX)"}

    extractor = LogMel(sample_rate=16000, n_mels=8)
    cache = FeatureCache(tmp_path / "features", {"test": name}, lambda: extractor, progress=False)
    fs = cache.load_or_build(index.clips)
    # Everything decodes except the demo's deliberately silent clip.
    assert {e.reason.split(":")[0] for e in fs.excluded} <= {"silent"}
    assert len(fs) + len(fs.excluded) == len(index.clips) and fs.dim == 8
    assert all(int(n) > 0 for n in fs.lengths)


def test_the_scheme_is_applied_once_with_a_counted_reason(tmp_path: Path) -> None:
    make_savee_tree(tmp_path / "savee", "original", speakers=["DC"], codes=["a", "su"], takes=2, seconds=0.1)
    index = build_index(["savee"], {"savee": tmp_path / "savee"})
    assert [c.emotion for c in index.clips] == ["angry", "angry"]
    assert [e.reason for e in index.excluded] == ["no class: surprise (su) is not in the 12 labels"] * 2
    outside = Recording("x/1", "/a.wav", "x", "x/s", "female", None, "boredom (B)")
    assert label(outside).reason == "no class: boredom (B) is not in the 12 labels"
    odd = Recording("x/2", "/b.wav", "x", "x/s", "child", "sad", "sad")
    assert label(odd).reason == "no class: gender 'child' is not in the 12 labels"
    assert label(Recording("x/3", "/c.wav", "x", "x/s", "female", "sad", "sad")).label == 6


def test_a_new_corpus_is_one_registered_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a module in ser/data/corpora/ declares is all build_index and CorpusSet need."""
    help_text = "toy: https://example.org/toy"

    def index_toy(root: Path, progress: bool = False) -> Listing:
        files = check_corpus_root("toy", root, help_text)
        recs = [
            Recording(f"toy/{p.stem}", str(p), "toy", f"toy/{p.stem[:2]}", "female", p.stem[3:], p.stem[3:])
            for p in files
        ]
        return Listing(recordings=recs, roots={"toy": str(root)})

    monkeypatch.setattr(corpora, "CORPORA", dict(CORPORA))
    register(Corpus(name="toy", default_folder="toy-corpus", help=help_text, index=index_toy))
    for stem in ("s1_sad", "s1_happy", "s2_calm"):
        write_wav(tmp_path / "toy-corpus" / f"{stem}.wav", seconds=0.1)
    index = CorpusSet(names=("toy",), root=str(tmp_path)).index(progress=False)
    assert [c.label for c in index.clips] == [labels.class_index("female_happy"), labels.class_index("female_sad")]
    assert [e.reason for e in index.excluded] == ["no class: calm is not in the 12 labels"]
    with pytest.raises(DataError) as err:
        CorpusSet(names=("toy",), root=str(tmp_path / "nowhere")).index()
    assert "toy-corpus" in str(err.value) and help_text in str(err.value) and "data=demo" in str(err.value)


def test_roots_default_to_each_corpus_folder_under_data_root() -> None:
    both = CorpusSet(names=("crema_d", "savee"), root="/corpora")
    assert both.resolved_roots() == {"crema_d": "/corpora/crema-d", "savee": "/corpora/savee"}
    mixed = CorpusSet(names=("crema_d", "savee"), root="/corpora", roots={"crema_d": "/elsewhere", "savee": None})
    assert mixed.resolved_roots() == {"crema_d": "/elsewhere", "savee": "/corpora/savee"}
    with pytest.raises(DataError, match="unknown corpus 'iemocap'"):
        CorpusSet(names=("iemocap",)).resolved_roots()


def test_demo_clips_keep_the_real_corpora_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo is one registered corpus, but its clips stratify (and split) like CREMA-D and SAVEE."""
    _demo_tree(tmp_path, monkeypatch)
    index = build_index(["demo"], {"demo": tmp_path / "demo"})
    assert {c.corpus for c in index.clips} == {"crema_d", "savee"}
    assert set(index.roots) == {"crema_d", "savee"}
    assert torch.tensor([c.label for c in index.clips]).max() < labels.NUM_CLASSES
