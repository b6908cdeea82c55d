"""The training loop: config + workdir → trained checkpoints, metrics and summary.json.

    for t in [start, total_steps):
        batch_t = next(train iterator)                  (local rows → global sharded arrays)
        state   = train_step(state, batch_t)            (jit on a mesh, or pmap; dispatched
                                                         async, then step t-1 is waited for)
        every log_every_steps:        train means → metrics.jsonl / TensorBoard / progress
        every eval_every_steps + end: dev sums → accuracy (span / NER: + EM, F1 decoded by
                                      RunSetup.dev_eval) → DIR/best when the task's CLUE
                                      metric (RunSetup.best_metric) improves
        every checkpoint_every_steps + end: state + iterator state → DIR/checkpoints

A workdir that already holds a checkpoint resumes from it (params, optimizer state, step, data
iterator, dropout keys, best-dev and the pending train metrics), so an interrupted run finishes
with the parameters and summary of an uninterrupted one. A rerun whose run-defining fields
changed (RESUMABLE_FIELDS may change) is refused, naming them. All validation happens before the
first step; a run that fails before its first checkpoint leaves no workdir behind it created.
How a run stops early (signals, preemption, non-finite steps) and its exit codes:
gau_jax/train/stopping.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from gau_jax import workdir as layout
from gau_jax.train import checkpoint as ckpt_lib
from gau_jax.train import inputs as inputs_lib
from gau_jax.train import methods, partition
from gau_jax.train import metrics as metrics_lib
from gau_jax.train import setup as setup_lib
from gau_jax.train.optim import count_trainable, optimizer_from_config, schedule_from_config
from gau_jax.train.state import TrainState, create_state
from gau_jax.train.step import extra_metrics, make_eval_step, make_train_step
from gau_jax.train.stopping import (
    EXIT_NONFINITE,
    EXIT_PREEMPTED,
    NonFiniteError,
    StopFlag,
    Stopped,
    check_finite,
)
from gau_jax.train.task_setup import task_names

__all__ = ["EXIT_NONFINITE", "EXIT_PREEMPTED", "RESUMABLE_FIELDS", "NonFiniteError", "Stopped",
           "Trainer", "changed_fields", "train", "validate_config"]  # stopping's: re-exported

# Fields a rerun of a workdir may change; any other change is a different run and is refused.
RESUMABLE_FIELDS = ("total_steps", "log_every_steps", "eval_every_steps", "eval_batches",
                    "checkpoint_every_steps", "keep_checkpoints", "async_checkpoints",
                    "progress_bar", "tensorboard", "data_threads", "data_workers", "parallel",
                    "fsdp", "mesh", "skip_nonfinite_updates", "max_consecutive_skips")
# The host dispatches step t, then waits for step t-1 to finish: batch t+1 is prepared while
# step t runs, and no more than this many steps are queued. An unbounded queue of multi-device
# steps can deadlock XLA:CPU's in-process collectives (all-reduce rendezvous aborts the process
# with 8 host devices on 2 cores, after a few hundred steps without a host sync).
STEPS_IN_FLIGHT = 2
_COUNTERS = ("skipped_updates", "bad_streak")  # step metrics that are counts, not means


STAGES = ("pretrain", "finetune", "multitask")  # config.stage: what a run trains


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Errors (naming the field) that must stop a run before anything is built."""
    if config.stage not in STAGES:
        raise ValueError(f"config.stage={config.stage!r} must be one of {STAGES}")
    tasks = config.stage != "pretrain"
    for field in ("total_steps", "batch_size", "grad_accum_steps", "log_every_steps",
                  "eval_every_steps", "checkpoint_every_steps", "max_consecutive_skips"):
        if field == "total_steps" and tasks and config.get("epochs", 0) > 0 \
                and int(config[field]) == 0:
            continue  # fine-tuning: total_steps = epochs × steps per epoch (task_setup.py)
        if int(config[field]) <= 0:
            raise ValueError(f"config.{field} must be positive, got {config[field]}")
    if tasks:
        task_names(config)  # checks every task name
        methods.check(config.method)
    partition.check_config(config)


