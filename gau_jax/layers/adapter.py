"""Houlsby bottleneck adapter: y = x + W_up·gelu(W_down·x), W_up initialised to zero (identity).

W_down ~ N(0, 1/in) (fan-in, as LoRA's A), so h = gelu(W_down·x) is O(1) and W_up's gradient
hᵀ·∂y is too from the first step; a near-zero W_down as well (both factors ≈ 0) starts training
at a saddle, where each factor's gradient is proportional to the other.

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
                             kernel_init=nn.initializers.lecun_normal(), name="down")(x))
        return x + nn.Dense(x.shape[-1], dtype=self.dtype, param_dtype=jnp.float32,
                            kernel_init=nn.initializers.zeros, name="up")(h)
