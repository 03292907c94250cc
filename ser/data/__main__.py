"""``python -m ser.data``: build the index and feature cache of the configured corpora and print the data report."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from ser.data.corpus import DataError
from ser.data.datamodule import SERDataModule
from ser.data.report import format_report

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="data_report")
def main(cfg: DictConfig) -> None:
    try:
        datamodule = SERDataModule.from_config(cfg.data, cfg.split, cfg.features)
        datamodule.prepare_data()
        datamodule.setup()
    except DataError as exc:
        print(f"ser.data: {exc}", file=sys.stderr)
        sys.exit(2)
    print(format_report(datamodule.report))
    print(f"\nSaved: {cfg.paths.output_dir}/data_report.json, data_report.txt, split_manifest.json")


if __name__ == "__main__":
    main()
