"""Train step: accumulation == one big batch; jit mesh, pmap and one device give one loss curve."""

import json

import jax
import numpy as np
import pytest

from gau_jax.train import partition
from gau_jax.train.loop import Trainer, validate_config
from gau_jax.train.optim import optimizer_from_config
from gau_jax.train.state import create_state
from gau_jax.train.step import make_train_step, residual_alpha, split_microbatches
from tests.train_helpers import SyntheticMLM, synthetic_inputs, tiny_pretrain_config


def _single_device_run(config, steps):
    """Reference: the plain step, jitted on one device, no mesh and no pmap."""
    inputs = synthetic_inputs(config)
    tx = optimizer_from_config(config)
    dummy = np.ones((1, config.max_length), np.int32)
    params = jax.jit(inputs.model.init)(jax.random.PRNGKey(config.seed), dummy)["params"]
    state = create_state(params, tx, config.seed)
    step = jax.jit(make_train_step(inputs.sums_fn, tx, grad_accum_steps=config.grad_accum_steps))
    losses = []
    for _ in range(steps):
        state, m = step(state, next(inputs.train))
        losses.append(float(m["loss"]))
    return state, losses


def test_split_microbatches_is_strided():
    x = {"a": np.arange(12).reshape(6, 2)}
    got = split_microbatches(x, 3)["a"]
    np.testing.assert_array_equal(got[1], x["a"][1::3])


def test_residual_alpha_ramp():
    assert residual_alpha(jax.numpy.asarray(5), 0) is None
    np.testing.assert_allclose([float(residual_alpha(jax.numpy.asarray(t), 10))
                                for t in (0, 5, 10, 30)], [0.0, 0.5, 1.0, 1.0])


