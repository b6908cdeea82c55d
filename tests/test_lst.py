"""LST: frozen trunk (zero grads, no optimizer state, bitwise unchanged), fusion rules by hand,
side network learns, compiled memory below full fine-tuning, bad configs rejected."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gau_jax.models import build_encoder, classifier, get_model_config
from gau_jax.models.encoder import Block, encoder_config
from gau_jax.models.lst import (
    LSTConfig,
    build_model,
    feature_indices,
    ladder_layers,
    side_config,
    trainable_side,
)
from gau_jax.models.presets import ConfigError
from gau_jax.tasks.losses import classification_sums_fn
from gau_jax.train.optim import make_optimizer
from gau_jax.train.state import create_state
from gau_jax.train.step import make_train_step


def tiny(block="gau", **kw):
    c = get_model_config("gau_alpha_tiny" if block == "gau" else "roformer_v2_tiny")
    c.update(vocab_size=50, **kw)
    return c


def batch(b=8, n=12, seed=0, vocab=50):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(n // 2, n + 1, size=(b, 1))
    mask = (np.arange(n)[None] < lengths).astype(np.int32)
    ids = rng.integers(5, vocab, size=(b, n)).astype(np.int32) * mask
    labels = (ids[:, 1] % 2).astype(np.int32)  # learnable: parity of the first real token
    return {"input_ids": ids, "attention_mask": mask, "segment_ids": np.zeros_like(ids),
            "labels": labels, "weights": np.ones(b, np.float32)}


def init(model, b):
    """model.init compiled as one program (eagerly JAX compiles every primitive on its own)."""
    return jax.jit(model.init)(jax.random.PRNGKey(0), b["input_ids"],
                               b["attention_mask"])["params"]


def jit_apply(model):
    """model.apply compiled as one program; the Python-valued arguments are static."""
    return jax.jit(model.apply, static_argnames=("output_hidden_states", "deterministic",
                                                 "return_logits", "mutable"))


def test_default_ladder_layers_and_bad_input():
    trunk = encoder_config(tiny(num_layers=12))
    assert ladder_layers(trunk, LSTConfig(side_layers=4)) == (2, 5, 8, 11)
    assert ladder_layers(trunk, LSTConfig()) == tuple(range(12))
    assert feature_indices(trunk, LSTConfig(side_layers=3)) == (0, 4, 8, 12)
    with pytest.raises(ConfigError, match="reduction=5"):
        side_config(trunk, LSTConfig(reduction=5))
    with pytest.raises(ConfigError, match=r"ladder_layers \[12\]"):
        ladder_layers(trunk, LSTConfig(ladder_layers=(3, 12)))
    with pytest.raises(ConfigError, match="fusion"):
        build_model(tiny(), 2, {"fusion": "mul"})
    with pytest.raises(ConfigError, match="unknown field"):
        build_model(tiny(), 2, {"reductoin": 4})


@pytest.mark.parametrize("fusion,side_layers", [("gated", 1), ("additive", 1), ("gated", 2)])
@pytest.mark.slow
def test_fusion_rules_match_hand_computation(fusion, side_layers):
    lst = LSTConfig(reduction=4, side_layers=side_layers, fusion=fusion, dropout=0.0,
                    trunk_dtype="float32")  # the float32 hand computation below
    model = build_model(tiny(num_layers=2), 3, lst)
    b = batch()
    p = init(model, b)
    if fusion == "gated":
        assert float(jax.nn.sigmoid(p["gate_0"] / 0.1)) == 0.5
    trunk = build_encoder(tiny(num_layers=2, hidden_dropout=0.0, attention_dropout=0.0))
    hs = jit_apply(trunk)({"params": p["encoder"]}, b["input_ids"], b["attention_mask"],
                          output_hidden_states=True, return_logits=False).hidden_states
    s = hs[0] @ p["down_0"]["kernel"]
    block = jit_apply(Block(side_config(model.trunk, lst)))
    for i, layer in enumerate(ladder_layers(model.trunk, lst)):  # 1 side layer: ℓ(0) = 1 → h_2
        ladder = hs[layer + 1] @ p[f"down_{i + 1}"]["kernel"]
        run = lambda x, i=i: block({"params": p[f"side_{i}"]}, x, b["attention_mask"],
                                   None, jnp.float32(1.0))[0]
        s = run(0.5 * s + 0.5 * ladder) if fusion == "gated" else run(s) + ladder
    want = s[:, 0] @ p["classifier"]["kernel"] + p["classifier"]["bias"]
    got = jit_apply(model)({"params": p}, b["input_ids"], b["attention_mask"], b["segment_ids"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fusion,remat", [("gated", "full"), ("additive", "none")])
@pytest.mark.slow
def test_scanned_side_matches_unrolled(fusion, remat):
    """lst.scan_layers only changes how the side loop compiles: same params, outputs, grads
    (dropout on: both draw layer i's mask from the same key). The trunk runs in float32 here: in
    bfloat16 the two compilations may round a trunk gradient one bf16 ulp apart."""
    lst = {"reduction": 4, "side_layers": 3, "fusion": fusion, "remat": remat, "head": "gated",
           "trunk_dtype": "float32"}
    scanned, unrolled = (build_model(tiny(num_layers=3), 2, {**lst, "scan_layers": s})
                         for s in (True, False))
    b = batch()
    p = init(scanned, b)
    assert jax.tree.structure(p) == jax.tree.structure(init(unrolled, b))

    def loss(p, model):
        logits = model.apply({"params": p}, b["input_ids"], b["attention_mask"],
                             b["segment_ids"], deterministic=False,
                             rngs={"dropout": jax.random.PRNGKey(3)})
        return jnp.sum(logits * jnp.arange(1.0, 3.0))

    value_and_grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    (want, g_want), (got, g_got) = (value_and_grad(p, m) for m in (unrolled, scanned))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    for a, c in zip(jax.tree.leaves(g_got), jax.tree.leaves(g_want), strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_trunk_features_are_deterministic():
    model = build_model(tiny(hidden_dropout=0.3, attention_dropout=0.3, num_layers=2), 2,
                        {"reduction": 4})
    b = batch()
    p = init(model, b)
    apply = jit_apply(model)
    f = [apply({"params": p}, b["input_ids"], b["attention_mask"], b["segment_ids"],
               deterministic=False, rngs={"dropout": jax.random.PRNGKey(k)},
               mutable=("intermediates",))[1]["intermediates"]["trunk_features"][0]
         for k in range(2)]
    np.testing.assert_array_equal(f[0], f[1])
    assert f[0].shape == (3, 8, 12, 64)


@pytest.mark.parametrize("side_block", ["gau", "roformer_v2"])
@pytest.mark.slow
def test_trunk_frozen_side_learns(side_block):
    lst = {"reduction": 4, "side_block": side_block, "side_heads": 2, "dropout": 0.0}
    model = build_model(tiny(side_block, num_layers=2), 2, {**lst, "side_layers": 2})
    b = batch(b=16)
    params = init(model, b)
    sums = classification_sums_fn(model)

    def loss(p):
        s = sums(p, b, jax.random.PRNGKey(1), None, True)
        return s["loss"] / s["weight"]

    g = jax.jit(jax.grad(loss))(params)
    for leaf in jax.tree_util.tree_leaves(g["encoder"]):
        assert not np.any(np.asarray(leaf)), "a trunk gradient is nonzero"
    tx = make_optimizer("adamw", optax.constant_schedule(3e-3), trainable=trainable_side)
    state = create_state(params, tx, 0)
    opt_shapes = {x.shape for x in jax.tree_util.tree_leaves(state.opt_state) if x.ndim}
    trunk_shapes = {x.shape for x in jax.tree_util.tree_leaves(params["encoder"])}
    side_leaves = sum(x.size for k, v in params.items() if k != "encoder"
                      for x in jax.tree_util.tree_leaves(v))
    opt_leaves = sum(x.size for x in jax.tree_util.tree_leaves(state.opt_state))
    assert opt_leaves <= 2 * side_leaves + 8, "optimizer state holds more than the side network"
    assert not (trunk_shapes - {x.shape for k, v in params.items() if k != "encoder"
                                for x in jax.tree_util.tree_leaves(v)}) & opt_shapes
    if side_block != "gau":  # the training run below once is enough (keeps the suite fast)
        return
    step = jax.jit(make_train_step(sums, tx))
    losses = []
    for _ in range(20):
        state, m = step(state, b)
        losses.append(float(m["loss"]))
    assert losses[-1] < 0.5 * losses[0], losses
    for a, c in zip(jax.tree_util.tree_leaves(params["encoder"]),
                    jax.tree_util.tree_leaves(state.params["encoder"]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


def _compiled(model, trainable, b):
    params = jax.eval_shape(lambda: init(model, b))
    tx = make_optimizer("adamw", optax.constant_schedule(1e-3), trainable=trainable)
    state = jax.eval_shape(lambda p: create_state(p, tx, 0), params)
    step = make_train_step(classification_sums_fn(model), tx)
    return jax.jit(step).lower(state, b).compile().memory_analysis()


@pytest.mark.slow
def test_compiled_temp_memory_below_full_finetuning():
    cfg = tiny("roformer_v2", hidden_size=128, num_heads=4, key_size=32, intermediate_size=512)
    b = batch(b=8, n=64)
    full = _compiled(classifier(build_encoder(cfg), 2), None, b)
    lst = _compiled(build_model(cfg, 2, {"reduction": 8, "side_block": "gau"}), trainable_side, b)
    assert lst.temp_size_in_bytes < 0.5 * full.temp_size_in_bytes, (lst, full)


@pytest.mark.slow
def test_build_method_plugin():
    from configs import finetune
    from gau_jax.train import methods

    c = finetune.get_config("method=lst")
    c.lst.update(reduction=4, side_layers=2)
    spec = methods.get("lst").build(c, tiny(), 3)
    assert spec.encoder_path == ("encoder",)
    p = init(spec.model, batch())
    mask = spec.trainable(p)
    assert not any(jax.tree_util.tree_leaves(mask["encoder"]))
    assert all(jax.tree_util.tree_leaves(mask["classifier"]))
