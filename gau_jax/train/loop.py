"""The training loop: config + workdir → trained checkpoints, metrics and summary.json.

    for t in [start, total_steps):
        batch_t = next(train iterator)                  (local rows → global sharded arrays)
        state   = train_step(state, batch_t)            (jit on a mesh, or pmap)
        every log_every_steps:        train means → metrics.jsonl / TensorBoard / tqdm
        every eval_every_steps + end: dev sums → accuracy (+ DIR/best when it improves)
        every checkpoint_every_steps + end: state + iterator state → DIR/checkpoints

A workdir that already holds a checkpoint resumes from it (params, optimizer state, step, data
iterator), so an interrupted run finishes with the same parameters as an uninterrupted one.
All input validation happens before the first step.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gau_jax.train import checkpoint as ckpt_lib
from gau_jax.train import inputs as inputs_lib
from gau_jax.train import metrics as metrics_lib
from gau_jax.train import partition
from gau_jax.train.optim import optimizer_from_config
from gau_jax.train.state import TrainState, create_state
from gau_jax.train.step import make_eval_step, make_train_step

PARALLEL_MODES = ("jit", "pmap")


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Errors (naming the field) that must stop a run before anything is built."""
    if config.kind not in ("pretrain", "finetune"):
        raise ValueError(f"config.kind={config.kind!r} must be 'pretrain' or 'finetune'")
    if config.parallel not in PARALLEL_MODES:
        raise ValueError(f"config.parallel={config.parallel!r} must be one of {PARALLEL_MODES}")
    if config.parallel == "pmap" and config.fsdp != 1:
        raise ValueError("config.fsdp > 1 needs config.parallel='jit'")
    for field in ("total_steps", "batch_size", "grad_accum_steps", "log_every_steps",
                  "eval_every_steps", "checkpoint_every_steps"):
        if int(config[field]) <= 0:
            raise ValueError(f"config.{field} must be positive, got {config[field]}")
    partition.check_batch_size(config.batch_size, config.grad_accum_steps)
    if config.dtype:
        config.model.dtype = config.dtype


