"""Acoustic front ends: the extractor contract (``base``) and its implementations, one module each."""

# ser.features.LogMel and ser.features.MFCC must stay importable here: configs and the _target_ strings
# saved inside checkpoints name them so. EGeMAPS (ser.features.egemaps) is left out so that importing
# ser.features does not load openSMILE and pandas.

from ser.features.base import FeatureExtractor
from ser.features.spectral import MFCC, LogMel, dct_matrix, hz_to_mel, mel_filterbank, mel_to_hz, savgol_kernel

__all__ = [
    "MFCC",
    "FeatureExtractor",
    "LogMel",
    "dct_matrix",
    "hz_to_mel",
    "mel_filterbank",
    "mel_to_hz",
    "savgol_kernel",
]
