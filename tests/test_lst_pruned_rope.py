"""A side block pruned from the trunk: lst.prune_form "exact" keeps the trunk's RoPE frequencies
and kernels, "side" (default) the side's own frequencies and kernels × √r; per-example Fisher.

r = 1: the pruned side block is the trunk block (outputs equal), in either form. r > 1, "exact":
the side's attention
logits q·k equal the trunk's restricted to the kept channels, Σ_{c kept} RoPE(q)_c·RoPE(k)_c,
computed in NumPy from the trunk's params (tests/reference.py's RoPE at the trunk's key size).
The kept pairs come from random importance scores, so they are not the pairs j·r at which a
side block's own RoPE (θ_j = base^(−2j/(k/r))) would happen to agree with the trunk."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gau_jax.layers import attention as attention_lib
from gau_jax.layers import gau as gau_lib
from gau_jax.models import get_model_config
from gau_jax.models.encoder import Block, Encoder, encoder_config
from gau_jax.models.lst import LSTConfig, side_config, trainable_side
from gau_jax.models.lst_init import fisher_scores, pruned_side_params, residual_channels
from tests import reference as ref


def trunk_cfg(block, norm, use_bias=False):
    c = get_model_config("gau_alpha_tiny" if block == "gau" else "roformer_v2_tiny")
    c.update(vocab_size=40, num_layers=2, hidden_size=32, intermediate_size=64,
             key_size=16 if block == "gau" else 8, attention_norm=norm, scan_layers=False,
             hidden_dropout=0.0, attention_dropout=0.0, use_bias=use_bias)
    if block != "gau":
        c.num_heads = 4
    return encoder_config(c)


def pruned(block, norm, r, seed=0, use_bias=False, form="exact"):
    trunk = trunk_cfg(block, norm, use_bias)
    lst = LSTConfig(reduction=r, min_side_width=0, side_block=block, dropout=0.0,
                    side_heads=trunk.num_heads if block != "gau" else 0, prune_form=form)
    params = Encoder(trunk).init(jax.random.PRNGKey(seed), jnp.ones((1, 8), jnp.int32))["params"]
    keys = iter(jax.random.split(jax.random.PRNGKey(seed + 1), 256))
    params = jax.tree_util.tree_map_with_path(  # distinct q / k scales, biases (init: 1, 0)
        lambda p, x: jax.random.uniform(next(keys), x.shape, minval=0.5, maxval=1.5)
        if getattr(p[-1], "key", "") in ("scale", "bias") else x, params)
    scores = jax.tree.map(lambda x: np.asarray(jax.random.uniform(next(keys), x.shape)), params)
    side = pruned_side_params(params, scores, trunk, lst)
    return trunk, lst, params, scores, side


def inputs(d, b=2, n=10, seed=3):
    x = np.random.default_rng(seed).normal(size=(b, n, d)).astype(np.float32)
    mask = np.ones((b, n), np.int32)
    mask[1, 7:] = 0
    return x, mask


CASES = [("gau", "softmax_plus"), ("gau", "softmax"), ("roformer_v2", "softmax"),
         ("roformer_v2", "softmax_plus")]


@pytest.mark.parametrize("form", ["exact", "side"])
@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("block,norm", CASES)
def test_pruned_side_block_at_r1_is_the_trunk_block(block, norm, use_bias, form):
    """With model.use_bias (the trunk BitFit also starts from) every bias is passed on too."""
    trunk, lst, params, _, side = pruned(block, norm, 1, use_bias=use_bias, form=form)
    assert ("bias" in side["side_0"][next(iter(side["side_0"]))]["output"]) == use_bias
    x, mask = inputs(trunk.hidden_size)
    scale = jnp.float32(1.0)
    want = Block(trunk).apply({"params": params["layers_0"]}, x, mask, None, scale)[0]
    got = Block(side_config(trunk, lst), rope_param=True).apply(
        {"params": side["side_0"]}, x, mask, None, scale)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _record_logits(monkeypatch, module):
    """Capture the scores each normalize_attention call of `module` receives."""
    seen, real = [], module.normalize_attention

    def spy(scores, *args, **kwargs):
        seen.append(np.asarray(scores, np.float64))
        return real(scores, *args, **kwargs)

    monkeypatch.setattr(module, "normalize_attention", spy)
    return seen


def _trunk_qk(block, trunk, layer, x):
    """The trunk's RoPE-rotated q, k (NumPy, float64): GAU [b, n, s], MHA [b, n, h, k]."""
    x = np.asarray(x, np.float64)
    if block == "gau":
        g = layer["gau"]
        e = trunk.intermediate_size
        z = ref.swish(x @ np.asarray(g["uvz"]["kernel"], np.float64))[..., 2 * e:]
        return (ref.rope(z * np.asarray(g["q_scale"]["scale"])),
                ref.rope(z * np.asarray(g["k_scale"]["scale"])))
    a, (b, n, _) = layer["attention"], x.shape
    proj = lambda name: (x @ np.asarray(a[name]["kernel"], np.float64)).reshape(
        b, n, trunk.num_heads, trunk.key_size)
    return ref.rope(proj("query")), ref.rope(proj("key"))