class Trainer:
    """Builds everything for one run; `run()` trains. Kept as an object for tests/notebooks."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | Path,
                 inputs: inputs_lib.Inputs | None = None):
        validate_config(config)
        self.config, self.workdir = config, Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.inputs = inputs or inputs_lib.build_inputs(config, self.workdir)
        self.model, self.sums_fn = self.inputs.model, self.inputs.sums_fn
        self.tx = optimizer_from_config(config, self.inputs.trainable)
        self.ckpt = ckpt_lib.Checkpointer(self.workdir, max_to_keep=config.keep_checkpoints,
                                          async_save=config.async_checkpoints)
        self._build_state()
        inputs_lib.write_model_files(self.workdir, self.inputs)
        self._build_steps()

    # --------------------------------------------------------------------------- state
    def _init_state(self) -> TrainState:
        dummy = jnp.ones((1, self.config.max_length), jnp.int32)
        params = self.model.init(jax.random.PRNGKey(self.config.seed), dummy)["params"]
        if self.inputs.pretrained is not None:
            params = ckpt_lib.merge_pretrained(params, self.inputs.pretrained,
                                               self.inputs.encoder_path)
        if self.inputs.post_init is not None:  # e.g. LST's pruned side initialisation
            params = self.inputs.post_init(params)
        return create_state(params, self.tx, self.config.seed)

    def _build_state(self) -> None:
        abstract = jax.eval_shape(self._init_state)
        self.pmap = self.config.parallel == "pmap"
        if self.pmap:
            self.mesh = None
            self.shardings = None
            restore_target = abstract
        else:
            self.mesh = partition.make_mesh(self.config.fsdp)
            self.shardings = partition.state_shardings(abstract, self.mesh)
            restore_target = jax.tree_util.tree_map(
                lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                abstract, self.shardings)
        self.data_state = None
        self.best = None
        if self.ckpt.latest_step() is not None:
            state, self.data_state, meta = self.ckpt.restore(restore_target)
            self.best = meta.get("best")
            logging.info("resuming %s from step %d", self.workdir, int(state.step))
        elif self.pmap:
            state = jax.jit(self._init_state)()
        else:
            with jax.set_mesh(self.mesh):
                state = jax.jit(self._init_state, out_shardings=self.shardings)()
        self.state = partition.replicate(state) if self.pmap else state
        if self.data_state is not None:
            self.inputs.train.set_state(self.data_state)

    def _build_steps(self) -> None:
        c = self.config
        axis = "batch" if self.pmap else None
        train_step = make_train_step(self.sums_fn, self.tx, grad_accum_steps=c.grad_accum_steps,
                                     residual_ramp_steps=c.residual_ramp_steps, axis_name=axis)
        eval_step = make_eval_step(self.sums_fn, residual_ramp_steps=c.residual_ramp_steps,
                                   axis_name=axis)
        if self.pmap:
            self.train_step = jax.pmap(train_step, axis_name=axis, donate_argnums=(0,))
            self.eval_step = jax.pmap(eval_step, axis_name=axis)
        else:
            bs = partition.batch_sharding(self.mesh)
            self.train_step = jax.jit(train_step, in_shardings=(self.shardings, bs),
                                      out_shardings=(self.shardings, None), donate_argnums=(0,))
            self.eval_step = jax.jit(eval_step, in_shardings=(self.shardings, bs))

    def host_state(self) -> TrainState:
        """The (unreplicated) state, as a checkpoint stores it."""
        return partition.unreplicate(self.state) if self.pmap else self.state

    def step(self) -> int:
        return int(jax.device_get(self.host_state().step))

    # --------------------------------------------------------------------------- running
    def _device_batch(self, batch: dict[str, np.ndarray]):
        if self.pmap:
            return partition.shard_for_pmap(batch)
        return partition.global_batch(batch, self.mesh)

    def _first(self, tree: Any) -> Any:
        tree = jax.device_get(tree)
        return jax.tree_util.tree_map(lambda x: np.asarray(x)[0], tree) if self.pmap else tree

    def evaluate(self) -> dict[str, float]:
        """Dev metrics from sums over the dev set: loss, accuracy, count."""
        totals = {"loss": 0.0, "weight": 0.0, "correct": 0.0}
        for i, batch in enumerate(self.inputs.dev_batches()):
            if self.config.eval_batches and i >= self.config.eval_batches:
                break
            sums = self._first(self.eval_step(self.state, self._device_batch(batch)))
            for k in totals:
                totals[k] += float(sums[k])
        w = max(totals["weight"], 1e-9)
        return {"loss": totals["loss"] / w, "accuracy": totals["correct"] / w,
                "count": totals["weight"]}

    def _save(self, step: int, force: bool = False) -> None:
        meta = {"step": step, "best": self.best}
        self.ckpt.save(step, self.host_state(), self.inputs.train.get_state(), meta, force=force)

    def _maybe_keep_best(self, step: int, dev: dict[str, float]) -> None:
        if not self.config.get("keep_best", False):
            return
        if self.best is None or dev["accuracy"] > self.best["accuracy"]:
            self.best = {"step": step, **dev}
            self.ckpt.save_best(step, self.host_state().params, self.best)

    def run(self, stop_at: int | None = None) -> dict[str, Any]:
        """Trains to config.total_steps (or only up to `stop_at`, checkpointing there, as a
        preempted job would); returns and writes the summary."""
        c = self.config
        start, end = self.step(), c.total_steps if stop_at is None else min(stop_at, c.total_steps)
        done = self.workdir / "summary.json"
        if start >= c.total_steps and done.exists():  # a finished workdir: nothing to do
            return json.loads(done.read_text())
        writer = metrics_lib.MetricWriter(self.workdir, tensorboard=c.tensorboard)
        bar = metrics_lib.Progress(start, c.total_steps, desc=c.kind, enabled=c.progress_bar)
        pending, last_train, dev, t0 = [], {}, None, time.time()
        with self._mesh_context():
            for step in range(start + 1, end + 1):
                batch = self._device_batch(next(self.inputs.train))
                self.state, m = self.train_step(self.state, batch)
                pending.append(m)
                if step % c.log_every_steps == 0 or step == end:
                    last_train = self._mean(pending)
                    pending = []
                    last_train["steps_per_s"] = bar.steps_per_second(step)
                    writer.write(step, "train", last_train)
                bar.update(step, **({"loss": last_train["loss"]} if "loss" in last_train else {}))
                if step % c.eval_every_steps == 0 or step == c.total_steps:
                    dev = self.evaluate()
                    writer.write(step, "dev", dev)
                    self._maybe_keep_best(step, dev)
                if step % c.checkpoint_every_steps == 0 or step == end:
                    self._save(step)
        bar.close()
        if dev is None and start >= c.total_steps:  # finished before summary.json was written
            with self._mesh_context():
                dev = self.evaluate()
        self.ckpt.wait()
        writer.close()
        summary = {"step": self.step(), "train_loss": last_train.get("loss"),
                   "train_accuracy": last_train.get("accuracy"), "dev": dev,
                   "best_dev": self.best, "wall_time_s": time.time() - t0,
                   "workdir": str(self.workdir.absolute())}
        if self.step() == c.total_steps:
            metrics_lib.write_summary(self.workdir, summary)
        return summary

    def _mesh_context(self):
        import contextlib

        return contextlib.nullcontext() if self.pmap else jax.set_mesh(self.mesh)

    def _mean(self, ms: list[dict]) -> dict[str, float]:
        ms = [self._first(m) for m in ms]
        return {k: float(np.mean([m[k] for m in ms])) for k in ms[0] if k != "weight"}

    def close(self) -> None:
        self.ckpt.close()


def train(config: ml_collections.ConfigDict, workdir: str | Path,
          stop_at: int | None = None) -> dict[str, Any]:
    """Runs (or resumes) the experiment `config` in `workdir`; returns the summary."""
    trainer = Trainer(config, workdir)
    try:
        (Path(workdir) / "train_config.json").write_text(config.to_json_best_effort(indent=2))
        return trainer.run(stop_at=stop_at)
    finally:
        trainer.close()


