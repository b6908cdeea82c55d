"""RoPE, norms, attention normalisations, MHA and GAU against tests/reference.py (NumPy)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gau_jax.layers import gau as gau_layer
from gau_jax.layers.attention import MultiHeadAttention, normalize_attention
from gau_jax.layers.gau import GatedAttentionUnit
from gau_jax.layers.norms import ScaleOffset, rms_norm
from gau_jax.layers.rope import apply_rope
from tests import reference as ref

jax.config.update("jax_enable_x64", False)

# Compiled as whole programs (eagerly JAX compiles every primitive on its own); the error tests
# below call the plain functions. The parametrised MHA / GAU init-and-apply tests stay eager: their
# primitives' compilations are shared across parametrisations, whole programs would not be.
_rope = jax.jit(apply_rope)
_normalize = jax.jit(normalize_attention, static_argnames=("kind", "fixed_n", "plus_min_n"))


def _to_np(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def _mask(lengths, n):
    return (np.arange(n)[None] < np.asarray(lengths)[:, None]).astype(np.int32)


def test_rope_matches_numpy_adjacent_pairs():
    x = np.random.default_rng(0).normal(size=(2, 7, 3, 16)).astype(np.float32)
    np.testing.assert_allclose(_rope(jnp.asarray(x)), ref.rope(x), atol=1e-5)
    pos = np.array([[3, 1, 4, 1, 5, 9, 2], [0, 10, 20, 30, 40, 50, 60]])
    np.testing.assert_allclose(_rope(jnp.asarray(x), jnp.asarray(pos)),
                               ref.rope(x, pos), atol=1e-4)


def test_rope_dot_product_depends_on_offset_only():
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(1, 1, 32)), rng.normal(size=(1, 1, 32))

    def dot(m, n):
        qm = _rope(jnp.asarray(q, jnp.float32), jnp.array([m]))
        kn = _rope(jnp.asarray(k, jnp.float32), jnp.array([n]))
        return float(jnp.sum(qm * kn))

    for delta in (0, 3, -5, 17):
        vals = [dot(m, m - delta) for m in (20, 45, 300, 1000)]
        np.testing.assert_allclose(vals, vals[0], rtol=2e-4, atol=2e-4)
    assert abs(dot(10, 7) - dot(10, 2)) > 1e-3  # and does depend on the offset


def test_rope_rejects_odd_dimension():
    with pytest.raises(ValueError, match="even"):
        apply_rope(jnp.ones((1, 3, 5)))


def test_rope_bf16_input_keeps_dtype_and_accuracy():
    x = np.random.default_rng(2).normal(size=(1, 600, 8)).astype(np.float32)
    y = _rope(jnp.asarray(x, jnp.bfloat16))
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float32), ref.rope(x), atol=0.05)


def test_rms_norm_and_scale_offset():
    x = np.random.default_rng(3).normal(size=(4, 5, 6)).astype(np.float32)
    np.testing.assert_allclose(rms_norm(jnp.asarray(x)), ref.rms_norm(x), rtol=1e-5)
    np.testing.assert_allclose(rms_norm(jnp.zeros((2, 3))), 0.0)  # ε keeps zero finite
    so = ScaleOffset(use_bias=True)
    # eager on purpose: compiled, x·γ + β becomes one fused multiply-add (1 ulp off 3x + 2)
    v = so.init(jax.random.key(0), jnp.asarray(x))
    np.testing.assert_allclose(so.apply(v, jnp.asarray(x)), x)  # γ=1, β=0 at init
    v = jax.tree.map(lambda t: t + 2.0, v)
    np.testing.assert_allclose(so.apply(v, jnp.asarray(x)), 3 * x + 2, rtol=1e-6)


@pytest.mark.parametrize("kind", ["softmax", "softmax_plus", "relu2"])
def test_normalisations_match_numpy(kind):
    rng = np.random.default_rng(4)
    a = rng.normal(size=(3, 2, 9, 9)) * 3
    mask = _mask([9, 5, 1], 9)[:, None, None, :]
    got = _normalize(jnp.asarray(a, jnp.float32), jnp.asarray(mask), kind)
    np.testing.assert_allclose(got, ref.normalize(a, mask.astype(bool), kind), atol=1e-5)
    assert np.all(np.asarray(got)[..., :][np.broadcast_to(mask == 0, a.shape)] == 0)


def test_softmax_plus_equals_softmax_at_512_only():
    a = jnp.asarray(np.random.default_rng(5).normal(size=(1, 4, 600)), jnp.float32)
    for n, same in ((512, True), (64, False), (600, False)):
        m = jnp.asarray(_mask([n], 600))[:, None, :]
        sp = _normalize(a, m, "softmax_plus")
        sm = _normalize(a, m, "softmax")
        assert np.allclose(sp, sm, atol=1e-6) == same, n


def test_softmax_plus_uses_per_row_visible_count_not_padded_length():
    a = jnp.asarray(np.random.default_rng(6).normal(size=(1, 2, 40)), jnp.float32)
    m = jnp.asarray(_mask([30], 40))[:, None, :]
    got = _normalize(a, m, "softmax_plus")
    scaled = np.asarray(a[..., :30]) * np.log(30) / np.log(512)
    want = np.exp(scaled) / np.exp(scaled).sum(-1, keepdims=True)
    np.testing.assert_allclose(got[..., :30], want, rtol=1e-5)
    fixed = _normalize(a, m, "relu2", fixed_n=64)
    np.testing.assert_allclose(fixed[..., :30], np.maximum(a[..., :30], 0) ** 2 / 64, rtol=1e-6)


def test_unknown_normalisation_is_named():
    with pytest.raises(ValueError, match="'sparsemax'"):
        normalize_attention(jnp.zeros((1, 2, 2)), jnp.ones((1, 1, 2)), "sparsemax")


@pytest.mark.parametrize("kind", ["softmax", "softmax_plus", "relu2"])
@pytest.mark.parametrize("use_bias", [False, True])
def test_multi_head_attention_vs_reference(kind, use_bias):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 11, 24)).astype(np.float32)
    mask = _mask([11, 6], 11)
    mod = MultiHeadAttention(num_heads=3, head_size=8, normalization=kind, use_bias=use_bias)
    v = mod.init(jax.random.key(0), jnp.asarray(x), jnp.asarray(mask))
    if use_bias:  # make the biases matter
        v = jax.tree.map(lambda t: t + 0.1 if t.ndim == 1 else t, v)
    got = mod.apply(v, jnp.asarray(x), jnp.asarray(mask))
    want = ref.mha(x, mask, _to_np(v["params"]), 3, kind, bias=use_bias)
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("kind", ["softmax", "softmax_plus", "relu2"])
@pytest.mark.parametrize("chunk", [0, 4])
def test_gau_vs_reference(kind, chunk):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 13, 16)).astype(np.float32)
    mask = _mask([13, 7], 13)
    mod = GatedAttentionUnit(expansion=32, key_size=8, normalization=kind, chunk_size=chunk)
    v = mod.init(jax.random.key(1), jnp.asarray(x), jnp.asarray(mask))
    v = jax.tree.map(lambda t: t * 1.7 if t.ndim == 1 else t, v)  # non-trivial γ
    got = mod.apply(v, jnp.asarray(x), jnp.asarray(mask))
    want = ref.gau(x, mask, _to_np(v["params"]), 32, 8, kind, chunk)
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.slow
def test_chunked_gau_is_linear_in_length():
    """Its compiled temp memory grows ~linearly, the quadratic GAU's ~quadratically."""
    def temp_bytes(chunk, n):
        mod = GatedAttentionUnit(expansion=32, key_size=16, chunk_size=chunk)
        x, m = jnp.ones((1, n, 16)), jnp.ones((1, n), jnp.int32)
        v = mod.init(jax.random.key(0), x[:, :8], m[:, :8])
        f = jax.jit(mod.apply).lower(v, x, m).compile()
        return f.memory_analysis().temp_size_in_bytes

    lin = temp_bytes(64, 4096) / temp_bytes(64, 1024)
    quad = temp_bytes(0, 4096) / temp_bytes(0, 1024)
    assert lin < 6 and quad > 10, (lin, quad)


