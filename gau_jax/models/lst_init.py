"""Pruned initialisation of the LST side network from its trunk (LST paper, §3.2).

Importance of a weight θ: the empirical Fisher  F(θ) = Σ_i (∂ℓ_i/∂θ)²  over N examples (ℓ_i the
task loss of example i, as the LST authors compute it; lst.fisher_estimate = "batch_mean" squares
the gradient of each batch's mean loss instead, Σ_batches (∂ mean_B ℓ/∂θ)²: B times fewer
gradients, but cross terms and a 1/B² factor), or magnitude |θ|. A matrix's output channel j has
importance Σ_i F(W_ij). For every matrix keep the 1/r output channels of largest importance
(sorted by index); its input rows follow the channels kept upstream:

    residual stream: one index set R (|R| = d/r) for every layer, ranked by the summed column
      importance of the matrices writing to it (embeddings, attention/FFN/GAU outputs)
    roformer_v2 layer ℓ: per head, q and k keep the same k/(2r) RoPE pairs (ranked by the pair's
      q + k importance), v its top k/r; output rows follow v, columns R; FFN: top f/r hidden units
    gau layer ℓ: U and V share their top e/r channels (U ⊙ AV is elementwise), Z keeps its
      top s/(2r) RoPE pairs (q_scale / k_scale follow Z), output rows follow U/V, columns R
    Down_k = the selection matrix of R (Down(h) = h[:, R]). A trunk with biases
      (model.use_bias) passes each bias (and ScaleOffset offset) on at its kept output channels.

    lst.prune_form = "exact": a pruned block computes the trunk's function on the kept
      channels. RoPE: a kept pair p of a trunk key size k turned at θ_p = base^(−2p/k); the side
      block's rope_inv_freq holds these θ of its kept pairs, so the kept channels' logits
      Σ_kept q_c·k_c equal the trunk's restricted to them (the side divides by √(k/r), the
      trunk by √k).
    lst.prune_form = "side" (default): the kept weights at the scale and with the positions of
      a side block. Each pruned kernel W[rows][:, cols] is multiplied by √(fan_in / |rows|) (a
      pre-activation sums |rows| inputs instead of fan_in: its variance is kept), and the kept
      pairs, in index order, turn at the side's own θ_j = base^(−2j/(k/r)). The kept trunk
      pairs are the Fisher-important ones, which on a trained trunk are the fast-turning ones
      (measured: θ from 1 down to 0.06 of the trunk's 1 … 1e−4); frozen at those θ the side
      attention has no slow, long-range frequencies. Measured on the 2-layer 256-wide trunk of
      experiments/lst_clue.py (experiments/results/lst_inits.md, lst_prune_ablation.md): "side"
      recovers most of what "exact" loses against a random side network, but does not beat it.
    At r = 1 both forms are the trunk block exactly.

Side block i starts from trunk layer ℓ(i). Needs side_block = the trunk's block (and, for
roformer_v2, side_heads = the trunk's heads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gau_jax.layers.rope import inverse_frequencies
from gau_jax.models.encoder import EncoderConfig, unstack_layers
from gau_jax.models.lst import LSTConfig, ladder_layers, side_config
from gau_jax.models.presets import ConfigError

PyTree = Any


def top_channels(importance: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries, in increasing index order (ties: lower index)."""
    order = np.argsort(-np.asarray(importance, np.float64), kind="stable")
    return np.sort(order[:k])


