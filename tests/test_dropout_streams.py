"""Dropout: every site at its own rate, off when deterministic, a new mask every step.

Sites (gau_jax/models/encoder.py, heads.py, layers/*.py), p_h = hidden_dropout,
p_a = attention_dropout, p_c = classifier_dropout:

    h_0 = Norm(Drop_h(E_tok[ids] + E_seg[seg]))
    gau block        x ← Norm(x + Drop_h(GAU(x))),  GAU's A ← Drop_a(A)
    roformer block   x ← Norm(x + Drop_h(MHA(x))),  MHA's A ← Drop_a(A)
                     x ← Norm(x + Drop_h(FFN(x)))
    MLM logits = Drop_h(h_L) E_tokᵀ;   classifier logits = Drop_c(h_L[:, 0]) W + b

To compare with a NumPy forward pass, every Flax Dropout call is intercepted and given one fixed
mask (keep element i of the flattened tensor iff i mod 3 ≠ 1, survivors scaled by 1/(1−p)); the
NumPy pass applies the same mask at the sites above. A site that is missing, reads the wrong rate
or is always deterministic gives a different output. Real (random) dropout is checked apart:
deterministic=True equals the dropout-free model, and two consecutive train steps draw different
masks while a replayed step draws the same one.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import finetune
from gau_jax.models import build_encoder, get_model_config
from gau_jax.tasks.losses import classification_sums_fn
from gau_jax.train import methods
from gau_jax.train.optim import make_optimizer
from gau_jax.train.state import create_state
from gau_jax.train.step import make_eval_step, make_train_step
from tests import reference as ref

P_C = 0.25  # classifier dropout (config.classifier_dropout)


def keep_mask(shape) -> np.ndarray:
    return np.arange(int(np.prod(shape))).reshape(shape) % 3 != 1


def drop(x: np.ndarray, rate: float) -> np.ndarray:
    return np.where(keep_mask(x.shape), x / (1.0 - rate), 0.0) if rate > 0 else x


def fixed_dropout(next_fun, args, kwargs, context):
    """Flax interceptor: nn.Dropout draws keep_mask instead of random bits."""
    mod = context.module
    if not (isinstance(mod, nn.Dropout) and context.method_name == "__call__"):
        return next_fun(*args, **kwargs)
    x = args[0]
    det = args[1] if len(args) > 1 else kwargs.get("deterministic")
    det = mod.deterministic if det is None else det
    if det or mod.rate == 0:
        return x
    return jnp.where(keep_mask(x.shape), x / (1.0 - mod.rate), 0).astype(x.dtype)


def tiny(block, hidden, attention):
    c = get_model_config("gau_alpha_tiny" if block == "gau" else "roformer_v2_tiny")
    c.update(vocab_size=40, num_layers=1, hidden_size=16, intermediate_size=32, key_size=8,
             num_heads=1 if block == "gau" else 2, hidden_dropout=hidden,
             attention_dropout=attention, scan_layers=False, remat="none")
    return c


def batch(seed=0):
    rng = np.random.default_rng(seed)
    mask = (np.arange(7)[None] < np.asarray([7, 4])[:, None]).astype(np.int32)
    ids = rng.integers(5, 40, (2, 7)).astype(np.int32) * mask
    return {"input_ids": ids, "attention_mask": mask, "segment_ids": np.zeros_like(ids),
            "labels": np.asarray([0, 1], np.int32), "weights": np.ones(2, np.float32)}


def gau_ref(x, mask, p, cfg, p_a):
    e, s = cfg.intermediate_size, cfg.key_size
    uvz = ref.swish(x @ p["uvz"]["kernel"])
    u, v, z = uvz[..., :e], uvz[..., e:2 * e], uvz[..., 2 * e:]
    q, k = ref.rope(z * p["q_scale"]["scale"]), ref.rope(z * p["k_scale"]["scale"])
    a = np.einsum("bns,bms->bnm", q, k) / np.sqrt(s)
    w = drop(ref.normalize(a, mask[:, None, :].astype(bool), cfg.attention_norm), p_a)
    return (u * np.einsum("bnm,bme->bne", w, v)) @ p["output"]["kernel"]


def mha_ref(x, mask, p, cfg, p_a):
    b, n, _ = x.shape
    h, k = cfg.num_heads, cfg.key_size
    q = ref.rope((x @ p["query"]["kernel"]).reshape(b, n, h, k))
    kk = ref.rope((x @ p["key"]["kernel"]).reshape(b, n, h, k))
    v = (x @ p["value"]["kernel"]).reshape(b, n, h, k)
    a = np.einsum("bqhk,bmhk->bhqm", q, kk) / np.sqrt(k)
    w = drop(ref.normalize(a, mask[:, None, None, :].astype(bool), cfg.attention_norm), p_a)
    return np.einsum("bhqm,bmhk->bqhk", w, v).reshape(b, n, h * k) @ p["output"]["kernel"]


def encoder_ref(b, params, cfg):
    """(h_L, MLM logits) with the fixed mask at every site of the module docstring."""
    p_h, p_a = cfg.hidden_dropout, cfg.attention_dropout
    emb = params["embeddings"]
    E = emb["token_embedding"]["embedding"]
    mask = b["attention_mask"]
    x = ref.rms_norm(drop(E[b["input_ids"]] + emb["segment_embedding"]["embedding"][
        b["segment_ids"]], p_h))
    layer = params["layers_0"]
    if cfg.block == "gau":
        x = ref.rms_norm(x + drop(gau_ref(x, mask, layer["gau"], cfg, p_a), p_h))
    else:
        x = ref.rms_norm(x + drop(mha_ref(x, mask, layer["attention"], cfg, p_a), p_h))
        f = layer["ffn"]
        ffn = np.maximum(x @ f["intermediate"]["kernel"], 0) @ f["output"]["kernel"]
        x = ref.rms_norm(x + drop(ffn, p_h))
    return x, drop(x, p_h) @ E.T


@pytest.mark.parametrize("rates", [(0.3, 0.0), (0.0, 0.4)], ids=["hidden", "attention"])
@pytest.mark.parametrize("block", ["gau", "roformer_v2"])
def test_every_dropout_site_at_its_rate(block, rates):
    cfg = tiny(block, *rates)
    b = batch()
    enc = build_encoder(cfg)
    config = finetune.get_config("method=full")
    config.classifier_dropout = P_C
    clf = methods.get("full").build(config, cfg, 2).model
    params = clf.init(jax.random.PRNGKey(0), b["input_ids"])["params"]
    p64 = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    h, logits = encoder_ref(b, p64["encoder"], cfg)
    args = (b["input_ids"], b["attention_mask"], b["segment_ids"])
    rngs = {"dropout": jax.random.PRNGKey(1)}
    with nn.intercept_methods(fixed_dropout):
        out = enc.apply({"params": params["encoder"]}, *args, deterministic=False, rngs=rngs)
        cls = clf.apply({"params": params}, *args, deterministic=False, rngs=rngs)
    m = b["attention_mask"].astype(bool)
    np.testing.assert_allclose(np.asarray(out.last_hidden_state)[m], h[m], atol=1e-4)
    np.testing.assert_allclose(np.asarray(out.logits)[m], logits[m], atol=1e-3)
    w = p64["classifier"]
    np.testing.assert_allclose(cls, drop(h[:, 0], P_C) @ w["kernel"] + w["bias"], atol=1e-4)


@pytest.mark.parametrize("block", ["gau", "roformer_v2"])
def test_deterministic_equals_dropout_free_and_each_rate_acts_alone(block):
    b = batch()
    args = (b["input_ids"], b["attention_mask"], b["segment_ids"])
    free = build_encoder(tiny(block, 0.0, 0.0))
    params = free.init(jax.random.PRNGKey(0), b["input_ids"])["params"]
    want = np.asarray(free.apply({"params": params}, *args).last_hidden_state)
    both = build_encoder(tiny(block, 0.3, 0.4))
    np.testing.assert_array_equal(
        both.apply({"params": params}, *args, deterministic=True).last_hidden_state, want)
    m = b["attention_mask"].astype(bool)
    for rates in ((0.3, 0.0), (0.0, 0.4)):  # real dropout, one kind at a time
        out = build_encoder(tiny(block, *rates)).apply(
            {"params": params}, *args, deterministic=False,
            rngs={"dropout": jax.random.PRNGKey(2)}).last_hidden_state
        assert np.abs(np.asarray(out)[m] - want[m]).max() > 1e-3, rates


@functools.lru_cache
def _noisy_step(grad_accum_steps=1):
    """(Classifier with dropout, its params, a jitted lr = 0 train step, the state at step 0)."""
    cfg = tiny("gau", 0.3, 0.3)
    clf = methods.get("full").build(finetune.get_config("method=full"), cfg, 2).model
    params = clf.init(jax.random.PRNGKey(0), batch()["input_ids"])["params"]
    tx = make_optimizer("sgd", optax.constant_schedule(0.0))
    step = jax.jit(make_train_step(classification_sums_fn(clf), tx,
                                   grad_accum_steps=grad_accum_steps))
    return clf, params, step, create_state(params, tx, seed=0)


def _rows(b, idx):
    return {k: v[np.asarray(idx)] for k, v in b.items()}


def test_consecutive_steps_draw_different_masks_and_a_replay_the_same():
    """lr = 0: the params never move, so the loss changes only with the dropout mask."""
    _, params, step, state0 = _noisy_step()
    b = batch()

    def losses(state, n):
        out = []
        for _ in range(n):
            state, m = step(state, b)
            out.append(float(m["loss"]))
        return state, out

    state1, first = losses(state0, 1)
    _, run = losses(state1, 2)
    run = first + run
    assert len(set(run)) == 3, f"steps 0, 1, 2 drew the same dropout mask: {run}"
    _, replay = losses(state0, 3)  # the key of step t is a function of (seed, t) only
    assert replay == run
    other = state0.replace(rng=create_state(params, optax.identity(), seed=1).rng)
    assert losses(other, 1)[1][0] != run[0]


def test_copies_of_an_example_draw_different_masks():
    """loss([x, x]) = (ℓ(x; key 0) + ℓ(x; key 1)) / 2 differs from loss([x]) = ℓ(x; key 0)."""
    _, _, step, state = _noisy_step()
    b = batch()
    one = float(step(state, _rows(b, [0]))[1]["loss"])
    two = float(step(state, _rows(b, [0, 0]))[1]["loss"])
    assert abs(two - one) > 1e-4, (one, two)


def test_masks_do_not_depend_on_the_micro_batch_split():
    b = batch()  # 2 rows: one step, or two micro-batches of one row
    losses = []
    for k in (1, 2):
        _, _, step, state = _noisy_step(k)
        run = []
        for _ in range(2):
            state, m = step(state, b)
            run.append(float(m["loss"]))
        losses.append(run)
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    assert losses[0][0] != losses[0][1]


def test_example_keys_are_the_documented_fold_ins():
    """step.py / state.py: example i at step t draws key(t, i) = fold_in(fold_in(rng, t), i)."""
    clf, params, step, state = _noisy_step()
    b = batch()
    row_logits = jax.jit(lambda key, *row: clf.apply({"params": params}, *row,
                                                     deterministic=False, rngs={"dropout": key}))
    xent = jax.jit(optax.softmax_cross_entropy_with_integer_labels)
    for t in range(2):
        want = 0.0
        for i in range(2):
            key = jax.random.fold_in(jax.random.fold_in(state.rng, t), i)
            logits = row_logits(key, *(_rows(b, [i])[k] for k in (
                "input_ids", "attention_mask", "segment_ids")))
            want += float(xent(logits, b["labels"][i:i + 1])[0])
        state, m = step(state, b)
        np.testing.assert_allclose(float(m["loss"]), want / 2, rtol=1e-5)


def test_eval_step_is_the_dropout_free_forward():
    b = batch()
    config = finetune.get_config("method=full")
    config.classifier_dropout = 0.0
    free = methods.get("full").build(config, tiny("gau", 0.0, 0.0), 2).model
    config.classifier_dropout = P_C
    noisy = methods.get("full").build(config, tiny("gau", 0.3, 0.4), 2).model
    params = free.init(jax.random.PRNGKey(0), b["input_ids"])["params"]
    want = classification_sums_fn(free)(params, b, None, None, False)
    state = create_state(params, make_optimizer("sgd", optax.constant_schedule(0.0)), seed=0)
    got = jax.jit(make_eval_step(classification_sums_fn(noisy)))(state, b)
    for k in ("loss", "weight", "correct"):
        np.testing.assert_allclose(float(got[k]), float(want[k]), rtol=1e-6, err_msg=k)


def test_real_masks_drop_at_their_rate_and_differ_between_scanned_layers():
    cfg = tiny("gau", 0.5, 0.25)
    cfg.update(num_layers=2, scan_layers=True, hidden_size=32)
    enc = build_encoder(cfg)
    b = batch()
    # a model of its own shapes: under jit one compile each, not one per eager op
    params = jax.jit(enc.init)(jax.random.PRNGKey(0), b["input_ids"])["params"]
    seen = []  # (rate, input, output) of every real Dropout call, one per scanned layer

    def spy(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if isinstance(context.module, nn.Dropout) and context.method_name == "__call__":
            jax.debug.callback(lambda x, y, r=context.module.rate: seen.append(
                (r, np.asarray(x), np.asarray(y))), args[0], out)
        return out

    with nn.intercept_methods(spy):  # traced here, inside the interceptor
        jax.jit(lambda p, key, *a: enc.apply({"params": p}, *a, deterministic=False,
                                             return_logits=False, rngs={"dropout": key}))(
            params, jax.random.key(4), b["input_ids"], b["attention_mask"], b["segment_ids"])
    by_shape = {}
    for rate, x, y in seen:
        live = x != 0
        kept = y[live] != 0
        assert abs(1 - kept.mean() - rate) < 0.1, (rate, x.shape, kept.mean())
        np.testing.assert_allclose(y[live][kept], x[live][kept] / (1 - rate), rtol=1e-5)
        by_shape.setdefault(x.shape, []).append(y != 0)
    # embeddings + 2 residual branches [b, n, d] at 0.5; 2 attention maps [b, n, n] at 0.25
    assert sorted((s, len(m)) for s, m in by_shape.items()) == [((2, 7, 7), 2), ((2, 7, 32), 3)]
    for masks in by_shape.values():
        for i in range(len(masks)):
            for j in range(i):
                assert (masks[i] != masks[j]).any(), "two sites or layers share a mask"
