"""Prediction with a trained checkpoint: the Predictor, its results, output formats and microphone input."""

from ser.inference.prediction import InputFailure, Prediction, split_class
from ser.inference.predictor import Predictor, expand_inputs, window_starts

__all__ = ["InputFailure", "Prediction", "Predictor", "expand_inputs", "split_class", "window_starts"]
