"""Shared fixtures: composed configs on the synthetic demo corpus, with a cache shared by the session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]

# The test models are tiny: one thread is as fast, and immune to OpenMP stalls on a busy machine.
torch.set_num_threads(1)
CONF = str(ROOT / "conf")

# Small enough for the default test run; large enough that the model learns the demo corpus.
FAST_OVERRIDES = [
    "data=demo",
    "data.progress=false",
    "num_threads=1",
    "model.hidden_size=32",
    "model.dense_size=32",
    "trainer.max_epochs=3",
    "callbacks.progress_bar.refresh_rate=0",
    "trainer.enable_model_summary=false",
]


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder (demo audio + features) for the whole session: generated once."""
    return tmp_path_factory.mktemp("ser-cache")


def compose_config(name: str, overrides: list[str], out_dir: Path, cache: Path) -> DictConfig:
    """Compose ``conf/<name>.yaml`` as Hydra would and register it, so ``${hydra:...}`` resolves."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONF):
        cfg = compose(config_name=name, return_hydra_config=True, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.root_dir = str(out_dir)
        cfg.paths.cache_dir = str(cache)
        cfg.paths.output_dir = str(out_dir)
        cfg.hydra.runtime.output_dir = str(out_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


@pytest.fixture(autouse=True)
def _forget_hydra_config():
    """A config a test registered (a sweep preset's MULTIRUN, say) must not reach the next test's is_multirun()."""
    yield
    HydraConfig.instance().cfg = None


@pytest.fixture
def train_config(tmp_path: Path, shared_cache: Path):
    """Factory: ``train_config(*overrides)`` -> composed train config writing into tmp_path."""

    def make(*overrides: str, out: Path | None = None) -> DictConfig:
        return compose_config("train", [*FAST_OVERRIDES, *overrides], out or tmp_path, shared_cache)

    yield make
    GlobalHydra.instance().clear()


@pytest.fixture
def cli_env(tmp_path: Path, shared_cache: Path) -> dict[str, str]:
    """Environment for running ``python -m ser.*`` in a subprocess inside tmp_path."""
    return {**child_env(), "SER_ROOT": str(tmp_path)}


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for running Python in a subprocess: this checkout first, the caller's PYTHONPATH kept."""
    return child_env()


def child_env() -> dict[str, str]:
    # Keeping the caller's PYTHONPATH matters where the dependencies come from it rather than a venv.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
