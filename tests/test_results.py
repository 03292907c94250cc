"""ser.results and ser.sweeps: the run record written and read back, atomic JSON, and jobs of a sweep folder."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ser import results as R
from ser import sweeps as S


def _record(**overrides: object) -> dict:
    test = {m: 0.5 + i / 100 for i, m in enumerate(R.SCALARS)}
    test.update(per_class_recall={"male_sad": 0.5}, confusion=[[1, 2], [3, 4]])
    kwargs = dict(
        test=test,
        best_val={**test, "epoch": 3},
        loss="binary",
        seed=0,
        split="kfold",
        fold=2,
        data={"clips": {"train": 10}},
        epochs=5,
        epoch_time_s=1.25,
        wall_time_s=12.3456,
        best_checkpoint="ckpt/best.ckpt",
    )
    kwargs.update(overrides)
    return R.run_record(**kwargs)  # type: ignore[arg-type]


def test_record_round_trip(tmp_path: Path) -> None:
    record = _record()
    assert list(record)[: len(R.SCALARS)] == list(R.SCALARS)
    assert record["trivial_binary_accuracy"] == pytest.approx(11 / 12)
    assert (record["status"], record["loss"], record["split"], record["fold"]) == ("ok", "binary", "kfold", 2)
    assert record["wall_time_s"] == 12.35 and set(record["best_val"]) == {*R.SCALARS, "epoch"}
    path = R.write_record(tmp_path / "run", record)
    assert path == tmp_path / "run" / "metrics.json"
    assert R.read_record(tmp_path / "run") == record
    assert R.read_record(tmp_path / "nothing") is None
    assert _record(best_val={}, split="speaker", fold=None)["best_val"] == {}


def test_a_test_set_of_one_gender_reports_no_gender_accuracy() -> None:
    """Cross-corpus onto SAVEE (male speakers only): answering 'male' always would score 1.0, so it is skipped."""
    male_only = [[3 if i == j else 0 for j in range(12)] if i < 6 else [0] * 12 for i in range(12)]
    male_only[0][7] = 1  # a clip answered with a female class still leaves the data male-only
    record = _record(test={m: 0.9 for m in R.SCALARS} | {"confusion": male_only})
    assert record["gender_accuracy"] is None and record["uar"] == 0.9
    assert record["skipped"] == {"gender_accuracy": R.single_gender_reason("male")}
    both = [row[:] for row in male_only]
    both[11][11] = 2
    assert _record(test={m: 0.9 for m in R.SCALARS} | {"confusion": both})["gender_accuracy"] == 0.9
    assert "skipped" not in _record()
    assert R.genders_in(male_only) == ["male"] and R.genders_in(None) == []


def test_nan_and_inf_become_null(tmp_path: Path) -> None:
    path = R.write_json(tmp_path / "x.json", {"a": math.nan, "b": [1.0, math.inf], "c": {"d": -math.inf}, "e": 2})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": {"d": None}, "e": 2}


def test_atomic_write_leaves_no_temp_file_and_never_a_truncated_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = R.write_json(tmp_path / "sub" / "metrics.json", {"status": "ok"})
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]
    old = path.read_text()

    # A value JSON cannot hold: the old file stays whole, nothing else is left behind.
    with pytest.raises(TypeError):
        R.write_json(path, {"status": object()})
    assert path.read_text() == old and sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]

    # A failure after the temp file is written (disk full, killed before the rename): the same.
    def broken_replace(src: object, dst: object) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="no space"):
        R.write_json(path, {"status": "failed", "error": "x" * 100_000})
    assert path.read_text() == old and sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]


def test_unreadable_and_absent_records_make_failed_and_missing_jobs(tmp_path: Path) -> None:
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "metrics.json").write_text('{"status": "ok", "uar": 0.')  # cut off mid-write
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "train.log").write_text("[ser.train][ERROR] - Killed by signal 9\n")
    with pytest.raises(ValueError):
        R.read_record(tmp_path / "0")
    broken, died = S.load_job(tmp_path / "0"), S.load_job(tmp_path / "1", ["loss=binary", "seed=1"])
    assert broken.status == "failed" and broken.error.startswith("unreadable metrics.json")
    assert died.status == "missing" and "Killed by signal 9" in died.error
    assert died.overrides == ["loss=binary", "seed=1"] and died.params == {"loss": "binary", "seed": 1}


def test_loss_and_split_come_from_the_record(tmp_path: Path) -> None:
    """The record names what ran; Hydra's recorded choice stands in for jobs without one; old records read."""
    job = tmp_path / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["experiment=a", "seed=3"]))
    R.write_record(job, _record(loss="categorical", split="speaker", fold=None))
    loaded = S.load_job(job)
    assert loaded.params == {"experiment": "a", "seed": 3, "loss": "categorical"}
    assert (loaded.status, loaded.split, loaded.fold) == ("ok", "speaker", None)

    failed = tmp_path / "1"
    (failed / ".hydra").mkdir(parents=True)
    (failed / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["experiment=a", "seed=4"]))
    (failed / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"runtime": {"choices": {"loss": "binary"}}}})
    )
    R.write_record(failed, R.failure_record(RuntimeError("boom"), ["experiment=a", "seed=4"]))
    job1 = S.load_job(failed)
    assert (job1.status, job1.error, job1.params["loss"]) == ("failed", "RuntimeError: boom", "binary")

    # A record written before ser.results (same flat fields, loss named there): read as before.
    old = tmp_path / "2"
    old.mkdir()
    (old / "metrics.json").write_text(
        json.dumps({"status": "ok", "uar": 0.4, "loss": "binary", "split": "kfold", "fold": 1})
    )
    job2 = S.load_job(old, ["loss=binary", "data.split=kfold", "data.fold=1"])
    assert (job2.value("uar"), job2.params["loss"], job2.split, job2.fold) == (0.4, "binary", "kfold", 1)
    assert math.isnan(job2.value("macro_f1"))


def test_display_names_cover_every_metric() -> None:
    assert set(R.DISPLAY_NAMES) == set(R.SCALARS)
    assert R.display_name("uar") == "UAR" and R.display_name("other") == "other"


def test_results_and_analysis_import_without_torch() -> None:
    code = (
        "import sys, ser.results, ser.sweeps, ser.compare, ser.analysis.render, ser.analysis.loss_claim; "
        "assert 'torch' not in sys.modules and 'lightning' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
