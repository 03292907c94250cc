"""Every option of every config group composes and instantiates; configs mirror the code."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import OmegaConf

from ser.ddp import HydraDDPStrategy
from ser.models.components import SERNetwork
from ser.models.losses import BinaryLoss, CategoricalLoss
from ser.train import build_datamodule, build_module
from tests.conftest import compose_config

CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_the_groups_the_design_names_exist():
    for group in (
        "data",
        "split",
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
        "search_space",
        "debug",
        "ablation",
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
    assert isinstance(net, SERNetwork) and net.input_dim == 40
    assert net(torch.randn(3, 20, 40), torch.tensor([20, 10, 5])).shape == (3, 12)


@pytest.mark.parametrize("features", options("features"))
def test_feature_options_instantiate(train_config, features):
    cfg = train_config(f"features={features}")
    extractor = instantiate(cfg.features)
    feats, frames = extractor(torch.randn(2, 16000), torch.tensor([16000, 8000]))
    # eGeMAPS frames a clip without padding at its ends (ser/features/egemaps.py): 4 frames fewer, and
    # stacked with the log-mels it sets the frame count.
    expected = [96, 46] if "egemaps" in features else [101, 51]
    assert feats.shape[-1] == extractor.out_dim and frames.tolist() == expected


@pytest.mark.parametrize("data", options("data"))
def test_data_options_build_a_datamodule(train_config, data):
    cfg = train_config(f"data={data}")
    dm = build_datamodule(cfg)
    expected = {
        "default": ["crema_d", "savee"],
        "demo": ["demo"],
        "crema_d": ["crema_d"],
        "savee": ["savee"],
        "ravdess": ["ravdess"],
        "tess": ["tess"],
        "emodb": ["emodb"],
        "manifest": ["manifest"],
        "all": ["all"],  # no corpus folder under the test's data.root: index() says so
    }[data]
    assert list(dm.corpora.names) == expected


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
    # One-cycle reads its total steps from the trainer ("auto"); a module alone is told them.
    steps = ["scheduler.total_steps=100"] if sched == "onecycle" else []
    cfg = train_config(f"optimizer={opt}", f"scheduler={sched}", *steps)
    module = build_module(cfg, input_dim=16)
    configured = module.configure_optimizers()
    optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
    assert isinstance(optimizer, torch.optim.Optimizer)
    assert isinstance(configured, dict) == (sched != "none")


@pytest.mark.parametrize("logger", options("logger"))
def test_logger_options_compose(train_config, logger):
    if logger in ("mlflow", "wandb"):
        pytest.importorskip(logger, reason=f"{logger} is in the optional 'loggers' extra")
    cfg = train_config(f"logger={logger}")
    from ser.config import instantiate_group

    loggers = instantiate_group(cfg.get("logger"))
    assert len(loggers) == {"none": 0, "tensorboard": 1, "csv": 1, "many": 2, "mlflow": 1, "wandb": 1}[logger]


def test_experiment_and_search_presets_define_their_sweeps(train_config):
    cfg = train_config("experiment=loss_comparison")
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.sweeper.params.loss == "categorical,binary"
    assert len(str(cfg.hydra.sweeper.params.seed).split(",")) >= 5


def test_strongest_names_each_tensorboard_run_by_what_the_job_changed(train_config):
    cfg = train_config("experiment=strongest", "split=kfold", "split.fold=2", "augment=speed_specaugment")
    assert cfg.model._target_.endswith("CRNN") and cfg.data.normalization == "speaker"
    name = cfg.logger.tensorboard.version.split(",")
    assert "augment=speed_specaugment" in name and "split.fold=2" in name
    assert not [part for part in name if part.startswith(("experiment=", "split="))]


ABLATION_CHANGES = {  # option -> the one part of the recipe it changes
    "ema": {"callbacks"},
    "no_mixup": {"augment"},
    "speed": {"augment"},
    "crop150": {"augment"},
    "bf16": {"trainer"},
    "no_specaugment": {"augment"},
    "utterance_norm": {"data"},
    "global_norm": {"data"},
    "egemaps": {"features", "augment"},  # the masks' width follows the feature size (next test)
    "logmel_egemaps": {"features", "augment"},
    "epochs20": {"trainer"},
    "epochs40": {"trainer"},
    "stride8": {"model"},
    "stride8_narrow": {"model"},
}


@pytest.mark.parametrize("option", sorted(ABLATION_CHANGES))
def test_each_ablation_changes_one_part_of_the_strongest_recipe(tmp_path, shared_cache, option):
    assert sorted(ABLATION_CHANGES) == sorted(o for o in options("ablation") if o != "none")

    def parts(ablation: str) -> dict:  # composed as a user gets it (the test overrides would hide trainer changes)
        cfg = compose_config("train", ["experiment=strongest", f"ablation={ablation}"], tmp_path, shared_cache)
        plain = OmegaConf.to_container(cfg, resolve=False)
        return {k: v for k, v in plain.items() if k not in ("hydra", "logger")}

    base, changed = parts("none"), parts(option)
    assert {k for k in base if base[k] != changed[k]} == ABLATION_CHANGES[option]
    assert base["model"]["_target_"].endswith("CRNN")  # still the strongest recipe otherwise


@pytest.mark.parametrize("view", ["egemaps", "logmel_egemaps"])
def test_feature_ablations_mask_the_same_share_of_channels(tmp_path, shared_cache, view):
    def masks(ablation: str) -> tuple[dict, float]:
        cfg = compose_config("train", ["experiment=strongest", f"ablation={ablation}"], tmp_path, shared_cache)
        spec = OmegaConf.to_container(cfg.augment.spec_augment)
        return spec, spec["freq_width"] / instantiate(cfg.features).out_dim

    (base, base_share), (changed, changed_share) = masks("none"), masks(view)
    assert changed_share == pytest.approx(base_share, rel=0.25)
    del base["freq_width"], changed["freq_width"]
    assert changed == base


def test_debug_fast_limits_batches(train_config):
    cfg = train_config("debug=fast")
    assert cfg.trainer.limit_train_batches == 3 and cfg.callbacks.early_stopping is None


def test_seed_zero_reaches_the_split(train_config):
    cfg = train_config("seed=0")
    assert cfg.split.seed == 0
    assert train_config("seed=7").split.seed == 7


def test_demo_runs_land_apart_from_real_data(train_config):
    from omegaconf import OmegaConf

    demo = OmegaConf.select(train_config("data=demo").hydra, "run.dir")
    real = OmegaConf.select(train_config("data=default").hydra, "run.dir")
    assert "/outputs/demo/train/" in demo and "/outputs/train/" in real and "/demo/" not in real
    assert "/outputs/demo/multirun/" in OmegaConf.select(train_config("data=demo").hydra, "sweep.dir")


def test_each_command_has_its_own_help(train_config):
    assert train_config().hydra.help.app_name == "ser.train"
    assert "progress=auto|bar|none" in train_config().hydra.help.template
    assert train_config().progress == "auto" and train_config().trainer.enable_progress_bar is True


@pytest.mark.parametrize("command", ["predict", "export", "tune"])
def test_every_command_reports_a_typo_in_one_line(command: str) -> None:
    """The Hydra commands share ser.train's handling: an unknown key is one line on stderr and exit code 2."""
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", f"ser.{command}", "fooo=1"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2
    assert res.stderr.strip() == f"ser.{command}: no config key `fooo`; to add a new key on purpose use +fooo=1"


