"""Wiring checked against values computed here, by hand or in NumPy, not by the code under test:

    classifier    logits = h_L[:, 0] W + b on a padded batch             ([CLS] is position 0)
    init          std = L^(−1/order)/sqrt(fan) (Su) on a tiny 8-layer model
    lora          W' = W + (α/r)·A·B merged by hand, then the plain classifier
    lst           μ = sigmoid(α/T) with α ≠ 0 and T from config.lst; heads `up` and `gated`:
                  Dense(Up(s[:, 0])) and Dense(μ·h_L[:, 0] + (1−μ)·Up(s[:, 0])); additive
                  ladders; the trunk stays dropout-free while the model runs with dropout on
    loss sums     Σ w·xent, Σ w, Σ w·hit by hand (weight-0 rows count for nothing)
    schedule      SGD under warmup: update t is −lr(t)·g_t, lr(t) = lr·t/warmup (then decay)
    adamw         two Adam steps by hand, decoupled decay on kernels only
    cached LST    every epoch of a cached split visits its rows once; features match the cache
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import finetune
from configs.common import trainer_config
from gau_jax.models import build_encoder, classifier, get_model_config
from gau_jax.models.encoder import Block
from gau_jax.models.lst import LSTConfig, build_model, side_config
from gau_jax.tasks.losses import argmax_hits, weighted_sums
from gau_jax.train import methods
from gau_jax.train.feature_cache import CachedSplit
from gau_jax.train.optim import optimizer_from_config
from gau_jax.train.state import create_state
from gau_jax.train.step import make_train_step

LENGTHS = (9, 5, 2)


def tiny(block: str = "gau", **over):
    """A 2-layer trunk with dropout off (the values below are deterministic)."""
    c = get_model_config("gau_alpha_tiny" if block == "gau" else "roformer_v2_tiny")
    c.update(vocab_size=40, num_layers=2, hidden_size=32, intermediate_size=64, key_size=16,
             num_heads=2 if block != "gau" else 1, hidden_dropout=0.0, attention_dropout=0.0)
    c.update(over)
    return c


def padded(n: int = 9, seed: int = 0, vocab: int = 40) -> dict:
    """Right-padded rows of LENGTHS real tokens, pad id 0, a second segment in row 0."""
    rng = np.random.default_rng(seed)
    mask = (np.arange(n)[None] < np.asarray(LENGTHS)[:, None]).astype(np.int32)
    ids = rng.integers(5, vocab, (len(LENGTHS), n)).astype(np.int32) * mask
    seg = np.zeros_like(ids)
    seg[0, 5:] = 1
    return {"input_ids": ids, "attention_mask": mask, "segment_ids": seg * mask}


def f64(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def init(model, *args):
    """model.init under jit: one compile instead of one per eager op."""
    return jax.jit(lambda *a: model.init(jax.random.PRNGKey(0), *a))(*args)["params"]


def apply(model, params, *args, **kw):
    """model.apply({"params": params}, *args, **kw) under jit."""
    return jax.jit(lambda p, *a: model.apply({"params": p}, *a, **kw))(params, *args)


# ----------------------------------------------------------------------------- classifier head
@pytest.mark.parametrize("block", ["gau", "roformer_v2"])
def test_classifier_logits_are_cls_state_times_dense(block):
    b = padded()
    clf = classifier(build_encoder(tiny(block)), num_classes=3)
    p = init(clf, b["input_ids"])
    h = apply(build_encoder(tiny(block)), p["encoder"], b["input_ids"], b["attention_mask"],
              b["segment_ids"], return_logits=False).last_hidden_state
    w = f64(p["classifier"])
    want = np.asarray(h, np.float64)[:, 0] @ w["kernel"] + w["bias"]
    got = apply(clf, p, b["input_ids"], b["attention_mask"], b["segment_ids"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # the padded rows' positions differ from [CLS]: pooling any other row would not match
    other = np.asarray(h, np.float64)[np.arange(3), np.asarray(LENGTHS) - 1] @ w["kernel"]
    assert not np.allclose(other + w["bias"], want, atol=1e-3)


@pytest.mark.parametrize("block,order", [("gau", 3), ("roformer_v2", 2)])
def test_init_std_is_su_rule_on_a_tiny_deep_model(block, order):
    """std = L^(−1/order)/sqrt(fan) (fan: kernels' input, embeddings' width), L = 8 layers."""
    cfg = tiny(block, num_layers=8, vocab_size=400)
    assert cfg.init_order == order  # GAU-α: 3, RoFormerV2: 2 (Su)
    params = init(build_encoder(cfg), np.ones((1, 4), np.int32))
    checked = 0
    for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = path[-1].key
        x = np.asarray(x)
        if name not in ("kernel", "embedding") or x.size < 2000:  # too few for a std estimate
            continue
        checked += 1
        fan = x.shape[-1] if name == "embedding" else x.shape[-2]
        want = 8 ** (-1 / order) / np.sqrt(fan)
        assert abs(x.std() / want - 1) < 0.06, (jax.tree_util.keystr(path), x.std(), want)
    assert checked >= 3


# ----------------------------------------------------------------------------- LoRA
LORA_TARGETS = {"gau": {"layers/gau/uvz"},
                "roformer_v2": {"layers/attention/query", "layers/attention/value"}}


@pytest.mark.parametrize("block", ["gau", "roformer_v2"])
def test_lora_output_equals_hand_merged_kernels(block):
    config = finetune.get_config("method=lora")
    config.lora.update(rank=2, alpha=6.0, targets=("query", "value", "uvz"))
    built = methods.get("lora").build(config, tiny(block), 3)
    b = padded()
    p = init(built.model, b["input_ids"])
    keys = {k[:-2] for k in p if k.endswith("/A")}
    assert keys == LORA_TARGETS[block]
    rng = np.random.default_rng(1)
    p = {k: (jnp.asarray(rng.normal(0, 0.3, v.shape), jnp.float32) if k.endswith("/B") else v)
         for k, v in p.items()}
    base = f64(p["base"])
    for key in keys:  # W' = W + (α/r)·A·B, r = 2 (stacked layers: a leading L axis)
        node = base["encoder"]
        for name in key.split("/"):
            node = node[name]
        a, bb = np.asarray(p[key + "/A"], np.float64), np.asarray(p[key + "/B"], np.float64)
        node["kernel"] = node["kernel"] + (6.0 / 2) * np.einsum("lir,lro->lio", a, bb)
    plain = classifier(build_encoder(tiny(block)), 3)
    want = apply(plain, base, b["input_ids"], b["attention_mask"], b["segment_ids"])
    got = apply(built.model, p, b["input_ids"], b["attention_mask"], b["segment_ids"])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- LST
def test_lst_gate_temperature_default_is_the_papers():
    # Sung et al. 2022 use T = 0.1 (μ = sigmoid(α/T)); the finetune config takes it from here
    assert LSTConfig().gate_temperature == 0.1
    assert finetune.get_config("method=lst").lst.gate_temperature == 0.1


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize("fusion,head,temperature", [("gated", "gated", 0.4),
                                                      ("additive", "up", 0.1)])
def test_lst_gates_and_heads_by_hand(fusion, head, temperature):
    # unrolled, no remat: the same math as the scanned side loop, and nothing big to compile
    lst = LSTConfig(reduction=4, side_layers=2, fusion=fusion, head=head, dropout=0.0,
                    gate_temperature=temperature, scan_layers=False, remat="none",
                    trunk_dtype="float32")  # the float32 hand computation below
    # the trunk's own dropout must be off inside LST (frozen, deterministic trunk), so the
    # expected values below use a dropout-free trunk while the model runs with dropout on
    model = build_model(tiny(hidden_dropout=0.3, attention_dropout=0.3), 3, lst)
    b = padded()
    p = init(model, b["input_ids"], b["attention_mask"])
    alpha = {"gate_0": 0.07, "gate_1": -0.13, "head_gate": 0.21}  # α ≠ 0: μ depends on T
    gates = ({"gate_0", "gate_1"} if fusion == "gated" else set()) | (
        {"head_gate"} if head == "gated" else set())
    assert {k for k in p if "gate" in k} == gates
    p = {k: (jnp.float32(alpha[k]) if k in alpha else v) for k, v in p.items()}
    got = apply(model, p, b["input_ids"], b["attention_mask"], b["segment_ids"],
                deterministic=False, rngs={"dropout": jax.random.PRNGKey(1)})

    hs = apply(build_encoder(tiny()), p["encoder"], b["input_ids"], b["attention_mask"],
               b["segment_ids"], output_hidden_states=True, return_logits=False)
    hs = np.asarray(hs.hidden_states, np.float64)  # h_0 … h_2 of the 2-layer trunk
    mu = {k: sigmoid(a / temperature) for k, a in alpha.items()}
    w = f64(p)
    block = Block(side_config(model.trunk, lst))  # lst.dropout = 0: the side has none
    s = hs[0] @ w["down_0"]["kernel"]
    side = jax.jit(lambda q, *a: block.apply({"params": q}, *a)[0])  # one compile, both layers
    run = lambda i, x: np.asarray(side(p[f"side_{i}"], jnp.asarray(x, jnp.float32),
                                       b["attention_mask"], None, jnp.float32(1.0)), np.float64)
    for i in range(2):  # default ladders: side layer i reads h_{i+1}
        ladder = hs[i + 1] @ w[f"down_{i + 1}"]["kernel"]
        if fusion == "gated":  # s ← Side_i(μ·s + (1−μ)·Down(h))
            s = run(i, mu[f"gate_{i}"] * s + (1 - mu[f"gate_{i}"]) * ladder)
        else:  # Su's additive ladder: s ← Side_i(s) + Down(h)
            s = run(i, s) + ladder
    cls = s[:, 0] @ w["up"]["kernel"]  # both heads project s[CLS] up to the trunk width
    if head == "gated":  # μ·h_L[CLS] + (1−μ)·Up(s[CLS])
        cls = mu["head_gate"] * hs[2][:, 0] + (1 - mu["head_gate"]) * cls
    want = cls @ w["classifier"]["kernel"] + w["classifier"]["bias"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- loss sums
def test_loss_sums_weight_each_row():
    """Σ w·xent, Σ w, Σ w·hit by hand; a weight-0 (filler) row changes nothing."""
    logits = np.asarray([[2.0, 0.0, -1.0], [0.5, 0.4, 0.0], [0.0, 0.0, 3.0], [1.0, 2.0, 0.0]])
    targets, weights = np.asarray([0, 2, 2, 0]), np.asarray([1.0, 0.5, 1.0, 0.0])
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    xent = -logp[np.arange(4), targets]
    got = jax.jit(weighted_sums)(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights))
    np.testing.assert_allclose(float(got["loss"]), (weights * xent).sum(), rtol=1e-6)
    assert float(got["weight"]) == 2.5 and float(got["correct"]) == 2.0  # rows 0 and 2 hit


def test_argmax_hits_match_numpy_argmax_with_ties():
    """Ties resolve to the first maximum, as np.argmax: a tied target after it is a miss."""
    rng = np.random.default_rng(0)
    logits = rng.integers(0, 3, (64, 3, 7)).astype(np.float32)  # many ties
    targets = rng.integers(0, 7, (64, 3))
    want = np.argmax(logits, -1) == targets
    got = np.asarray(jax.jit(argmax_hits)(jnp.asarray(logits), jnp.asarray(targets)))
    np.testing.assert_array_equal(got, want)
    assert want.any() and (~want).any()


# ----------------------------------------------------------------------------- schedule
def test_sgd_updates_under_warmup_follow_lr_of_each_step():
    c = trainer_config()
    c.update(optimizer="sgd", learning_rate=0.1, warmup_steps=2, total_steps=10,
             end_lr_factor=0.0, grad_clip_norm=0.0, weight_decay=0.0)
    tx = optimizer_from_config(c)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
    batch = {"x": x, "labels": jnp.asarray([0, 1, 2, 0, 1, 2], jnp.int32),
             "weights": jnp.ones(6, jnp.float32)}

    def sums_fn(params, batch, rng, residual_scale, train):
        return weighted_sums(batch["x"] @ params["w"], batch["labels"], batch["weights"])

    loss = lambda p: sums_fn(p, batch, None, None, True)["loss"] / 6.0
    params = {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)}
    state = create_state(params, tx, 0)
    step = jax.jit(make_train_step(sums_fn, tx))
    grad = jax.jit(jax.grad(loss))
    # lr(t) by hand: 0.1·t/2 for t ≤ 2, then 0.1·(1 − (t−2)/8)
    for lr in (0.0, 0.05, 0.1, 0.0875):
        g = np.asarray(grad(state.params)["w"], np.float64)
        want = np.asarray(state.params["w"], np.float64) - lr * g
        state, _ = step(state, batch)
        np.testing.assert_allclose(state.params["w"], want, rtol=1e-6, atol=1e-7)


def test_adamw_two_steps_by_hand_decay_on_kernels_only():
    c = trainer_config()
    c.update(optimizer="adamw", learning_rate=0.01, warmup_steps=0, total_steps=100,
             end_lr_factor=1.0, weight_decay=0.1, grad_clip_norm=0.0)
    tx = optimizer_from_config(c)
    rng = np.random.default_rng(0)
    theta = {"dense": {"kernel": rng.normal(size=(3, 2)), "bias": rng.normal(size=2)}}
    grads = [jax.tree.map(lambda x: rng.normal(size=x.shape), theta) for _ in range(2)]
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), theta)
    opt = jax.jit(tx.init)(params)
    update, apply_updates = jax.jit(tx.update), jax.jit(optax.apply_updates)
    m = v = jax.tree.map(np.zeros_like, theta)
    for t, g in enumerate(grads, start=1):  # Adam (b1 0.9, b2 0.999, eps 1e-6) + lr·wd·θ
        m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
        c1, c2 = 1 - 0.9 ** t, 1 - 0.999 ** t  # bias corrections
        step = jax.tree.map(lambda m, v, c1=c1, c2=c2: (m / c1) / (np.sqrt(v / c2) + 1e-6), m, v)
        step["dense"]["kernel"] = step["dense"]["kernel"] + 0.1 * theta["dense"]["kernel"]
        theta = jax.tree.map(lambda p, s: p - 0.01 * s, theta, step)
        updates, opt = update(jax.tree.map(jnp.float32, g), opt, params)
        params = apply_updates(params, updates)
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(theta), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- cached LST
def _toy_cache(n_rows=7, k=2, d=3, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 6, n_rows)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    feats = rng.normal(size=(int(offsets[-1]), k, d)).astype(np.float32)
    labels = np.arange(n_rows, dtype=np.int32)  # label = row id, to identify rows
    return feats, offsets, labels


def _check_batch(batch, rows, feats, offsets, size):
    assert batch["features"].shape[0] == size and batch["features"].shape[1] % 4 == 0
    for j, r in enumerate(rows):
        ln = offsets[r + 1] - offsets[r]
        np.testing.assert_array_equal(batch["features"][j, :ln], feats[offsets[r]:offsets[r + 1]])
        assert not batch["features"][j, ln:].any()
        assert batch["attention_mask"][j].tolist() == [1] * ln + [0] * (batch["features"].shape[1]
                                                                         - ln)


def test_cached_epochs_cover_each_row_once_with_its_features():
    feats, offsets, labels = _toy_cache()
    split = CachedSplit(feats, offsets, labels, batch_size=3, pad_multiple=4, seed=5)
    epochs = []
    for _ in range(3):  # 7 rows // 3 = 2 batches an epoch, 6 distinct rows of 7
        rows = []
        for _ in range(2):
            batch = next(split)
            ids = batch["labels"].tolist()
            _check_batch(batch, ids, feats, offsets, 3)
            assert batch["weights"].tolist() == [1.0] * 3
            rows += ids
        assert len(set(rows)) == 6 and set(rows) <= set(range(7)), rows
        epochs.append(rows)
    assert len({tuple(e) for e in epochs}) > 1, "every epoch has the same order"
    state = split.get_state()
    a = next(split)
    split.set_state(state)
    np.testing.assert_array_equal(next(split)["features"], a["features"])
    # one ordered pass: every row once, the last batch filled with weight-0 rows
    seen = []
    for batch in split.one_pass():
        real = batch["weights"] > 0
        _check_batch(batch, batch["labels"][real].tolist(), feats, offsets, 3)
        seen += batch["labels"][real].tolist()
    assert seen == list(range(7))


def test_optax_sgd_is_plain_gradient_descent():
    """The schedule test above relies on sgd being θ ← θ − lr·g (no momentum by default)."""
    tx = optax.sgd(0.5)
    p = {"w": jnp.ones(3)}
    u, _ = tx.update({"w": jnp.arange(3.0)}, tx.init(p), p)
    np.testing.assert_allclose(u["w"], -0.5 * np.arange(3.0))
