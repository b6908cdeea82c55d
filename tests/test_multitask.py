"""The multi-task stage: mixture rates, per-task heads, a workdir that initialises single-task
runs and predicts each of its tasks, bitwise resume."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import finetune, multitask
from gau_jax import workdir as layout
from gau_jax.data.tasks import get_task
from gau_jax.models import HeadSpec, TaskModel, build_encoder, get_model_config
from gau_jax.tasks import kind_of, submission
from gau_jax.tasks.mixture import TaskMixture, mark, mixture_rates
from gau_jax.train import trained_run
from gau_jax.train.loop import Trainer
from gau_jax.train.task_setup import mixture_sums_fn
from tests.clue_fixtures import write_clue


def test_mixture_rates_follow_their_formula_over_many_steps():
    sizes = {"a": 900, "b": 100, "c": 400}
    for alpha in (1.0, 0.5, 0.0):
        rates = mixture_rates(sizes, alpha)
        want = {t: n ** alpha / sum(m ** alpha for m in sizes.values()) for t, n in sizes.items()}
        assert rates == pytest.approx(want)
        its = {t: iter(lambda: {"x": np.zeros(2)}, None) for t in sizes}
        mix = TaskMixture(its, rates, seed=3)
        steps = 6000
        drawn = [next(mix) for _ in range(steps)]
        for t, r in rates.items():
            got = sum(f"task:{t}" in b for b in drawn) / steps
            assert abs(got - r) < 4 * np.sqrt(r * (1 - r) / steps) + 1e-9, (alpha, t, got, r)
        again = TaskMixture(its, rates, seed=3)
        assert [again.task_at(k) for k in range(50)] == [mix.task_at(k) for k in range(50)]
    with pytest.raises(ValueError, match="no train rows"):
        mixture_rates({"a": 3, "b": 0}, 1.0)


def test_each_head_gets_gradients_only_from_its_own_tasks_rows():
    cfg = get_model_config("gau_alpha_tiny")
    cfg.update(num_layers=1, hidden_size=32, intermediate_size=64, key_size=16, vocab_size=40,
               hidden_dropout=0.0, attention_dropout=0.0)
    heads = (("tnews", HeadSpec("classification", 15, 0.0)),
             ("afqmc", HeadSpec("classification", 2, 0.0)))
    model = TaskModel(build_encoder(cfg), heads)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.ones((1, 8), jnp.int32))["params"]
    assert {"tnews", "afqmc", "encoder"} <= set(params)
    tasks = [types.SimpleNamespace(name=n, kind=kind_of(get_task(n)), opts=None)
             for n, _ in heads]
    sums = mixture_sums_fn(model, tasks)
    rng = np.random.default_rng(0)
    batch = {"input_ids": rng.integers(5, 40, (4, 8)).astype(np.int32),
             "segment_ids": np.zeros((4, 8), np.int32), "attention_mask": np.ones((4, 8), np.int32),
             "labels": np.array([0, 1, 1, 0], np.int32), "weights": np.ones(4, np.float32)}
    for task, other in (("tnews", "afqmc"), ("afqmc", "tnews")):
        grads = jax.jit(jax.grad(
            lambda p, t=task: sums(p, mark(batch, t), None, None, False)["loss"]))(params)
        assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads[other]))
        assert any(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(grads[task]))
        assert any(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(grads["encoder"]))
        # the task's loss is its kind's loss on its own head
        ref = kind_of(get_task(task)).sums_fn(
            types.SimpleNamespace(apply=lambda v, *a, t=task, **k: model.apply(v, *a, task=t,
                                                                                 **k)))
        want = jax.jit(lambda p, b, f=ref: f(p, b, None, None, False)["loss"])(params, batch)
        got = jax.jit(lambda p, b: sums(p, b, None, None, False)["loss"])(params,
                                                                           mark(batch, task))
        assert float(got) == pytest.approx(float(want))


def _tiny(c, clue, steps):
    c.model.update(num_layers=1, hidden_size=32, intermediate_size=64, key_size=16,
                   hidden_dropout=0.0, attention_dropout=0.0)
    c.update(total_steps=steps, batch_size=8, grad_accum_steps=1, max_length=64, stride=32,
             log_every_steps=2, eval_every_steps=2, checkpoint_every_steps=2,
             progress_bar=False, tensorboard=False, async_checkpoints=False,
             data_dir=str(clue), data_threads=1, pad_multiple=16, gp_head_size=16,
             learning_rate=3e-2)
    return c


def _train(config, wd, stop_at=None):
    trainer = Trainer(config, wd)
    try:
        trainer.run(stop_at=stop_at)
        return jax.device_get(trainer.host_state().params)
    finally:
        trainer.close()


@pytest.mark.slow
def test_multitask_workdir_resumes_bitwise_initialises_and_predicts(tmp_path):
    clue = write_clue(tmp_path / "clue")
    config = _tiny(multitask.get_config("tasks=tnews+cmrc2018"), clue, 4)
    whole = _train(config, tmp_path / "mt")
    _train(config, tmp_path / "mt2", stop_at=2)                   # killed after step 2 ...
    resumed = _train(config, tmp_path / "mt2")                    # ... and resumed
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    assert {"tnews", "cmrc2018", "encoder"} <= set(whole)

    for task in ("tnews", "cmrc2018"):  # predicts each of its tasks
        run = trained_run.load_run(tmp_path / "mt", task=task)
        rows = submission.split_examples(task, clue, "dev", bad_rows="skip")
        submission.check_predictions(task, trained_run.predict(run, rows).objects, rows)
    with pytest.raises(ValueError, match="pick"):
        trained_run.load_run(tmp_path / "mt")
    from experiments.predict import run_predict  # the command's code path, --task c3 style

    path = run_predict(tmp_path / "mt", "dev", output=str(tmp_path), task="cmrc2018")
    assert path.name == submission.submission_name("cmrc2018")
    with pytest.raises(ValueError, match="--task"):
        run_predict(tmp_path / "mt", "dev", output=str(tmp_path))

    ft = _tiny(finetune.get_config("task=tnews"), clue, 1)        # init_from the stage
    ft.update(init_from=str(tmp_path / "mt"), eval_every_steps=1, checkpoint_every_steps=1)
    trainer = Trainer(ft, tmp_path / "ft")
    try:
        start = jax.device_get(trainer.host_state().params)
    finally:
        trainer.close()
    best, _, _ = layout.read_params(tmp_path / "mt", "best")
    for a, b in zip(jax.tree.leaves(start["classifier"]), jax.tree.leaves(best["tnews"]),
                    strict=True):
        np.testing.assert_array_equal(a, b)                       # the task's own head
    for a, b in zip(jax.tree.leaves(start["encoder"]), jax.tree.leaves(best["encoder"]),
                    strict=True):
        np.testing.assert_allclose(a, b)                          # and the trunk


def test_lst_multitask_is_one_side_network_with_a_head_per_task():
    """method=lst composes with the stage: one frozen trunk, one side network, a head per task
    (a classification and a GlobalPointer head), each reading the side network's states."""
    from gau_jax.tasks import TaskOptions
    from gau_jax.train import methods

    c = multitask.get_config("tasks=tnews+cluener,method=lst")
    c.lst.reduction = 2
    cfg = get_model_config("gau_alpha_tiny")
    cfg.update(num_layers=2, hidden_size=32, intermediate_size=64, key_size=16, vocab_size=40)
    opts = TaskOptions.of(c)
    heads = tuple((n, kind_of(get_task(n)).head(get_task(n), get_task(n).num_classes, opts))
                  for n in ("tnews", "cluener"))
    built = methods.get("lst").build(c, cfg, heads)
    ids = jnp.ones((2, 8), jnp.int32)
    params = jax.jit(built.model.init)(jax.random.PRNGKey(0), ids)["params"]
    assert {"encoder", "tnews", "cluener"} <= set(params)
    assert set(params["tnews"]) == {"classifier"} and set(params["cluener"]) == {"global_pointer"}
    assert any(k.startswith("side_") for k in params)  # one side network, shared
    apply = jax.jit(built.model.apply, static_argnames=("task",))
    assert apply({"params": params}, ids, task="tnews").shape == (2, 15)
    assert apply({"params": params}, ids, task="cluener").shape == (2, 10, 8, 8)
    mask = built.trainable(params)
    assert not any(jax.tree.leaves(mask["encoder"]))
    assert all(jax.tree.leaves(mask["tnews"])) and all(jax.tree.leaves(mask["cluener"]))