def sweep_jobs(cfg) -> list[list[str]]:
    """The override list of each job a preset's hydra.sweeper.params launches, in Hydra's basic sweeper order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)
    return [job for batch in batches for job in batch]


def test_loss_by_architecture_sweeps_pairs_of_losses_fold_by_fold(train_config):
    """Model outermost, loss innermost: the two losses of a fold run side by side, so a stopped sweep leaves pairs."""
    cfg = train_config("experiment=loss_by_architecture")
    assert cfg.split.strategy == "kfold" and cfg.trainer.min_epochs == 20  # (max_epochs is the tests' fast 3)
    jobs = sweep_jobs(cfg)
    assert len(jobs) == 20
    assert jobs[:3] == [
        ["model=lstm_last", "split.fold=0", "loss=categorical"],
        ["model=lstm_last", "split.fold=0", "loss=binary"],
        ["model=lstm_last", "split.fold=1", "loss=categorical"],
    ]


def test_strongest_fused_is_the_measured_logmel_egemaps_ablation(tmp_path, shared_cache):
    """experiment=strongest_fused trains exactly what was measured as strongest + ablation=logmel_egemaps."""

    def plain(*overrides: str) -> dict:
        cfg = compose_config("train", list(overrides), tmp_path, shared_cache)
        return {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k not in ("hydra", "logger")}

    fused = plain("experiment=strongest_fused")
    measured = plain("experiment=strongest", "ablation=logmel_egemaps")
    assert fused["features"]["_target_"] == "ser.features.stacked.Stacked"
    assert {k for k in fused if fused[k] != measured.get(k)} == {"task_name", "tags"}
    assert fused["tags"] == ["strongest", "fused"]


def test_strongest_ensemble_trains_both_feature_views_fold_by_fold(train_config):
    """Fold outermost, view innermost: a stopped sweep leaves each finished fold with both of its models."""
    cfg = train_config("experiment=strongest_ensemble")
    assert cfg.hydra.mode.name == "MULTIRUN" and cfg.split.strategy == "kfold"
    jobs = sweep_jobs(cfg)
    assert len(jobs) == 10
    assert jobs[:3] == [
        ["split.fold=0", "ablation=none"],
        ["split.fold=0", "ablation=egemaps"],
        ["split.fold=1", "ablation=none"],
    ]
    for view, extractor in (("none", "LogMel"), ("egemaps", "EGeMAPS")):
        job = train_config("experiment=strongest_ensemble", f"ablation={view}")
        plain = train_config("experiment=strongest", "split=kfold", f"ablation={view}")
        assert job.features._target_.endswith(extractor) and job.model == plain.model and job.augment == plain.augment
