"""Every fine-tuning method composes with every head kind, and LST's heads read its side network.

    one step     full and lst (every head kind), lora / adapter / bitfit (cheaply: one head kind
                 each is slow-marked beside them): the model builds, a train step runs, the loss
                 is finite and the head's parameters move
    LST heads    the GlobalPointer of an LST model reads the side network's token states
                 [b, n, d_s]: at [CLS] they are what the classification head of the same side
                 network reads; gradients reach the side network and never the frozen trunk
    sums         multiple-choice sums mask choice_mask = 0 choices; GlobalPointer "correct"
                 counts rows predicted exactly
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import finetune
from gau_jax.data.tasks import get_task
from gau_jax.models import get_model_config
from gau_jax.models.global_pointer import GlobalPointer
from gau_jax.tasks import TaskOptions, kind_of, losses
from gau_jax.train import methods
from gau_jax.train.state import create_state
from gau_jax.train.step import make_train_step

N, VOCAB = 8, 30


def head(c, num_classes: int):
    """The head config.task's kind asks for (what the trainer passes to a method's build)."""
    spec = get_task(c.task)
    return kind_of(spec).head(spec, num_classes, TaskOptions.of(c))


def tiny():
    c = get_model_config("gau_alpha_tiny")
    c.update(vocab_size=VOCAB, num_layers=1, hidden_size=16, intermediate_size=32, key_size=8,
             hidden_dropout=0.0, attention_dropout=0.0)
    return c


def config(task: str, method: str):
    c = finetune.get_config(f"task={task},method={method}")
    c.update(gp_head_size=8)
    c.lst.reduction = 2
    return c


def batch(task: str, b: int = 2) -> dict:
    rng = np.random.default_rng(0)
    shape = (b, 3, N) if task == "c3" else (b, N)
    mask = np.ones(shape, np.int32)
    mask[..., N - 2:] = 0
    out = {"input_ids": rng.integers(5, VOCAB, shape).astype(np.int32) * mask,
           "attention_mask": mask, "segment_ids": np.zeros(shape, np.int32),
           "weights": np.ones(b, np.float32)}
    if task == "c3":
        out["input_ids"][1, 2] = out["attention_mask"][1, 2] = 0  # an absent choice
        out["choice_mask"] = out["attention_mask"].any(-1).astype(np.int32)
        out["labels"] = np.asarray([2, 1], np.int32)
    elif task == "tnews":
        out["labels"] = np.asarray([3, 1], np.int32)
    else:
        t = 10 if task == "cluener" else 1
        spans = np.zeros((b, t, N, N), np.int8)
        spans[0, t - 1, 1, 3] = spans[1, 0, 2, 2] = 1
        out["span_labels"] = spans
    return out


def head_leaves(params) -> dict:
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in flat
            if "classifier" in jax.tree_util.keystr(p) or "global_pointer" in
            jax.tree_util.keystr(p)}


def init(model, ids):
    return jax.jit(lambda i: model.init(jax.random.PRNGKey(0), i))(ids)["params"]


def one_step(task: str, method: str):
    c = config(task, method)
    built = methods.get(method).build(c, tiny(), head(c, 10 if task == "cluener" else 15))
    b = batch(task)
    params = init(built.model, np.ones((1, N), np.int32))
    tx = optax.adam(1e-2)
    if built.trainable is not None:
        mask = built.trainable(params)
        tx = optax.multi_transform({True: tx, False: optax.set_to_zero()}, mask)
    state = create_state(params, tx, 0)
    step = jax.jit(make_train_step(kind_of(get_task(task)).sums_fn(built.model), tx))
    new, metrics = step(state, b)
    assert np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) > 0
    before, after = head_leaves(params), head_leaves(new.params)
    assert before and any(not np.allclose(before[k], after[k]) for k in before)
    return built, new


@pytest.mark.parametrize("method", ["full", "lst"])
@pytest.mark.parametrize("task", ["c3", "cluener",  # cmrc2018: the same GlobalPointer, T = 1
                                  pytest.param("cmrc2018", marks=pytest.mark.slow)])
def test_full_and_lst_train_every_head(task, method):
    one_step(task, method)


@pytest.mark.parametrize("method,task", [("lora", "cluener"), ("adapter", "c3"),
                                         ("bitfit", "cmrc2018")])
def test_peft_methods_train_a_new_head(method, task):
    built, new = one_step(task, method)
    if method == "lora":  # the trunk stays frozen, the head trains
        mask = built.trainable(new.params)
        assert mask["base"]["global_pointer"]["dense"]["kernel"]
        assert not mask["base"]["encoder"]["embeddings"]["token_embedding"]["embedding"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "adapter", "bitfit"])
@pytest.mark.parametrize("task", ["c3", "cmrc2018", "cluener"])
def test_peft_methods_train_every_head(task, method):
    one_step(task, method)


def _capture(cls, store):
    def interceptor(next_fun, args, kwargs, context):
        if isinstance(context.module, cls) and context.method_name == "__call__":
            store.append(args[0])
        return next_fun(*args, **kwargs)

    return interceptor


def test_lst_global_pointer_reads_the_side_token_states():
    gp_c, cls_c = config("cluener", "lst"), config("tnews", "lst")
    gp_built = methods.get("lst").build(gp_c, tiny(), head(gp_c, 10))
    cls_built = methods.get("lst").build(cls_c, tiny(), head(cls_c, 15))
    b = batch("cluener")
    params = init(gp_built.model, b["input_ids"])
    cls_params = init(cls_built.model, b["input_ids"])
    shared = {k: v for k, v in params.items() if k != "global_pointer"}
    side_width = params["down_0"]["kernel"].shape[1]
    seen_gp, seen_cls = [], []
    def run(model, p, seen, cls):  # under jit; the captured states leave as outputs
        def f(p, ids, mask):
            with nn.intercept_methods(_capture(cls, seen)):
                model.apply({"params": p}, ids, mask)
            return seen[-1]  # GlobalPointer: its input; Dense: the classifier's (last)
        return np.asarray(jax.jit(f)(p, b["input_ids"], b["attention_mask"]))

    states = run(gp_built.model, params, seen_gp, GlobalPointer)
    cls_in = run(cls_built.model, {**shared, "classifier": cls_params["classifier"]}, seen_cls,
                 nn.Dense)
    assert states.shape == (2, N, side_width)  # token states of the side network (head "side")
    np.testing.assert_allclose(states[:, 0], cls_in, rtol=1e-5, atol=1e-6)

    def loss(p):
        logits = gp_built.model.apply({"params": p}, b["input_ids"], b["attention_mask"])
        return jnp.sum(jnp.where(logits > -1e11, logits, 0.0) ** 2)

    g = jax.jit(jax.grad(loss))(params)
    norm = lambda t: float(optax.global_norm(t))
    assert norm(g["side_0"]) > 0 and norm(g["down_1"]) > 0 and norm(g["global_pointer"]) > 0
    assert norm(g["encoder"]) == 0.0  # stop_gradient: nothing reaches the frozen trunk


def test_sums_mask_choices_and_count_exact_rows():
    c = config("c3", "full")
    built = methods.get("full").build(c, tiny(), head(c, 0))
    b = batch("c3")
    params = init(built.model, b["input_ids"][:, 0])
    sums = jax.jit(losses.multiple_choice_sums_fn(built.model), static_argnums=(2, 3, 4))
    logits = np.asarray(jax.jit(built.model.apply)({"params": params}, b["input_ids"],
                                                   b["attention_mask"], b["segment_ids"]))
    b2 = dict(b, choice_mask=b["choice_mask"].copy())
    b2["choice_mask"][0, 0] = 0  # masked though present: it must leave the softmax
    got = sums(params, b2, None, None, False)
    z = logits.astype(np.float64)
    z[0, 0] = z[1, 2] = -np.inf
    lse = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1)
    want = float(sum(lse[r] - z[r, b["labels"][r]] for r in range(2)))
    np.testing.assert_allclose(float(got["loss"]), want, rtol=1e-5)

    class Perfect(nn.Module):  # scores = +1 at gold spans, −1 elsewhere (a "model")
        @nn.compact
        def __call__(self, ids, mask=None, seg=None, deterministic=True):
            self.param("unused", nn.initializers.zeros, ())
            return jnp.asarray(np.where(batch("cluener")["span_labels"] > 0, 1.0, -1.0))

    gp = jax.jit(losses.global_pointer_sums_fn(Perfect()), static_argnums=(2, 3, 4))
    bg = batch("cluener")
    assert float(gp({"unused": 0.0}, bg, None, None, False)["correct"]) == 2.0
    bg["span_labels"] = bg["span_labels"].copy()
    bg["span_labels"][1, 3, 0, 1] = 1  # a gold span row 1 misses
    assert float(gp({"unused": 0.0}, bg, None, None, False)["correct"]) == 1.0
