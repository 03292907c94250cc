"""Hyperparameter search helpers of ``ser.tune``: search spaces and Optuna studies."""
