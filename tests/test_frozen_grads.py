"""The train step differentiates only the trainable partition; LoRA runs unmerged.

Expected values come from jax.grad of the whole loss (all parameters) and from the merged LoRA
kernels W + (α/r)·A·B applied to a plain classifier, never from the step under test."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import finetune
from gau_jax.data import synthetic
from gau_jax.models import build_encoder, classifier, get_model_config
from gau_jax.models.peft import lora_matmul, merge_lora
from gau_jax.models.tree import path_names
from gau_jax.tasks.losses import classification_sums_fn
from gau_jax.train import compiled_costs, methods
from gau_jax.train.optim import make_optimizer
from gau_jax.train.state import create_state
from gau_jax.train.step import make_train_step, split_trainable

RANK, ALPHA = 2, 4.0


def model_cfg(block="gau", **kw):
    c = get_model_config("gau_alpha_tiny" if block == "gau" else "roformer_v2_tiny")
    c.update(vocab_size=40, num_layers=2, hidden_size=32, intermediate_size=64,
             key_size=16 if block == "gau" else 8, hidden_dropout=0.0, attention_dropout=0.0)
    if block != "gau":
        c.num_heads = 4
    c.update(kw)
    return c


def built(method, block="gau", targets=("query", "value", "uvz"), **kw):
    c = finetune.get_config()
    c.update(classifier_dropout=0.0, adapter_size=4)
    c.lora.update(rank=RANK, alpha=ALPHA, targets=targets)
    return methods.get(method).build(c, model_cfg(block, **kw), 3)


def batch(b=4, n=12, seed=0):
    return synthetic.classification_batch(b, n, 40, seed=seed)


def nonzero_b(params, seed=1):
    """LoRA params with B ≠ 0 (B = 0 at init hides half of the gradients)."""
    keys = iter(jax.random.split(jax.random.PRNGKey(seed), 64))
    return jax.tree_util.tree_map_with_path(
        lambda p, x: 0.3 * jax.random.normal(next(keys), x.shape)
        if path_names(p)[0].endswith("/B") else x, params)


SLOW = pytest.mark.slow


@pytest.mark.parametrize("method,block", [
    ("lora", "gau"), pytest.param("lora", "roformer_v2", marks=SLOW),
    pytest.param("adapter", "gau", marks=SLOW), pytest.param("bitfit", "roformer_v2", marks=SLOW)])
def test_trainable_grads_are_slices_of_the_full_gradient(method, block):
    spec = built(method, block)
    b = batch()
    params = jax.jit(spec.model.init)(jax.random.PRNGKey(0), b["input_ids"])["params"]
    params = jax.jit(nonzero_b)(params) if method == "lora" else params
    sums_fn = classification_sums_fn(spec.model)
    total = float(np.sum(b["weights"]))
    full = jax.jit(jax.grad(lambda p: sums_fn(p, b, None, None, False)["loss"] / total))(params)
    tx = make_optimizer("sgd", optax.constant_schedule(1.0), trainable=spec.trainable)
    step = jax.jit(make_train_step(sums_fn, tx, trainable=spec.trainable))
    new, metrics = step(create_state(params, tx, 0), b)
    mask = spec.trainable(params)
    want_sq = 0.0
    for (path, old), g, upd, m in zip(jax.tree_util.tree_leaves_with_path(params),
                                      jax.tree.leaves(full), jax.tree.leaves(new.params),
                                      jax.tree.leaves(mask), strict=True):
        step_taken = np.asarray(old) - np.asarray(upd)  # SGD, lr 1: θ − θ' = g (or 0 if frozen)
        want = np.asarray(g) if m else np.zeros_like(step_taken)
        np.testing.assert_allclose(step_taken, want, rtol=2e-4, atol=2e-6,
                                   err_msg="/".join(path_names(path)))
        want_sq += float(np.sum(np.square(np.asarray(g, np.float64)))) if m else 0.0
    np.testing.assert_allclose(float(metrics["grad_norm"]), np.sqrt(want_sq), rtol=1e-4)


def test_split_trainable_round_trips_and_rejects_traced_masks():
    params = {"a": np.ones(2), "b": {"c": np.zeros(3), "d": np.arange(4.0)}}
    mask = {"a": True, "b": {"c": False, "d": True}}
    t, f, combine = split_trainable(params, mask)
    assert [x.shape for x in t] == [(2,), (4,)] and [x.shape for x in f] == [(3,)]
    jax.tree.map(np.testing.assert_array_equal, combine(t, f), params)
    with pytest.raises(ValueError, match="Python bools"):
        jax.jit(lambda p: split_trainable(p, jax.tree.map(lambda x: x.sum() > 0, p))[0])(params)


@pytest.mark.parametrize("block", ["gau", pytest.param("roformer_v2", marks=SLOW)])
def test_unmerged_lora_equals_merged_forward_and_grads(block):
    """"output" included: GAU's output projection is a GatedOutput, not an nn.Dense."""
    spec = built("lora", block, targets=("query", "value", "uvz", "output"))
    b = batch()
    args = (b["input_ids"], b["attention_mask"], b["segment_ids"])
    params = jax.jit(lambda k, i: nonzero_b(spec.model.init(k, i)["params"]))(
        jax.random.PRNGKey(0), b["input_ids"])
    plain = classifier(build_encoder(model_cfg(block)), 3)

    def loss(logits):
        return optax.softmax_cross_entropy_with_integer_labels(logits, b["labels"]).mean()

    unmerged = lambda p: spec.model.apply({"params": p}, *args)
    merged = lambda p: plain.apply({"params": merge_lora(p, ALPHA)}, *args)
    y_u, y_m, g_u, g_m = jax.jit(lambda p: (  # one program: both forwards, both gradients
        unmerged(p), merged(p), jax.grad(lambda q: loss(unmerged(q)))(p),
        jax.grad(lambda q: loss(merged(q)))(p)))(params)
    np.testing.assert_allclose(y_u, y_m, rtol=1e-5, atol=1e-5)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(g_u), jax.tree.leaves(g_m),
                            strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6,
                                   err_msg="/".join(path_names(path)))


