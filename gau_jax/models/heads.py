"""Task heads on top of the encoder.

    Classifier: logits = Dense(Drop(h_L[:, 0]))        ([CLS] is position 0)
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from gau_jax.models.encoder import Encoder


class Classifier(nn.Module):
    """Sequence classification: encoder → [CLS] → dropout → Dense(num_classes), float32 logits."""

    encoder: Encoder
    num_classes: int
    dropout_rate: float = 0.1

    @nn.compact
    def __call__(self, input_ids: jnp.ndarray, attention_mask: jnp.ndarray | None = None,
                 segment_ids: jnp.ndarray | None = None, *, deterministic: bool = True,
                 residual_scale: float | jnp.ndarray = 1.0) -> jnp.ndarray:
        out = self.encoder(input_ids, attention_mask, segment_ids, deterministic=deterministic,
                           return_logits=False, residual_scale=residual_scale)
        cls = nn.Dropout(self.dropout_rate)(out.last_hidden_state[:, 0],
                                            deterministic=deterministic)
        return nn.Dense(self.num_classes, dtype=jnp.float32, name="classifier")(cls)