@pytest.mark.slow
def test_grad_accumulation_equals_large_batch():
    big_state, big_losses = _single_device_run(tiny_pretrain_config(), 1)
    acc_state, acc_losses = _single_device_run(tiny_pretrain_config(grad_accum_steps=4), 1)
    np.testing.assert_allclose(acc_losses, big_losses, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(acc_state.params),
                    jax.tree_util.tree_leaves(big_state.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def _trainer_losses(tmp_path, **overrides):
    config = tiny_pretrain_config(total_steps=4, eval_every_steps=100, **overrides)
    trainer = Trainer(config, tmp_path, inputs=synthetic_inputs(config))
    trainer.evaluate = lambda: {"loss": 0.0, "accuracy": 0.0, "count": 0.0}  # not compared
    trainer.run()
    trainer.close()
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    return [r["loss"] for r in rows if r["split"] == "train"]


@pytest.mark.slow
def test_jit_mesh_and_pmap_match_single_device(tmp_path):
    if jax.device_count() < 2:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8")
    _, ref = _single_device_run(tiny_pretrain_config(total_steps=4), 4)
    jit = _trainer_losses(tmp_path / "jit", parallel="jit")
    pmap = _trainer_losses(tmp_path / "pmap", parallel="pmap")
    fsdp = _trainer_losses(tmp_path / "fsdp", parallel="jit", fsdp=2)
    assert ref[-1] < ref[0]
    np.testing.assert_allclose(jit, ref, rtol=1e-5)
    np.testing.assert_allclose(pmap, ref, rtol=1e-5)
    np.testing.assert_allclose(fsdp, ref, rtol=1e-5)


def test_fsdp_shards_large_leaves():
    if jax.device_count() < 2:
        pytest.skip("needs several devices")
    mesh = partition.make_mesh(fsdp=2)
    tree = {"big": jax.ShapeDtypeStruct((6, 4096), np.float32),
            "small": jax.ShapeDtypeStruct((3,), np.float32)}
    sh = partition.state_shardings(tree, mesh)
    assert sh["big"].spec == jax.sharding.PartitionSpec(None, "fsdp")
    assert sh["small"].spec == jax.sharding.PartitionSpec()


def test_batch_not_divisible_by_devices_is_an_error(tmp_path):
    if jax.device_count() < 2:
        pytest.skip("needs several devices")
    config = tiny_pretrain_config(batch_size=jax.device_count() + 1)
    with pytest.raises(ValueError, match="not divisible by the"):
        Trainer(config, tmp_path, inputs=synthetic_inputs(config))


def test_synthetic_iterator_state_round_trip():
    it = SyntheticMLM(4, 8)
    next(it)
    state = it.get_state()
    a = next(it)
    it.set_state(state)
    np.testing.assert_array_equal(next(it)["input_ids"], a["input_ids"])


@pytest.mark.slow
def test_roformer_v2_bfloat16_with_residual_ramp():
    """RoFormerV2 from scratch: α ramps in (α=0 at step 0); bfloat16 compute stays finite."""
    config = tiny_pretrain_config(total_steps=1, warmup_steps=0, residual_ramp_steps=2,
                                  dtype="bfloat16")
    config.model.update(block="roformer_v2", num_heads=2, key_size=16, attention_norm="softmax")
    validate_config(config)
    inputs = synthetic_inputs(config)
    tx = optimizer_from_config(config)
    params = jax.jit(inputs.model.init)(jax.random.PRNGKey(0), np.ones((1, 16), np.int32))[
        "params"]
    step = jax.jit(make_train_step(inputs.sums_fn, tx, residual_ramp_steps=2))
    state = create_state(params, tx, 0)
    state, m = step(state, next(inputs.train))
    losses = [float(m["loss"])]
    assert np.isfinite(losses[0]) and int(state.step) == 1
    # At α = 0 every block is the identity up to the norm: loss equals the embedding-only model.
    batch = inputs.train.batch(0)
    sums = jax.jit(lambda p, b, key, scale: inputs.sums_fn(p, b, key, scale, False))
    zero = sums(params, batch, jax.random.PRNGKey(0), 0.0)
    one = sums(params, batch, jax.random.PRNGKey(0), 1.0)
    at = lambda s: float(s["loss"] / s["weight"])
    assert abs(at(zero) - losses[0]) < 1e-2 < abs(at(one) - losses[0])


def _numpy_mlm_sums(logits, targets, weights):
    """Reference Σ w·xent, Σ w, Σ w·hit from full [b, n, V] logits (float64)."""
    logits = np.asarray(logits, np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    xent = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    hit = logits.argmax(-1) == targets
    return {"loss": (weights * xent).sum(), "weight": weights.sum(),
            "correct": (weights * hit).sum()}


@pytest.mark.slow
def test_max_predictions_scores_only_the_top_k_masked_tokens():
    from gau_jax.train.step import mlm_sums_fn

    config = tiny_pretrain_config()
    inputs = synthetic_inputs(config)
    batch = SyntheticMLM(8, 16, seed=3).batch(0)
    params = jax.jit(inputs.model.init)(jax.random.PRNGKey(0), batch["input_ids"])["params"]
    logits = jax.jit(lambda p, *a: inputs.model.apply({"params": p}, *a).logits)(
        params, batch["input_ids"], batch["attention_mask"], batch["segment_ids"])
    sums = lambda k: jax.jit(lambda p, b: mlm_sums_fn(inputs.model, k)(p, b, None, None, False))
    w = batch["mlm_weights"]
    most = int(w.sum(1).max())
    full = _numpy_mlm_sums(logits, batch["mlm_targets"], w)
    for k in (most, 16):  # k covers every masked token: the same sums as the full head
        got = sums(k)(params, batch)
        for key in full:
            np.testing.assert_allclose(float(got[key]), full[key], rtol=1e-5)
    k = 2  # fewer slots than masked tokens: the first k masked positions of each row count
    keep = np.zeros_like(w)
    for i, row in enumerate(w):
        keep[i, np.flatnonzero(row)[:k]] = 1.0
    ref = _numpy_mlm_sums(logits, batch["mlm_targets"], keep)
    got = sums(k)(params, batch)
    assert ref["weight"] < full["weight"]
    for key in ref:
        np.testing.assert_allclose(float(got[key]), ref[key], rtol=1e-5)