def test_softmax_plus_min_n_clamps_short_rows_only():
    a = jnp.asarray(np.random.default_rng(9).normal(size=(2, 3, 40)), jnp.float32)
    m = jnp.asarray(_mask([9, 40], 40))[:, None, :]
    got = np.asarray(_normalize(a, m, "softmax_plus", plus_min_n=16))
    s = np.asarray(a[0, :, :9]) * np.log(16) / np.log(512)  # n = 9 clamped to 16
    np.testing.assert_allclose(got[0, :, :9], np.exp(s) / np.exp(s).sum(-1, keepdims=True),
                               rtol=1e-5)
    np.testing.assert_allclose(got[1], _normalize(a, m, "softmax_plus")[1], rtol=1e-6)


def _plain_gated(u, o, w):
    return jnp.einsum("...e,ed->...d", u * o, w)


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.bfloat16, 2e-2)])
def test_gated_matmul_equals_autodiff_of_its_formula(dtype, tol):
    """Value and all three gradients of the custom-VJP (u ⊙ o)·W against jax.grad of the plain
    product, under jit, for a cotangent that is not all ones."""
    rng = np.random.default_rng(3)
    u, o = (jnp.asarray(rng.normal(size=(2, 5, 12)), dtype) for _ in range(2))
    w = jnp.asarray(rng.normal(size=(12, 7)), dtype)
    c = jnp.asarray(rng.normal(size=(2, 5, 7)), dtype)

    def grads(f):
        return jax.jit(jax.value_and_grad(lambda *a: jnp.sum(f(*a) * c).astype(jnp.float32),
                                          argnums=(0, 1, 2)))(u, o, w)

    (got_v, got_g), (want_v, want_g) = grads(gau_layer.gated_matmul), grads(_plain_gated)
    f32 = lambda t: np.asarray(t, np.float32)  # noqa: E731
    np.testing.assert_allclose(f32(got_v), f32(want_v), rtol=tol, atol=tol)
    for name, x, y in zip("uow", got_g, want_g, strict=True):
        assert x.dtype == y.dtype, name
        np.testing.assert_allclose(f32(x), f32(y), rtol=tol, atol=tol * 10, err_msg=name)


