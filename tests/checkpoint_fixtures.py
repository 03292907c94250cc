"""A tiny real checkpoint and speech-like synthetic audio, shared by the checkpoint, predict and export tests.

A plain module (not a conftest): ``from checkpoint_fixtures import build_checkpoint, speechlike``.
"""

from __future__ import annotations

import errno
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ser.labels import CLASSES

SR = 16000
N_MELS = 16


LSTM = {"_target_": "ser.models.lstm.LSTMClassifier", "hidden_size": 8, "dense_size": 8, "dropout": 0.0}
CRNN = {"_target_": "ser.models.crnn.CRNN", "channels": 8, "hidden_size": 8, "dense_size": 8, "dropout": 0.0}


def build_checkpoint(
    path: Path, loss: str = "categorical", seed: int = 0, model: dict | None = None, features: dict | None = None
) -> Path:
    """A small SERModule fitted for one epoch on random features and saved by the Trainer (16 log-mels unless
    ``features`` names another extractor config)."""
    import lightning as L
    from hydra.utils import instantiate
    from torch.utils.data import DataLoader

    from ser.data.batching import collate
    from ser.models.module import SERModule

    torch.manual_seed(seed)
    features = features or {"_target_": "ser.features.LogMel", "sample_rate": SR, "n_mels": N_MELS}
    dim = int(instantiate(features).out_dim)
    loss_cfg = {
        "_target_": "ser.models.losses.CategoricalLoss" if loss == "categorical" else "ser.models.losses.BinaryLoss"
    }
    module = SERModule(
        model=model or LSTM,
        loss=loss_cfg,
        optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.5},
        input_dim=dim,
        features=features,
        sample_rate=SR,
        classes=list(CLASSES),
    )
    # Statistics of the size log-mel dB features have, so normalization matters to the outputs.
    module.net.normalizer.set_stats(-40.0 + 5 * torch.randn(dim), 8.0 + torch.rand(dim))
    items = [(torch.randn(20 + 3 * i, dim) * 10 - 40, i % 12, 0) for i in range(8)]
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*val_dataloader.*")  # no validation here, on purpose
        trainer.fit(module, train_dataloaders=DataLoader(items, batch_size=4, collate_fn=collate))
    trainer.save_checkpoint(path)
    return path


def speechlike(seconds: float, sr: int = SR, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Harmonic tone with a wandering pitch, syllable-rate loudness and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = rng.uniform(90, 260) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wave = sum(np.sin(k * phase) / k for k in range(1, 6))
    wave *= 0.2 * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    wave += 0.01 * rng.standard_normal(t.size)
    wave = wave.astype(np.float32)
    if channels == 1:
        return wave
    return np.stack([wave * (1 - 0.2 * c) for c in range(channels)], axis=1)


def fill_the_disk(monkeypatch: pytest.MonkeyPatch, room: int = 64) -> None:
    """From now on a file opened for writing through ``Path.open`` (``Path.write_text`` and ``ser.results``'
    writers use it) takes ``room`` characters, then fails as a full disk does."""
    real_open = Path.open

    def open_(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        fh = real_open(self, mode, *args, **kwargs)
        if set(mode) & set("wxa"):
            write = fh.write

            def full(data: Any) -> int:
                write(data[:room])
                fh.flush()
                raise OSError(errno.ENOSPC, "No space left on device")

            fh.write = full
        return fh

    monkeypatch.setattr(Path, "open", open_)
