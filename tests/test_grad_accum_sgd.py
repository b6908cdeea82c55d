"""Gradient accumulation under plain SGD equals the large-batch step, with its grad norm and clip.

LAMB / Adam-like updates hardly move when every gradient is scaled by the same factor, so an
accumulation that sums micro-batch gradients with the wrong normalisation (a mean of micro-batch
means, a forgotten or doubled 1/k) survives tests that compare their losses. Under SGD the update
is −lr·g itself: here a softmax-regression model (logits = x·W + b) trains one step through
`make_train_step` and `make_optimizer("sgd", ...)`, and params, loss and the logged grad norm are
compared with a NumPy reference written from the formulas

    L = Σ_i w_i·xent_i / Σ_i w_i,   ∂L/∂W = Xᵀ·(w ⊙ (softmax(XW + b) − onehot(y))) / Σ w,
    g ← g·min(1, c / ‖g‖₂)   (clipping, c > 0),   θ ← θ − lr·g.

The row weights differ between micro-batches (micro-batch j = rows j, j+k, ...), so the mean of
per-micro-batch means is not the global mean. The clip threshold is tried on both sides of ‖g‖,
0.1% away from it, so a clip test that compares against the wrong norm flips.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gau_jax.tasks.losses import weighted_sums
from gau_jax.train.optim import make_optimizer
from gau_jax.train.state import create_state
from gau_jax.train.step import make_train_step

ROWS, FEATURES, CLASSES, LR = 8, 5, 4, 0.5


def _sums_fn(params, batch, rng, residual_scale, train):
    logits = batch["x"] @ params["w"] + params["b"]
    return weighted_sums(logits, batch["labels"], batch["weights"])


def _problem():
    rng = np.random.default_rng(7)
    batch = {"x": rng.normal(size=(ROWS, FEATURES)).astype(np.float32),
             "labels": rng.integers(0, CLASSES, ROWS).astype(np.int32),
             # uneven weights: micro-batch sums of w differ for k = 2 and k = 4, one row is 0
             "weights": np.array([1.0, 0.0, 2.0, 1.0, 0.5, 3.0, 1.0, 1.5], np.float32)}
    params = {"w": rng.normal(size=(FEATURES, CLASSES)).astype(np.float32),
              "b": rng.normal(size=(CLASSES,)).astype(np.float32)}
    return batch, params


def _reference(batch, params):
    """(loss, {"w": dL/dW, "b": dL/db}) in float64 NumPy from the formulas above."""
    x, y, w = (np.asarray(batch[k], np.float64) for k in ("x", "labels", "weights"))
    z = x @ np.asarray(params["w"], np.float64) + np.asarray(params["b"], np.float64)
    z = z - z.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    onehot = np.eye(CLASSES)[y.astype(int)]
    loss = float(np.sum(w * -np.log(np.sum(p * onehot, -1))) / w.sum())
    delta = w[:, None] * (p - onehot) / w.sum()
    return loss, {"w": x.T @ delta, "b": delta.sum(0)}


def _one_step(k, clip):
    batch, params = _problem()
    tx = make_optimizer("sgd", optax.constant_schedule(LR), grad_clip_norm=clip)
    step = jax.jit(make_train_step(_sums_fn, tx, grad_accum_steps=k))
    state, metrics = step(create_state(jax.tree_util.tree_map(jnp.asarray, params), tx, 0),
                          jax.tree_util.tree_map(jnp.asarray, batch))
    return batch, params, state, metrics


def _norm(g):
    return float(np.sqrt(sum(np.sum(v ** 2) for v in g.values())))


@pytest.mark.parametrize("k", [1, 2, 4])
def test_sgd_step_equals_numpy_large_batch_step(k):
    """Params after one SGD step, the loss and the logged grad norm equal the NumPy large-batch
    values, for 1, 2 and 4 micro-batches (catches any wrong 1/k or per-micro-batch mean)."""
    batch, params, state, metrics = _one_step(k, clip=0.0)
    loss, grads = _reference(batch, params)
    np.testing.assert_allclose(float(metrics["loss"]), loss, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["grad_norm"]), _norm(grads), rtol=1e-5)
    assert float(metrics["weight"]) == pytest.approx(float(batch["weights"].sum()))
    for name in ("w", "b"):
        want = params[name] - LR * grads[name]
        np.testing.assert_allclose(np.asarray(state.params[name]), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("side", [0.999, 1.001])
def test_clipping_on_both_sides_of_the_true_grad_norm(k, side):
    """Clip threshold c = ‖g‖·0.999 scales the update by c/‖g‖; c = ‖g‖·1.001 leaves it alone.
    ‖g‖ is the NumPy large-batch norm, so a step that clips against a micro-batch's norm, or a
    wrongly scaled accumulated gradient, lands on the wrong side of the threshold."""
    batch, params, _, _ = _one_step(k, clip=0.0)
    loss, grads = _reference(batch, params)
    norm = _norm(grads)
    clip = side * norm
    _, _, state, metrics = _one_step(k, clip=clip)
    scale = min(1.0, clip / norm)
    assert (scale < 1.0) == (side < 1.0)
    np.testing.assert_allclose(float(metrics["grad_norm"]), norm, rtol=1e-5)  # before clipping
    for name in ("w", "b"):
        want = params[name] - LR * scale * grads[name]
        np.testing.assert_allclose(np.asarray(state.params[name]), want, rtol=1e-5, atol=1e-7)
    moved = np.sqrt(sum(np.sum((np.asarray(state.params[n]) - params[n]) ** 2) for n in grads))
    assert moved == pytest.approx(LR * min(clip, norm), rel=1e-4)
