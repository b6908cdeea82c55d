"""Parameter count and closed-form train-step matmul FLOPs of an encoder model config.

The FLOP count is what XLA's cost_analysis of an MLM train step is checked against: 3× the
forward matmuls (backward = 2× forward), per layer with d = hidden, L layers, V = vocab and
t = b·n tokens (b rows of n tokens):

    roformer_v2: 2t·d·3hk + 2t·hk·d + 2·2b·h·n²·k + 2·2t·d·f     (QKV, output, QKᵀ and AV, FFN)
    gau:         2t·d(2e+s) + 2t·e·d + 2b·n²(s+e)                 (UVZ, output, quadratic part)
                 chunked (c, g = ⌈n/c⌉): 2b·g·c²(s+e) + 2·2t·s·e  (chunks + linear part)
    head:        2b·k·d·V          (k predicted tokens per row; the tied MLM head)

Hua et al. 2022, "Transformer Quality in Linear Time" (arXiv:2202.10447) for GAU and its chunked
(linear) form.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gau_jax.models.encoder import build_encoder


def param_count(model_config: Any) -> int:
    """Parameters of the encoder `model_config` builds (from shapes only, nothing allocated)."""
    model = build_encoder(model_config)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.ones((1, 8), jnp.int32))
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes)))


def train_matmul_flops(m: Any, batch: int, n: int, predictions: int | None = None) -> float:
    """Closed-form train-step matmul FLOPs (module docstring) of `batch` rows of n tokens with
    `predictions` scored tokens per row (None: the head over every position)."""
    d, L, V, t = m.hidden_size, m.num_layers, m.vocab_size, batch * n
    k = n if predictions is None else predictions
    if m.block == "roformer_v2":
        hk = m.num_heads * m.key_size
        layer = 2 * t * d * 3 * hk + 2 * t * hk * d + 4 * batch * n * n * hk
        layer += 4 * t * d * m.intermediate_size
    else:
        e, s = m.intermediate_size, m.key_size
        layer = 2 * t * d * (2 * e + s) + 2 * t * e * d
        if m.chunk_size > 0:
            c = m.chunk_size
            layer += 2 * batch * math.ceil(n / c) * c * c * (s + e) + 4 * t * s * e
        else:
            layer += 2 * batch * n * n * (s + e)
    return 3.0 * (L * layer + 2 * batch * k * d * V)
