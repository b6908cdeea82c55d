"""Task heads against values computed here in NumPy (not by the code under test):

    GlobalPointer        s_α(i, j) = RoPE(q_iα)·RoPE(k_jα)/√d (and the Efficient variant's
                         shared q/k + per-type biases) by hand; i > j and padding masked
    MCCE                 log(1 + Σ_neg e^s) + log(1 + Σ_pos e^−s)
    decode_spans         a perfect score matrix gives back exactly the gold spans
    multiple choice      a choice's logit does not depend on its position; absent choices
                         get probability 0 and change nothing for the others
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gau_jax.models import HeadSpec, TaskModel, build_encoder, get_model_config
from gau_jax.models.global_pointer import (
    NEG_INF,
    GlobalPointer,
    decode_spans,
    global_pointer_loss,
    multilabel_crossentropy,
)


def rope_np(x: np.ndarray) -> np.ndarray:
    """Adjacent-pair RoPE of x [n, ..., k] at positions 0..n−1, θ_i = 10000^(−2i/k)."""
    n, k = x.shape[0], x.shape[-1]
    out = np.empty_like(x)
    for p in range(n):
        for i in range(k // 2):
            a = p * 10000.0 ** (-2 * i / k)
            c, s = np.cos(a), np.sin(a)
            x0, x1 = x[p, ..., 2 * i], x[p, ..., 2 * i + 1]
            out[p, ..., 2 * i], out[p, ..., 2 * i + 1] = x0 * c - x1 * s, x1 * c + x0 * s
    return out


def masked_np(scores: np.ndarray, length: int) -> np.ndarray:
    """[T, n, n] with i > j or i, j >= length set to NEG_INF."""
    n = scores.shape[-1]
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    ok = (i <= j) & (i < length) & (j < length)
    return np.where(ok[None], scores, NEG_INF)


@pytest.mark.parametrize("efficient", [False, True])
def test_global_pointer_scores_by_hand(efficient):
    T, D, n, d, length = 2, 4, 5, 3, 4
    h = np.random.default_rng(0).normal(size=(1, n, d)).astype(np.float32)
    mask = (np.arange(n) < length).astype(np.int32)[None]
    gp = GlobalPointer(T, D, efficient=efficient)
    params = jax.jit(gp.init)(jax.random.PRNGKey(1), h, mask)["params"]
    # non-zero biases so that they are checked too
    params = jax.tree.map(lambda x: x + 0.1 if x.ndim == 1 else x, params)
    got = np.asarray(jax.jit(gp.apply)({"params": params}, h, mask))[0]
    w, b = (np.asarray(params["dense"][k], np.float64) for k in ("kernel", "bias"))
    x = h[0].astype(np.float64) @ w + b
    if efficient:
        q, k = rope_np(x[:, 0::2]), rope_np(x[:, 1::2])
        wb, bb = (np.asarray(params["bias"][k], np.float64) for k in ("kernel", "bias"))
        bias = (x @ wb + bb) / 2                                 # [n, 2T]
        want = np.stack([q @ k.T / np.sqrt(D) + bias[None, :, 2 * t] + bias[:, None, 2 * t + 1]
                         for t in range(T)])
    else:
        x = x.reshape(n, T, 2 * D)
        q, k = rope_np(x[..., :D]), rope_np(x[..., D:])
        want = np.stack([q[:, t] @ k[:, t].T / np.sqrt(D) for t in range(T)])
    np.testing.assert_allclose(got, masked_np(want, length), rtol=2e-5, atol=2e-5)


def test_multilabel_crossentropy_matches_formula():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(3, 7)).astype(np.float32) * 3
    y = (rng.random((3, 7)) < 0.3).astype(np.float32)
    y[2] = 0  # a row without positives
    want = [np.log1p(np.exp(s[r][y[r] == 0]).sum()) + np.log1p(np.exp(-s[r][y[r] == 1]).sum())
            for r in range(3)]
    np.testing.assert_allclose(np.asarray(jax.jit(multilabel_crossentropy)(s, y)), want,
                               rtol=1e-5)


def test_decode_spans_recovers_gold_from_a_perfect_matrix():
    T, n, length = 3, 6, 5
    gold = {(0, 1, 3), (0, 2, 2), (2, 0, 4), (1, 3, 4)}  # nested and overlapping spans
    scores = np.full((T, n, n), -5.0, np.float32)
    for t, i, j in gold:
        scores[t, i, j] = 5.0
    scores = masked_np(scores, length)
    assert {(t, i, j) for t, i, j, _ in decode_spans(scores)} == gold
    assert decode_spans(np.full((1, n, n), NEG_INF)) == []
    labels = np.zeros((1, T, n, n), np.float32)
    for t, i, j in gold:
        labels[0, t, i, j] = 1
    loss = float(jax.jit(global_pointer_loss)(jnp.asarray(scores[None]), jnp.asarray(labels))[0])
    assert 0 < loss < 0.1  # margins of 5 on both sides: a small loss, finite at NEG_INF


def _mc_model():
    c = get_model_config("gau_alpha_tiny")
    c.update(vocab_size=30, num_layers=1, hidden_size=16, intermediate_size=32, key_size=8,
             hidden_dropout=0.0, attention_dropout=0.0)
    return TaskModel(build_encoder(c), HeadSpec("multiple_choice", dropout_rate=0.0))


def test_multiple_choice_logit_ignores_position_and_absent_choices():
    model = _mc_model()
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 30, (1, 3, 7)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[0, 1, 5:] = 0
    ids = ids * mask
    params = jax.jit(model.init)(jax.random.PRNGKey(0), ids[:, 0])["params"]
    f = jax.jit(lambda i, m: model.apply({"params": params}, i, m, jnp.zeros_like(i)))
    base = np.asarray(f(ids, mask))[0]
    perm = [2, 0, 1]
    np.testing.assert_allclose(np.asarray(f(ids[:, perm], mask[:, perm]))[0], base[perm],
                               rtol=1e-5, atol=1e-6)
    # a fourth, absent choice (all padding): logit NEG_INF, probability 0, others unchanged
    ids4 = np.concatenate([ids, np.zeros_like(ids[:, :1])], 1)
    mask4 = np.concatenate([mask, np.zeros_like(mask[:, :1])], 1)
    got = np.asarray(f(ids4, mask4))[0]
    np.testing.assert_allclose(got[:3], base, rtol=1e-5, atol=1e-6)
    assert got[3] == NEG_INF
    probs = np.asarray(jax.nn.softmax(got))
    assert probs[3] == 0.0
    np.testing.assert_allclose(probs[:3], np.exp(base - base.max()) / np.exp(base - base.max())
                               .sum(), rtol=1e-5)
