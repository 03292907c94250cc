"""Feature cache: built once, reused, keyed on config and file identity, atomic, safe under concurrency."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from audio_fixtures import CountingExtractor, make_crema_tree, make_savee_tree, write_wav

from ser.data import cache as cache_mod
from ser.data.audio import load_audio
from ser.data.cache import FeatureCache, FeatureSet, cache_key, file_identity
from ser.data.corpora import build_index
from ser.data.corpus import Clip
from ser.features import LogMel


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    """16 clips of 0.2-0.9 s: CREMA-D at 16 kHz and SAVEE at 44.1 kHz (resampled on load)."""
    root = tmp_path_factory.mktemp("corpus")
    make_crema_tree(
        root / "crema-d",
        actors=["1001", "1002"],
        emotions=["ANG", "SAD"],
        sentences=["DFA", "IEO"],
        seconds=(0.2, 0.9),
    )
    make_savee_tree(root / "savee", "kaggle", speakers=["DC", "JE"], codes=["a", "h"], takes=2, seconds=(0.2, 0.9))
    roots = {"crema_d": root / "crema-d", "savee": root / "savee"}
    return build_index(["crema_d", "savee"], roots).clips


def _cache(cache_dir: Path, marker: Path, n_mels: int = 16, delay: float = 0.0) -> FeatureCache:
    return FeatureCache(
        cache_dir,
        {"sample_rate": 16000, "features": {"n_mels": n_mels}},
        CountingExtractor(marker, n_mels=n_mels, delay=delay),
        num_workers=2,
        progress=False,
    )


def _assert_same(a: FeatureSet, b: FeatureSet) -> None:
    assert a.clip_ids == b.clip_ids
    assert torch.equal(a.offsets, b.offsets)
    assert torch.equal(a.features, b.features)


def _entries(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.glob("features-*.pt"))


def test_features_match_extracting_each_clip_alone(clips: list[Clip], tmp_path: Path) -> None:
    fs = _cache(tmp_path, tmp_path / "marker").load_or_build(clips)
    assert fs.clip_ids == [c.clip_id for c in clips]  # input order, although built in length order
    assert fs.dim == 16 and fs.features.dtype == torch.float32
    assert fs.offsets[0] == 0 and int(fs.offsets[-1]) == fs.features.shape[0]
    extractor = LogMel(sample_rate=16000, n_mels=16)
    for i, clip in enumerate(clips):
        wave = torch.from_numpy(load_audio(clip.path, 16000))
        with torch.inference_mode():
            alone, frames = extractor(wave[None])
        assert int(fs.lengths[i]) == int(frames[0]) == 1 + wave.numel() // 160
        torch.testing.assert_close(fs.get(i), alone[0], atol=1e-3, rtol=1e-4)


def test_built_once_then_reused(clips: list[Clip], tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    first = _cache(tmp_path / "c", marker).load_or_build(clips)
    assert CountingExtractor(marker).builds() == 1
    second = _cache(tmp_path / "c", marker).load_or_build(clips)  # a new run, same files and settings
    assert CountingExtractor(marker).builds() == 1
    _assert_same(first, second)
    (entry,) = _entries(tmp_path / "c")
    assert entry == f"features-{cache_key(clips, _cache(tmp_path, marker).config)}.pt"
    sidecar = (tmp_path / "c" / entry).with_suffix(".json").read_text()
    assert '"n_mels": 16' in sidecar and f'"clips": {len(clips)}' in sidecar
    # Atomic write: nothing but the entry, its description and the lock file remain.
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(
        [entry, entry.replace(".pt", ".json"), entry + ".lock"]
    )


def test_key_is_deterministic_and_covers_config_and_clip_list(clips: list[Clip]) -> None:
    cfg = {"sample_rate": 16000, "features": {"n_mels": 16}}
    assert cache_key(clips, cfg) == cache_key(list(clips), {"features": {"n_mels": 16}, "sample_rate": 16000})
    assert cache_key(clips, cfg) != cache_key(clips, {"sample_rate": 16000, "features": {"n_mels": 8}})
    assert cache_key(clips, cfg) != cache_key(clips[:-1], cfg)
    assert cache_key(clips, cfg) != cache_key(clips[::-1], cfg)


def test_changed_feature_setting_gets_a_new_entry(clips: list[Clip], tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    a = _cache(tmp_path / "c", marker, n_mels=16).load_or_build(clips)
    b = _cache(tmp_path / "c", marker, n_mels=8).load_or_build(clips)
    assert (a.dim, b.dim) == (16, 8)
    assert CountingExtractor(marker).builds() == 2
    assert len(_entries(tmp_path / "c")) == 2
    # Both entries stay valid: switching back costs nothing.
    _assert_same(a, _cache(tmp_path / "c", marker, n_mels=16).load_or_build(clips))
    assert CountingExtractor(marker).builds() == 2


def _own_copy(clips: list[Clip], tmp_path: Path) -> list[Clip]:
    """The same clips on files of this test's own, so they can be modified."""
    out = []
    for c in clips:
        dst = tmp_path / "own" / Path(c.path).name
        dst.parent.mkdir(exist_ok=True)
        shutil.copy2(c.path, dst)  # same bytes, size and mtime: only the path differs
        out.append(Clip(**{**c.to_dict(), "path": str(dst)}))
    return out


