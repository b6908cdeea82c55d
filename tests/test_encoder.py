"""Encoder: NumPy parity, padding invariance, parameter counts, init, scan/remat, bf16, errors."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gau_jax.models import (
    ConfigError,
    build_encoder,
    classifier,
    get_model_config,
    presets,
    stack_layers,
    unstack_layers,
)
from tests import reference as ref


def _tiny(preset, **over):
    cfg = get_model_config(preset)
    cfg.update(vocab_size=97, **over)
    return cfg


def _batch(b=2, n=10, lengths=(10, 6), vocab=97, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(b, n)).astype(np.int32)
    mask = (np.arange(n)[None] < np.asarray(lengths)[:, None]).astype(np.int32)
    seg = (np.arange(n)[None] >= 4).astype(np.int32).repeat(b, 0) * mask
    return jnp.asarray(ids * mask), jnp.asarray(mask), jnp.asarray(seg)


@functools.partial(jax.jit, static_argnums=0)
def _init(model, key, *args):
    """model.init as one compiled program, shared by the tests that build an equal model (a
    scanned model's eager init compiles its whole scan anyway, every time). apply stays eager:
    its primitives' compilations are reused across configs and shapes, a jitted apply's not."""
    return model.init(key, *args)


BLOCKS = [("roformer_v2_tiny", {}), ("gau_alpha_tiny", {}), ("gau_alpha_tiny", {"chunk_size": 4})]


@pytest.mark.parametrize("preset,over", BLOCKS)
def test_encoder_vs_numpy_reference(preset, over):
    cfg = _tiny(preset, scan_layers=False, **over)
    model = build_encoder(cfg)
    ids, mask, seg = _batch()
    params = model.init(jax.random.key(0), ids)["params"]
    out = model.apply({"params": params}, ids, mask, seg)
    h, logits = ref.encoder(np.asarray(ids), np.asarray(seg), np.asarray(mask),
                            jax.tree.map(lambda x: np.asarray(x, np.float64), params), cfg)
    m = np.asarray(mask, bool)
    np.testing.assert_allclose(np.asarray(out.last_hidden_state)[m], h[m], atol=1e-4)
    np.testing.assert_allclose(np.asarray(out.logits)[m], logits[m], atol=1e-3)


@pytest.mark.parametrize("norm", ["softmax", "softmax_plus", "relu2"])
@pytest.mark.parametrize("preset,over", BLOCKS)
@pytest.mark.slow
def test_outputs_at_real_positions_ignore_extra_padding(preset, over, norm):
    model = build_encoder(_tiny(preset, attention_norm=norm, **over))
    ids, mask, seg = _batch(n=10, lengths=(10, 6))
    params = _init(model, jax.random.key(0), ids)
    short = model.apply(params, ids, mask, seg).last_hidden_state
    pad = lambda t: jnp.pad(t, ((0, 0), (0, 23)))
    long = model.apply(params, pad(ids), pad(mask), pad(seg)).last_hidden_state
    m = np.asarray(mask, bool)
    diff = np.abs(np.asarray(short)[m] - np.asarray(long)[:, :10][m]).max()
    assert diff < 1e-5, diff


def closed_form_params(c: ml_collections.ConfigDict) -> int:
    d, L, v = c.hidden_size, c.num_layers, c.vocab_size
    total = v * d + c.type_vocab_size * d
    if c.block == "gau":
        e, s = c.intermediate_size, c.key_size
        per = d * (2 * e + s) + 2 * s + e * d
        if c.use_bias:
            per += (2 * e + s) + 2 * s + d
        if c.chunk_size:
            per += 2 * s * (2 if c.use_bias else 1)
    else:
        hk, f = c.num_heads * c.key_size, c.intermediate_size
        per = 3 * d * hk + hk * d + 2 * d * f
        if c.use_bias:
            per += 3 * hk + d + f + d
    return total + L * per


@pytest.mark.parametrize("preset", presets.PRESETS)
def test_parameter_counts_match_closed_form(preset):
    cfg = get_model_config(preset)
    model = build_encoder(cfg)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 8), jnp.int32))
    count = sum(x.size for x in jax.tree.leaves(shapes))
    assert count == closed_form_params(cfg)


def test_parameter_counts_with_bias_and_chunks():
    for preset, over in [("roformer_v2_tiny", {"use_bias": True}),
                         ("gau_alpha_tiny", {"use_bias": True, "chunk_size": 8})]:
        cfg = _tiny(preset, **over)
        shapes = jax.eval_shape(build_encoder(cfg).init, jax.random.key(0),
                                jnp.ones((1, 8), jnp.int32))
        assert sum(x.size for x in jax.tree.leaves(shapes)) == closed_form_params(cfg)


def test_base_sizes_are_the_released_ones():
    # RoFormerV2 base ~94M and GAU-α base ~ the same budget (docs/math.md, presets).
    for preset in ("roformer_v2_base", "gau_alpha_base"):
        n = closed_form_params(get_model_config(preset))
        assert 90e6 < n < 100e6, (preset, n)


@pytest.mark.parametrize("preset", ["roformer_v2_small", "gau_alpha_base"])
@pytest.mark.slow
def test_initial_std_follows_su_rule(preset):
    cfg = get_model_config(preset)
    params = build_encoder(cfg).init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))["params"]
    L, order = cfg.num_layers, cfg.init_order
    kernels = {"/".join(str(k.key) for k in path): x for path, x in
               jax.tree_util.tree_flatten_with_path(params)[0]
               if path[-1].key in ("kernel", "embedding")}
    for name, x in kernels.items():
        x = np.asarray(x)
        fan = x.shape[-1] if "embedding" in name else x.shape[-2]
        want = L ** (-1 / order) / np.sqrt(fan)
        assert abs(x.std() / want - 1) < 0.05, (name, x.std(), want)
        assert np.abs(x).max() <= 2 * 1.13684723 * want * 1.0001  # truncated at ±2σ


@pytest.mark.parametrize("preset", ["roformer_v2_tiny", "gau_alpha_tiny"])
@pytest.mark.slow
def test_scan_unrolled_and_remat_agree(preset):
    ids, mask, seg = _batch()
    scanned = build_encoder(_tiny(preset))
    params = _init(scanned, jax.random.key(0), ids)["params"]
    base = scanned.apply({"params": params}, ids, mask, seg, output_hidden_states=True)
    flat = unstack_layers(params)
    assert jax.tree.structure(stack_layers(flat)) == jax.tree.structure(params)

    def loss(p, model):
        out = model.apply({"params": p}, ids, mask, seg)
        return jnp.mean(out.logits ** 2)

    grad = jax.jit(jax.grad(loss), static_argnums=1)
    g0 = grad(params, scanned)
    for over, p in [({"scan_layers": False}, flat), ({"remat": "full"}, params),
                    ({"remat": "dots", "scan_layers": False}, flat)]:
        model = build_encoder(_tiny(preset, **over))
        out = model.apply({"params": p}, ids, mask, seg, output_hidden_states=True)
        np.testing.assert_allclose(out.hidden_states, base.hidden_states, atol=1e-6)
        g = grad(p, model)
        g = stack_layers(g) if not over.get("scan_layers", True) else g
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g0), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)


def test_hidden_states_are_embeddings_then_each_layer():
    model = build_encoder(_tiny("gau_alpha_tiny"))
    ids, mask, seg = _batch()
    v = _init(model, jax.random.key(0), ids)
    out = model.apply(v, ids, mask, seg, output_hidden_states=True)
    assert out.hidden_states.shape == (5, 2, 10, 64)
    np.testing.assert_array_equal(out.hidden_states[-1], out.last_hidden_state)
    emb = v["params"]["embeddings"]
    h0 = ref.rms_norm(np.asarray(emb["token_embedding"]["embedding"])[np.asarray(ids)]
                      + np.asarray(emb["segment_embedding"]["embedding"])[np.asarray(seg)])
    np.testing.assert_allclose(out.hidden_states[0], h0, atol=1e-5)


@pytest.mark.parametrize("preset", ["roformer_v2_tiny", "gau_alpha_tiny"])
@pytest.mark.slow
def test_bfloat16_within_tolerance_of_float32(preset):
    ids, mask, seg = _batch()
    f32 = build_encoder(_tiny(preset))
    params = _init(f32, jax.random.key(0), ids)
    bf16 = build_encoder(_tiny(preset, dtype="bfloat16"))
    a = f32.apply(params, ids, mask, seg)
    b = bf16.apply(params, ids, mask, seg)
    assert b.last_hidden_state.dtype == jnp.bfloat16 and b.logits.dtype == jnp.float32
    m = np.asarray(mask, bool)
    err = np.abs(np.asarray(b.last_hidden_state, np.float32) - np.asarray(a.last_hidden_state))
    assert err[m].max() < 0.1 and err[m].mean() < 0.02, (err[m].max(), err[m].mean())


def test_residual_scale_zero_keeps_embeddings():
    model = build_encoder(_tiny("roformer_v2_tiny"))
    ids, mask, seg = _batch()
    v = _init(model, jax.random.key(0), ids)
    out = model.apply(v, ids, mask, seg, residual_scale=0.0, output_hidden_states=True)
    np.testing.assert_allclose(out.last_hidden_state, out.hidden_states[0], atol=1e-5)


@pytest.mark.slow
def test_dropout_needs_rng_and_is_off_when_deterministic():
    model = build_encoder(_tiny("gau_alpha_tiny"))
    ids, mask, seg = _batch()
    v = _init(model, jax.random.key(0), ids)
    a = model.apply(v, ids, mask, seg, deterministic=False, rngs={"dropout": jax.random.key(1)})
    b = model.apply(v, ids, mask, seg, deterministic=False, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(a.last_hidden_state, b.last_hidden_state)


def test_classifier_head_shapes_and_param_tree():
    enc = build_encoder(_tiny("roformer_v2_tiny"))
    clf = classifier(encoder=enc, num_classes=3)
    ids, mask, seg = _batch()
    v = _init(clf, jax.random.key(0), ids, mask, seg)
    assert set(v["params"]) == {"encoder", "classifier"}
    assert clf.apply(v, ids, mask, seg).shape == (2, 3)


@pytest.mark.parametrize("field,value,match", [
    ("hidden_size", 63, "not divisible by model.num_heads"),
    ("attention_norm", "sparsemax", "model.attention_norm"),
    ("key_size", 7, "key_size=7 is odd"),
    ("num_layers", -1, "model.num_layers must be positive"),
    ("block", "lstm", "model.block"),
    ("dtype", "float16", "model.dtype"),
    ("chunk_size", -4, "model.chunk_size"),
])
def test_bad_config_raises_naming_the_field(field, value, match):
    preset = "gau_alpha_tiny" if field in ("key_size",) else "roformer_v2_tiny"
    cfg = get_model_config(preset)
    cfg[field] = value
    with pytest.raises(ConfigError, match=match):
        build_encoder(cfg)


def test_unknown_preset_and_unknown_field():
    with pytest.raises(ConfigError, match="gau_beta"):
        get_model_config("gau_beta")
    cfg = get_model_config("gau_alpha_tiny").to_dict()
    cfg["hiden_size"] = 3
    with pytest.raises(ConfigError, match="hiden_size"):
        build_encoder(cfg)
