"""Gated Attention Unit (FLASH, Hua et al. 2022), as used by GAU-α.

    U, V, Z = split(swish(x W_uvz + b), [e, e, s])
    Q = γ_q⊙Z (+β_q),  K = γ_k⊙Z (+β_k),  RoPE on Q and K (all s dims)
    A = normalise(QKᵀ/√s)  (softmax_plus by default; see attention.py),  dropout on A
    O = (U ⊙ A V) W_o

The output projection (GatedOutput) keeps U and A V for the backward pass, which needs both
anyway, and rebuilds U ⊙ A V there for dW_o instead of keeping a third [b, n, e] activation.

With `chunk_size` c > 0 it is FLASH's mixed chunk attention, linear in n: the sequence is cut into
chunks of c tokens (padded at the end), and with two more ScaleOffsets of the shared Z,

    O_quad = normalise(Q Kᵀ/√s restricted to the query's own chunk) V
    O_lin  = Q_lin (K_linᵀ V) / n          (over all real tokens; n = the sample's real length,
                                            counted in float32)
    O = (U ⊙ (O_quad + O_lin)) W_o

Hua et al. 2022, "Transformer Quality in Linear Time" (FLASH), arXiv:2202.10447; Su's post
on it, kexue.fm/archives/8934; GAU-α (RoPE, softmax_plus, no biases), Su, kexue.fm/archives/9052.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gau_jax.layers.attention import normalize_attention
from gau_jax.layers.fused_attention import fused_attention, use_fused
from gau_jax.layers.norms import ScaleOffset
from gau_jax.layers.rope import apply_rope, inverse_frequencies


def real_lengths(mask: jnp.ndarray) -> jnp.ndarray:
    """n of each row, max(Σ mask, 1), counted in float32 whatever the mask's dtype (bfloat16 has
    8 mantissa bits: summed in bfloat16, a length of 1001 comes out as 1000)."""
    return jnp.maximum(jnp.sum(mask.astype(jnp.float32), axis=-1), 1.0)


class GatedAttentionUnit(nn.Module):
    """Single-head GAU. Parameters: uvz, q_scale, k_scale, output (+ lin_q_scale, lin_k_scale)."""

    expansion: int  # e
    key_size: int = 128  # s
    normalization: str = "softmax_plus"
    fixed_n: int = 0
    plus_min_n: int = 1
    chunk_size: int = 0
    use_bias: bool = False
    dropout_rate: float = 0.0
    rope_base: float = 10000.0
    dtype: jnp.dtype = jnp.float32
    kernel_init: Callable = nn.initializers.lecun_normal()
    attention_impl: str = "xla"  # "xla" | "cudnn" | "auto" (fused_attention.py)
    rope_param: bool = False  # RoPE's θ as a frozen param "rope_inv_freq" [s/2] (LST side blocks)

    def _dense(self, features: int, name: str) -> nn.Dense:
        return nn.Dense(features, use_bias=self.use_bias, dtype=self.dtype,
                        param_dtype=jnp.float32, kernel_init=self.kernel_init, name=name)

    def _qk(self, z: jnp.ndarray, name: str, positions: jnp.ndarray | None,
            inv_freq: jnp.ndarray | None = None) -> jnp.ndarray:
        y = ScaleOffset(self.use_bias, self.dtype, name=name)(z)
        return apply_rope(y, positions, self.rope_base, inv_freq)

    def _inv_freq(self) -> jnp.ndarray | None:
        """rope_param: the θ_i as a parameter (init base^(−2i/s); a pruned init of form "exact"
        overwrites it with the trunk's θ of the kept pairs; never trained:
        gau_jax/models/lst.py)."""
        if not self.rope_param:
            return None
        return self.param("rope_inv_freq", lambda _: inverse_frequencies(self.key_size,
                                                                          self.rope_base))

    @nn.compact
    def __call__(self, x: jnp.ndarray, mask: jnp.ndarray, positions: jnp.ndarray | None = None,
                 deterministic: bool = True) -> jnp.ndarray:
        """x: [b, n, d]; mask: [b, n] (1 = real token). Returns [b, n, d]."""
        e, s = self.expansion, self.key_size
        uvz = nn.swish(self._dense(2 * e + s, "uvz")(x))
        u, v, z = jnp.split(uvz, [e, 2 * e], axis=-1)
        inv = self._inv_freq()
        q, k = self._qk(z, "q_scale", positions, inv), self._qk(z, "k_scale", positions, inv)
        dropout = nn.Dropout(self.dropout_rate)
        dropout_active = not deterministic and self.dropout_rate > 0
        if use_fused(self.attention_impl, self.normalization, self.chunk_size, dropout_active,
                     self.dtype):
            o = fused_attention(q[:, :, None], k[:, :, None], v[:, :, None], mask,
                                self.normalization, self.fixed_n, self.plus_min_n)[:, :, 0]
        elif self.chunk_size <= 0:
            scores = jnp.einsum("bns,bms->bnm", q, k, preferred_element_type=jnp.float32)
            probs = normalize_attention(scores / math.sqrt(s), mask[:, None, :],
                                        self.normalization, self.fixed_n, self.plus_min_n)
            probs = dropout(probs, deterministic=deterministic)
            o = jnp.einsum("bnm,bme->bne", probs.astype(self.dtype), v)
        else:
            lin_q = self._qk(z, "lin_q_scale", positions, inv)
            lin_k = self._qk(z, "lin_k_scale", positions, inv)
            o = self._mixed_chunk(q, k, lin_q, lin_k, v, mask, dropout, deterministic)
        return GatedOutput(x.shape[-1], self.use_bias, self.dtype, self.kernel_init,
                           name="output")(u, o)

    def _mixed_chunk(self, q, k, lin_q, lin_k, v, mask, dropout, deterministic):
        b, n, _ = q.shape
        c = self.chunk_size
        pad = (-n) % c
        maskf = mask.astype(self.dtype)

        def chunks(t: jnp.ndarray) -> jnp.ndarray:  # [b, n, f] -> [b·g, c, f]
            t = jnp.pad(t, ((0, 0), (0, pad), (0, 0)))
            return t.reshape(-1, c, t.shape[-1])  # one batch axis: XLA's dots run faster

        qc, kc, vc = chunks(q), chunks(k), chunks(v)
        mc = chunks(mask[..., None])[..., 0]                              # [b·g, c]
        scores = jnp.einsum("gns,gms->gnm", qc, kc, preferred_element_type=jnp.float32)
        probs = normalize_attention(scores / math.sqrt(self.key_size), mc[:, None, :],
                                    self.normalization, self.fixed_n, self.plus_min_n)
        probs = dropout(probs, deterministic=deterministic)
        quad = jnp.einsum("gnm,gme->gne", probs.astype(self.dtype), vc)
        quad = quad.reshape(b, -1, v.shape[-1])[:, :n]
        n_real = real_lengths(mask)[:, None, None]
        kv = jnp.einsum("bns,bne->bse", lin_k * maskf[..., None], v,
                        preferred_element_type=jnp.float32)
        lin = jnp.einsum("bns,bse->bne", lin_q, (kv / n_real).astype(self.dtype))
        return quad + lin


@jax.custom_vjp
def gated_matmul(u: jnp.ndarray, o: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """(u ⊙ o)·W, [..., e] x [..., e] x [e, d] -> [..., d], keeping u and o (which the backward
    pass needs anyway) but not their product: the backward recomputes u ⊙ o for dW."""
    return jnp.einsum("...e,ed->...d", u * o, w)


def _gated_fwd(u, o, w):
    return gated_matmul(u, o, w), (u, o, w)


def _gated_bwd(res, g):
    """dW = (u ⊙ o)ᵀ·g, du = (g·Wᵀ) ⊙ o, do = (g·Wᵀ) ⊙ u. `late` ties o to g (adding 0·g₀ is
    exact for finite g), so u ⊙ o is rebuilt only once g exists: otherwise XLA shares the
    forward's product and keeps it alive (XLA:CPU drops optimization_barrier, which would say
    the same)."""
    u, o, w = res
    dp = jnp.einsum("...d,ed->...e", g, w)
    late = o + 0 * g.reshape(-1)[0]  # = o, but only once g exists
    flat = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731  (tokens x features)
    return dp * o, dp * u, flat(u * late).T @ flat(g)


gated_matmul.defvjp(_gated_fwd, _gated_bwd)


class GatedOutput(nn.Module):
    """O = (u ⊙ o)·W_o (+ b): the GAU output projection, params named as nn.Dense's."""

    features: int
    use_bias: bool = False
    dtype: jnp.dtype = jnp.float32
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, u: jnp.ndarray, o: jnp.ndarray) -> jnp.ndarray:
        kernel = self.param("kernel", self.kernel_init, (u.shape[-1], self.features), jnp.float32)
        y = gated_matmul(u, o, kernel.astype(self.dtype))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,),
                               jnp.float32).astype(self.dtype)
        return y
