"""How commands run in their process: logging set-up, threads, seeding, and what the light commands import."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import torch
from omegaconf import OmegaConf

from ser.runtime import configure_matmul_precision, configure_threads, seed_everything, setup_logging

ROOT = Path(__file__).resolve().parent.parent


def test_setup_logging_adds_one_stderr_handler(capsys: pytest.CaptureFixture) -> None:
    logger = logging.getLogger("ser")
    before = list(logger.handlers)
    try:
        setup_logging("ser.test")
        setup_logging("ser.test")  # a second command in the same process does not double the messages
        added = [h for h in logger.handlers if h not in before]
        assert len(added) == 1
        logging.getLogger("ser.inference.predictor").info("hello")
        assert capsys.readouterr().err.count("ser.test: hello") == 1
    finally:
        for handler in logger.handlers[:]:
            if handler not in before:
                logger.removeHandler(handler)


def test_matmul_precision_is_applied_and_null_keeps_torchs() -> None:
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert configure_matmul_precision(OmegaConf.create({"matmul_precision": None})) == "highest"
        assert configure_matmul_precision(OmegaConf.create({"matmul_precision": "high"})) == "high"
        assert torch.get_float32_matmul_precision() == "high"
        with pytest.raises(ValueError, match=r"matmul_precision='tf32': choose highest, high or medium \(or null\)"):
            configure_matmul_precision(OmegaConf.create({"matmul_precision": "tf32"}))
    finally:
        torch.set_float32_matmul_precision(before)


def test_configure_threads_and_seed() -> None:
    threads = torch.get_num_threads()
    try:
        assert configure_threads(OmegaConf.create({"num_threads": 1})) == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    seed_everything(0)
    a = torch.rand(3)
    seed_everything(0)
    assert torch.equal(a, torch.rand(3))
    seed_everything(None)  # unseeded: a no-op


def test_predict_and_export_load_neither_lightning_nor_each_other(subprocess_env: dict[str, str]) -> None:
    code = (
        "import sys, ser.export; assert 'ser.predict' not in sys.modules; "
        "import ser.predict; assert 'lightning' not in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_ser_predict_script_is_the_hydra_command() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ser-predict"] == "ser.predict:cli"  # one CLI: the same overrides as python -m ser.predict
