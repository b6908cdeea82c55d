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
from gau_jax.models.heads import Heads, HeadSpec, TaskModel, as_heads, classifier
from gau_jax.models.presets import ConfigError, get_model_config

__all__ = [
    "ConfigError", "Encoder", "EncoderConfig", "EncoderOutput", "HeadSpec",
    "Heads", "TaskModel", "as_heads", "build_encoder", "classifier", "encoder_config",
    "get_model_config", "presets",
    "stack_layers", "unstack_layers",
]
