"""ser: speech emotion recognition experiments with PyTorch Lightning and Hydra."""

from importlib import metadata

__version__ = "0.1.0"


def ser_version() -> str:
    """The installed package's version; ``__version__`` when running from a source tree."""
    try:
        return metadata.version("ser")
    except metadata.PackageNotFoundError:
        return __version__
