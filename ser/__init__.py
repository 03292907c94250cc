"""ser: speech emotion recognition experiments with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
