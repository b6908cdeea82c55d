"""A pretrained ladder (pretraining with ladder=True): the trunk's gradient is the plain MLM
gradient and its updates the plain ones (clipped apart from the side), the side network computes
in fine-tuning what it computed in pretraining, and an LST run with lst.init=ladder starts from
the saved side network (or says why it cannot)."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import finetune
from gau_jax import workdir as layout
from gau_jax.models import build_encoder, get_model_config
from gau_jax.models.ladder_mlm import LADDER, LADDER_UP, build_ladder_mlm, ladder_groups
from gau_jax.models.lst import LSTConfig, build_model
from gau_jax.train.loop import Trainer
from gau_jax.train.optim import make_optimizer
from gau_jax.train.state import create_state
from gau_jax.train.step import make_train_step, mlm_sums_fn
from tests.train_helpers import SyntheticMLM, tiny_pretrain_config, write_corpus_and_task

LST = LSTConfig(reduction=2, min_side_width=0, trunk_dtype="float32")


def trunk(**kw):
    c = get_model_config("gau_alpha_tiny")
    c.update(num_layers=2, hidden_size=32, intermediate_size=64, key_size=16, vocab_size=40,
             hidden_dropout=0.0, attention_dropout=0.0, **kw)
    return c


def _setup():
    model = build_ladder_mlm(trunk(), LST)
    batch = SyntheticMLM(4, 16, seed=3).batch(0)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), batch["input_ids"])["params"]
    return model, batch, params


def test_trunk_gradient_is_the_plain_mlm_gradient():
    """∂(trunk + side loss)/∂trunk = ∂(trunk loss)/∂trunk of the plain Encoder with the same
    params; the reported loss is the plain one; the side's own loss trains the side."""
    model, batch, params = _setup()
    plain = build_encoder(trunk())
    ladder_sums, plain_sums = mlm_sums_fn(model), mlm_sums_fn(plain)

    def objective(p):
        s = ladder_sums(p, batch, None, None, False)
        return s["objective"], s

    def plain_loss(p):
        return plain_sums(p, batch, None, None, False)["loss"]

    (_, sums), grads = jax.jit(jax.value_and_grad(objective, has_aux=True))(params)
    ref_loss, ref_grads = jax.jit(jax.value_and_grad(plain_loss))(params["encoder"])
    np.testing.assert_allclose(sums["loss"], ref_loss, rtol=1e-6)
    np.testing.assert_allclose(sums["objective"], sums["loss"] + sums["ladder_loss"], rtol=1e-6)
    for got, want in zip(jax.tree.leaves(grads["encoder"]), jax.tree.leaves(ref_grads),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    side_norm = sum(float(jnp.sum(g ** 2)) for g in jax.tree.leaves(grads[LADDER]))
    assert side_norm > 0 and float(jnp.sum(grads[LADDER_UP]["kernel"] ** 2)) > 0


def _trunk_after_steps(model, params, batches, clip_groups=None):
    tx = make_optimizer("lamb", optax.constant_schedule(1e-2), grad_clip_norm=0.05,
                        weight_decay=0.01, clip_groups=clip_groups)
    step = jax.jit(make_train_step(mlm_sums_fn(model), tx))
    state = create_state(params, tx, 0)
    for b in batches:
        state, _ = step(state, b)
    return state.params


def test_trunk_trains_as_without_the_side():
    """LAMB steps with gradient clipping that binds (clip 0.05): the trunk's params after 3
    steps equal the plain Encoder's from the same start — the trunk is clipped by its own norm.
    Clipped by the norm of trunk + side together, they would not."""
    model, _, params = _setup()
    batches = [SyntheticMLM(4, 16, seed=3).batch(i) for i in range(3)]
    want = _trunk_after_steps(build_encoder(trunk()), params["encoder"], batches)
    got = _trunk_after_steps(model, params, batches, ladder_groups)["encoder"]
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    coupled = _trunk_after_steps(model, params, batches)["encoder"]
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in
               zip(jax.tree.leaves(coupled), jax.tree.leaves(want), strict=True)) > 1e-4


