"""``python -m ser.data``: index, feature cache and data report of the configured corpora, plus the data analysis."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from ser.data.corpus import DataError
from ser.data.datamodule import SERDataModule
from ser.data.report import save_report
from ser.data.splits import SplitError
from ser.logs import data_report_text, quiet_third_party, show_bars
from ser.runtime import mark_failed, run_command, task_started
from ser.validate import ConfigError, validate

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
CONFIG_NAME = "data_report"


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> None:
    task_started()
    quiet_third_party()
    try:
        validate(cfg)
        datamodule = SERDataModule.from_config(cfg.data, cfg.split, cfg.features)
        datamodule.progress = datamodule.progress and show_bars(cfg.get("progress"))
        datamodule.prepare_data()
        datamodule.setup()
    except (DataError, SplitError, ConfigError) as exc:
        print(f"ser.data: {exc}", file=sys.stderr)
        mark_failed(cfg.paths.output_dir)
        sys.exit(2)
    assert datamodule.report is not None
    print(data_report_text(datamodule.report, datamodule.summary(), full=True))
    saved = "data_report.json, data_report.txt, split_manifest.json"
    if cfg.get("analysis", True):
        from ser.data.analysis import format_analysis, run_analysis  # matplotlib and openSMILE: only when asked

        out = cfg.paths.output_dir
        summary = run_analysis(datamodule.clips, out, cfg.paths.cache_dir, datamodule.sample_rate, datamodule.progress)
        datamodule.report["analysis"] = summary
        save_report(datamodule.report, out)
        print("\n" + format_analysis(summary))
        saved += ", " + ", ".join(summary["figures"]) + ", tensorboard/"
    print(f"\nSaved: {cfg.paths.output_dir}/{saved}")


def cli() -> None:
    run_command(main, "ser.data", CONFIG_DIR, CONFIG_NAME)


if __name__ == "__main__":
    cli()
