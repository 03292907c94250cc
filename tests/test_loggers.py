"""logger=mlflow and logger=wandb: a 1-epoch demo run writes each logger's local store."""

from __future__ import annotations

import sqlite3

import pytest

from ser.train import run


def test_mlflow_logs_the_run_into_a_local_sqlite_store(train_config, tmp_path):
    pytest.importorskip("mlflow", reason="mlflow is in the optional 'loggers' extra")
    from mlflow.tracking import MlflowClient

    cfg = train_config("logger=mlflow", "trainer.max_epochs=1")
    assert cfg.logger.mlflow.tracking_uri.startswith("sqlite:///")
    metrics = run(cfg)
    db = tmp_path / "outputs" / "mlflow.db"
    assert db.is_file()
    with sqlite3.connect(db) as con:  # the store itself, not only the client's view of it
        keys = {row[0] for row in con.execute("SELECT DISTINCT key FROM metrics")}
    assert {"val/uar", "train/loss", "test/uar"} <= keys
    client = MlflowClient(cfg.logger.mlflow.tracking_uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == cfg.task_name]
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.data.metrics["test/uar"] == pytest.approx(metrics["uar"], abs=1e-6)
    assert found.data.tags["output_dir"] == str(tmp_path)
    assert not (tmp_path / "mlruns").exists()


def test_wandb_writes_an_offline_run_folder(train_config, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is in the optional 'loggers' extra")
    import wandb

    # Nothing may leave the machine, and no credentials or settings of the person running the tests apply.
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = train_config("logger=wandb", "trainer.max_epochs=1")
    assert cfg.logger.wandb.offline is True
    try:
        run(cfg)
    finally:
        wandb.finish()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((tmp_path / "wandb").iterdir())
    assert list(runs[0].glob("*.wandb")), list(runs[0].iterdir())
