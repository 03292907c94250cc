"""Bad audio in a corpus, each named: NaN/inf samples, unreadable, empty or non-audio files, folder links and loops."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from audio_fixtures import make_crema_tree, write_wav

from ser.data import audio as audio_mod
from ser.data.audio import AudioError, load_audio
from ser.data.cache import NON_FINITE, FeatureCache, FeatureSet
from ser.data.corpora import build_index
from ser.data.corpus import DataError, find_audio_files
from ser.features import LogMel

AS_ROOT = os.geteuid() == 0  # root reads any file: permission tests then only simulate the OS error


def _cache(tmp_path: Path, on_error: str = "raise") -> FeatureCache:
    return FeatureCache(
        tmp_path / "cache", {"n_mels": 16}, lambda: LogMel(n_mels=16), num_workers=2, on_error=on_error, progress=False
    )


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "crema-d"
    make_crema_tree(root, actors=["1001"], emotions=["ANG", "HAP"], sentences=["DFA"], seconds=0.3)
    return root


def _index(root: Path) -> list:
    return build_index(["crema_d"], {"crema_d": root}).clips


# ------------------------------------------------------------------ NaN / inf samples


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_non_finite_samples_are_excluded_with_a_reason(tmp_path: Path, value: float, on_error: str) -> None:
    root = _tree(tmp_path)
    wave = np.full(8000, 0.1, dtype=np.float32)
    wave[1234] = value
    sf.write(root / "AudioWAV" / "1001_DFA_SAD_XX.wav", wave, 16000, subtype="FLOAT")
    fs = _cache(tmp_path, on_error).load_or_build(_index(root))
    assert fs.clip_ids == ["crema_d/1001_DFA_ANG_XX", "crema_d/1001_DFA_HAP_XX"]
    (excluded,) = fs.excluded
    assert Path(excluded.path).name == "1001_DFA_SAD_XX.wav" and excluded.reason == NON_FINITE
    assert excluded.reason.startswith("non-finite: NaN or inf samples")
    assert torch.isfinite(fs.features).all()


def test_a_cache_entry_holding_nan_features_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An entry built before NaN clips were left out (same key) must not serve NaN features."""
    root = _tree(tmp_path)
    wave = np.full(8000, 0.1, dtype=np.float32)
    wave[10] = np.nan
    sf.write(root / "AudioWAV" / "1001_DFA_SAD_XX.wav", wave, 16000, subtype="FLOAT")
    clips = _index(root)
    cache = _cache(tmp_path)
    path = cache.path_for(clips)
    path.parent.mkdir(parents=True)
    feats = torch.zeros(9, 16)
    feats[4] = float("nan")
    stale = FeatureSet([c.clip_id for c in clips], feats, torch.tensor([0, 3, 6, 9]))
    torch.save(stale.to_state(), path)
    with caplog.at_level(logging.WARNING, logger="ser.data.cache"):
        fs = cache.load_or_build(clips)
    assert "NaN or inf features; rebuilding" in caplog.text
    assert len(fs) == 2 and [e.reason for e in fs.excluded] == [NON_FINITE]


# ------------------------------------------------------------------ unreadable, empty and non-audio files


@pytest.mark.skipif(AS_ROOT, reason="root can read a file without read permission")
def test_unreadable_file_says_permission_denied(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "x.wav", seconds=0.2)
    path.chmod(0)
    try:
        with pytest.raises(AudioError, match=re.escape(f"{path}: permission denied")):
            load_audio(path)
    finally:
        path.chmod(0o644)


