"""EMA of the weights whose averaged weights are also what ``trainer.test(ckpt_path=...)`` evaluates."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging as _LightningEMA
from lightning.pytorch.trainer.states import TrainerFn


class EMAWeightAveraging(_LightningEMA):
    """Lightning's EMA callback, except that loading a checkpoint to test (validate, predict) keeps its weights.

    A checkpoint written with the callback holds the averaged weights in ``state_dict`` (what validation
    scored and what ``ser.predict``/``ser.export`` load) and the raw training weights in
    ``current_model_state``. Lightning (2.6) restores callbacks in every stage, so after ``fit`` the callback
    put the raw weights back for ``trainer.test(ckpt_path=best)``: the test scored other weights than the
    ones that were selected on validation and that the checkpoint ships. Only resuming a fit needs them.
    """

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            return  # the state_dict already holds the averaged weights: evaluate those
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
