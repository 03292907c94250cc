"""Early stopping that waits for ``trainer.min_epochs`` without ending the run the moment it is reached."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping as _LightningEarlyStopping


class EarlyStopping(_LightningEarlyStopping):
    """Lightning's early stopping, except that a stop decided before ``min_epochs`` is not kept.

    Lightning ORs every decision into ``trainer.should_stop`` and the trainer acts on it once min_epochs are
    done: a run that sat still for ``patience`` epochs early on (a binary-loss LSTM at chance for its first
    ten) was stopped at exactly min_epochs, however much it was improving by then. Here the decision at each
    epoch is the usual one (no improvement of the best value for ``patience`` epochs, counted from the start),
    but only the decision at an epoch where the trainer may stop is kept.
    """

    def _run_early_stopping_check(self, trainer: L.Trainer) -> None:
        already = trainer.should_stop
        super()._run_early_stopping_check(trainer)
        # The trainer may stop after epoch e once e + 1 >= min_epochs (FitLoop._can_stop_early).
        if not already and trainer.current_epoch + 1 < (trainer.min_epochs or 0):
            trainer.should_stop = False
            self.stopped_epoch = 0