@pytest.mark.parametrize("block,norm", CASES)
def test_pruned_side_logits_equal_the_trunks_on_the_kept_channels(block, norm, monkeypatch):
    r = 2
    trunk, lst, params, scores, side = pruned(block, norm, r)
    cfg = side_config(trunk, lst)
    res = residual_channels(scores, trunk, cfg.hidden_size)
    x_side, mask = inputs(cfg.hidden_size)
    x = np.zeros(x_side.shape[:2] + (trunk.hidden_size,), np.float32)
    x[..., res] = x_side  # the trunk input the side sees: zero outside the kept channels R
    module = gau_lib if block == "gau" else attention_lib
    seen = _record_logits(monkeypatch, module)
    Block(cfg, rope_param=True).apply({"params": side["side_0"]}, x_side, mask, None,
                                      jnp.float32(1.0))
    got = seen[-1] * np.sqrt(cfg.key_size)  # the side's q·k (it divides by √(k/r))
    q, k = _trunk_qk(block, trunk, params["layers_0"], x)
    if block == "gau":  # kept Z channels: the side's q_scale is the trunk's at those channels
        kept = [int(np.flatnonzero(params["layers_0"]["gau"]["q_scale"]["scale"] == v)[0])
                for v in np.asarray(side["side_0"]["gau"]["q_scale"]["scale"])]
        want = np.einsum("bns,bms->bnm", q[..., kept], k[..., kept])
    else:  # kept per-head channels: the side's query columns are the trunk's at those columns
        wq, sq = (np.asarray(params["layers_0"]["attention"]["query"]["kernel"]),
                  np.asarray(side["side_0"]["attention"]["query"]["kernel"]))
        cols = [int(np.flatnonzero(np.all(np.isclose(wq[res], sq[:, j][:, None]), 0))[0])
                for j in range(sq.shape[1])]
        cols = np.asarray(cols).reshape(trunk.num_heads, -1) % trunk.key_size
        want = np.stack([np.einsum("bqk,bmk->bqm", q[:, :, h][..., cols[h]],
                                   k[:, :, h][..., cols[h]]) for h in range(trunk.num_heads)], 1)
    assert not np.allclose(side["side_0"][("gau" if block == "gau" else "attention")]
                           ["rope_inv_freq"], cfg.rope_base ** (
                               -np.arange(cfg.key_size // 2) * 2.0 / cfg.key_size))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("block,norm", CASES[::2])
def test_side_form_scales_kernels_by_sqrt_r_and_turns_at_the_sides_own_frequencies(block, norm):
    """prune_form="side" (the default) = "exact" with every pruned kernel × √(fan_in / kept
    rows) = √r and rope_inv_freq = base^(−2j/(k/r)); ladders, biases and scales as "exact"."""
    r = 4
    assert LSTConfig().prune_form == "side"
    exact = pruned(block, norm, r, use_bias=True)[-1]
    trunk, lst, _, _, side = pruned(block, norm, r, use_bias=True, form="side")
    cfg = side_config(trunk, lst)
    own = cfg.rope_base ** (-np.arange(cfg.key_size // 2) * 2.0 / cfg.key_size)
    flat_side = dict(jax.tree_util.tree_flatten_with_path(side)[0])
    for path, want in jax.tree_util.tree_flatten_with_path(exact)[0]:
        got, name = np.asarray(flat_side[path]), path[-1].key
        want = np.asarray(want)
        if name == "kernel" and path[0].key.startswith("side_"):
            want = want * np.sqrt(r)
        elif name == "rope_inv_freq":
            assert not np.allclose(want, np.broadcast_to(own, want.shape))
            want = np.broadcast_to(own, want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=jax.tree_util.keystr(path))


def test_random_side_rope_param_is_the_default_rope_and_frozen():
    """A randomly initialised side block's rope_inv_freq = base^(−2i/k): RoPE as before."""
    trunk = trunk_cfg("gau", "softmax_plus")
    cfg = side_config(trunk, LSTConfig(reduction=2, min_side_width=0, dropout=0.0))
    x, mask = inputs(cfg.hidden_size)
    p = Block(cfg, rope_param=True).init(jax.random.PRNGKey(0), x, mask, None, jnp.float32(1))
    inv = np.asarray(p["params"]["gau"]["rope_inv_freq"])
    np.testing.assert_allclose(inv, 1e4 ** (-np.arange(cfg.key_size // 2) * 2.0 / cfg.key_size),
                               rtol=1e-6)
    plain = {k: v for k, v in p["params"]["gau"].items() if k != "rope_inv_freq"}
    np.testing.assert_allclose(
        Block(cfg, rope_param=True).apply(p, x, mask, None, jnp.float32(1))[0],
        Block(cfg).apply({"params": {"gau": plain}}, x, mask, None, jnp.float32(1))[0],
        rtol=1e-6, atol=1e-6)
    mask_tree = trainable_side({"side_0": p["params"], "encoder": {"w": 0}})
    assert mask_tree["side_0"]["gau"]["rope_inv_freq"] is False
    assert mask_tree["side_0"]["gau"]["uvz"]["kernel"] is True


def test_fisher_per_example_and_batch_mean_against_hand_computation():
    """ℓ_i = (w·x_i − y_i)², ∂ℓ_i/∂w = 2(w·x_i − y_i)·x_i; two examples in one batch."""
    w = np.array([0.5, -1.0], np.float32)
    xs = np.array([[1.0, 2.0], [3.0, -1.0]], np.float32)
    ys = np.array([1.0, 2.0], np.float32)
    loss = lambda p, b: jnp.mean((b["x"] @ p["w"] - b["y"]) ** 2)
    batch = {"input_ids": np.zeros((2, 1), np.int32), "x": xs, "y": ys}
    g = [2 * (w @ x - y) * x for x, y in zip(xs, ys, strict=True)]  # (-5, -10), (-2.5, ...)
    per = fisher_scores(loss, {"w": w}, [batch], num_examples=2)
    np.testing.assert_allclose(per["w"], g[0] ** 2 + g[1] ** 2, rtol=1e-6)
    mean = fisher_scores(loss, {"w": w}, [batch], num_examples=2, per_example=False)
    np.testing.assert_allclose(mean["w"], ((g[0] + g[1]) / 2) ** 2, rtol=1e-6)
    assert not np.allclose(per["w"], mean["w"])


def test_lst_config_fisher_and_trunk_dtype_fields():
    from gau_jax.models.lst import lst_config
    from gau_jax.models.presets import ConfigError

    assert LSTConfig().fisher_estimate == "per_example"
    assert dataclasses.replace(lst_config({"trunk_dtype": "float32"})).trunk_dtype == "float32"
    for bad in ({"fisher_estimate": "mean"}, {"trunk_dtype": "int4"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            lst_config(bad)
