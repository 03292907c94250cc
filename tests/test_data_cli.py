"""``python -m ser.data``: the data report app."""

from __future__ import annotations

import json
import subprocess
import sys


def _run(*args: str, env: dict, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ser.data", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_data_report_of_the_demo_corpus(cli_env, shared_cache, tmp_path):
    res = _run(
        "data=demo",
        "data.progress=false",
        "analysis=false",
        f"paths.cache_dir={shared_cache}",
        env=cli_env,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "male_sad" in res.stdout and "female_neutral" in res.stdout
    assert "silent" in res.stdout and "no class" in res.stdout  # 1076_MTI_SAD_XX and SAVEE su clips
    assert res.stdout.count("Data report:") == 1 and "split speaker (seed 0" in res.stdout  # once, with the split
    (run_dir,) = (tmp_path / "outputs" / "demo" / "data").iterdir()  # demo runs apart from real data
    report = json.loads((run_dir / "data_report.json").read_text())
    assert report["corpora"]["crema_d"]["clips"] == 288 and report["corpora"]["savee"]["clips"] == 96
    assert report["corpora"]["savee"]["excluded"] == {"no class": 8}
    assert (run_dir / "data_report.txt").read_text().startswith("Data report:")


def test_missing_data_fails_before_any_work(cli_env, tmp_path):
    res = _run("data.root=/nonexistent/corpora", env=cli_env, cwd=tmp_path)
    assert res.returncode == 2
    assert "/nonexistent/corpora/crema-d" in res.stderr and "kaggle.com" in res.stderr and "data=demo" in res.stderr
    assert not (tmp_path / ".cache").exists()
