"""Rotary position embedding (RoPE), adjacent-pair layout.

For a vector x of even size k at position p, with θ_i = base^(−2i/k), i = 0..k/2−1:

    (x_{2i}, x_{2i+1}) ← (x_{2i}·cos pθ_i − x_{2i+1}·sin pθ_i,  x_{2i+1}·cos pθ_i + x_{2i}·sin pθ_i)

This is the layout of bert4keras and the released RoFormer / GAU-α checkpoints. Because every
pair is rotated by an angle linear in p, ⟨RoPE(q, m), RoPE(k, n)⟩ depends on m − n only.
Angles are computed in float32 whatever the dtype of x.

Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position Embedding",
arXiv:2104.09864; Su's post "博采众长的旋转式位置编码", kexue.fm/archives/8265.
"""

from __future__ import annotations

import jax.numpy as jnp


def rope_angles(positions: jnp.ndarray, dim: int, base: float = 10000.0) -> jnp.ndarray:
    """Angles p·θ_i, float32, shape positions.shape + (dim // 2,)."""
    if dim % 2:
        raise ValueError(f"RoPE needs an even dimension, got {dim}")
    inv_freq = base ** (-jnp.arange(0, dim // 2, dtype=jnp.float32) * 2.0 / dim)
    return positions.astype(jnp.float32)[..., None] * inv_freq


def apply_rope(x: jnp.ndarray, positions: jnp.ndarray | None = None,
               base: float = 10000.0) -> jnp.ndarray:
    """Rotate adjacent pairs of the last axis of x.

    x: [batch, n, ..., k] (e.g. [b, n, heads, k] or [b, n, k]).
    positions: [n] or [batch, n] integer positions; default 0..n−1.
    """
    n, k = x.shape[1], x.shape[-1]
    if positions is None:
        positions = jnp.arange(n)
    angles = rope_angles(positions, k, base)                      # [(b,) n, k/2]
    if angles.ndim == 2:
        angles = angles[None]
    angles = angles.reshape(angles.shape[:2] + (1,) * (x.ndim - 3) + angles.shape[-1:])
    sin, cos = jnp.sin(angles), jnp.cos(angles)
    pairs = x.astype(jnp.float32).reshape(x.shape[:-1] + (k // 2, 2))
    x0, x1 = pairs[..., 0], pairs[..., 1]
    out = jnp.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], axis=-1)
    return out.reshape(x.shape).astype(x.dtype)
