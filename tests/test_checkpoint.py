"""The checkpoint contract: the format mark, the safe load with its allow-list, and the rebuild."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import soundfile as sf
import torch
from checkpoint_fixtures import N_MELS, SR, build_checkpoint, speechlike

from ser.labels import CLASSES
from ser.models.checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, rebuild, stamp


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.ckpt")


def test_stamp_marks_the_format() -> None:
    checkpoint: dict = {}
    stamp(checkpoint)
    assert checkpoint == {"ser_format": CHECKPOINT_FORMAT}


def test_checkpoint_is_self_contained(ckpt: Path) -> None:
    state = load_checkpoint(ckpt)
    hp = state["hyper_parameters"]
    assert hp["classes"] == list(CLASSES)
    assert hp["sample_rate"] == SR and hp["features"]["n_mels"] == N_MELS
    assert hp["model"]["_target_"] == "ser.models.lstm.LSTMClassifier"
    assert float(state["state_dict"]["net.normalizer.std"].min()) >= 8.0  # the stats travel with the weights


@pytest.mark.parametrize("kind", ["wav_renamed", "other_dict", "no_format", "lacks_stats", "foreign_target", "pickle"])
def test_foreign_checkpoints_are_clear_errors(ckpt: Path, tmp_path: Path, kind: str) -> None:
    bad = tmp_path / f"{kind}.ckpt"
    expect = {
        "wav_renamed": "not a PyTorch checkpoint",
        "other_dict": "no 'ser_format' field",
        "no_format": "no 'ser_format' field",
        "lacks_stats": "state_dict.net.normalizer.mean",
        "foreign_target": "only classes under 'ser.'",
        "pickle": "weights_only",
    }[kind]
    state = torch.load(ckpt, weights_only=True)
    if kind == "wav_renamed":
        sf.write(bad, speechlike(0.2), SR, format="WAV")
    elif kind == "other_dict":
        torch.save({"model": torch.zeros(3)}, bad)
    elif kind == "no_format":
        del state["ser_format"]
        torch.save(state, bad)
    elif kind == "lacks_stats":
        del state["state_dict"]["net.normalizer.mean"]
        del state["hyper_parameters"]["classes"]
        torch.save(state, bad)
        expect = "hyper_parameters.classes"
    elif kind == "foreign_target":
        state["hyper_parameters"]["model"]["_target_"] = "os.system"
        torch.save(state, bad)
    else:
        state["extra"] = types.SimpleNamespace(a=1)  # an arbitrary object: refused by weights_only
        torch.save(state, bad)
    with pytest.raises(CheckpointError, match=expect) as info:
        rebuild(bad)
    assert str(bad) in str(info.value)
    if kind == "lacks_stats":
        assert "state_dict.net.normalizer.mean" in str(info.value)


def test_rebuild_gives_network_loss_and_features(ckpt: Path) -> None:
    model = rebuild(ckpt)
    assert model.classes == tuple(CLASSES) and model.sample_rate == SR
    assert model.source == str(ckpt)
    assert set(model.config) == {"features", "model", "loss", "sample_rate", "classes", "input_dim"}
    assert model.extractor.out_dim == N_MELS
    state = load_checkpoint(ckpt)["state_dict"]
    assert torch.equal(model.net.normalizer.std, state["net.normalizer.std"])


def test_checkpoints_naming_moved_classes_still_rebuild(ckpt: Path, tmp_path: Path) -> None:
    """A checkpoint written before the losses moved (``ser.losses.*``) and before the network was
    built from shared components (flat parameter names) rebuilds to the same outputs."""
    data = torch.load(ckpt, weights_only=True)
    data["hyper_parameters"]["loss"]["_target_"] = "ser.losses.CategoricalLoss"
    data["state_dict"] = {
        k.replace("net.lstm.", "net.").replace("net.head.", "net."): v for k, v in data["state_dict"].items()
    }
    old = tmp_path / "old.ckpt"
    torch.save(data, old)
    then, now = rebuild(old), rebuild(ckpt)
    assert type(then.loss).__name__ == "CategoricalLoss"
    x, lengths = torch.randn(2, 9, now.net.input_dim), torch.tensor([9, 4])
    torch.testing.assert_close(then.net.eval()(x, lengths), now.net.eval()(x, lengths))