def _step_flops(spec, b):
    params = jax.eval_shape(lambda: spec.model.init(jax.random.PRNGKey(0), b["input_ids"]))
    tx = make_optimizer("adamw", optax.constant_schedule(1e-3), trainable=spec.trainable)
    state = jax.eval_shape(lambda p: create_state(p["params"], tx, 0), params)
    step = make_train_step(classification_sums_fn(spec.model), tx, trainable=spec.trainable)
    compiled = compiled_costs.compile_step(step, state, compiled_costs.abstract(b))
    return compiled_costs.step_costs(compiled), params["params"]


@pytest.mark.parametrize("block", ["gau", pytest.param("roformer_v2", marks=SLOW)])
def test_lora_step_skips_the_frozen_weight_gradients(block):
    """FLOPs(full) − FLOPs(LoRA) ≥ Σ_frozen kernels 2·T·in·out (their weight gradients) minus
    LoRA's own low-rank work, 6·T·r·(in + out) per adapted kernel (T = tokens of the batch)."""
    b = batch(b=8, n=32)
    T = b["input_ids"].size
    kw = {"scan_layers": False}
    full, _ = _step_flops(built("full", block, **kw), b)
    lora, p = _step_flops(built("lora", block, **kw), b)
    share = extra = 0.0
    for path, x in jax.tree_util.tree_leaves_with_path(p["base"]["encoder"]):
        names = path_names(path)
        if names[-1] == "kernel":
            share += 2.0 * T * x.shape[0] * x.shape[1]
            if names[-2] in ("query", "value", "uvz"):
                extra += 6.0 * T * RANK * (x.shape[0] + x.shape[1])
    saved = full["flops"] - lora["flops"]
    assert saved >= share - extra, (full["flops"], lora["flops"], share, extra)
    assert lora["flops"] < 0.8 * full["flops"]


@SLOW
def test_frozen_leaves_get_zero_update_and_no_state():
    """The optimizer state of a LoRA step covers A, B and the classifier only."""
    spec = built("lora")
    b = batch()
    params = jax.jit(spec.model.init)(jax.random.PRNGKey(0), b["input_ids"])["params"]
    tx = make_optimizer("adamw", optax.constant_schedule(1e-2), grad_clip_norm=1.0,
                        trainable=spec.trainable)
    state = create_state(params, tx, 0)
    step = jax.jit(make_train_step(classification_sums_fn(spec.model), tx,
                                   trainable=spec.trainable))
    new, _ = step(state, b)
    jax.tree.map(np.testing.assert_array_equal, new.params["base"]["encoder"],
                 params["base"]["encoder"])
    n_state = sum(x.size for x in jax.tree.leaves(new.opt_state) if hasattr(x, "size")
                  and jnp.ndim(x) > 0)
    n_train = sum(x.size for x, m in zip(jax.tree.leaves(params),
                                         jax.tree.leaves(spec.trainable(params)), strict=True)
                  if m)
    assert n_state == 2 * n_train  # AdamW: μ and ν of the trainable leaves only


