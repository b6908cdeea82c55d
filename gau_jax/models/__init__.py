"""Models: the encoder (RoFormerV2 / GAU-α), task heads and presets."""

from gau_jax.models import presets
from gau_jax.models.encoder import (
    Encoder,
    EncoderConfig,
    EncoderOutput,
    build_encoder,
    encoder_config,
    stack_layers,
    unstack_layers,
)
from gau_jax.models.heads import Classifier, HeadSpec, TaskModel, head_spec
from gau_jax.models.presets import ConfigError, get_model_config

__all__ = [
    "Classifier", "ConfigError", "Encoder", "EncoderConfig", "EncoderOutput", "HeadSpec",
    "TaskModel", "build_encoder", "encoder_config", "get_model_config", "head_spec", "presets",
    "stack_layers", "unstack_layers",
]
