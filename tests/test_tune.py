"""ser.tune: search-space parsing, a resumable study on the demo corpus that never tests, pruning, the CLI."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import optuna
import pytest
from omegaconf import DictConfig, OmegaConf

from ser import tune
from ser.results import SCALARS
from ser.tuning.space import SearchSpaceError, override_value, parse_search_space
from ser.tuning.study import open_storage, requeue_killed_trials
from tests.conftest import FAST_OVERRIDES, compose_config

ROOT = Path(__file__).resolve().parents[1]
# Two cheap parameters; everything else as the fast test runs.
SPACE = {
    "model": {"dropout": {"type": "float", "low": 0.0, "high": 0.5}},
    "optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
}
TRIAL_OVERRIDES = [*FAST_OVERRIDES, "trainer.max_epochs=1", "logger=csv"]


def _tune(out: Path, cache: Path, *overrides: str) -> tuple[DictConfig, list[str]]:
    """The tune config and the command-line overrides that ser.tune composes every trial from."""
    # Trials are composed from the overrides alone, so the paths go in as overrides too.
    overrides = [*TRIAL_OVERRIDES, f"paths.root_dir={out}", f"paths.cache_dir={cache}", *overrides]
    cfg = compose_config("tune", overrides, out, cache)
    cfg.search_space = OmegaConf.create(SPACE)
    return cfg, overrides


def _no_test(*args, **kwargs):
    raise AssertionError("ser.tune evaluated the test set")


# ----------------------------------------------------------------------------------- search space


def test_search_space_accepts_flat_and_nested_keys():
    params = parse_search_space(
        {
            "model": {"hidden_size": {"type": "categorical", "choices": [64, 128]}},
            "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "model.num_layers": {"type": "int", "low": 1, "high": 3},
        }
    )
    assert [(p.key, p.type) for p in params] == [
        ("model.hidden_size", "categorical"),
        ("optimizer.lr", "float"),
        ("model.num_layers", "int"),
    ]


@pytest.mark.parametrize(
    ("space", "needle"),
    [
        ({"optimizer.lr": {"type": "normal", "low": 0, "high": 1}}, "search_space.optimizer.lr: type must be"),
        ({"model": {"dropout": {"type": "float", "low": 0.5, "high": 0.1}}}, "search_space.model.dropout: low"),
        ({"optimizer.lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "search_space.optimizer.lr: log"),
        ({"model.hidden_size": {"type": "categorical", "choices": []}}, "search_space.model.hidden_size: 'choices'"),
        ({"model.hidden_size": {"type": "int", "low": 1.5, "high": 4}}, "search_space.model.hidden_size: 'low'"),
        ({"model.hidden_size": {"type": "int", "high": 4}}, "search_space.model.hidden_size: 'low' is required"),
        ({"model.hidden_size": {"type": "int", "low": 1, "high": 4, "lgo": True}}, "unknown field(s) lgo"),
        ({"model.hidden_size": [64, 128]}, "search_space.model.hidden_size: expected a distribution"),
        ({"a.b": {"type": "int", "low": 1, "high": 2}, "a": {"b": {"type": "int", "low": 1, "high": 2}}}, "a.b: given"),
        ({}, "search_space: no parameters"),
    ],
)
def test_search_space_rejects_a_bad_spec_with_one_line_naming_the_key(space, needle):
    with pytest.raises(SearchSpaceError) as err:
        parse_search_space(space)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "conf" / "search_space").glob("*.yaml")))
def test_every_search_space_file_names_keys_of_the_train_config(train_config, name):
    model = {"crnn": "crnn"}.get(name, "lstm")
    cfg = train_config(f"model={model}")
    space = OmegaConf.load(ROOT / "conf" / "search_space" / f"{name}.yaml")
    for p in parse_search_space(space):
        assert OmegaConf.select(cfg, p.key, default=KeyError) is not KeyError, (name, p.key)


def test_override_values_read_back_as_hydra_values(train_config):
    values = {"optimizer.lr": 1e-05, "model.dropout": 0.25, "model.hidden_size": 64, "model.bidirectional": True}
    cfg = train_config(*(f"{k}={override_value(v)}" for k, v in values.items()), "features=mfcc")
    assert {k: OmegaConf.select(cfg, k) for k in values} == values
    assert override_value(None) == "null" and override_value("a b") == "'a b'"


def test_the_default_tune_config_searches_validation_uar_and_never_tests(tmp_path, shared_cache):
    cfg = compose_config("tune", ["data=demo"], tmp_path, shared_cache)
    assert cfg.optimized_metric == "val/uar" and cfg.tune.direction == "maximize" and cfg.test is False
    keys = {p.key for p in parse_search_space(cfg.search_space)}
    assert {"model.hidden_size", "model.dropout", "optimizer.lr", "features"} <= keys
    assert cfg.tune.dir == str(tmp_path / "outputs" / "tune" / "ser_uar")


# ------------------------------------------------------------------------------------------ study


@pytest.fixture(scope="module")
def study(tmp_path_factory, shared_cache):
    """A 2-trial study, then the same command again with tune.n_trials=3: it continues the stored study."""
    out = tmp_path_factory.mktemp("tune")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pl.Trainer, "test", _no_test)
        first = tune.run(*_tune(out, shared_cache, "tune.n_trials=2"))
        second = tune.run(*_tune(out, shared_cache, "tune.n_trials=3"))
    return out / "outputs" / "tune" / "ser_uar", first, second


def test_a_study_never_evaluates_the_test_set(study):
    study_dir, _, _ = study
    trials = sorted((study_dir / "trials").iterdir())
    assert len(trials) == 3
    for folder in trials:
        record = json.loads((folder / "metrics.json").read_text())
        assert record["status"] == "ok" and record["best_val"]["uar"] is not None
        assert all(record[k] is None for k in SCALARS) and not record["confusion"], folder
        assert not (folder / "confusion_matrix.png").exists()
        header = (folder / "csv" / "metrics.csv").read_text().splitlines()[0]
        assert "val/uar" in header and "test/" not in header
        config = OmegaConf.load(folder / ".hydra" / "config.yaml")
        assert config.test is False and "tune" not in config and "search_space" not in config
        assert study_dir.is_relative_to(config.paths.root_dir)  # the trial ran on the test's folders


def test_a_study_continues_from_its_storage_file(study):
    study_dir, first, second = study
    assert (study_dir / "study.journal").is_file()
    assert first["trials"]["complete"] == 2 and second["trials"]["complete"] == 3
    rows = list(csv.DictReader((study_dir / "trials.csv").open()))
    assert [r["number"] for r in rows] == ["0", "1", "2"] and {r["state"] for r in rows} == {"COMPLETE"}
    assert {"model.dropout", "optimizer.lr"} <= set(rows[0])


def test_best_overrides_compose_into_a_train_config(study, tmp_path, shared_cache):
    study_dir, _, second = study
    overrides = (study_dir / "best_overrides.txt").read_text().split()
    best = json.loads((study_dir / "best.json").read_text())
    assert overrides == best["overrides"] == second["overrides"]
    assert best["command"] == "python -m ser.train " + " ".join(overrides)
    assert not any(o.split("=")[0] in ("test", "tune", "search_space") for o in overrides)
    cfg = compose_config("train", overrides, tmp_path, shared_cache)
    assert cfg.test is True  # the best trial's test run is the separate, documented step
    for key, value in best["params"].items():
        assert OmegaConf.select(cfg, key) == pytest.approx(value), key
    rows = {r["number"]: float(r["value"]) for r in csv.DictReader((study_dir / "trials.csv").open())}
    assert best["value"] == max(rows.values()) == rows[str(best["trial"])]


def test_a_study_writes_optunas_plots(study):
    study_dir, _, second = study
    for name in ("optimization_history", "parallel_coordinate", "param_importances"):
        assert (study_dir / f"{name}.png").stat().st_size > 1000, name
        assert f"{name}.png" in second["plots"]


def test_bad_trials_are_pruned_by_the_lightning_callback(tmp_path, shared_cache, monkeypatch):
    monkeypatch.setattr(pl.Trainer, "test", _no_test)
    cfg, overrides = _tune(
        tmp_path,
        shared_cache,
        "tune.n_trials=1",
        "trainer.max_epochs=3",
        # Every value is below 2.0: the first reported epoch prunes.
        "tune.pruner._target_=optuna.pruners.ThresholdPruner",
        "~tune.pruner.n_startup_trials",
        "~tune.pruner.n_warmup_steps",
        "+tune.pruner.lower=2.0",
    )
    result = tune.run(cfg, overrides)
    assert result["trials"]["pruned"] == 1 and "command" not in result
    folder = Path(cfg.tune.dir) / "trials" / "0000"
    assert json.loads((folder / "metrics.json").read_text())["status"] == "pruned"
    assert not (Path(cfg.tune.dir) / "best_overrides.txt").exists()


def test_a_trial_left_running_by_a_killed_process_is_queued_again(tmp_path):
    storage = open_storage("", tmp_path)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial = study.ask({"optimizer.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", dead.pid)
    requeue_killed_trials(study, storage)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]
    assert study.trials[1].user_attrs == {"retry_of": 0}


def test_cli_rejects_a_bad_search_space_in_one_line(cli_env):
    res = subprocess.run(
        [sys.executable, "-m", "ser.tune", "data=demo", "+search_space.model.dense_size={type:gauss}"],
        capture_output=True,
        text=True,
        env=cli_env,
        cwd=cli_env["SER_ROOT"],
        timeout=120,
    )
    assert res.returncode == 2
    assert "ser.tune: search_space.model.dense_size: type must be one of int, float, categorical" in res.stderr
    assert "Traceback" not in res.stderr


def test_help_is_about_tuning_not_training(cli_env):
    res = subprocess.run(
        [sys.executable, "-m", "ser.tune", "--help"],
        capture_output=True,
        text=True,
        env=cli_env,
        cwd=cli_env["SER_ROOT"],
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert text.startswith("ser.tune: search hyperparameters with Optuna")
    assert "python -m ser.tune model=crnn search_space=crnn" in text
    assert "python -m ser.train $(cat outputs/tune/" in text  # a literal dollar sign, not a placeholder
    for key in ("search_space", "tune.study_name", "tune.n_trials", "tune.timeout", "tune.storage", "optimized_metric"):
        assert f"\n  {key} " in text, key
    assert "ser.train: train and test" not in text and "== Groups that matter" not in text  # train's help
    # --help starts no study and makes no folder (train's run dir, a ${ser.unique:...}, is never resolved).
    assert not (Path(cli_env["SER_ROOT"]) / "outputs").exists()


def test_cli_runs_a_study_and_prints_one_line_per_trial(cli_env, shared_cache, tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "ser.tune",
            *TRIAL_OVERRIDES,
            f"paths.cache_dir={shared_cache}",
            "tune.n_trials=1",
            "tune.study_name=cli",
            "~search_space.features",
            "search_space.model.hidden_size.choices=[16,32]",
        ],
        capture_output=True,
        text=True,
        env=cli_env,
        cwd=cli_env["SER_ROOT"],
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    study_dir = tmp_path / "outputs" / "tune" / "cli"
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if "[ser.tune]" in ln and "| 1/1 finished |" in ln]
    assert len(lines) == 1 and "trial 0 val/uar " in lines[0]
    (session,) = (study_dir / "sessions").iterdir()
    assert "trial 0 val/uar" in (session / "tune.log").read_text()
    assert "val/uar" in (study_dir / "trials" / "0000" / "train.log").read_text()
    overrides = (study_dir / "best_overrides.txt").read_text().split()
    assert any(o.startswith("model.hidden_size=") for o in overrides) and "tune.n_trials=1" not in overrides


def test_multi_device_trials_are_refused_with_the_worker_per_gpu_advice(tmp_path, shared_cache):
    cfg, overrides = _tune(tmp_path, shared_cache, "trainer=ddp")
    with pytest.raises(tune.TuneError, match="one worker per GPU"):
        tune.run(cfg, overrides)