@SLOW
def test_bitfit_starts_from_a_pretrained_trunk_with_biases(tmp_path):
    """init_from a trunk pretrained with model.use_bias=True: BitFit loads it and trains only
    biases and the classifier (full / lst / lora / adapter from init_from:
    tests/test_pretrained_load.py)."""
    from gau_jax.train.loop import Trainer
    from tests.test_pretrained_load import TEXTS, _finetune_config, _numpy, _train
    from tests.train_helpers import tiny_pretrain_config, write_corpus_and_task

    corpus, task = write_corpus_and_task(tmp_path, TEXTS)
    pt = tiny_pretrain_config(data_dir=str(corpus), dev_fraction=0.2, eval_batches=1,
                              batch_size=8, pad_multiple=16, data_threads=1, total_steps=2,
                              checkpoint_every_steps=2, eval_every_steps=2)
    pt.model.update(vocab_size=64, num_layers=2, use_bias=True)
    trunk = _train(pt, tmp_path / "pt")
    c = _finetune_config("bitfit", task, tmp_path / "pt")
    c.model.use_bias = True
    trainer = Trainer(c, tmp_path / "bitfit")
    try:
        start = _numpy(trainer.host_state().params)
        trainer.run()
        end = _numpy(trainer.host_state().params)
    finally:
        trainer.close()
    for (path, x), y, t in zip(jax.tree_util.tree_leaves_with_path(start["encoder"]),
                               jax.tree.leaves(end["encoder"]), jax.tree.leaves(trunk),
                               strict=True):
        np.testing.assert_array_equal(x, t)  # started from the pretrained trunk
        if path_names(path)[-1] != "bias":
            np.testing.assert_array_equal(x, y)  # frozen
    moved = [not np.array_equal(x, y) for (p, x), y in zip(
        jax.tree_util.tree_leaves_with_path(start["encoder"]), jax.tree.leaves(end["encoder"]),
        strict=True) if path_names(p)[-1] == "bias"]
    assert moved and any(moved)


@SLOW
@pytest.mark.parametrize("method", ["lora", "lst"])
def test_partitioned_step_resumes_bitwise(tmp_path, method):
    """Stopped after step 2 and resumed = uninterrupted (LST: bfloat16 trunk in the state)."""
    from gau_jax.train.loop import Trainer
    from tests.test_pretrained_load import TEXTS, _finetune_config, _numpy
    from tests.train_helpers import write_task

    task = write_task(tmp_path, TEXTS)

    def config():
        c = _finetune_config(method, task)
        c.update(total_steps=4, checkpoint_every_steps=2, eval_every_steps=4)
        return c

    def run(workdir, stop_at=None):
        trainer = Trainer(config(), workdir)
        try:
            trainer.run(stop_at=stop_at)
            return _numpy(trainer.host_state())
        finally:
            trainer.close()

    whole = run(tmp_path / "whole")
    run(tmp_path / "split", stop_at=2)
    resumed = run(tmp_path / "split")
    if method == "lst":
        dtypes = {x.dtype for x in jax.tree.leaves(whole.params["encoder"])}
        assert dtypes == {np.dtype(jnp.bfloat16)}
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(whole), strict=True):
        np.testing.assert_array_equal(a, b)


def test_lora_matmul_vjp_equals_autodiff_of_the_formula():
    """The hand-written VJP of x·W + s·(x·A)·B (all four cotangents, batched x) against JAX's
    autodiff of the plain expression."""
    rng = np.random.default_rng(0)
    x, w, a, b, g = (jnp.asarray(rng.normal(size=s), jnp.float32)
                     for s in ((2, 5, 6), (6, 7), (6, 3), (3, 7), (2, 5, 7)))
    plain = lambda x, w, a, b: x @ w + 0.5 * ((x @ a) @ b)  # noqa: E731

    @jax.jit(static_argnums=0)
    def vjp_at_g(f, x, w, a, b, g):  # (f(x, w, a, b), its four cotangents at g), one program
        y, vjp = jax.vjp(f, x, w, a, b)
        return y, vjp(g)

    y, cts = vjp_at_g(lambda *t: lora_matmul(*t, 0.5), x, w, a, b, g)
    y_ref, cts_ref = vjp_at_g(plain, x, w, a, b, g)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(cts, cts_ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
