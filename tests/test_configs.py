"""Every option of every config group composes and instantiates; configs mirror the code."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.strategies import DDPStrategy

from ser.ddp import HydraDDPStrategy
from ser.losses import BinaryLoss, CategoricalLoss
from ser.models.lstm import LSTMClassifier
from ser.train import build_datamodule, build_module

CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_the_groups_the_design_names_exist():
    for group in (
        "data",
        "features",
        "model",
        "loss",
        "optimizer",
        "scheduler",
        "trainer",
        "logger",
        "callbacks",
        "paths",
        "hydra",
        "experiment",
        "hparams_search",
        "debug",
    ):
        assert options(group), group


@pytest.mark.parametrize("loss", options("loss"))
def test_loss_options_instantiate(train_config, loss):
    cfg = train_config(f"loss={loss}")
    obj = instantiate(cfg.loss)
    assert isinstance(obj, {"categorical": CategoricalLoss, "binary": BinaryLoss}[loss])
    logits, labels = torch.randn(4, 12), torch.tensor([0, 3, 7, 11])
    assert obj(logits, labels).ndim == 0


@pytest.mark.parametrize("model", options("model"))
def test_model_options_instantiate(train_config, model):
    cfg = train_config(f"model={model}")
    net = instantiate(cfg.model, input_dim=40)
    assert isinstance(net, LSTMClassifier)
    assert net(torch.randn(3, 20, 40), torch.tensor([20, 10, 5])).shape == (3, 12)


@pytest.mark.parametrize("features", options("features"))
def test_feature_options_instantiate(train_config, features):
    cfg = train_config(f"features={features}")
    extractor = instantiate(cfg.features)
    feats, frames = extractor(torch.randn(2, 16000), torch.tensor([16000, 8000]))
    assert feats.shape[-1] == extractor.out_dim and frames.tolist() == [101, 51]


@pytest.mark.parametrize("data", options("data"))
def test_data_options_build_a_datamodule(train_config, data):
    cfg = train_config(f"data={data}")
    dm = build_datamodule(cfg)
    expected = {
        "default": ["crema_d", "savee"],
        "demo": ["crema_d", "savee"],
        "crema_d": ["crema_d"],
        "savee": ["savee"],
    }[data]
    assert dm.corpora == expected and dm.demo == (data == "demo")


@pytest.mark.parametrize("trainer", options("trainer"))
def test_trainer_options_compose(train_config, trainer):
    cfg = train_config(f"trainer={trainer}")
    assert cfg.trainer.use_distributed_sampler is False
    if trainer == "ddp":
        strategy = instantiate(cfg.trainer.strategy)
        assert isinstance(strategy, HydraDDPStrategy) and isinstance(strategy, DDPStrategy)


@pytest.mark.parametrize("opt", options("optimizer"))
@pytest.mark.parametrize("sched", options("scheduler"))
def test_optimizer_and_scheduler_options(train_config, opt, sched):
    cfg = train_config(f"optimizer={opt}", f"scheduler={sched}")
    module = build_module(cfg, input_dim=16)
    configured = module.configure_optimizers()
    optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
    assert isinstance(optimizer, torch.optim.Optimizer)
    assert isinstance(configured, dict) == (sched != "none")


@pytest.mark.parametrize("logger", options("logger"))
def test_logger_options_compose(train_config, logger):
    cfg = train_config(f"logger={logger}")
    from ser.runutils import instantiate_group

    loggers = instantiate_group(cfg.get("logger"))
    assert len(loggers) == {"none": 0, "tensorboard": 1, "csv": 1, "many": 2}[logger]


def test_experiment_and_search_presets_define_their_sweeps(train_config):
    cfg = train_config("experiment=loss_comparison")
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.sweeper.params.loss == "categorical,binary"
    assert len(str(cfg.hydra.sweeper.params.seed).split(",")) >= 5
    cfg = train_config("hparams_search=optuna")
    assert cfg.hydra.sweeper.direction == "maximize" and cfg.optimized_metric == "val/uar"
    assert set(cfg.hydra.sweeper.params) == {"model.hidden_size", "model.dropout", "optimizer.lr", "features"}


def test_debug_fast_limits_batches(train_config):
    cfg = train_config("debug=fast")
    assert cfg.trainer.limit_train_batches == 3 and cfg.callbacks.early_stopping is None


def test_seed_zero_reaches_the_split(train_config):
    cfg = train_config("seed=0")
    assert cfg.data.split_seed == 0
    assert train_config("seed=7").data.split_seed == 7