def changed_fields(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the run-defining fields that differ between two config dicts."""
    out = []
    for key in sorted(set(old) | set(new)):
        if not prefix and key in RESUMABLE_FIELDS:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_fields(a, b, f"{prefix}{key}.")
        elif a != b and not (isinstance(a, list | tuple) and list(a) == list(b or [])):
            out.append(f"{prefix}{key}")
    return out


@dataclasses.dataclass
class _Run:
    """What one call of Trainer.run carries from step to step."""

    end: int                                   # the last step of this call
    writer: metrics_lib.MetricWriter
    bar: metrics_lib.Progress
    records: list[dict]                        # host copies of the step metrics since the log
    last_train: dict                           # the last logged train means
    t0: float
    pending: list = dataclasses.field(default_factory=list)  # device metrics not yet read
    dev: dict | None = None                    # the last dev evaluation
    stop: StopFlag = dataclasses.field(default_factory=StopFlag)


class Trainer:
    """Builds everything for one run; `run()` trains. Kept as an object for tests/notebooks.

    `config` is never changed: the trainer works on a resolved copy (`self.config`, written to
    DIR/train_config.json)."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | Path,
                 inputs: inputs_lib.RunSetup | None = None):
        validate_config(config)
        self.workdir = Path(workdir)
        created = not self.workdir.exists()
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._setup(config, inputs)
        except BaseException:
            steps = self.workdir / layout.CHECKPOINTS
            if created and not (steps.is_dir() and any(p.name.isdigit() for p in steps.iterdir())):
                shutil.rmtree(self.workdir, ignore_errors=True)  # nothing of value was written
            raise

    def _setup(self, config, inputs) -> None:
        resolved = inputs_lib.resolve_config(config)
        self._check_rerun(resolved, derived=True)  # before any data is opened
        self.setup = inputs or setup_lib.build_inputs(resolved, self.workdir)
        self.config = self.setup.config or resolved
        self._check_rerun(self.config)
        self.model, self.sums_fn = self.setup.model, self.setup.sums_fn
        self.tx = optimizer_from_config(self.config, self.setup.trainable,
                                        self.setup.clip_groups)
        self.schedule = schedule_from_config(self.config)
        self.ckpt = ckpt_lib.Checkpointer(self.workdir, max_to_keep=self.config.keep_checkpoints,
                                          async_save=self.config.async_checkpoints)
        self.par = partition.strategy(self.config)
        self.par.static = getattr(self.setup.train, "static_shapes", False)
        self._build_state()
        inputs_lib.write_model_files(self.workdir, self.setup, self.config)
        self._build_steps()

    def _check_rerun(self, config: ml_collections.ConfigDict, derived: bool = False) -> None:
        """A workdir with checkpoints resumes only the run that wrote it. derived=True: the
        config before its inputs are built, so the fields they fill in are not compared."""
        saved = self.workdir / layout.TRAIN_CONFIG
        if not saved.exists() or not (self.workdir / layout.CHECKPOINTS).is_dir():
            return
        old = json.loads(saved.read_text())
        if "kind" in old and "stage" not in old:  # written before the field was renamed
            old["stage"] = old.pop("kind")
        new = json.loads(config.to_json_best_effort())
        changed = changed_fields(old, new)
        if derived:  # pretraining fills in the vocabulary size, fine-tuning init_from's model
            derived_fields = (("model.vocab_size",) if config.stage == "pretrain"
                              else ("model.", "total_steps"))
            changed = [f for f in changed if not f.startswith(derived_fields)]
        if changed:
            what = ("a different model" if any(k.startswith("model.") for k in changed)
                    else "another config")
            raise ValueError(f"{self.workdir} holds a run of {what} ({saved}); changed: "
                             f"{', '.join(changed)}. Use a fresh --workdir, or rerun with the "
                             "original values to resume")

    # --------------------------------------------------------------------------- state
    def _init_state(self) -> TrainState:
        dummy = jnp.ones((1, self.config.max_length), jnp.int32)
        params = self.model.init(jax.random.PRNGKey(self.config.seed), dummy)["params"]
        if self.setup.pretrained is not None:
            params = ckpt_lib.merge_pretrained(params, self.setup.pretrained,
                                               self.setup.encoder_path, self.setup.keep_fresh)
        if self.setup.post_init is not None:  # e.g. LST's pruned side initialisation
            params = self.setup.post_init(params)
        return create_state(params, self.tx, self.config.seed)

    def _build_state(self) -> None:
        abstract = jax.eval_shape(self._init_state)
        restored = self.ckpt.restore(self.par.restore_target(abstract))
        self.data_state, self.best, self.resume_meta = None, None, {}
        if restored is not None:
            state, self.data_state, self.resume_meta = restored
            self.best = self.resume_meta.get("best")
            self._say(f"resuming {self.workdir} from step {int(state.step)}")
            if self.data_state is None and self.resume_meta.get("data") is not None:
                self.data_state = self.resume_meta["data"]  # the same on any process count
                self._say(f"data position restored from the checkpoint: {self.data_state}")
        else:
            state = self.par.init(self._init_state)
        self.state = self.par.place(state)
        if self.data_state is not None:
            self.setup.train.set_state(self.data_state)
        self.num_params = count_trainable(abstract.params)
        self.num_trainable = count_trainable(abstract.params, self.setup.trainable)

    def _build_steps(self) -> None:
        c, axis = self.config, self.par.axis_name
        train_step = make_train_step(self.sums_fn, self.tx, grad_accum_steps=c.grad_accum_steps,
                                     residual_ramp_steps=c.residual_ramp_steps, axis_name=axis,
                                     skip_nonfinite=c.skip_nonfinite_updates,
                                     trainable=self.setup.trainable)
        eval_step = make_eval_step(self.sums_fn, residual_ramp_steps=c.residual_ramp_steps,
                                   axis_name=axis)
        self.train_step, self.eval_step = self.par.compile(train_step, eval_step)

    def host_state(self) -> TrainState:
        """The (unreplicated) state, as a checkpoint stores it."""
        return self.par.host(self.state)

    def step(self) -> int:
        return int(jax.device_get(self.host_state().step))

    def _say(self, line: str) -> None:
        """One line a person reads (process 0 only), visible whatever the log level."""
        if jax.process_index() == 0:
            print(line, flush=True)

    def describe(self) -> str:
        """The start block: devices, processes, mesh, parameters, data and steps."""
        c, dev = self.config, jax.devices()[0]
        mesh = getattr(self.par, "mesh", None)
        what = " ".join(str(x) for x in (c.stage, c.get("task"), c.get("method")) if x)
        lines = [f"run: {what} -> {self.workdir}",
                 f"devices: {jax.device_count()} x {dev.platform} ({dev.device_kind}) in "
                 f"{jax.process_count()} process(es); parallel={c.parallel}"
                 + (f", mesh {dict(mesh.shape)}" if mesh is not None else ""),
                 f"parameters: {self.num_params:,} total, {self.num_trainable:,} trainable",
                 f"batch {c.batch_size} x {c.max_length} tokens, steps {c.total_steps}"]
        if self.setup.data_sizes:
            lines.append("data: " + ", ".join(f"{k} {v:,}" for k, v in
                                              self.setup.data_sizes.items()))
        return "\n".join(lines)

    # --------------------------------------------------------------------------- running
    def evaluate(self) -> dict[str, float]:
        """Dev metrics from sums over the dev set: loss, accuracy, count; span / NER tasks add
        their CLUE metrics from decoded predictions (RunSetup.dev_eval: em + f1, or f1 +
        precision + recall, in percent; "accuracy" there = rows predicted exactly)."""
        totals = {"loss": 0.0, "weight": 0.0, "correct": 0.0}
        for i, batch in enumerate(self.setup.dev_batches()):
            if self.config.eval_batches and i >= self.config.eval_batches:
                break
            sums = self.par.first(self.eval_step(self.state, self.par.device_batch(batch)))
            for k, v in sums.items():
                totals[k] = totals.get(k, 0.0) + float(v)
        w = max(totals["weight"], 1e-9)
        dev = {"loss": totals["loss"] / w, "accuracy": totals["correct"] / w,
               "count": totals["weight"], **extra_metrics(totals, w)}
        dev_eval = getattr(self.setup, "dev_eval", None)
        if dev_eval is not None:
            dev.update(dev_eval(self.host_state().params))
        return dev

    def _save(self, step: int, pending: list[dict], last_train: dict) -> None:
        meta = {"step": step, "best": self.best, "pending": pending, "last_train": last_train}
        data = self.setup.train.get_state()
        if getattr(self.setup.train, "global_state", False):
            meta["data"] = data  # process-independent: restorable on another process count
        self.ckpt.save(step, self.host_state(), data, meta)

    def _maybe_keep_best(self, step: int, dev: dict[str, float]) -> None:
        if not self.config.get("keep_best", False):
            return
        name = getattr(self.setup, "best_metric", "accuracy")  # the task's CLUE metric
        if self.best is None or dev[name] > self.best.get(name, -math.inf):
            self.best = {"step": step, **dev}
            self.ckpt.save_best(step, self.host_state().params, self.best)

    def _check_finite(self, records: list[dict]) -> None:
        """NonFiniteError when the host-side step records show a stop condition."""
        last = self.ckpt.latest_step()
        check_finite(records, self.config, f"{self.workdir}/{layout.CHECKPOINTS}/{last}"
                     if last is not None else "none yet (the run starts from scratch)")

    def run(self, stop_at: int | None = None) -> dict[str, Any]:
        """Trains to config.total_steps (or only up to `stop_at`, checkpointing there, as a
        preempted job would); returns and writes the summary (early stops: stopping.py)."""
        c = self.config
        start, end = self.step(), c.total_steps if stop_at is None else min(stop_at, c.total_steps)
        done = self.workdir / layout.SUMMARY
        if start >= c.total_steps and done.exists():  # a finished workdir: nothing to do
            return json.loads(done.read_text())
        self._say(self.describe())
        writer = metrics_lib.MetricWriter(self.workdir, tensorboard=c.tensorboard)
        bar = metrics_lib.Progress(start, c.total_steps, desc=c.stage, enabled=c.progress_bar)
        run = _Run(end, writer, bar, records=list(self.resume_meta.get("pending") or []),
                   last_train=dict(self.resume_meta.get("last_train") or {}), t0=time.time())
        try:
            with self.par.context():
                for step in range(start + 1, end + 1):
                    self._train_one(step, run)
        finally:
            run.stop.restore()
            bar.close()
            writer.close()
        return self._finish(start, run)

    def _train_one(self, step: int, run: _Run) -> None:
        """Step `step`: dispatch; at a sync, read the step metrics; log, evaluate, checkpoint,
        and stop (Stopped) when a signal or preemption asks for it."""
        c = self.config
        batch = self.par.device_batch(next(self.setup.train))
        self.state, m = self.train_step(self.state, batch)
        run.pending.append(m)
        if len(run.pending) >= STEPS_IN_FLIGHT:  # a wait, not a transfer (STEPS_IN_FLIGHT)
            jax.block_until_ready(run.pending[-STEPS_IN_FLIGHT])
        log = step % c.log_every_steps == 0 or step == run.end
        evaluate = self._has_dev() and (step % c.eval_every_steps == 0 or step == c.total_steps)
        save = step % c.checkpoint_every_steps == 0 or step == run.end
        why = run.stop.why
        if jax.process_count() > 1 and multihost_utils.reached_preemption_sync_point(step):
            why = why or "preemption"
        if log or evaluate or save or why:  # a host sync: read the step metrics
            run.records += [self._record(s, x) for s, x in
                            zip(range(step - len(run.pending) + 1, step + 1), run.pending,
                                strict=True)]
            run.pending = []
            self._check_finite(run.records)
        if log:
            self._log_train(step, run)
        run.bar.update(step, **({"loss": run.last_train["loss"]} if "loss" in run.last_train
                                else {}))
        if evaluate:
            run.dev = self.evaluate()
            run.writer.write(step, "dev", run.dev)
            self._maybe_keep_best(step, run.dev)
        if save or why:
            self._save(step, run.records, run.last_train)
        if why:
            self.ckpt.wait()
            raise Stopped(step, self.workdir.absolute(), why)

    def _log_train(self, step: int, run: _Run) -> None:
        """The means of the step records since the last log (+ learning rate, steps/s, a corpus
        mixture's rows) → metrics; the records start over."""
        run.last_train = self._mean(run.records)
        run.last_train["learning_rate"] = float(self.schedule(step - 1))
        rate = run.bar.steps_per_second(step)  # NaN until a step after the first
        if math.isfinite(rate):
            run.last_train["steps_per_s"] = rate
        rows_drawn = getattr(self.setup.train, "rows_drawn", None)
        if rows_drawn is not None:  # a corpus mixture's rows so far
            run.last_train.update({f"rows/{k}": v for k, v in rows_drawn().items()})
        run.writer.write(step, "train", run.last_train)
        run.records = []

    def _has_dev(self) -> bool:
        return self.setup.dev_batches is not None  # None: a run without evaluation

    def _finish(self, start: int, run: _Run) -> dict[str, Any]:
        """The summary once the steps are done (written when the run reached total_steps)."""
        dev = run.dev
        if self._has_dev() and dev is None and start >= self.config.total_steps:
            with self.par.context():  # finished before the summary was written
                dev = self.evaluate()
        self.ckpt.wait()
        summary = {"step": self.step(), "train_loss": run.last_train.get("loss"),
                   "train_accuracy": run.last_train.get("accuracy"), "dev": dev,
                   "best_dev": self.best, "wall_time_s": time.time() - run.t0,
                   "workdir": str(self.workdir.absolute())}
        if self.step() == self.config.total_steps:
            metrics_lib.write_summary(self.workdir, summary)
        return summary

    def _record(self, step: int, m: dict) -> dict:
        """One step's metrics on the host, as plain floats."""
        m = self.par.first(m)
        return {"step": step, **{k: float(np.asarray(v)) for k, v in m.items() if k != "weight"}}

    @staticmethod
    def _mean(records: list[dict]) -> dict[str, float]:
        """Means of the step records since the last log (counters: their last value)."""
        def mean(values):
            finite = [v for v in values if math.isfinite(v)]  # skipped steps are counted apart
            return float(np.mean(finite)) if finite else float("nan")

        keys = [k for k in records[0] if k != "step"]
        return {k: records[-1][k] if k in _COUNTERS else mean([r[k] for r in records])
                for k in keys}

    def close(self) -> None:
        self.ckpt.close()
        close = getattr(self.setup.train, "close", None)
        if close is not None:
            close()


def train(config: ml_collections.ConfigDict, workdir: str | Path,
          stop_at: int | None = None) -> dict[str, Any]:
    """Runs (or resumes) the experiment `config` in `workdir`; returns the summary."""
    trainer = Trainer(config, workdir)
    try:
        return trainer.run(stop_at=stop_at)
    finally:
        trainer.close()
