"""Houlsby bottleneck adapter: y = x + W_up·gelu(W_down·x), W_up initialised to zero (identity).

W_down ~ N(0, 1/d) (fan-in), as LoRA's A: with W_up = 0 the map is still the identity, and W_up's
first gradients are O(1). A near-zero W_down (std 1e-3) makes both factors tiny at once, which a
relative-step optimizer (AdaFactor, RMS floor 1e-3) does not escape in a fine-tuning run: on the
sentiment task from a pretrained gau_alpha_tiny it stayed at the majority class (README,
"Defaults per method").

Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP", arXiv:1902.00751.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


class Adapter(nn.Module):
    """Residual bottleneck of width `size`; the identity map at initialisation."""

    size: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        h = nn.gelu(nn.Dense(self.size, dtype=self.dtype, param_dtype=jnp.float32,
                             kernel_init=nn.initializers.variance_scaling(
                                 1.0, "fan_in", "normal"), name="down")(x))
        return x + nn.Dense(x.shape[-1], dtype=self.dtype, param_dtype=jnp.float32,
                            kernel_init=nn.initializers.zeros, name="up")(h)
