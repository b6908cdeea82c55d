"""Moved: the workdir readers are gau_jax/workdir.py, encoder_params is gau_jax/pretrained.py.

Only re-exports what gau_jax/train/predict.py still imports from here; delete this module once it
imports gau_jax.workdir instead."""

from gau_jax.workdir import latest_step, read_train_config, restore_numpy

__all__ = ["latest_step", "read_train_config", "restore_numpy"]
