"""ser.compare on fake sweep folders with known numbers, checked against numpy/scipy directly."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy import stats

from ser import compare as C
from ser.results import SCALARS, TRIVIAL_BINARY_ACCURACY

SEEDS = range(5)
# Categorical clearly better on UAR; binary higher on binary_accuracy (the original work's metric).
CAT_UAR = np.array([0.52, 0.55, 0.50, 0.53, 0.56])
BIN_UAR = np.array([0.45, 0.49, 0.46, 0.44, 0.50])
CAT_BIN_ACC = np.array([0.930, 0.932, 0.929, 0.931, 0.933])
BIN_BIN_ACC = np.array([0.940, 0.941, 0.939, 0.942, 0.938])
TARGETS = {"categorical": "ser.models.losses.CategoricalLoss", "binary": "ser.models.losses.BinaryLoss"}


def _metrics(
    uar: float, binary_accuracy: float, loss: str, seed: int, split: str = "speaker", fold: int | None = None
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    values = {
        "accuracy": uar + 0.01,
        "uar": uar,
        "macro_f1": uar - 0.02,
        "emotion_accuracy": uar + 0.05,
        "gender_accuracy": 0.9 + uar / 10,
        "binary_accuracy": binary_accuracy,
    }
    assert set(values) == set(SCALARS)
    return {
        **values,
        "per_class_recall": {},
        "trivial_binary_accuracy": TRIVIAL_BINARY_ACCURACY,
        "best_val": {**values, "epoch": 7},
        "status": "ok",
        "loss": loss,
        "seed": seed,
        "split": split,
        "fold": fold,
        "data": {},
        "epochs": 10,
        "epoch_time_s": 1.5,
        "wall_time_s": 20.0,
        "best_checkpoint": "",
        "confusion": (rng.integers(0, 5, (12, 12)) + np.eye(12, dtype=int) * 20).tolist(),
    }


def write_job(
    root: Path,
    num: int,
    overrides: list[str],
    loss: str = "categorical",
    metrics: dict[str, Any] | None = None,
    hidden: int = 128,
    split: str = "speaker",
) -> Path:
    """A job folder as ser.train leaves it; metrics=None leaves no metrics.json (a job that died hard)."""
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    config = {
        "seed": 0,
        "data": {"split": split, "fold": 0, "split_seed": "${seed}"},
        "model": {"hidden_size": hidden},
        "loss": {"_target_": TARGETS[loss]},
    }
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    return job


def loss_sweep(root: Path) -> Path:
    """2 losses x 5 seeds, then one failed job and one without metrics.json."""
    num = 0
    for loss, uars, accs in (("categorical", CAT_UAR, CAT_BIN_ACC), ("binary", BIN_UAR, BIN_BIN_ACC)):
        for seed in SEEDS:
            overrides = [f"loss={loss}", f"seed={seed}", "experiment=loss_comparison"]
            write_job(root, num, overrides, loss, _metrics(uars[seed], accs[seed], loss, seed))
            num += 1
    failed = ["loss=binary", "seed=5", "experiment=loss_comparison"]
    write_job(
        root,
        num,
        failed,
        "binary",
        {"status": "failed", "error": "RuntimeError: CUDA out of memory | boom", "overrides": failed},
    )
    died = write_job(root, num + 1, ["loss=categorical", "seed=5", "experiment=loss_comparison"])
    (died / "train.log").write_text("[ser.train][INFO] - epoch 1\n[ser.train][ERROR] - Killed by signal 9\n")
    return root


def expected_summary(x: np.ndarray) -> tuple[float, float, float, float]:
    n, mean, sd = len(x), float(np.mean(x)), float(np.std(x, ddof=1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, sd, mean - half, mean + half


@pytest.fixture(scope="module")
def loss_result(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, C.Comparison]:
    sweep = loss_sweep(tmp_path_factory.mktemp("sweep"))
    return sweep, C.compare(sweep)


def test_group_statistics(loss_result: tuple[Path, C.Comparison]) -> None:
    _, comp = loss_result
    assert comp.varied == ["loss", "seed"]
    assert comp.group_keys == ["loss"] and comp.match_keys == ["seed"] and comp.contrast == "loss"
    assert comp.levels == ["categorical", "binary"]
    groups = {g.label: g for g in comp.groups}
    assert set(groups) == {"loss=categorical", "loss=binary"}
    for label, uar, acc in (
        ("loss=categorical", CAT_UAR, CAT_BIN_ACC),
        ("loss=binary", BIN_UAR, BIN_BIN_ACC),
    ):
        for metric, values in (("uar", uar), ("binary_accuracy", acc), ("macro_f1", uar - 0.02)):
            s = groups[label].stats[metric]
            assert s.n == 5
            assert (s.mean, s.sd, s.ci_low, s.ci_high) == pytest.approx(expected_summary(values), rel=1e-9)


def test_paired_differences(loss_result: tuple[Path, C.Comparison]) -> None:
    _, comp = loss_result
    (r,) = comp.paired_result("uar")
    assert (r.a, r.b, r.n, r.unpaired) == ("categorical", "binary", 5, 0)
    d = BIN_UAR - CAT_UAR
    assert (r.diff.mean, r.diff.sd, r.diff.ci_low, r.diff.ci_high) == pytest.approx(expected_summary(d))
    assert r.t_p == pytest.approx(stats.ttest_rel(BIN_UAR, CAT_UAR).pvalue)
    assert r.wilcoxon_p == pytest.approx(stats.wilcoxon(BIN_UAR, CAT_UAR).pvalue)
    assert r.wilcoxon_p == pytest.approx(0.0625)  # 5 pairs, all the same sign: the exact minimum
    assert (r.b_ahead, r.a_ahead) == (0, 5)
    (ba,) = comp.paired_result("binary_accuracy")
    assert ba.diff.mean == pytest.approx(float(np.mean(BIN_BIN_ACC - CAT_BIN_ACC))) and ba.diff.mean > 0


def test_verdict_names_the_better_loss(loss_result: tuple[Path, C.Comparison]) -> None:
    _, comp = loss_result
    text = C.verdict(comp)
    assert "**the categorical loss is better** than the binary loss" in text
    assert "significant at 0.05 by the paired t-test but not by the Wilcoxon" in text
    assert "cannot reach p < 0.05" in text  # n=5 caveat
    assert "the binary loss even has the higher binary_accuracy (by 0.0090) while being worse on UAR" in text
    assert "0.917 (11/12)" in text


def test_report_files(loss_result: tuple[Path, C.Comparison]) -> None:
    sweep, comp = loss_result
    md = (sweep / "comparison.md").read_text()
    assert "## Where 92.3% comes from" in md and "11/12 = 0.9167" in md
    assert f"binary {np.mean(BIN_BIN_ACC):.4f} (n=5)" in md
    # Failures are listed with their overrides and error, the '|' escaped for markdown.
    failed_row = "| 10 | failed | loss=binary seed=5 experiment=loss_comparison | RuntimeError: CUDA out of memory"
    assert f"{failed_row} \\| boom |" in md
    assert "| 11 | missing | loss=categorical seed=5" in md and "Killed by signal 9" in md
    assert "### binary − categorical" in md and "![compare_uar](compare_uar.png)" in md

    with (sweep / "comparison.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 == len(comp.jobs)
    assert [r["job"] for r in rows] == [str(i) for i in range(12)]
    assert [r["status"] for r in rows].count("ok") == 10
    assert {rows[10]["status"], rows[11]["status"]} == {"failed", "missing"}
    assert float(rows[0]["uar"]) == pytest.approx(CAT_UAR[0]) and rows[5]["loss"] == "binary"
    assert rows[3]["seed"] == "3" and rows[0]["best_val_epoch"] == "7"

    pngs = [sweep / f"compare_{m}.png" for m in SCALARS] + [sweep / "compare_confusion.png"]
    for png in pngs:
        assert png.is_file() and png.stat().st_size > 1000, png


def test_grouping_by_other_key(tmp_path: Path) -> None:
    """Loss fixed, model.hidden_size swept with seeds: two groups, paired over seeds."""
    small, big = np.array([0.40, 0.42, 0.41, 0.45]), np.array([0.47, 0.46, 0.50, 0.49])
    num = 0
    for hidden, uars in ((64, small), (128, big)):
        for seed, uar in enumerate(uars):
            write_job(
                tmp_path,
                num,
                [f"model.hidden_size={hidden}", f"seed={seed}"],
                hidden=hidden,
                metrics=_metrics(uar, 0.93, "categorical", seed),
            )
            num += 1
    comp = C.compare(tmp_path, out=tmp_path / "report", plots=False)
    assert comp.varied == ["model.hidden_size", "seed"] and comp.contrast == "group"
    assert [g.label for g in comp.groups] == ["model.hidden_size=64", "model.hidden_size=128"]
    assert comp.groups[1].stats["uar"].mean == pytest.approx(big.mean())
    (r,) = comp.paired_result("uar")
    assert r.diff.mean == pytest.approx((big - small).mean())
    assert r.t_p == pytest.approx(stats.ttest_rel(big, small).pvalue)
    assert "**`model.hidden_size=128` is better**" in C.verdict(comp)
    assert (tmp_path / "report" / "comparison.md").is_file() and not (tmp_path / "comparison.md").exists()


def test_loss_by_size_pairs_within_each_size(tmp_path: Path) -> None:
    num = 0
    for loss in ("categorical", "binary"):
        for hidden in (64, 128):
            for seed in range(3):
                uar = 0.5 + 0.01 * seed + (0.02 if hidden == 128 else 0) - (0.05 if loss == "binary" else 0)
                write_job(
                    tmp_path,
                    num,
                    [f"loss={loss}", f"model.hidden_size={hidden}", f"seed={seed}"],
                    loss,
                    _metrics(uar, 0.93, loss, seed),
                    hidden=hidden,
                )
                num += 1
    comp = C.analyze(C.load_sweep(tmp_path))
    assert comp.contrast == "loss" and comp.match_keys == ["model.hidden_size", "seed"]
    assert len(comp.groups) == 4
    (pooled,) = comp.paired_result("uar")
    assert pooled.n == 6 and pooled.diff.mean == pytest.approx(-0.05)
    for stratum in ("model.hidden_size=64", "model.hidden_size=128"):
        (r,) = comp.paired_result("uar", stratum)
        assert r.n == 3 and r.diff.mean == pytest.approx(-0.05)


def test_kfold_aggregation(tmp_path: Path) -> None:
    uars = {
        "categorical": np.array([0.50, 0.54, 0.48, 0.52, 0.51]),
        "binary": np.array([0.44, 0.47, 0.45, 0.49, 0.43]),
    }
    num = 0
    for loss, values in uars.items():
        for fold, uar in enumerate(values):
            write_job(
                tmp_path,
                num,
                [f"loss={loss}", "data.split=kfold", f"data.fold={fold}"],
                loss,
                _metrics(uar, 0.93, loss, 0, split="kfold", fold=fold),
                split="kfold",
            )
            num += 1
    comp = C.compare(tmp_path, plots=False)
    assert comp.match_keys == ["data.fold"]
    tables = {t.group: t for t in comp.kfold}
    table = tables["loss=categorical"]
    assert [row[0] for row in table.rows] == [0, 1, 2, 3, 4]
    assert [row[2]["uar"] for row in table.rows] == pytest.approx(uars["categorical"])
    cv = table.cv["uar"]
    assert (cv.n, cv.mean, cv.sd) == (
        5,
        pytest.approx(uars["categorical"].mean()),
        pytest.approx(uars["categorical"].std(ddof=1)),
    )
    md = (tmp_path / "comparison.md").read_text()
    assert "## Cross-validation (per fold)" in md and "**CV mean ± sd**" in md
    assert f"{uars['binary'].mean():.4f} ± {uars['binary'].std(ddof=1):.4f}" in md
    assert "not independent" in C.verdict(comp)


def test_expected_job_without_folder(tmp_path: Path) -> None:
    """A basic sweep's multirun.yaml says which job never got a folder, with its overrides."""
    multirun = {
        "hydra": {
            "sweeper": {
                "_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                "params": {"seed": "range(2)"},
            },
            "overrides": {"task": ["loss=categorical,binary"]},
        }
    }
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    # Basic sweeper order: the sweeper params first, then the command line.
    for num, (seed, loss) in enumerate([(0, "categorical"), (0, "binary"), (1, "categorical")]):
        write_job(tmp_path, num, [f"seed={seed}", f"loss={loss}"], loss, _metrics(0.5, 0.93, loss, seed))
    jobs = C.load_sweep(tmp_path)
    assert [j.status for j in jobs] == ["ok", "ok", "ok", "not run"]
    assert jobs[3].overrides == ["seed=1", "loss=binary"] and jobs[3].params["loss"] == "binary"
    comp = C.analyze(jobs)
    (r,) = comp.paired_result("uar")
    assert (r.n, r.unpaired) == (1, 1)
    assert "With a single pair no test is possible" in C.verdict(comp)


