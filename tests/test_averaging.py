"""The EMA callback: ``trainer.test(ckpt_path=...)`` scores the averaged weights the checkpoint ships."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging as LightningEMA
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from ser.models.averaging import EMAWeightAveraging


class _Recording(BoringModel):
    """Remembers the weights it tests with."""

    def on_test_start(self) -> None:
        self.tested = {k: v.detach().clone() for k, v in self.state_dict().items()}


def _fit_then_test(tmp_path, callback_class) -> tuple[dict, dict]:
    torch.manual_seed(0)
    model = _Recording()
    ckpt = ModelCheckpoint(dirpath=tmp_path, filename="best", save_top_k=1, monitor=None)
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        max_epochs=2,
        limit_train_batches=8,
        limit_val_batches=2,
        limit_test_batches=2,
        callbacks=[callback_class(decay=0.5), ckpt],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model)
    trainer.test(model, ckpt_path=ckpt.best_model_path, verbose=False)
    return model.tested, torch.load(ckpt.best_model_path, weights_only=False)


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_test_scores_the_averaged_weights_of_the_checkpoint(tmp_path):
    tested, checkpoint = _fit_then_test(tmp_path, EMAWeightAveraging)
    assert not _same(checkpoint["state_dict"], checkpoint["current_model_state"])  # the two copies differ
    assert _same(tested, checkpoint["state_dict"])


@pytest.mark.filterwarnings("ignore")
def test_lightnings_own_callback_tests_the_raw_weights(tmp_path):
    # Why the subclass exists: if Lightning stops doing this, ser.models.averaging can go.
    tested, checkpoint = _fit_then_test(tmp_path, LightningEMA)
    assert _same(tested, checkpoint["current_model_state"])
    assert not _same(tested, checkpoint["state_dict"])