def top_pairs(importance: np.ndarray, k: int) -> np.ndarray:
    """k channels as k/2 whole RoPE pairs (2p, 2p+1), ranked by the pair's summed importance."""
    pairs = top_channels(np.asarray(importance).reshape(-1, 2).sum(-1), k // 2)
    return np.stack([2 * pairs, 2 * pairs + 1], -1).reshape(-1)


def prune_dense(w: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """W[rows][:, cols]: for x zero outside `rows`, x[rows] @ W' = (x @ W)[cols]."""
    return np.asarray(w)[np.ix_(rows, cols)]


def per_head(importance: np.ndarray, heads: int, keep: int, pick) -> np.ndarray:
    """Apply `pick(head_importance, keep)` inside each head's block of columns."""
    size = importance.shape[0] // heads
    return np.concatenate([h * size + pick(importance[h * size:(h + 1) * size], keep)
                           for h in range(heads)])


def magnitude_scores(params: PyTree) -> PyTree:
    """|θ| as importance."""
    return jax.tree_util.tree_map(lambda x: np.abs(np.asarray(x, np.float32)), params)


def _per_example_squares(loss_fn: Callable[[PyTree, dict], jax.Array]) -> Callable:
    """(params, batch) -> Σ_i (∂ loss_fn(params, row i)/∂θ)², one row at a time (lax.scan: the
    memory of one gradient, not of B)."""
    grad = jax.grad(loss_fn)

    def squares(params, batch):
        rows = jax.tree_util.tree_map(lambda x: x[:, None], batch)  # [B, 1, ...]

        def add(total, row):
            g = grad(params, row)
            return jax.tree_util.tree_map(lambda t, x: t + jnp.square(x.astype(jnp.float32)),
                                          total, g), None

        zero = jax.tree_util.tree_map(lambda x: jnp.zeros(jnp.shape(x), jnp.float32), params)
        return jax.lax.scan(add, zero, rows)[0]

    return squares


def fisher_scores(loss_fn: Callable[[PyTree, dict], jax.Array], params: PyTree,
                  batches: Iterable[dict], num_examples: int = 1024,
                  per_example: bool = True) -> PyTree:
    """Σ_i (∂ loss_fn(params, row i)/∂θ)² over the rows of `batches` (per_example), or
    Σ_batches (∂ loss_fn(params, batch)/∂θ)², until num_examples rows are seen."""
    if per_example:
        step = jax.jit(_per_example_squares(loss_fn))
    else:
        grad = jax.grad(loss_fn)
        step = jax.jit(lambda p, b: jax.tree_util.tree_map(
            lambda x: jnp.square(x.astype(jnp.float32)), grad(p, b)))
    total, seen = jax.tree_util.tree_map(lambda x: np.zeros(np.shape(x), np.float32), params), 0
    for batch in batches:
        g = step(params, batch)
        total = jax.tree_util.tree_map(lambda t, x: t + np.asarray(x, np.float32), total, g)
        seen += int(np.shape(batch["input_ids"])[0])
        if seen >= num_examples:
            break
    if seen == 0:
        raise ValueError("fisher_scores: no batches (empty training set?)")
    return total


def _cols(x: np.ndarray) -> np.ndarray:
    """Column importance of a matrix [in, out] (or a vector)."""
    x = np.asarray(x)
    return x.sum(0) if x.ndim == 2 else x


def residual_channels(scores: PyTree, trunk: EncoderConfig, keep: int) -> np.ndarray:
    """R: top residual channels by embedding + every output matrix's column importance."""
    s = unstack_layers(scores)
    imp = _cols(s["embeddings"]["token_embedding"]["embedding"]).astype(np.float64)
    for i in range(trunk.num_layers):
        layer = s[f"layers_{i}"]
        outs = [layer["gau"]["output"]] if trunk.block == "gau" else \
            [layer["attention"]["output"], layer["ffn"]["output"]]
        imp = imp + sum(_cols(o["kernel"]) for o in outs)
    return top_channels(imp, keep)


def _prune_layer(w: dict, s: dict, trunk: EncoderConfig, side: EncoderConfig,
                 res: np.ndarray, form: str) -> dict:
    exact = form == "exact"

    def d_kernel(dense: dict, rows: np.ndarray, cols: np.ndarray) -> dict:
        scale = 1.0 if exact else float(np.sqrt(len(dense["kernel"]) / len(rows)))
        return pruned_dense(dense, rows, cols, scale)

    def frequencies(channels: np.ndarray) -> np.ndarray:  # kept channels [..., 2m] → θ [..., m]
        if exact:
            return _kept_frequencies(channels, trunk)
        own = np.asarray(inverse_frequencies(side.key_size, side.rope_base))
        return np.broadcast_to(own, channels[..., 0::2].shape).copy()

    if trunk.block == "gau":
        e = trunk.intermediate_size
        c = _cols(s["gau"]["uvz"]["kernel"])
        uv = top_channels(c[:e] + c[e:2 * e], side.intermediate_size)
        z = top_pairs(c[2 * e:], side.key_size)
        g = w["gau"]
        return {"gau": {"uvz": d_kernel(g["uvz"], res,
                                        np.concatenate([uv, e + uv, 2 * e + z])),
                        "rope_inv_freq": frequencies(z),
                        "q_scale": _take(g["q_scale"], z), "k_scale": _take(g["k_scale"], z),
                        "output": d_kernel(g["output"], uv, res)}}
    a, sa, h = w["attention"], s["attention"], trunk.num_heads
    qk = per_head(_cols(sa["query"]["kernel"]) + _cols(sa["key"]["kernel"]), h, side.key_size,
                  top_pairs)
    v = per_head(_cols(sa["value"]["kernel"]), h, side.key_size, top_channels)
    f = top_channels(_cols(s["ffn"]["intermediate"]["kernel"]), side.intermediate_size)
    attn = {"rope_inv_freq": frequencies(qk.reshape(h, -1) % trunk.key_size),
            "query": d_kernel(a["query"], res, qk),
            "key": d_kernel(a["key"], res, qk),
            "value": d_kernel(a["value"], res, v),
            "output": d_kernel(a["output"], v, res)}
    ffn = {"intermediate": d_kernel(w["ffn"]["intermediate"], res, f),
           "output": d_kernel(w["ffn"]["output"], f, res)}
    return {"attention": attn, "ffn": ffn}


def _kept_frequencies(channels: np.ndarray, trunk: EncoderConfig) -> np.ndarray:
    """θ_p = base^(−2p/k) of the trunk pairs p = channel // 2 that `channels` keep (whole pairs,
    [..., 2m], indices inside one head of key size k): shape [..., m]."""
    pairs = np.asarray(channels)[..., 0::2] // 2
    return np.asarray(inverse_frequencies(trunk.key_size, trunk.rope_base))[pairs]


def pruned_dense(dense: dict, rows: np.ndarray, cols: np.ndarray, scale: float = 1.0) -> dict:
    """A Dense's params pruned: scale · kernel[rows][:, cols] and, where it has one,
    bias[cols]."""
    out = {"kernel": prune_dense(dense["kernel"], rows, cols) * np.float32(scale)}
    return out | ({"bias": np.asarray(dense["bias"])[cols]} if "bias" in dense else {})


def _take(vectors: dict, index: np.ndarray) -> dict:
    """Every per-channel vector of a ScaleOffset (scale, bias) at the kept channels."""
    return {k: np.asarray(v)[index] for k, v in vectors.items()}


def pruned_side_params(trunk_params: PyTree, scores: PyTree, trunk: EncoderConfig,
                       lst: LSTConfig) -> dict:
    """Side params {down_k, side_i} pruned from the trunk (module docstring); the head and the
    gates are not included (they keep their fresh init)."""
    side = side_config(trunk, lst)
    if side.block != trunk.block or (trunk.block == "roformer_v2"
                                     and side.num_heads != trunk.num_heads):
        raise ConfigError(f"config.lst.init=fisher|magnitude needs config.lst.side_block="
                          f"{trunk.block!r} (the trunk's) and, for roformer_v2, side_heads = "
                          f"{trunk.num_heads}; got {side.block!r} with {side.num_heads} heads")
    res = residual_channels(scores, trunk, side.hidden_size)
    w, s = unstack_layers(trunk_params), unstack_layers(scores)
    select = np.zeros((trunk.hidden_size, side.hidden_size), np.float32)
    select[res, np.arange(side.hidden_size)] = 1.0
    out = {f"down_{k}": {"kernel": select} for k in range(side.num_layers + 1)}
    for i, layer in enumerate(ladder_layers(trunk, lst)):
        out[f"side_{i}"] = _prune_layer(w[f"layers_{layer}"], s[f"layers_{layer}"], trunk,
                                        side, res, lst.prune_form)
    return jax.tree_util.tree_map(jnp.asarray, out)
