"""Attention normalisations and RoFormer-style multi-head attention with RoPE.

Logits a_ij = q_i·k_j/√k; keys with mask 0 are removed first. With n_i = number of visible keys of
row i (the sample's real length, clamped to ≥ 1), or a fixed n when `fixed_n` > 0; `plus_min_n`
clamps n from below for softmax_plus only. The released GAU-α was trained with bert4keras 0.11.3,
whose attention_normalize clamps n at 1; bert4keras commits of March 2023 raised the clamp to 2,
then 16. So plus_min_n = 1 (the default) reproduces the release and the PyTorch port, 16 today's
bert4keras:

    softmax       A_ij = softmax_j(a_ij)
    softmax_plus  A_ij = softmax_j(a_ij · log(n_i)/log(512))     (= softmax at n_i = 512)
    relu2         A_ij = relu(a_ij)² / n_i                         (FLASH)

Multi-head attention: Q, K, V = xW_q, xW_k, xW_v (bias optional), h heads of size k, RoPE on Q and
K per head, A = normalise(QKᵀ/√k), dropout on A, output (A·V)W_o. Scores and normalisation run in
float32 whatever the compute dtype.

Sources: softmax_plus (entropy invariance), Su "从熵不变性看Attention的Scale操作",
kexue.fm/archives/8823; relu2, Hua et al. 2022 (FLASH), arXiv:2202.10447; RoPE attention,
Su et al. 2021 (RoFormer), arXiv:2104.09864, as in RoFormerV2 (Su, kexue.fm/archives/8998).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gau_jax.layers.fused_attention import fused_attention, use_fused
from gau_jax.layers.rope import apply_rope, inverse_frequencies

NORMALIZATIONS = ("softmax", "softmax_plus", "relu2")


def normalize_attention(scores: jnp.ndarray, mask: jnp.ndarray, kind: str,
                        fixed_n: int = 0, plus_min_n: int = 1) -> jnp.ndarray:
    """Normalise attention logits along the last axis.

    scores: float logits a_ij (already divided by √k), shape [..., n_q, n_k].
    mask: broadcastable to scores, nonzero = visible key; pass a key mask ([b, 1, 1, n_k] for
    [b, h, n_q, n_k] scores) rather than a broadcast copy: it is never expanded to [n_q, n_k].
    """
    if kind not in NORMALIZATIONS:
        raise ValueError(f"attention normalisation {kind!r} is not one of {NORMALIZATIONS}")
    scores = scores.astype(jnp.float32)
    visible = mask.astype(bool)
    n_visible = jnp.sum(visible, axis=-1, keepdims=True).astype(jnp.float32)
    n = jnp.float32(fixed_n) if fixed_n > 0 else jnp.maximum(n_visible, 1.0)
    if kind == "relu2":
        return jnp.where(visible, jnp.square(jax.nn.relu(scores)) / n, 0.0)
    if kind == "softmax_plus":
        scores = scores * (jnp.log(jnp.maximum(n, float(plus_min_n))) / math.log(512.0))
    probs = jax.nn.softmax(jnp.where(visible, scores, jnp.finfo(jnp.float32).min), axis=-1)
    # a row without any visible key attends to nothing
    return jnp.where(visible, probs, 0.0)


class MultiHeadAttention(nn.Module):
    """RoFormer / RoFormerV2 self-attention with RoPE. Parameters: query, key, value, output."""

    num_heads: int
    head_size: int
    normalization: str = "softmax"
    fixed_n: int = 0
    plus_min_n: int = 1
    use_bias: bool = False
    dropout_rate: float = 0.0
    rope_base: float = 10000.0
    dtype: jnp.dtype = jnp.float32
    kernel_init: Callable = nn.initializers.lecun_normal()
    attention_impl: str = "xla"  # "xla" | "cudnn" | "auto" (fused_attention.py)
    rope_param: bool = False  # RoPE's θ as a frozen param "rope_inv_freq" [h, k/2] (LST side)

    @nn.compact
    def __call__(self, x: jnp.ndarray, mask: jnp.ndarray, positions: jnp.ndarray | None = None,
                 deterministic: bool = True) -> jnp.ndarray:
        """x: [b, n, d]; mask: [b, n] (1 = real token). Returns [b, n, d]."""
        b, n, d = x.shape
        h, k = self.num_heads, self.head_size

        def dense(features: int, name: str) -> nn.Dense:
            return nn.Dense(features, use_bias=self.use_bias, dtype=self.dtype,
                            param_dtype=jnp.float32, kernel_init=self.kernel_init, name=name)

        q = dense(h * k, "query")(x).reshape(b, n, h, k)
        kk = dense(h * k, "key")(x).reshape(b, n, h, k)
        v = dense(h * k, "value")(x).reshape(b, n, h, k)
        inv = None if not self.rope_param else self.param(  # θ per head (a pruned init's)
            "rope_inv_freq", lambda _: jnp.tile(inverse_frequencies(k, self.rope_base), (h, 1)))
        q, kk = (apply_rope(q, positions, self.rope_base, inv),
                 apply_rope(kk, positions, self.rope_base, inv))
        if use_fused(self.attention_impl, self.normalization, 0,
                     not deterministic and self.dropout_rate > 0, self.dtype):
            out = fused_attention(q, kk, v, mask, self.normalization, self.fixed_n,
                                  self.plus_min_n).reshape(b, n, h * k)
            return dense(d, "output")(out)
        scores = jnp.einsum("bqhk,bmhk->bhqm", q, kk, preferred_element_type=jnp.float32)
        probs = normalize_attention(scores / math.sqrt(k), mask[:, None, None, :],
                                    self.normalization, self.fixed_n, self.plus_min_n)
        probs = nn.Dropout(self.dropout_rate)(probs, deterministic=deterministic)
        out = jnp.einsum("bhqm,bmhk->bqhk", probs.astype(self.dtype), v).reshape(b, n, h * k)
        return dense(d, "output")(out)
