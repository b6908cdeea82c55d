"""NaN / Inf in the loss or the gradient norm: stop naming the step, the metric and the last
good checkpoint (NonFiniteError; EXIT_NONFINITE from the command line), parameters never
updated by the bad step; or, with config.skip_nonfinite_updates, skip and count such updates
and stop after config.max_consecutive_skips in a row.

The bad steps come from a poisoned synthetic iterator: every batch carries a "poison" factor
(1 normally; NaN / Inf at chosen steps) that the loss sums multiply into the loss ("loss") or
only into its gradient ("grad": a finite loss with an Inf gradient norm).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gau_jax.train import loop
from gau_jax.train.loop import Trainer
from gau_jax.train.metrics import read_jsonl
from tests import fault_helpers as fh
from tests.train_helpers import SyntheticMLM, synthetic_inputs, tiny_pretrain_config

NonFiniteError = getattr(loop, "NonFiniteError", FloatingPointError)


@jax.custom_vjp
def _scale_grad(x, s):
    return x


def _scale_fwd(x, s):
    return x, s


def _scale_bwd(s, g):
    return g * s, jnp.zeros_like(s)


_scale_grad.defvjp(_scale_fwd, _scale_bwd)


class Poisoned(SyntheticMLM):
    """SyntheticMLM whose batch for step t (batch index t - 1) carries poison[t]."""

    def __init__(self, batch_size, length, seed=0, poison=None):
        super().__init__(batch_size, length, seed)
        self.poison = poison or {}

    def batch(self, i):
        b = super().batch(i)
        b["poison"] = np.full(self.batch_size, self.poison.get(i + 1, 1.0), np.float32)
        return b


def poisoned_inputs(config, poison: dict[int, float], where: str = "loss"):
    base = synthetic_inputs(config)
    inner = base.sums_fn

    def sums(params, batch, rng, residual_scale, train):
        batch = dict(batch)
        s = jnp.max(batch.pop("poison"))  # NaN / Inf if the batch is poisoned, else 1
        out = inner(params, batch, rng, residual_scale, train)
        loss = out["loss"] * s if where == "loss" else _scale_grad(out["loss"], s)
        return {**out, "loss": loss}

    def dev():
        for b in base.dev_batches():
            yield {**b, "poison": np.ones(config.batch_size, np.float32)}

    train = Poisoned(config.batch_size, config.max_length, config.seed, poison)
    return dataclasses.replace(base, sums_fn=sums, train=train, dev_batches=dev)


def _config(**kw):
    c = tiny_pretrain_config(total_steps=6, checkpoint_every_steps=2, batch_size=8,
                             eval_every_steps=6, eval_batches=1)
    c.update(kw)
    return c


def _train_leaves(state):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(
        jax.device_get((state.params, state.opt_state)))]


@pytest.fixture(scope="module")
def clean_at_2(tmp_path_factory):
    """params + optimizer state after 2 clean steps (the state before a bad step 3)."""
    config = _config()
    trainer = Trainer(config, tmp_path_factory.mktemp("clean"), inputs=poisoned_inputs(config,
                                                                                      {}))
    trainer.run(stop_at=2)
    out = _train_leaves(trainer.host_state())
    trainer.close()
    return out


@pytest.mark.parametrize("where,value,metric,log_every", [
    ("loss", math.nan, "loss", 1), ("loss", math.inf, "loss", 1),
    ("grad", math.inf, "grad_norm", 1), ("loss", math.nan, "loss", 4)])
def test_nonfinite_step_stops_and_is_not_applied(tmp_path, clean_at_2, where, value, metric,
                                                 log_every):
    config = _config(log_every_steps=log_every, checkpoint_every_steps=2)
    trainer = Trainer(config, tmp_path, inputs=poisoned_inputs(config, {3: value}, where))
    try:
        with pytest.raises(NonFiniteError) as err:
            trainer.run()
        assert err.value.step == 3
        msg = str(err.value)
        assert "step 3" in msg and metric in msg, msg
        assert str(tmp_path / "checkpoints" / "2") in msg, msg  # the last good checkpoint
        # neither step 3 nor anything after it (log_every=4: step 4 ran) updated the params
        for a, b in zip(_train_leaves(trainer.host_state()), clean_at_2, strict=True):
            np.testing.assert_array_equal(a, b)
    finally:
        trainer.close()
    for step in fh.complete_steps(tmp_path):  # no checkpoint holds a non-finite number
        for k, v in fh.checkpoint_arrays(tmp_path, step).items():
            assert np.all(np.isfinite(v)) if v.dtype.kind == "f" else True, (step, k)
    assert not (tmp_path / "summary.json").exists()


def test_skip_mode_skips_and_counts(tmp_path, clean_at_2):
    config = _config(skip_nonfinite_updates=True, max_consecutive_skips=2)
    trainer = Trainer(config, tmp_path, inputs=poisoned_inputs(config, {3: math.nan,
                                                                        5: math.inf}))
    try:
        trainer.run(stop_at=2)
        for a, b in zip(_train_leaves(trainer.host_state()), clean_at_2, strict=True):
            np.testing.assert_array_equal(a, b)
        trainer.run(stop_at=3)  # the skipped step: params and optimizer state unchanged
        assert trainer.step() == 3
        for a, b in zip(_train_leaves(trainer.host_state()), clean_at_2, strict=True):
            np.testing.assert_array_equal(a, b)
        trainer.run(stop_at=4)  # a good step applies again
        after4 = _train_leaves(trainer.host_state())
        assert any(not np.array_equal(a, b) for a, b in zip(after4, clean_at_2, strict=True))
        trainer.run(stop_at=5)  # skipped (Inf): unchanged from step 4
        for a, b in zip(_train_leaves(trainer.host_state()), after4, strict=True):
            np.testing.assert_array_equal(a, b)
        summary = trainer.run()  # two skips, never two in a row: the run finishes
        assert summary["step"] == 6
        for leaf in _train_leaves(trainer.host_state()):
            assert np.all(np.isfinite(leaf)) if leaf.dtype.kind == "f" else True
    finally:
        trainer.close()
    rows = {r["step"]: r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["split"] == "train"}
    assert [rows[t]["skipped_updates"] for t in range(1, 7)] == [0, 0, 1, 1, 2, 2]
    assert json.loads((tmp_path / "summary.json").read_text())["step"] == 6


def test_skip_mode_stops_after_max_consecutive_skips(tmp_path):
    config = _config(skip_nonfinite_updates=True, max_consecutive_skips=3)
    poison = {3: math.nan, 4: math.inf, 5: math.nan}
    trainer = Trainer(config, tmp_path, inputs=poisoned_inputs(config, poison))
    try:
        with pytest.raises(NonFiniteError) as err:
            trainer.run()
        assert err.value.step == 5, str(err.value)
        assert "step 5" in str(err.value)
    finally:
        trainer.close()
    rows = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert [r["skipped_updates"] for r in rows if r["step"] <= 4] == [0, 0, 1, 2]


@pytest.mark.slow
def test_cli_exit_code_on_overflow(tmp_path):
    """A learning rate that overflows the parameters: exit EXIT_NONFINITE, step and last good
    checkpoint named, no checkpoint with a non-finite number."""
    corpus = fh.write_corpus(tmp_path / "corpus.txt")
    work = tmp_path / "run"
    runner = fh.Runner(tmp_path / "logs")
    try:
        rc, out = runner.run(fh.pretrain_args(
            work, corpus, "--config.total_steps=30", "--config.checkpoint_every_steps=1",
            "--config.eval_every_steps=30", "--config.learning_rate=1e15",
            "--config.warmup_steps=0", "--config.grad_clip_norm=0"), timeout=300)
    finally:
        runner.kill_all()
    assert rc == getattr(loop, "EXIT_NONFINITE", 65), out[-3000:]
    steps = fh.complete_steps(work)
    assert steps, out[-3000:]
    assert str(work / "checkpoints" / str(steps[-1])) in out, out[-3000:]
    bad = [m for line in out.splitlines() if "non-finite" in line.lower()
           for m in re.findall(r"step (\d+)", line)]
    assert bad, out[-3000:]
    assert steps[-1] < int(bad[0]), (steps, bad)  # nothing saved from the bad step on
    for step in steps:
        for k, v in fh.checkpoint_arrays(work, step).items():
            assert np.all(np.isfinite(v)) if v.dtype.kind == "f" else True, (step, k)
