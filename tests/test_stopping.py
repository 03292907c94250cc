"""Early stopping with min_epochs: a stop decided during the early epochs does not end an improving run."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping

from ser.models.stopping import EarlyStopping

# Validation UAR per epoch: flat at chance for ten epochs, then learning until epoch 18, then flat.
SCRIPT = [0.083] * 10 + [0.10 + 0.01 * i for i in range(9)] + [0.17] * 30


class Scripted(L.LightningModule):
    """Trains nothing that matters; logs the scripted val/uar of each epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: torch.Tensor, _: int) -> torch.Tensor:
        return (self.w * batch).sum() ** 2

    def validation_step(self, batch: torch.Tensor, _: int) -> None:
        self.log("val/uar", SCRIPT[self.current_epoch])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.ones(2, 1), batch_size=2)

    val_dataloader = train_dataloader


def epochs_run(callback: LightningEarlyStopping, min_epochs: int) -> int:
    trainer = L.Trainer(
        min_epochs=min_epochs,
        max_epochs=40,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(Scripted())
    return trainer.current_epoch


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_early_plateau_does_not_end_the_run_at_min_epochs() -> None:
    # Lightning's own: patience ran out during the first plateau, so the run ends at min_epochs (20) although
    # it improved until epoch 18 ...
    assert epochs_run(LightningEarlyStopping("val/uar", mode="max", patience=8), min_epochs=20) == 20
    # ... ours ends 8 epochs after the last improvement (epoch 18), as patience says.
    assert epochs_run(EarlyStopping("val/uar", mode="max", patience=8), min_epochs=20) == 27
    # Without min_epochs both stop on the first plateau.
    assert epochs_run(EarlyStopping("val/uar", mode="max", patience=8), min_epochs=0) == 9