def test_side_computes_in_lst_what_it_computed_in_pretraining():
    """The side's MLM logits = Up(s)·Eᵀ with s the token states of the LST model (frozen trunk
    run inside it) built from the same trunk and ladder params: the ladder is read by
    fine-tuning exactly as it was trained."""
    model, batch, params = _setup()
    _, side_logits = jax.jit(model.apply)({"params": params}, batch["input_ids"],
                                           batch["attention_mask"], batch["segment_ids"])
    lst = build_model(trunk(), 0, LST)
    lst = lst.clone(return_states=True)
    states = jax.jit(lst.apply)({"params": {"encoder": params["encoder"], **params[LADDER]}},
                                batch["input_ids"], batch["attention_mask"],
                                batch["segment_ids"])
    table = np.asarray(params["encoder"]["embeddings"]["token_embedding"]["embedding"])
    want = np.asarray(states) @ np.asarray(params[LADDER_UP]["kernel"]) @ table.T
    np.testing.assert_allclose(side_logits, want, rtol=1e-4, atol=1e-5)


TEXTS = ["今天天气很好", "我们去公园散步", "这本书写得不好", "他喜欢喝茶", "明天会下雨吗"]


@pytest.fixture(scope="module")
def ladder_workdir(tmp_path_factory):
    """(a 2-step pretraining workdir with ladder=True, a task folder)."""
    root = tmp_path_factory.mktemp("ladder")
    corpus, task = write_corpus_and_task(root, TEXTS)
    pt = tiny_pretrain_config(data_dir=str(corpus), dev_fraction=0.2, eval_batches=1,
                              batch_size=8, pad_multiple=16, data_threads=1, total_steps=2,
                              checkpoint_every_steps=2, eval_every_steps=2, ladder=True)
    pt.model.update(vocab_size=64, num_layers=2)
    pt.lst.update(reduction=2, min_side_width=0)
    trainer = Trainer(pt, root / "pt")
    try:
        trainer.run()
    finally:
        trainer.close()
    return root / "pt", task


def _initial_params(task, init_from, workdir, **lst):
    c = finetune.get_config("task=jsonl,model=gau_alpha_tiny,method=lst")
    c.model.update(num_layers=2, hidden_size=32, intermediate_size=64, key_size=16)
    c.update(data_dir=str(task), init_from=str(init_from), total_steps=1, batch_size=8,
             max_length=16, pad_multiple=16, data_threads=1, progress_bar=False,
             tensorboard=False, async_checkpoints=False)
    c.lst.update({"reduction": 2, "min_side_width": 0, "trunk_dtype": "float32", **lst})
    trainer = Trainer(c, workdir)
    try:
        return jax.device_get(trainer.host_state().params)
    finally:
        trainer.close()


def test_lst_run_starts_from_the_pretrained_ladder(ladder_workdir, tmp_path):
    pt, task = ladder_workdir
    summary = json.loads((pt / "summary.json").read_text())
    assert 0 <= summary["dev"]["ladder_accuracy"] <= 1 and summary["dev"]["ladder_loss"] > 0
    saved, _, _ = layout.read_params(pt, "best", warn=False)
    params = _initial_params(task, pt, tmp_path / "ladder", init="ladder")
    assert set(saved[LADDER]) <= set(params) and "classifier" in params
    for key, value in saved[LADDER].items():
        for a, b in zip(jax.tree.leaves(value), jax.tree.leaves(params[key]), strict=True):
            np.testing.assert_array_equal(a, b)
    fresh = _initial_params(task, pt, tmp_path / "random", init="random")
    assert not np.array_equal(fresh["down_0"]["kernel"], saved[LADDER]["down_0"]["kernel"])
    for a, b in zip(jax.tree.leaves(fresh["encoder"]), jax.tree.leaves(params["encoder"]),
                    strict=True):  # both runs load the same trunk
        np.testing.assert_array_equal(a, b)


def test_ladder_init_names_what_is_missing_or_different(ladder_workdir, tmp_path):
    pt, task = ladder_workdir
    with pytest.raises(ValueError, match=r"lst.reduction: 2 there, 4 here"):
        _initial_params(task, pt, tmp_path / "r4", init="ladder", reduction=4)
    with pytest.raises(ValueError, match="config.init_from is empty"):
        _initial_params(task, "", tmp_path / "none", init="ladder")
    plain = tmp_path / "plain"  # the same workdir, as if pretrained without the ladder
    shutil.copytree(pt, plain)
    cfg = json.loads((plain / layout.TRAIN_CONFIG).read_text())
    (plain / layout.TRAIN_CONFIG).write_text(json.dumps({**cfg, "ladder": False}))
    with pytest.raises(ValueError, match="--config.ladder=True"):
        _initial_params(task, plain, tmp_path / "p", init="ladder")