def test_permission_error_is_named_not_a_system_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """libsndfile says "System error" for an unreadable file; ser says why (simulated: tests may run as root)."""
    path = write_wav(tmp_path / "x.wav", seconds=0.2)

    def soundfile(*_: object) -> None:
        raise sf.LibsndfileError(2, f"Error opening {str(path)!r}: ")

    def no_read(*_: object, **__: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(audio_mod.sf, "SoundFile", soundfile)
    monkeypatch.setattr(audio_mod, "open", no_read, raising=False)
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert str(err.value).startswith(f"{path}: permission denied")
    assert "System error" not in str(err.value) and "valid audio file" not in str(err.value)


def test_empty_and_non_audio_files_say_what_they_are(tmp_path: Path) -> None:
    empty, text = tmp_path / "empty.wav", tmp_path / "notes.wav"
    empty.write_bytes(b"")
    text.write_text("not audio at all\n" * 20)
    with pytest.raises(AudioError, match=re.escape(f"{empty}: empty file (0 bytes)")):
        load_audio(empty)
    with pytest.raises(AudioError) as err:
        load_audio(text)
    # The path once, then why: libsndfile's own text repeats the path.
    assert str(err.value) == f"{text}: cannot decode audio (Format not recognised); is it a valid audio file?"
    with pytest.raises(AudioError, match=re.escape("a folder, not an audio file")):
        load_audio(tmp_path)


@pytest.mark.parametrize("content", [b"", b"RIFF not really a wav"])
def test_bad_file_in_a_corpus_is_one_line_pointing_to_on_error_skip(tmp_path: Path, content: bytes) -> None:
    root = _tree(tmp_path)
    bad = root / "AudioWAV" / "1001_DFA_SAD_XX.wav"
    bad.write_bytes(content)
    with pytest.raises(AudioError) as err:
        _cache(tmp_path).load_or_build(_index(root))
    message = str(err.value)
    assert isinstance(err.value, DataError)  # the commands print a DataError as one line and exit with code 2
    assert "\n" not in message and message.startswith(str(bad))
    assert ("empty file (0 bytes)" if not content else "cannot decode audio") in message
    assert "data.on_error=skip" in message
    # With skip, the same file is an exclusion whose reason names the problem (no advice in the report).
    fs = _cache(tmp_path, "skip").load_or_build(_index(root))
    (excluded,) = fs.excluded
    assert excluded.reason.startswith("unreadable: ") and "on_error" not in excluded.reason


def test_data_command_exits_2_with_the_message(cli_env: dict, tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    (root / "AudioWAV" / "1001_DFA_SAD_XX.wav").write_bytes(b"")
    res = subprocess.run(
        [sys.executable, "-m", "ser.data", "data.corpora=[crema_d]", f"data.root={tmp_path / 'data'}", "split=random"],
        capture_output=True,
        text=True,
        env=cli_env,
        cwd=tmp_path,
        timeout=300,
    )
    assert res.returncode == 2, res.stderr[-3000:]
    assert "1001_DFA_SAD_XX.wav: empty file (0 bytes)" in res.stderr and "data.on_error=skip" in res.stderr
    assert "Traceback" not in res.stderr


# ------------------------------------------------------------------ folder links and loops


def test_a_linked_speaker_folder_is_indexed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "disk2" / "1002"
    make_crema_tree(elsewhere, actors=["1002"], emotions=["ANG"], sentences=["DFA", "IEO"], seconds=0.3, subdir="")
    root = _tree(tmp_path)
    (root / "AudioWAV" / "speaker_1002").symlink_to(elsewhere, target_is_directory=True)
    names = [p.name for p in find_audio_files(root)]
    assert names == ["1001_DFA_ANG_XX.wav", "1001_DFA_HAP_XX.wav", "1002_DFA_ANG_XX.wav", "1002_IEO_ANG_XX.wav"]
    assert {c.speaker for c in _index(root)} == {"crema_d/1001", "crema_d/1002"}


def test_a_folder_link_loop_is_named_and_not_followed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _tree(tmp_path)
    loop = root / "AudioWAV" / "again"
    loop.symlink_to(root, target_is_directory=True)
    twice = root / "copy"
    twice.symlink_to(root / "AudioWAV", target_is_directory=True)
    with caplog.at_level(logging.WARNING, logger="ser.data.corpus"):
        files = find_audio_files(root)
    assert [p.relative_to(root).as_posix() for p in files] == [
        "AudioWAV/1001_DFA_ANG_XX.wav",
        "AudioWAV/1001_DFA_HAP_XX.wav",
    ]
    assert f"{loop}: a link to {root.resolve()}, a folder that contains it (a loop); not followed" in caplog.text
    assert f"{twice}: a link to {(root / 'AudioWAV').resolve()}, which is indexed already" in caplog.text


def test_a_broken_link_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _tree(tmp_path)
    (root / "AudioWAV" / "1001_DFA_SAD_XX.wav").symlink_to(tmp_path / "gone.wav")
    with caplog.at_level(logging.WARNING, logger="ser.data.corpus"):
        assert len(find_audio_files(root)) == 2
    assert "1001_DFA_SAD_XX.wav: a broken link" in caplog.text


@pytest.mark.skipif(AS_ROOT, reason="root can list a folder without read permission")
def test_an_unreadable_folder_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _tree(tmp_path)
    locked = root / "locked"
    write_wav(locked / "1001_IEO_ANG_XX.wav", seconds=0.3)
    locked.chmod(0)
    try:
        with caplog.at_level(logging.WARNING, logger="ser.data.corpus"):
            assert len(find_audio_files(root)) == 2
    finally:
        locked.chmod(0o755)
    assert f"{locked}: cannot read this folder (Permission denied)" in caplog.text
