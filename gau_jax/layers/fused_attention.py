"""Attention through `jax.nn.dot_product_attention` (cuDNN flash attention on GPU), for softmax
and softmax_plus.

With logits a_ij = q_i·k_j/√s over the visible keys j of the row (mask 1) and n_b the visible
keys of sample b (clamped as in attention.py):

    softmax       A = softmax_j(q_i·k_j/√s)              → dot_product_attention(q, k, v)
    softmax_plus  A = softmax_j(a_ij · log(n_b)/log(512))
                    = softmax_j((c_b·q_i)·k_j/√s)         → dot_product_attention(c_b·q, k, v)
                  with c_b = log(n_b)/log(512)

The per-sample factor c_b is folded into the queries, so the kernel sees plain softmax attention
with a key mask. A sample without any visible key gets output 0 (as normalize_attention's rows
of zeros). relu2 and FLASH's mixed chunk attention are not softmax attention: they raise
UnsupportedAttention. The fused kernel has no dropout on A.

GAU's values are wider than its keys (e > s): v [b, n, e] is cut into G = ⌈e/s⌉ "heads" of s
dims (zero-padded), each attending with the same q and k (the kernel needs value width = key
width); the outputs are joined back. This repeats the QKᵀ work G times (cheap next to the n²·e
of A·V) but never stores the n × n map.

Implementations (model config `attention_impl`): "xla" — normalize_attention and two einsums
(attention.py; every normalisation, dropout on A); "cudnn" — this module, with
implementation="cudnn" on a GPU backend and jax's XLA implementation of the same function
elsewhere (what the CPU tests compare); "auto" — "cudnn" where cuDNN applies (GPU backend,
bfloat16 / float16, softmax or softmax_plus, no chunks, no attention dropout in the call),
otherwise "xla".

Dao et al. 2022, "FlashAttention", arXiv:2205.14135; softmax_plus, Su, kexue.fm/archives/8823.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ("xla", "cudnn", "auto")
FUSED_NORMALIZATIONS = ("softmax", "softmax_plus")


class UnsupportedAttention(ValueError):
    """The fused path was asked for an attention it cannot compute (relu2, mixed chunks, ...)."""


def use_fused(impl: str, normalization: str, chunk_size: int, dropout_active: bool,
              dtype: jnp.dtype) -> bool:
    """Whether a layer with config `attention_impl`=impl runs this module (docstring)."""
    if impl not in IMPLEMENTATIONS:
        raise UnsupportedAttention(f"attention_impl={impl!r} is not one of {IMPLEMENTATIONS}")
    if impl == "xla":
        return False
    supported = normalization in FUSED_NORMALIZATIONS and chunk_size <= 0 and not dropout_active
    if impl == "auto":
        return (supported and jax.default_backend() == "gpu"
                and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16))
    if normalization not in FUSED_NORMALIZATIONS:
        raise UnsupportedAttention(f"attention_impl='cudnn' computes softmax attention only; "
                                   f"attention_norm={normalization!r} needs attention_impl='xla'")
    if chunk_size > 0:
        raise UnsupportedAttention("attention_impl='cudnn' cannot run mixed chunk attention "
                                   f"(chunk_size={chunk_size}); use attention_impl='xla'")
    if dropout_active:
        raise UnsupportedAttention("attention_impl='cudnn' has no dropout on the attention "
                                   "probabilities; set attention_dropout=0 or use 'xla'")
    return True


def fused_attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray, mask: jnp.ndarray,
                    normalization: str = "softmax", fixed_n: int = 0, plus_min_n: int = 1,
                    implementation: str | None = None) -> jnp.ndarray:
    """normalise(q kᵀ/√s) v through jax.nn.dot_product_attention.

    q, k: [b, n, h, s]; v: [b, n, h, e] (e may differ from s); mask: [b, n] key mask (1 = real
    token). implementation: "cudnn" | "xla" | None (None: "cudnn" on GPU, else "xla").
    Returns [b, n, h, e] in v's dtype.
    """
    if normalization not in FUSED_NORMALIZATIONS:
        raise UnsupportedAttention(f"fused attention computes {FUSED_NORMALIZATIONS}, not "
                                   f"{normalization!r}")
    if implementation is None:
        implementation = "cudnn" if jax.default_backend() == "gpu" else "xla"
    b, n, h, s = q.shape
    e = v.shape[-1]
    visible = mask.astype(bool)
    n_visible = jnp.sum(visible, axis=-1, dtype=jnp.float32)                    # [b]
    if normalization == "softmax_plus":
        n_b = jnp.float32(fixed_n) if fixed_n > 0 else jnp.maximum(n_visible, 1.0)
        factor = jnp.log(jnp.maximum(n_b, float(plus_min_n))) / math.log(512.0)
        factor = jnp.broadcast_to(factor, (b,))
        q = (q.astype(jnp.float32) * factor[:, None, None, None]).astype(q.dtype)
    k, v = k.astype(q.dtype), v.astype(q.dtype)
    groups = 1
    if e != s:  # values wider (or narrower) than keys: G heads of s value dims (docstring)
        groups = -(-e // s)
        v = jnp.pad(v, ((0, 0), (0, 0), (0, 0), (0, groups * s - e)))
        v = v.reshape(b, n, h * groups, s)
        q = jnp.repeat(q, groups, axis=2)
        k = jnp.repeat(k, groups, axis=2)
    out = jax.nn.dot_product_attention(q, k, v, mask=visible[:, None, None, :],
                                       scale=1.0 / math.sqrt(s), implementation=implementation)
    if groups > 1:
        out = out.reshape(b, n, h, groups * s)[..., :e]
    # a sample without any visible key attends to nothing
    return jnp.where((n_visible > 0)[:, None, None, None], out, 0.0).astype(v.dtype)
