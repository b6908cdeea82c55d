"""Low precision where it is safe: LST's frozen trunk in bfloat16; lengths counted in float32."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gau_jax.data import synthetic
from gau_jax.layers.gau import GatedAttentionUnit, real_lengths
from gau_jax.models import get_model_config
from gau_jax.models.lst import build_model, cast_trunk, trainable_side
from gau_jax.tasks.losses import classification_sums_fn
from gau_jax.train.optim import make_optimizer
from gau_jax.train.state import create_state
from gau_jax.train.step import make_train_step

LOSS_RTOL = 0.02  # bfloat16 trunk vs float32 trunk: LST loss within 2 % (8-bit mantissa)


def test_real_length_is_counted_in_float32():
    lengths = jax.jit(real_lengths)
    mask = jnp.ones((2, 1001), jnp.bfloat16).at[1, 1000:].set(0)
    np.testing.assert_array_equal(lengths(mask), [1001.0, 1000.0])
    assert float(jnp.sum(jnp.ones(1001, jnp.bfloat16))) == 1000.0  # the bug it avoids
    np.testing.assert_array_equal(lengths(jnp.zeros((1, 4), jnp.int32)), [1.0])


@pytest.mark.slow
def test_mixed_chunk_gau_in_bfloat16_tracks_float32_at_length_1001():
    x = np.random.default_rng(0).normal(size=(1, 1001, 16)).astype(np.float32)
    mask = np.ones((1, 1001), np.int32)
    gau = GatedAttentionUnit(expansion=16, key_size=8, chunk_size=128)
    p = jax.jit(gau.init)(jax.random.PRNGKey(0), x, mask)
    want = jax.jit(gau.apply)(p, x, mask)
    got = jax.jit(GatedAttentionUnit(expansion=16, key_size=8, chunk_size=128,
                                     dtype=jnp.bfloat16).apply)(p, x, mask)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=0.05, atol=0.05)


def _lst(trunk_dtype):
    c = get_model_config("gau_alpha_tiny")
    c.update(vocab_size=40, num_layers=2, hidden_size=32, intermediate_size=64, key_size=16)
    return build_model(c, 2, {"reduction": 2, "min_side_width": 0, "side_layers": 2,
                              "dropout": 0.0, "trunk_dtype": trunk_dtype})


@pytest.mark.slow
def test_bfloat16_trunk_lst_loss_close_to_float32_and_side_stays_float32():
    b = synthetic.classification_batch(8, 16, 40, seed=0)
    f32, bf16 = _lst("float32"), _lst("bfloat16")
    params = jax.jit(f32.init)(jax.random.PRNGKey(0), b["input_ids"])["params"]
    low = cast_trunk(params, bf16.lst)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(low["encoder"]))
    assert all(x.dtype == jnp.float32 for k, v in low.items() if k != "encoder"
               for x in jax.tree.leaves(v))
    losses = {}
    for name, model, p in (("f32", f32, params), ("bf16", bf16, low)):
        tx = make_optimizer("adamw", optax.constant_schedule(1e-2), trainable=trainable_side)
        step = jax.jit(make_train_step(classification_sums_fn(model), tx,
                                       trainable=trainable_side))
        state = create_state(p, tx, 0)
        trace = []
        for _ in range(3):
            state, m = step(state, b)
            trace.append(float(m["loss"]))
        losses[name] = trace
        assert jax.tree.leaves(state.params["encoder"])[0].dtype == p["encoder"][
            "embeddings"]["token_embedding"]["embedding"].dtype  # stored dtype kept
        assert all(x.dtype == jnp.float32 for k, v in state.params.items() if k != "encoder"
                   for x in jax.tree.leaves(v))
    np.testing.assert_allclose(losses["bf16"], losses["f32"], rtol=LOSS_RTOL)
    assert losses["bf16"][-1] < losses["bf16"][0]  # the side still learns on bf16 features


def _float32_feature_stacks(hlo: str, b: int, n: int, d: int, layers: int) -> list[str]:
    """float32 arrays [..., n, d] in compiled HLO text holding ≥ `layers` layers' [b, n, d]."""
    found = []
    for dims in re.findall(r"\bf32\[([0-9,]+)\]", hlo):
        shape = [int(x) for x in dims.split(",")]
        if shape[-2:] == [n, d] and math.prod(shape) >= layers * b * n * d:
            found.append(dims)
    return found


def test_bfloat16_trunk_features_are_never_stacked_in_float32():
    """XLA:CPU stacks bfloat16 arrays through float32 copies (3x the features' size); the trunk's
    hidden states are stacked as their bits instead (encoder.as_bits). The float32 trunk is the
    check that the scan of the HLO finds such a stack where there is one."""
    bsz, n = 4, 24
    batch = synthetic.classification_batch(bsz, n, 40, seed=0)
    stacks = {}
    for dtype in ("bfloat16", "float32"):
        model = _lst(dtype)
        params = jax.jit(lambda k, i, m=model: cast_trunk(m.init(k, i)["params"], m.lst))(
            jax.random.PRNGKey(0), batch["input_ids"])
        tx = make_optimizer("adamw", optax.constant_schedule(1e-2), trainable=trainable_side)
        step = make_train_step(classification_sums_fn(model), tx, trainable=trainable_side)
        hlo = jax.jit(step).lower(create_state(params, tx, 0), batch).compile().as_text()
        trunk = model.trunk
        stacks[dtype] = _float32_feature_stacks(hlo, bsz, n, trunk.hidden_size, trunk.num_layers)
    assert stacks["float32"], "no float32 feature stack found in the float32 trunk's step"
    assert not stacks["bfloat16"], stacks["bfloat16"]