@pytest.mark.parametrize("use_bias", [False, True])
def test_gated_output_params_are_a_dense_layers(use_bias):
    """Same names, shapes and initial values as nn.Dense: checkpoints and converters see no
    difference."""
    u = jnp.ones((2, 3, 12))
    got = gau_layer.GatedOutput(7, use_bias).init(jax.random.key(4), u, u)
    want = nn.Dense(7, use_bias=use_bias).init(jax.random.key(4), u)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("chunk", [0, 4])
def test_gau_gradients_equal_the_plain_output_projection(chunk, monkeypatch):
    """Whole-layer gradients (params and input) with the custom VJP vs with autodiff of the
    plain (u ⊙ o)·W_o, padded batch, biases on."""
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(2, 9, 16)), jnp.float32)
    mask = jnp.asarray(_mask([9, 4], 9))
    mod = GatedAttentionUnit(expansion=24, key_size=8, chunk_size=chunk, use_bias=True)
    v = jax.jit(mod.init)(jax.random.key(2), x, mask)
    loss = lambda v, x: jnp.sum(jnp.sin(mod.apply(v, x, mask)))  # noqa: E731
    got = jax.jit(jax.grad(loss, argnums=(0, 1)))(v, x)
    monkeypatch.setattr(gau_layer, "gated_matmul", _plain_gated)
    want = jax.jit(jax.grad(loss, argnums=(0, 1)))(v, x)  # a new function: traced again
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want),
                            strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=str(path))


def test_gau_backward_does_not_keep_the_gated_product(monkeypatch):
    """In a residual stack of three GAU layers, the gradient's compiled temp memory drops by at
    least one [n, e] float32 buffer against the plain output projection, which keeps u ⊙ o alive
    for dW_o in every layer whose backward pass waits (measured: two buffers, layers 1 and 2)."""
    n, e, d = 256, 512, 256
    mod = GatedAttentionUnit(expansion=e, key_size=32)
    x, m = jnp.ones((1, n, d)), jnp.ones((1, n), jnp.int32)
    init = jax.jit(mod.init)
    layers = [init(jax.random.key(i), x[:, :8], m[:, :8]) for i in range(3)]

    def loss(layers, x):
        for v in layers:
            x = x + mod.apply(v, x, m)
        return jnp.sum(x ** 2)

    def temp():
        g = jax.jit(jax.grad(loss, argnums=(0, 1)))
        return g.lower(layers, x).compile().memory_analysis().temp_size_in_bytes

    custom = temp()
    monkeypatch.setattr(gau_layer, "gated_matmul", _plain_gated)
    plain = temp()
    assert plain - custom >= n * e * 4, (custom, plain)