def test_touched_file_is_rebuilt(clips: list[Clip], tmp_path: Path) -> None:
    own = _own_copy(clips, tmp_path)
    marker = tmp_path / "marker"
    cache = _cache(tmp_path / "c", marker)
    before = cache.load_or_build(own)
    old_path = cache.path_for(own)
    assert [file_identity(c.path)[1:] for c in own] == [file_identity(c.path)[1:] for c in clips]
    assert old_path != cache.path_for(clips)  # the key covers each file's path too
    st = os.stat(own[3].path)
    os.utime(own[3].path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # `touch`
    assert cache.path_for(own) != old_path
    after = cache.load_or_build(own)
    assert CountingExtractor(marker).builds() == 2
    _assert_same(before, after)  # same content, so the same features


def test_modified_file_is_never_served_stale(clips: list[Clip], tmp_path: Path) -> None:
    own = _own_copy(clips, tmp_path)
    marker = tmp_path / "marker"
    cache = _cache(tmp_path / "c", marker)
    before = cache.load_or_build(own)
    target = own[5]
    info = sf.info(target.path)
    st = os.stat(target.path)
    # New content of exactly the same size, and an mtime moved on as any write does.
    write_wav(target.path, info.frames / info.samplerate, info.samplerate, freq=1234.0, seed=99, subtype="PCM_16")
    os.utime(target.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert os.stat(target.path).st_size == st.st_size
    after = cache.load_or_build(own)
    assert CountingExtractor(marker).builds() == 2
    assert not torch.equal(before.get(5), after.get(5))
    fresh = cache.build(own)  # what a clean build of the new files gives
    torch.testing.assert_close(after.get(5), fresh.get(5))
    for i in (0, 4, 6):
        torch.testing.assert_close(after.get(i), before.get(i))


def test_truncated_entry_is_detected_and_rebuilt(
    clips: list[Clip], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "marker"
    cache = _cache(tmp_path / "c", marker)
    reference = cache.load_or_build(clips)
    entry = cache.path_for(clips)
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="ser.data.cache"):
        rebuilt = cache.load_or_build(clips)
    assert "unreadable" in caplog.text and entry.name in caplog.text
    assert CountingExtractor(marker).builds() == 2
    _assert_same(reference, rebuilt)
    # The rewritten entry is whole again: the next run loads it.
    _assert_same(reference, cache.load_or_build(clips))
    assert CountingExtractor(marker).builds() == 2


def test_foreign_entry_under_the_key_is_rebuilt(
    clips: list[Clip], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "marker"
    cache = _cache(tmp_path / "c", marker)
    other = cache.build(clips[:3])  # a valid file, but of a different clip list
    cache.cache_dir.mkdir(parents=True, exist_ok=True)
    torch.save(other.to_state(), cache.path_for(clips))
    with caplog.at_level(logging.WARNING, logger="ser.data.cache"):
        fs = cache.load_or_build(clips)
    assert "does not match the clip list" in caplog.text
    assert fs.clip_ids == [c.clip_id for c in clips]
    assert CountingExtractor(marker).builds() == 2


def test_old_cache_version_is_rebuilt(clips: list[Clip], tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    cache = _cache(tmp_path / "c", marker)
    state = cache.load_or_build(clips).to_state()
    torch.save({**state, "version": cache_mod.CACHE_VERSION + 1}, cache.path_for(clips))
    cache.load_or_build(clips)
    assert CountingExtractor(marker).builds() == 2


def test_failed_write_leaves_no_entry(clips: list[Clip], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "marker"
    cache = _cache(tmp_path / "c", marker)

    def disk_full(obj: Any, f: Any) -> None:
        Path(f).write_bytes(b"PK\x03\x04 half a file")
        raise OSError("No space left on device")

    monkeypatch.setattr(cache_mod.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        cache.load_or_build(clips)
    assert _entries(cache.cache_dir) == []
    assert not [p for p in cache.cache_dir.iterdir() if ".tmp-" in p.name]
    monkeypatch.undo()
    assert len(cache.load_or_build(clips)) == len(clips)
    assert CountingExtractor(marker).builds() == 2


def _build_in_child(cache_dir: str, marker: str, clips: list[Clip], barrier: Any, results: Any) -> None:
    barrier.wait(timeout=60)  # both processes ask for the entry at the same moment
    fs = _cache(Path(cache_dir), Path(marker), delay=0.3).load_or_build(clips)
    results.put((os.getpid(), fs.clip_ids, fs.offsets.numpy(), fs.features.numpy()))


def test_concurrent_builders_build_once(clips: list[Clip], tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    marker = tmp_path / "marker"
    procs = [
        ctx.Process(target=_build_in_child, args=(str(tmp_path / "c"), str(marker), clips, barrier, results))
        for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert {pid for pid, *_ in got} == {p.pid for p in procs}
    assert CountingExtractor(marker).builds() == 1  # one built, the other waited and loaded it
    (_, ids_a, off_a, feats_a), (_, ids_b, off_b, feats_b) = got
    assert ids_a == ids_b == [c.clip_id for c in clips]
    np.testing.assert_array_equal(off_a, off_b)
    np.testing.assert_array_equal(feats_a, feats_b)
    # The entry on disk is whole and what a lone build gives.
    cache = _cache(tmp_path / "c", marker)
    on_disk = cache.load_or_build(clips)
    assert CountingExtractor(marker).builds() == 1
    np.testing.assert_array_equal(on_disk.features.numpy(), feats_a)
    torch.testing.assert_close(on_disk.features, cache.build(clips).features)
    assert not [p for p in (tmp_path / "c").iterdir() if ".tmp-" in p.name]
