"""GlobalPointer: every span (i, j), i ≤ j, of every type scored at once, with RoPE.

GlobalPointer (Su 2021, "GlobalPointer：用统一的方式处理嵌套和非嵌套NER", kexue.fm/archives/8373):
for each type α a query and a key projection of each token state h_i (d_h = head_size), RoPE on
both (adjacent-pair layout, gau_jax/layers/rope.py), so the score sees the relative offset j − i:

    q_{i,α} = R_i W_{q,α} h_i,   k_{j,α} = R_j W_{k,α} h_j,   s_α(i, j) = q_{i,α}ᵀ k_{j,α} / √d_h

Efficient GlobalPointer (Su 2022, "Efficient GlobalPointer：少点参数，多点效果",
kexue.fm/archives/8877): one shared projection p_i = W_p h_i ∈ R^{2d_h} (q_i = p_i[0::2],
k_i = p_i[1::2], RoPE on both) and a per-type linear bias from p (bert4keras' layout:
b = W_b p ∈ R^{2T} / 2, even channels bias the end token j, odd channels the start token i):

    s_α(i, j) = q_iᵀ k_j / √d_h + b_{2α}(p_j) + b_{2α+1}(p_i)

Pairs with i > j, or with a padding token at i or j, get NEG_INF (−1e12: finite, so the loss's
(1 − 2y)·s stays finite). A span is predicted where s_α(i, j) > 0 (`decode_spans`).

Loss: multilabel categorical cross-entropy (Su 2020, "将“softmax+交叉熵”推广到多标签分类问题",
kexue.fm/archives/7359), over the flattened n·n scores of each (row, type), Ω_pos the gold spans:

    L = log(1 + Σ_{(i,j) ∉ Ω_pos} e^{s(i,j)}) + log(1 + Σ_{(i,j) ∈ Ω_pos} e^{−s(i,j)})

`global_pointer_loss` averages it over the types (bert4keras' global_pointer_crossentropy: the mean
over batch·types).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from gau_jax.layers.rope import apply_rope

NEG_INF = -1e12  # masked score (finite: see module docstring)


def span_mask(mask: jnp.ndarray) -> jnp.ndarray:
    """[b, n] token mask → [b, 1, n, n] bool: i ≤ j and both tokens real."""
    m = mask.astype(bool)
    n = m.shape[-1]
    upper = jnp.triu(jnp.ones((n, n), bool))
    return (m[:, :, None] & m[:, None, :] & upper)[:, None]


class GlobalPointer(nn.Module):
    """(h [b, n, d], mask [b, n]) → span scores [b, num_types, n, n] float32 (module docstring)."""

    num_types: int
    head_size: int = 64
    efficient: bool = True
    use_bias: bool = True        # biases of the projections (Su's CLUE scripts: none)
    use_rope: bool = True
    rope_base: float = 10000.0
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, h: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
        b, n, _ = h.shape
        T, D = self.num_types, self.head_size
        if mask is None:
            mask = jnp.ones((b, n), jnp.int32)
        dense = lambda f, name: nn.Dense(f, use_bias=self.use_bias, dtype=jnp.float32,
                                         param_dtype=jnp.float32, kernel_init=self.kernel_init,
                                         name=name)
        rope = (lambda x: apply_rope(x, base=self.rope_base)) if self.use_rope else (lambda x: x)
        h = h.astype(jnp.float32)
        if self.efficient:
            p = dense(2 * D, "dense")(h)                                   # [b, n, 2D]
            q, k = rope(p[..., 0::2]), rope(p[..., 1::2])
            scores = jnp.einsum("bmd,bnd->bmn", q, k)[:, None] / math.sqrt(D)
            bias = jnp.swapaxes(dense(2 * T, "bias")(p), 1, 2) / 2          # [b, 2T, n]
            scores = scores + bias[:, 0::2, None, :] + bias[:, 1::2, :, None]
        else:
            x = dense(T * 2 * D, "dense")(h).reshape(b, n, T, 2 * D)
            q, k = rope(x[..., :D]), rope(x[..., D:])                     # [b, n, T, D]
            scores = jnp.einsum("bmtd,bntd->btmn", q, k) / math.sqrt(D)
        return jnp.where(span_mask(mask), scores, NEG_INF)


def multilabel_crossentropy(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
    """Su's multilabel categorical cross-entropy over the last axis (module docstring): [...]."""
    logits = logits.astype(jnp.float32)
    y = targets.astype(jnp.float32)
    s = (1 - 2 * y) * logits                       # negatives keep s, positives get −s
    neg = jnp.where(y > 0, NEG_INF, s)
    pos = jnp.where(y > 0, s, NEG_INF)
    zero = jnp.zeros(s.shape[:-1] + (1,), s.dtype)
    lse = lambda x: nn.logsumexp(jnp.concatenate([x, zero], -1), axis=-1)
    return lse(neg) + lse(pos)


def global_pointer_loss(logits: jnp.ndarray, span_labels: jnp.ndarray) -> jnp.ndarray:
    """Per row [b]: mean over types of the MCCE over the flattened [n, n] scores."""
    b, t = logits.shape[:2]
    loss = multilabel_crossentropy(logits.reshape(b, t, -1), span_labels.reshape(b, t, -1))
    return loss.mean(-1)


def span_softmax_loss(logits: jnp.ndarray, span_labels: jnp.ndarray,
                      cells: jnp.ndarray) -> jnp.ndarray:
    """Per row [b]: softmax cross-entropy over a row's allowed cells (one answer type),

        L = logsumexp_{(i,j) ∈ allowed} s(i, j) − logsumexp_{(i,j) ∈ Ω_pos} s(i, j),

    Su's CMRC2018 loss (bojone/CLUE-bert4keras src/cmrc2018.py: sparse categorical
    cross-entropy over the flattened n·n scores, one gold cell; with several gold cells the
    probability of any of them). logits, span_labels [b, 1, n, n]; cells [b, n, n] bool."""
    b = logits.shape[0]
    s = jnp.where(cells[:, None], logits.astype(jnp.float32), NEG_INF).reshape(b, -1)
    gold = (span_labels.reshape(b, -1) > 0) & cells.reshape(b, -1)
    return nn.logsumexp(s, axis=-1) - nn.logsumexp(jnp.where(gold, s, NEG_INF), axis=-1)


def decode_spans(logits: Any, threshold: float = 0.0) -> list[tuple[int, int, int, float]]:
    """(type, start, end, score) of every score > threshold in one row's [T, n, n] matrix;
    token indices, end inclusive, highest score first (masked pairs are NEG_INF: never chosen)."""
    s = np.asarray(logits, np.float32)
    if s.ndim != 3 or s.shape[1] != s.shape[2]:
        raise ValueError(f"decode_spans expects one row's [types, n, n] scores, got {s.shape}")
    hits = [(int(t), int(i), int(j), float(s[t, i, j])) for t, i, j in np.argwhere(s > threshold)]
    return sorted(hits, key=lambda x: (-x[3], x[0], x[1], x[2]))