def test_cli_summary_and_no_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = loss_sweep(tmp_path / "sweep")
    assert C.main([str(sweep), "--no-plots", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "12 jobs (10 completed, 1 failed, 1 without metrics.json)" in out
    assert "binary − categorical UAR: -0.0640 [" in out and (tmp_path / "out" / "comparison.csv").is_file()

    empty = tmp_path / "empty"
    empty.mkdir()
    assert C.main([str(empty)]) == 1
    assert f"no completed job in {empty}" in capsys.readouterr().err

    only_failed = tmp_path / "only_failed"
    write_job(only_failed, 0, ["loss=binary"], "binary", {"status": "failed", "error": "ValueError: x"})
    assert C.main([str(only_failed)]) == 1
    err = capsys.readouterr().err
    assert f"no completed job in {only_failed}" in err and "ValueError: x" in err


def _memory_jobs(cat: np.ndarray, binary: np.ndarray) -> list[C.Job]:
    jobs = []
    for loss, values in (("categorical", cat), ("binary", binary)):
        for seed, uar in enumerate(values):
            params = {"loss": loss, "seed": seed}
            jobs.append(C.Job(str(len(jobs)), "ok", None, params=params, metrics=_metrics(uar, 0.93, loss, seed)))
    return jobs


def test_significance_wording() -> None:
    cat = np.array([0.50, 0.52, 0.49, 0.53, 0.51, 0.50, 0.54, 0.52])
    clear = C.verdict(C.analyze(_memory_jobs(cat, cat - np.array([4, 5, 3, 6, 4, 5, 4, 6]) / 100)))
    assert "**the categorical loss is better**" in clear and "ahead in 8 of 8" in clear
    assert "The difference is significant at 0.05 (paired t p < 0.0001, Wilcoxon p = 0.0078)" in clear
    assert "With 8 pairs, treat this as indicative." in clear
    noise = np.array([0.01, -0.02, 0.015, -0.01, 0.005, -0.012, 0.02, -0.017])
    unclear = C.verdict(C.analyze(_memory_jobs(cat, cat + noise)))
    assert "is not significant at 0.05" in unclear and "cannot tell the two apart" in unclear
    assert "is better**" not in unclear and "loss scores higher than the" in unclear


def test_generic_analysis_by_architecture() -> None:
    """The analysis knows no loss: any parameter can be the contrast, named in the verdict, with its baseline first."""
    from ser.analysis import words
    from ser.analysis.stats import Contrast, analyze

    lstm, crnn = np.array([0.50, 0.52, 0.49, 0.53]), np.array([0.55, 0.56, 0.54, 0.58])
    jobs = []
    for model, values in (("crnn", crnn), ("lstm", lstm)):
        for loss in ("categorical", "binary"):
            for seed, uar in enumerate(values):
                params = {"model": model, "loss": loss, "seed": seed}
                metrics = _metrics(uar - (0.03 if loss == "binary" else 0), 0.93, loss, seed)
                jobs.append(C.Job(str(len(jobs)), "ok", None, params=params, metrics=metrics))
    comp = analyze(jobs, contrast=Contrast("model", baseline="lstm", noun="architecture"))
    assert comp.contrast == "model" and comp.levels == ["lstm", "crnn"] and comp.varied[0] == "model"
    assert comp.match_keys == ["loss", "seed"]
    (pooled,) = comp.paired_result("uar")
    assert (pooled.a, pooled.b, pooled.n) == ("lstm", "crnn", 8)
    assert pooled.diff.mean == pytest.approx((crnn - lstm).mean())
    for stratum in ("loss=categorical", "loss=binary"):  # the answer per loss, too
        (r,) = comp.paired_result("uar", stratum)
        assert r.n == 4 and r.diff.mean == pytest.approx((crnn - lstm).mean())
    text = words.verdict(comp)
    assert "**the crnn architecture is better** than the lstm architecture" in text
    assert "binary_accuracy" not in text and "11/12" not in text


def test_an_ablation_sweep_compares_each_change_with_the_recipe() -> None:
    base = np.array([0.60, 0.62, 0.58, 0.57, 0.64])
    change = {"none": 0.0, "ema": 0.01, "mixup": -0.02, "speed": -0.01}
    jobs = []
    for ablation, delta in change.items():
        for fold, uar in enumerate(base + delta + np.array([0, 0.002, -0.001, 0.001, 0])):
            params = {"ablation": ablation, "split.fold": fold}
            metrics = _metrics(uar, 0.94, "categorical", 0)
            jobs.append(C.Job(str(len(jobs)), "ok", None, params=params, metrics=metrics))
    comp = C.analyze(jobs)
    assert comp.contrast == "ablation" and comp.levels[0] == "none" and comp.match_keys == ["split.fold"]
    pairs = {(p.a, p.b): p for p in comp.paired_result("uar")}
    assert set(pairs) == {("none", "ema"), ("none", "mixup"), ("none", "speed")}  # not ema vs mixup
    assert pairs[("none", "mixup")].n == 5 and pairs[("none", "mixup")].diff.mean == pytest.approx(-0.02, abs=1e-3)
    text = C.verdict(comp)
    assert "**`ablation=ema` is better** than the unchanged recipe" in text and "ablation=mixup" in text


def test_kfold_with_the_split_group(tmp_path: Path) -> None:
    """split=kfold split.fold=N (split its own config group): folds are repetitions, paired over."""
    uars = {"categorical": np.array([0.50, 0.54, 0.48]), "binary": np.array([0.44, 0.47, 0.45])}
    num = 0
    for loss, values in uars.items():
        for fold, uar in enumerate(values):
            job = write_job(
                tmp_path,
                num,
                [f"loss={loss}", "split=kfold", f"split.fold={fold}"],
                loss,
                # A job that left no record: its fold comes from the override, its split from the config.
                None if (loss, fold) == ("binary", 2) else _metrics(uar, 0.93, loss, 0, split="kfold", fold=fold),
            )
            config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
            config["split"] = {"strategy": "kfold", "fold": fold}
            (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
            num += 1
    jobs = C.load_sweep(tmp_path)
    assert (jobs[5].status, jobs[5].split, jobs[5].fold) == ("missing", "kfold", 2)
    comp = C.analyze(jobs)
    assert comp.match_keys == ["split.fold"] and [g.label for g in comp.groups] == ["loss=categorical", "loss=binary"]
    (r,) = comp.paired_result("uar")
    assert (r.n, r.unpaired) == (2, 1)
    assert [row[0] for row in comp.kfold[0].rows] == [0, 1, 2] and "2 paired folds" in C.verdict(comp)


# ------------------------------------------------------------------------------- honest reports (issue 10)


def _jobs_with_epochs(best_epochs: list[int], epochs: int = 10, n: int = 5) -> list[C.Job]:
    jobs = _memory_jobs(CAT_UAR[:n], BIN_UAR[:n])
    for job, best in zip(jobs, best_epochs * 2, strict=False):
        job.metrics["best_val"]["epoch"] = best
        job.metrics["epochs"] = epochs
    return jobs


def test_warns_when_most_runs_were_still_improving() -> None:
    from ser.analysis.checks import caveats
    from ser.analysis.render import render_markdown, summary_text

    improving = C.analyze(_jobs_with_epochs([9, 9, 9, 4, 9]))  # best at the last of 10 epochs in 4 of 5 seeds
    (warning,) = [w for w in caveats(improving) if "still" in w]
    assert "8 of 10 runs" in warning and "trainer.max_epochs" in warning
    assert "warning: 8 of 10 runs" in summary_text(improving)
    assert "## Warnings" in render_markdown(improving, [])
    stopped = C.analyze(_jobs_with_epochs([3, 5, 9, 4, 2]))  # early stopping ended most runs
    assert not [w for w in caveats(stopped) if "still" in w]


def test_warns_when_there_are_too_few_pairs() -> None:
    from ser.analysis.checks import caveats

    few = caveats(C.analyze(_memory_jobs(CAT_UAR[:3], BIN_UAR[:3])))
    assert any("Only 3 paired runs: too few for a test to mean much" in w for w in few)
    enough = caveats(C.analyze(_memory_jobs(np.r_[CAT_UAR, CAT_UAR + 0.01], np.r_[BIN_UAR, BIN_UAR + 0.01])))
    assert not any("too few" in w for w in enough)
    assert any("fewer than 3 runs" in w for w in caveats(C.analyze(_memory_jobs(CAT_UAR[:2], BIN_UAR[:2]))))


def test_notes_runs_from_different_devices_and_pairs_that_mix_them() -> None:
    from ser.analysis.checks import caveats

    def on(jobs: list[C.Job], devices: list[str]) -> list[C.Job]:
        for job, device in zip(jobs, devices, strict=True):
            job.metrics["environment"] = {"device": device}
        return jobs

    one = C.analyze(on(_memory_jobs(CAT_UAR, BIN_UAR), ["cpu (x86_64)"] * 10))
    assert not [w for w in caveats(one) if "devices" in w]
    # Seeds 0-1 on a GPU for both losses, seeds 2-4 on a CPU: every pair stays on one device.
    split = ["cuda (NVIDIA H100 80GB HBM3)"] * 2 + ["cpu (x86_64)"] * 3
    (note,) = [w for w in caveats(C.analyze(on(_memory_jobs(CAT_UAR, BIN_UAR), split * 2))) if "devices" in w]
    assert "6 on cpu, 4 on cuda" in note and "each pair ran on one device" in note
    # The binary run of seed 0 on a CPU instead: one pair of five crosses devices.
    crossed = on(_memory_jobs(CAT_UAR, BIN_UAR), [*split, "cpu (x86_64)", *split[1:]])
    (note,) = [w for w in caveats(C.analyze(crossed)) if "devices" in w]
    assert "1 of 5 pairs mix them" in note
    # A run whose device is unknown is no device of its own.
    unknown = on(_memory_jobs(CAT_UAR, BIN_UAR), [*split, "", *split[1:]])
    (note,) = [w for w in caveats(C.analyze(unknown)) if "devices" in w]
    assert "each pair ran on one device" in note and "6 on cpu, 3 on cuda" in note
    # Runs recorded before the environment was kept: the accelerator their config asked for.
    old = _memory_jobs(CAT_UAR, BIN_UAR)
    for job in old[:5]:
        job.config = {"trainer": {"accelerator": "gpu"}}
    assert [j.device for j in old] == ["cuda"] * 5 + [None] * 5


def test_where_runs_executed_is_not_a_group_but_pairs_stay_within_it() -> None:
    jobs = _memory_jobs(CAT_UAR, BIN_UAR)
    for job in jobs:  # seeds 0-1 ran on a GPU with 2 threads, seeds 2-4 on a CPU with 1 (both losses)
        gpu = job.params["seed"] < 2
        job.params.update({"trainer": "gpu" if gpu else "default", "num_threads": 2 if gpu else 1})
        job.params["paths.data_dir"] = "/root/data" if gpu else "data"
    comp = C.analyze(jobs)
    assert [g.label for g in comp.groups] == ["loss=categorical", "loss=binary"]
    assert set(comp.match_keys) == {"trainer", "num_threads", "paths.data_dir", "seed"}
    (r,) = comp.paired_result("uar")
    assert r.n == 5 and r.diff.mean == pytest.approx(float(np.mean(BIN_UAR - CAT_UAR)))
    assert any("only say where runs executed" in n and "num_threads" in n for n in comp.notes)


def test_an_execution_key_that_changed_with_the_groups_still_lets_them_pair() -> None:
    jobs = _memory_jobs(CAT_UAR, BIN_UAR)
    for job in jobs:  # one model on a GPU, the other on a CPU: pairs must still form, by seed
        job.params["model"] = "lstm" if job.params.pop("loss") == "categorical" else "crnn"
        job.params["trainer"] = "gpu" if job.params["model"] == "lstm" else "default"
    comp = C.analyze(jobs)
    assert len(comp.groups) == 2 and comp.match_keys == ["seed"]
    (r,) = comp.paired_result("uar")
    assert r.n == 5
    assert any("trainer changed only with model" in n for n in comp.notes)
    assert not any("where runs executed" in n for n in comp.notes)


def test_data_parallel_training_is_a_setting_not_a_place() -> None:
    jobs = _memory_jobs(CAT_UAR, BIN_UAR)
    for job in jobs:  # trainer=ddp doubles the effective batch: its runs are a group of their own
        job.params["trainer"] = "ddp" if job.params["seed"] < 2 else "default"
    assert "trainer" in C.analyze(jobs).group_keys


def test_confidence_intervals_of_rates_stay_within_0_and_1() -> None:
    from ser.analysis.stats import METRIC_BOUNDS, summarize

    s = summarize([0.99, 1.0, 0.80], bounds=METRIC_BOUNDS)
    assert s.ci_high == 1.0 and s.ci_low >= 0.0 and s.mean == pytest.approx(0.93)
    near_zero = summarize([0.0, 0.01, 0.2], bounds=METRIC_BOUNDS)
    assert near_zero.ci_low == 0.0
    comp = C.analyze(_memory_jobs(np.array([0.99, 1.0, 0.8]), np.array([0.0, 0.01, 0.2])))
    for group in comp.groups:
        for stat in group.stats.values():
            assert 0.0 <= stat.ci_low <= stat.ci_high <= 1.0
    for pair in comp.paired:
        assert -1.0 <= pair.diff.ci_low <= pair.diff.ci_high <= 1.0


def test_uar_figure_has_a_chance_line_and_titles_fit() -> None:
    from ser.analysis.render import confusion_panels, metric_figure
    from ser.plots import plt

    jobs = _memory_jobs(CAT_UAR, BIN_UAR)
    for job in jobs:  # long group labels, as a sweep over several keys makes them
        job.params["model"] = "a_rather_long_architecture_name_with_options" + job.params["loss"]
    comp = C.analyze(jobs, group_by=["loss", "model"])
    fig = metric_figure(comp, "uar")
    (ax,) = fig.axes
    chance = [ln for ln in ax.get_lines() if ln.get_label().startswith("chance")]
    assert chance and chance[0].get_ydata()[0] == pytest.approx(1 / 12)
    for figure in (fig, confusion_panels(comp)):
        figure.canvas.draw()
        right = figure.bbox.x1
        for a in figure.axes:
            box = a.title.get_window_extent()
            assert box.x0 >= 0 and box.x1 <= right, a.get_title()
        plt.close(figure)


def test_latest_picks_the_newest_sweep_of_the_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "multirun"
    older = loss_sweep(root / "2025-01-01_10-00-00")
    other = root / "2025-02-01_10-00-00"  # newer, but another experiment
    write_job(other, 0, ["model.hidden_size=64"], metrics=_metrics(0.5, 0.93, "categorical", 0))
    for sweep, task in ((older, "loss_comparison"), (other, "train")):
        (sweep / "multirun.yaml").write_text(yaml.safe_dump({"task_name": task}))
    assert C.latest_sweep(root, "loss_comparison") == older
    assert C.main(["--latest", "loss_comparison", "--root", str(root), "--no-plots"]) == 0
    assert str(older) in capsys.readouterr().out
    with pytest.raises(C.CompareError, match=r"task_name=nothing under .*tasks found: loss_comparison, train") as err:
        C.latest_sweep(root, "nothing")
    assert "experiment=nothing" not in str(err.value)  # no such preset to suggest
    (tmp_path / "demo" / "multirun").mkdir(parents=True)
    with pytest.raises(C.CompareError, match=r"sweeps on data=demo are under .*demo/multirun.*experiment=strongest"):
        C.latest_sweep(root, "strongest")


def _arch_sweep(root: Path, experiment: str, models: dict[str, float], with_seed: bool) -> Path:
    """One sweep over models x losses x 3 folds; binary is 0.04 below categorical for every model."""
    num = 0
    for model, base in models.items():
        for fold in range(3):
            for loss in ("categorical", "binary"):
                overrides = [f"experiment={experiment}", "split=kfold", f"split.fold={fold}", f"loss={loss}"]
                overrides += [f"model={model}"] if len(models) > 1 else []
                overrides += ["seed=0"] if with_seed else []
                uar = base + 0.01 * fold - (0.04 if loss == "binary" else 0.0)
                job = write_job(root, num, overrides, loss, _metrics(uar, 0.93, loss, 0, split="kfold", fold=fold))
                hydra = {"hydra": {"runtime": {"choices": {"model": model, "loss": loss}}}}
                (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
                num += 1
    return root


def test_several_sweeps_compared_per_architecture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An LSTM sweep (model on the command line, seed=0 given) and a CRNN sweep (model chosen by its experiment,
    seed left to the config) over the same folds: one report, the loss question answered per architecture."""
    lstm = _arch_sweep(tmp_path / "lstm", "loss_comparison", {"lstm_last": 0.30, "lstm": 0.45}, with_seed=True)
    crnn = _arch_sweep(tmp_path / "crnn", "strongest", {"crnn": 0.60}, with_seed=False)
    out = tmp_path / "report"
    with pytest.raises(C.CompareError, match="--out"):
        C.compare([lstm, crnn], plots=False)
    comp = C.compare([lstm, crnn], out, plots=False)
    # experiment follows the model, seed is 0 everywhere: grouped by loss and model only, paired by fold.
    assert comp.group_keys == ["loss", "model"] and "seed" not in comp.varied
    assert comp.match_keys == ["model", "split.fold"]
    assert any("experiment changed only with loss, model" in n for n in comp.notes)
    assert len(comp.groups) == 6 and {j.id.split("/")[0] for j in comp.done} == {"lstm", "crnn"}
    (pooled,) = comp.paired_result("uar")
    assert pooled.n == 9 and pooled.diff.mean == pytest.approx(-0.04)
    for model in ("lstm_last", "lstm", "crnn"):
        (r,) = comp.paired_result("uar", f"model={model}")
        assert r.n == 3 and r.diff.mean == pytest.approx(-0.04)
    md = (out / "comparison.md").read_text()
    assert md.startswith(f"# Sweep comparison: `{lstm}`, `{crnn}`")
    per_setting = md.split("## Verdict per setting", 1)[1].split("## Per group", 1)[0]
    for model in ("lstm_last", "lstm", "crnn"):
        assert f"### model={model}" in per_setting
    assert per_setting.count("the categorical loss is better") == 3
    assert C.main([str(lstm), str(crnn), "--out", str(out), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert "binary − categorical (model=crnn) UAR: -0.0400" in printed


def test_exclude_leaves_out_the_other_arms_of_a_reused_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A loss comparison that reuses an ablation sweep's baseline: --exclude drops that sweep's other arms."""
    lstm = _arch_sweep(tmp_path / "lstm", "loss_comparison", {"lstm": 0.45}, with_seed=True)
    ablations = tmp_path / "ablations"
    for num, (fold, arm) in enumerate((f, a) for f in range(3) for a in ("none", "stride8")):
        overrides = ["experiment=strongest", "split=kfold", f"split.fold={fold}", f"ablation={arm}"]
        uar = 0.60 + 0.01 * fold - (0.01 if arm == "stride8" else 0.0)
        write_job(ablations, num, overrides, metrics=_metrics(uar, 0.94, "categorical", 0, split="kfold", fold=fold))
    binary = tmp_path / "binary"
    for fold in range(3):
        overrides = ["experiment=strongest", "split=kfold", f"split.fold={fold}", "ablation=none", "loss=binary"]
        uar = 0.58 + 0.01 * fold
        write_job(binary, fold, overrides, "binary", _metrics(uar, 0.93, "binary", 0, split="kfold", fold=fold))
    sweeps = [lstm, ablations, binary]

    everything = C.compare(sweeps, tmp_path / "all", plots=False)
    assert {str(j.params.get("ablation")) for j in everything.done} == {"None", "none", "stride8"}
    # The arm run with one loss only has no pair: its section says so, the pooled verdict does not list it.
    assert "n=0" not in C.verdict(everything) and "ablation=stride8: binary" not in C.verdict(everything)

    kept = C.compare(sweeps, tmp_path / "kept", plots=False, exclude=C.parse_exclusions(["ablation=stride8"]))
    assert len(kept.done) == len(everything.done) - 3
    assert "stride8" not in (tmp_path / "kept" / "comparison.md").read_text()
    (crnn,) = kept.paired_result("uar", "experiment=strongest")  # ablation now follows the experiment
    assert crnn.n == 3 and crnn.diff.mean == pytest.approx(-0.02)

    with pytest.raises(
        C.CompareError, match=r"--exclude ablation=strid8: no job ran that \(values of ablation: none, stride8\)"
    ):
        C.compare(sweeps, tmp_path / "typo", plots=False, exclude=C.parse_exclusions(["ablation=strid8"]))
    assert C.main([*map(str, sweeps), "--out", str(tmp_path / "cli"), "--no-plots", "--exclude", "ablation"]) == 1
    assert "--exclude 'ablation': write KEY=VALUE" in capsys.readouterr().err
