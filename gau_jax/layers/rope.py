"""Rotary position embedding (RoPE), adjacent-pair layout.

For a vector x of even size k at position p, with θ_i = base^(−2i/k), i = 0..k/2−1:

    (x_{2i}, x_{2i+1}) ← (x_{2i}·cos pθ_i − x_{2i+1}·sin pθ_i,  x_{2i+1}·cos pθ_i + x_{2i}·sin pθ_i)

This is the layout of bert4keras and the released RoFormer / GAU-α checkpoints. Because every
pair is rotated by an angle linear in p, ⟨RoPE(q, m), RoPE(k, n)⟩ depends on m − n only.
Angles are computed in float32 whatever the dtype of x.

`inv_freq` replaces the θ_i by given values (shape [k/2], or [h, k/2] per head of an x
[b, n, h, k]): a layer pruned from a wider one keeps the θ of the pairs it kept (the LST side
network's pruned init, gau_jax/models/lst_init.py).

Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position Embedding",
arXiv:2104.09864; Su's post "博采众长的旋转式位置编码", kexue.fm/archives/8265.
"""

from __future__ import annotations

import jax.numpy as jnp


def inverse_frequencies(dim: int, base: float = 10000.0) -> jnp.ndarray:
    """θ_i = base^(−2i/dim), i = 0..dim/2−1, float32."""
    if dim % 2:
        raise ValueError(f"RoPE needs an even dimension, got {dim}")
    return base ** (-jnp.arange(0, dim // 2, dtype=jnp.float32) * 2.0 / dim)


def rope_angles(positions: jnp.ndarray, dim: int, base: float = 10000.0) -> jnp.ndarray:
    """Angles p·θ_i, float32, shape positions.shape + (dim // 2,)."""
    return positions.astype(jnp.float32)[..., None] * inverse_frequencies(dim, base)


def apply_rope(x: jnp.ndarray, positions: jnp.ndarray | None = None,
               base: float = 10000.0, inv_freq: jnp.ndarray | None = None) -> jnp.ndarray:
    """Rotate adjacent pairs of the last axis of x.

    x: [batch, n, ..., k] (e.g. [b, n, heads, k] or [b, n, k]).
    positions: [n] or [batch, n] integer positions; default 0..n−1.
    inv_freq: the θ_i, broadcastable to x.shape[2:-1] + (k/2,); default base^(−2i/k).
    """
    n, k = x.shape[1], x.shape[-1]
    if positions is None:
        positions = jnp.arange(n)
    inv = inverse_frequencies(k, base) if inv_freq is None else inv_freq.astype(jnp.float32)
    if inv.shape[-1] != k // 2:
        raise ValueError(f"RoPE inv_freq has {inv.shape[-1]} frequencies for {k // 2} pairs")
    pos = positions.astype(jnp.float32)
    pos = pos[None] if pos.ndim == 1 else pos
    angles = pos.reshape(pos.shape[:2] + (1,) * (x.ndim - 2)) * inv   # [(b,) n, ..., k/2]
    sin, cos = jnp.sin(angles), jnp.cos(angles)
    pairs = x.astype(jnp.float32).reshape(x.shape[:-1] + (k // 2, 2))
    x0, x1 = pairs[..., 0], pairs[..., 1]
    out = jnp.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], axis=-1)
    return out.reshape(x.shape).astype(x.dtype)
