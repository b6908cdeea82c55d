"""Fused attention (jax.nn.dot_product_attention, attention_impl='cudnn'; on CPU its XLA
implementation) equals today's path (attention_impl='xla') — forward and gradients, padded
batches — for softmax, softmax_plus and softmax_plus with bert4keras' clamp / a fixed n; relu2
and mixed chunk attention are refused by name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gau_jax.layers.fused_attention import UnsupportedAttention, fused_attention, use_fused
from gau_jax.models import ConfigError, build_encoder, get_model_config
from tests import reference as ref

NORMS = [("softmax", {}), ("softmax_plus", {}),
         ("softmax_plus", {"softmax_plus_min_n": 16, "attention_fixed_n": 0}),
         ("softmax_plus", {"attention_fixed_n": 64})]


def _cfg(preset, norm, impl, **over):
    cfg = get_model_config(preset)
    cfg.update(vocab_size=61, num_layers=1, hidden_size=32, intermediate_size=48, key_size=16,
               num_heads=2 if preset.startswith("roformer") else 1, attention_norm=norm,
               attention_dropout=0.0, hidden_dropout=0.0, scan_layers=False,
               attention_impl=impl, **over)
    return cfg


def _batch(lengths=(9, 5, 1)):
    rng = np.random.default_rng(0)
    n = max(lengths)
    ids = rng.integers(5, 61, size=(len(lengths), n)).astype(np.int32)
    mask = (np.arange(n)[None] < np.asarray(lengths)[:, None]).astype(np.int32)
    return jnp.asarray(ids * mask), jnp.asarray(mask)


@pytest.mark.parametrize("norm,over", NORMS)
@pytest.mark.parametrize("preset", ["gau_alpha_tiny", "roformer_v2_tiny"])
def test_fused_equals_xla_path_forward_and_grads(preset, norm, over):
    ids, mask = _batch()
    xla, fused = (build_encoder(_cfg(preset, norm, impl, **over)) for impl in ("xla", "cudnn"))
    params = xla.init(jax.random.key(1), ids)["params"]
    real = np.asarray(mask, bool)

    def loss(model, p):
        h = model.apply({"params": p}, ids, mask).last_hidden_state
        return jnp.sum(jnp.where(mask[..., None] > 0, jnp.sin(3.0 * h), 0.0))

    ha = xla.apply({"params": params}, ids, mask).last_hidden_state
    hb = fused.apply({"params": params}, ids, mask).last_hidden_state
    np.testing.assert_allclose(np.asarray(hb)[real], np.asarray(ha)[real], atol=2e-5)
    ga, gb = (jax.grad(lambda p, m=m: loss(m, p))(params) for m in (xla, fused))
    for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-4, rtol=1e-4)


def test_fused_gau_attention_vs_numpy():
    """Values wider than keys (GAU: e > s, e not a multiple of s), a sample with no visible key."""
    rng = np.random.default_rng(2)
    q, k = rng.normal(size=(2, 2, 7, 1, 4)).astype(np.float32)
    v = rng.normal(size=(2, 7, 1, 10)).astype(np.float32)
    mask = np.array([[1] * 7, [0] * 7], np.int32)
    out = jax.jit(fused_attention, static_argnums=4)(  # one program, not one per primitive
        jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), jnp.asarray(mask), "softmax_plus")
    a = ref.normalize(q[0, :, 0] @ k[0, :, 0].T / 2.0, mask[0][None] > 0, "softmax_plus")
    np.testing.assert_allclose(np.asarray(out[0, :, 0]), a @ v[0, :, 0], atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out[1]), 0.0)


@pytest.mark.parametrize("over,field", [({"attention_norm": "relu2"}, "attention_norm"),
                                        ({"chunk_size": 4}, "chunk_size"),
                                        ({"attention_dropout": 0.1}, "attention_dropout")])
def test_fused_refuses_what_it_cannot_compute(over, field):
    cfg = _cfg("gau_alpha_tiny", "softmax_plus", "cudnn")
    cfg.update(over)
    with pytest.raises(ConfigError, match=f"attention_impl='cudnn'.*{field}"):
        build_encoder(cfg)
    with pytest.raises(UnsupportedAttention, match="relu2"):
        use_fused("cudnn", "relu2", 0, False, jnp.float32)
    with pytest.raises(UnsupportedAttention, match="chunk"):
        use_fused("cudnn", "softmax", 8, False, jnp.float32)
    with pytest.raises(UnsupportedAttention, match="relu2"):
        fused_attention(*(jnp.zeros((1, 2, 1, 4)),) * 3, jnp.ones((1, 2)), "relu2")


def test_auto_is_xla_path_off_gpu_and_for_relu2():
    assert not use_fused("auto", "relu2", 0, False, jnp.bfloat16)
    assert not use_fused("auto", "softmax", 4, False, jnp.bfloat16)
    assert use_fused("auto", "softmax", 0, False, jnp.bfloat16) == (
        jax.default_backend() == "gpu")
    build_encoder(_cfg("gau_alpha_tiny", "relu2", "auto", chunk_size=4))  # accepted
    with pytest.raises(ConfigError, match="attention_impl"):
        build_encoder(_cfg("gau_alpha_tiny", "softmax", "flash"))
