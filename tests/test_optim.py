"""Optimizers: schedule knots, weight-decay mask, frozen leaves without state, clipping."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gau_jax.train import optim


def _params():
    return {"encoder": {"embeddings": {"token_embedding": {"embedding": jnp.ones((6, 4))}},
                        "layers": {"ffn": {"kernel": jnp.ones((4, 3))},
                                   "scale": {"scale": jnp.ones((3,))}}},
            "classifier": {"kernel": jnp.ones((4, 2)), "bias": jnp.ones((2,))}}


def test_piecewise_linear_knots():
    s = optim.piecewise_linear_schedule(2.0, total_steps=10, warmup_steps=4, end_factor=0.5)
    got = [float(s(t)) for t in (0, 2, 4, 7, 10, 20)]
    np.testing.assert_allclose(got, [0.0, 1.0, 2.0, 1.5, 1.0, 1.0], rtol=1e-6)
    flat = optim.piecewise_linear_schedule(1.0, total_steps=10)
    np.testing.assert_allclose([float(flat(t)) for t in (0, 10)], [1.0, 1.0])
    with pytest.raises(ValueError, match="warmup_steps"):
        optim.piecewise_linear_schedule(1.0, total_steps=10, warmup_steps=10)


def test_decay_mask_only_kernels():
    mask = optim.decay_mask(_params())
    assert mask["encoder"]["layers"]["ffn"]["kernel"] and mask["classifier"]["kernel"]
    assert not mask["encoder"]["embeddings"]["token_embedding"]["embedding"]
    assert not mask["encoder"]["layers"]["scale"]["scale"] and not mask["classifier"]["bias"]


@pytest.mark.parametrize("name", ["lamb", "adafactor", "adamw"])
def test_frozen_leaves_have_no_state_and_do_not_move(name):
    params = _params()
    frozen_encoder = lambda p: jax.tree_util.tree_map_with_path(
        lambda path, _: optim.path_names(path)[0] != "encoder", p)
    tx = optim.make_optimizer(name, optax.constant_schedule(0.1), weight_decay=0.1,
                              grad_clip_norm=1.0, trainable=frozen_encoder)
    state = tx.init(params)
    # Same number of state elements as the optimizer over the head alone: no encoder state.
    head_only = optim.make_optimizer(name, optax.constant_schedule(0.1), weight_decay=0.1,
                                     grad_clip_norm=1.0).init({"classifier": params["classifier"]})
    assert optim.count_leaves(state)[1] == optim.count_leaves(head_only)[1]
    shapes = {tuple(x.shape) for x in jax.tree_util.tree_leaves(state)}
    assert (6, 4) not in shapes and (4, 3) not in shapes
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    updates, _ = tx.update(grads, state, params)
    new = optax.apply_updates(params, updates)
    for a, b in zip(jax.tree_util.tree_leaves(new["encoder"]),
                    jax.tree_util.tree_leaves(params["encoder"]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(new["classifier"]["kernel"], params["classifier"]["kernel"])


def test_weight_decay_skips_embeddings_scales_biases():
    params = _params()
    tx = optim.make_optimizer("adamw", optax.constant_schedule(0.1), weight_decay=0.5)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["classifier"]["kernel"], 1 - 0.1 * 0.5, rtol=1e-6)
    np.testing.assert_array_equal(new["classifier"]["bias"], 1.0)
    np.testing.assert_array_equal(new["encoder"]["embeddings"]["token_embedding"]["embedding"],
                                  1.0)


def test_global_norm_clipping():
    params = {"a": jnp.zeros((3,)), "b": jnp.zeros((4,))}
    tx = optim.make_optimizer("sgd", optax.constant_schedule(1.0), grad_clip_norm=0.5)
    grads = {"a": jnp.full((3,), 2.0), "b": jnp.full((4,), 2.0)}
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(float(optax.global_norm(updates)), 0.5, rtol=1e-6)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="config.optimizer='adam2'"):
        optim.make_optimizer("adam2", optax.constant_schedule(1.0))


@pytest.mark.parametrize("relative", [True, False])
def test_adafactor_first_step_on_a_zero_leaf(relative):
    """AdaFactor's first step is lr·sign(g) (second moment = g², RMS 1: no clipping), times
    max(RMS(param), 1e-3) with relative steps: a zero leaf (a bias, an adapter's W_up) moves
    lr·1e-3 relative, lr absolute."""
    lr = 0.01
    tx = optim.make_optimizer("adafactor", optax.constant_schedule(lr), relative_step=relative)
    params = {"bias": jnp.zeros((5,)), "kernel": jnp.full((3, 5), 2.0)}
    grads = {"bias": jnp.asarray([0.5, -2.0, 1e-3, 3.0, -0.1]),
             "kernel": jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)), jnp.float32)}
    updates, _ = tx.update(grads, tx.init(params), params)
    for name, scale in (("bias", 1e-3), ("kernel", 2.0)):
        want = -lr * np.sign(np.asarray(grads[name])) * (scale if relative else 1.0)
        np.testing.assert_allclose(np.asarray(updates[name]), want, rtol=1e-4)
