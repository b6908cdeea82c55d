"""Normalisations of RoFormerV2 / GAU-α.

    rms_norm(x) = x / sqrt(mean(x²) + ε)          (no gain, no offset; ε = 1e-12 as released)
    ScaleOffset(x) = x·γ (+ β if use_bias)         (γ init 1, β init 0)

The norm is computed in float32 and returned in the input's dtype. Parameter-free RMS norm as in
RoFormerV2 (Su, kexue.fm/archives/8998) and GAU-α (kexue.fm/archives/9052); ScaleOffset is the
per-dim scale and offset that makes GAU's Q and K (FLASH, arXiv:2202.10447).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


def rms_norm(x: jnp.ndarray, eps: float = 1e-12) -> jnp.ndarray:
    """Parameter-free RMS norm over the last axis."""
    x32 = x.astype(jnp.float32)
    y = x32 * jnp.reciprocal(jnp.sqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps))
    return y.astype(x.dtype)


class ScaleOffset(nn.Module):
    """Per-channel scale γ and, if use_bias, offset β (parameters kept in float32)."""

    use_bias: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        d = x.shape[-1]
        y = x * self.param("scale", nn.initializers.ones, (d,), jnp.float32).astype(self.dtype)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (d,), jnp.float32).astype(self.dtype)
        return y
