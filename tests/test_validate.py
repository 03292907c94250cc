"""Config values, folders, checkpoints and override typos checked before any work (ser.validate)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from ser.validate import (
    ConfigError,
    checkpoint_mismatch,
    explain_hydra_error,
    nearest,
    problems,
    unknown_arguments,
    validate,
    writable_problem,
)
from tests.conftest import CONF


def test_the_default_config_has_no_problems(train_config):
    assert problems(train_config()) == []
    validate(train_config())


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("optimizer.lr=-0.001", "optimizer.lr=-0.001: must be a positive number"),
        ("optimizer.lr=0", "optimizer.lr=0: must be a positive number"),
        ("data.batch_size=0", "data.batch_size=0: must be a positive integer"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0: need at least 1"),
        ("model.dropout=1.0", "model.dropout=1.0: a dropout rate must be in [0, 1)"),
        ("model.dropout=-0.1", "a dropout rate must be in [0, 1)"),
        ("model.hidden_size=0", "model.hidden_size=0: must be a positive integer"),
        ("split.strategy=speakers", "split.strategy='speakers': choose one of speaker, kfold"),
        ("split.test_fraction=0.9", "need each in (0, 1) and together below 1"),
        ("data.on_error=ignore", "data.on_error='ignore': choose raise or skip"),
        ("data.normalization=z", "choose global, utterance or speaker"),
        ("data.corpora=[cremad]", "data.corpora=['cremad']: known corpora:"),
        ("seed=-1", "seed=-1: must be null or an integer"),
        ("num_threads=0", "num_threads=0: must be a positive integer"),
        ("matmul_precision=tf32", "matmul_precision='tf32': choose highest, high or medium (or null)"),
        ("progress=sometimes", "progress='sometimes': choose auto, bar or none"),
        ("optimized_metric=val/uarr", "optimized_metric='val/uarr': must be val/<metric>"),
        ("trainer.min_epochs=5", None),  # with max_epochs=3 from the fast overrides
        ("augment=mixup", None),  # valid: no problem
        ("augment=mixup augment.mixup.p=1.5", "augment.mixup.p=1.5: a probability must be in [0, 1]"),
        ("+augment.crop.max_frames=0", "augment.crop.max_frames=0: must be a positive number of frames"),
        ("trainer.precision=fp16", "trainer.precision='fp16': choose 32-true, bf16-mixed or 16-mixed"),
        ("trainer.precision=bf16-mixed", None),
        ("trainer.precision=16-mixed", "trainer.precision='16-mixed': float16 autocast needs a GPU"),
        ("trainer.precision=bf16-true", "trainer.precision='bf16-true': choose 32-true, bf16-mixed or 16-mixed"),
        ("trainer.precision=bf16", "trainer.precision='bf16': write bf16-mixed (its current name)"),
        ("trainer.precision=32", "trainer.precision=32: write 32-true (its current name)"),
        ("+model.hiden_size=3", "model.hiden_size: LSTMClassifier takes no argument 'hiden_size' (did you mean"),
        ("+loss.smoothing=0.1", "loss.smoothing: CategoricalLoss takes no argument 'smoothing' (did you mean"),
        ("model._target_=ser.models.nope.Net", "model._target_='ser.models.nope.Net': cannot be imported (No module"),
        ("model._target_=ser.models.crnn.Nope", "model._target_='ser.models.crnn.Nope': cannot be imported (module"),
        ("+augment.crop=150", "augment.crop=150: write +augment.crop.max_frames=<frames>"),
        ("+augment.crop.frames=150", "augment.crop={'frames': 150}: write +augment.crop.max_frames=<frames>"),
        ("callbacks.early_stopping.patience=-1", "patience=-1: must be an integer of 0 or more"),
        ("+trainer.limit_train_batches=0", "trainer.limit_train_batches=0: must be above 0"),
        ("train=false", "train=false test=true: testing needs trained weights; give ckpt_path="),
        ("ckpt_path=/no/such.ckpt", "ckpt_path='/no/such.ckpt': no such checkpoint file"),
    ],
)
def test_values_that_cannot_work_are_named(train_config, override, needle):
    found = problems(train_config(*override.split()))
    assert all("\n" not in p for p in found)  # each one line
    if override == "trainer.min_epochs=5":
        assert found == ["trainer.min_epochs=5 is above trainer.max_epochs=3"]
    elif needle is None:
        assert found == []
    else:
        assert any(needle in p for p in found), found


def test_a_gpu_trainer_without_a_gpu_stops_in_one_line(train_config, monkeypatch):
    import ser.validate

    expected = "trainer.accelerator='gpu': no CUDA device is available here; use trainer=cpu"
    monkeypatch.setattr(ser.validate, "_cuda_available", lambda: False)
    assert any(p.startswith(expected) for p in problems(train_config("trainer=gpu")))
    monkeypatch.setattr(ser.validate, "_cuda_available", lambda: True)
    assert problems(train_config("trainer=gpu")) == []


def test_every_model_and_loss_option_takes_its_config_keys(train_config):
    for group in ("model", "loss"):
        for option in sorted(p.stem for p in (Path(CONF) / group).glob("*.yaml")):
            cfg = OmegaConf.to_container(train_config(f"{group}={option}")[group])
            assert unknown_arguments(cfg, group) == [], (group, option)


def test_fold_out_of_range(train_config):
    assert problems(train_config("split=kfold", "split.fold=5")) == [
        "split.fold=5: must be in 0..4 for split.num_folds=5"
    ]
    assert problems(train_config("split=kfold", "split.fold=4")) == []


def test_max_epochs_zero_is_fine_when_not_training(train_config, tmp_path):
    ckpt = tmp_path / "x.ckpt"
    ckpt.write_bytes(b"")
    assert problems(train_config("trainer.max_epochs=0", "train=false", f"ckpt_path={ckpt}")) == []


def test_validate_raises_one_line_with_every_problem(train_config):
    with pytest.raises(ConfigError) as err:
        validate(train_config("optimizer.lr=-1", "data.batch_size=0"))
    message = str(err.value)
    assert "\n" not in message and "optimizer.lr=-1" in message and "data.batch_size=0" in message


def test_unwritable_folders(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert "is a file, not a folder" in writable_problem(blocker / "runs", "paths.log_dir")
    assert writable_problem(tmp_path / "new" / "deeper", "paths.log_dir") is None
    assert not (tmp_path / "new").exists()  # nothing is created by the check


def test_output_folder_under_a_file_is_a_config_error(train_config, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cfg = train_config()
    cfg.paths.output_dir = str(blocker / "run")
    with pytest.raises(ConfigError, match="paths.output_dir=.*is a file, not a folder"):
        validate(cfg)


def test_checkpoint_mismatch_names_the_first_tensor():
    here = {"net.w": torch.zeros(4, 8), "net.b": torch.zeros(4), "net.extra": torch.zeros(1)}
    same = {"net.w": torch.ones(4, 8), "net.b": torch.ones(4), "net.extra": torch.zeros(1)}
    assert checkpoint_mismatch(same, here) is None
    other = {"net.w": torch.ones(2, 8), "net.b": torch.ones(2)}
    text = checkpoint_mismatch(other, here)
    assert text == "net.w: [2, 8] in the checkpoint, [4, 8] here (and 2 more)"


def test_nearest_key():
    keys = ["loss", "model", "model.hidden_size", "model.dropout", "data", "data.root", "seed"]
    assert nearest("los", keys) == "loss"
    assert nearest("model.hiden_size", keys) == "model.hidden_size"
    assert nearest("modle.hidden_size", keys) == "model.hidden_size"
    assert nearest("data.nope", keys) is None  # not "data.root": unrelated names get no suggestion


def test_hydra_errors_become_one_line():
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    exc = ConfigCompositionException("Could not override 'model.hiden_size'.\nTo append to your config use +...")
    text = explain_hydra_error(exc, CONF, "train", ["model.hiden_size=3"])
    assert text == (
        "no config key `model.hiden_size` (did you mean `model.hidden_size`?); "
        "to add a new key on purpose use +model.hiden_size=3"
    )
    missing = MissingConfigException("Could not find 'loss/binar'", "loss/binar", ["binary", "categorical"])
    assert explain_hydra_error(missing, CONF, "train", ["loss=binar"]) == (
        "no option 'binar' in config group 'loss' (did you mean `loss=binary`?); options: binary, categorical"
    )
    exists = ConfigCompositionException("Could not append to config. An item is already at 'seed'.\nEither ...")
    assert explain_hydra_error(exists, CONF, "train", ["+seed=1"]).startswith("`seed` exists already: drop the +")
    parse = OverrideParseException("x=[1", "no viable alternative at input '[1'")
    assert explain_hydra_error(parse, CONF, "train", ["x=[1"]).startswith("cannot read the override `x=[1`")


def test_typo_in_a_group_chosen_on_the_command_line(tmp_path: Path):
    """The keys of the composed config include those of the option chosen (model=crnn has `channels`)."""
    from hydra.errors import ConfigCompositionException

    exc = ConfigCompositionException("Could not override 'model.chanels'.")
    text = explain_hydra_error(exc, CONF, "train", ["model=crnn", "model.chanels=64"])
    assert "did you mean `model.channels`?" in text
