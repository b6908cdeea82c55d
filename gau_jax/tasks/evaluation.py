"""Evaluation in one place: logits → prediction objects → CLUE scores (→ submission file).

    fn = logits_fn(model)                                  jit (params, batch) → float32 logits
    decoded = predict_rows(spec, rows, tok, model_fn=fn, params=p, features=f, opts=o)
    score(task, decoded.objects, gold_objects(task, rows))            the task's CLUE metrics
    evaluate_predictions(task, predictions, rows, source)             check, then score
    write_predictions(task, predictions, rows, path)                  check, then write

Training-time evaluation (`DevEval`, the trainer's dev hook for kinds whose metric needs decoding
on the host), `experiments.evaluate`, `experiments.predict` and the results scripts all go through
these functions; the kind (gau_jax/tasks/kind.py) decodes, scores and writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from gau_jax.data.tasks import TaskSpec, get_task
from gau_jax.tasks import submission
from gau_jax.tasks.kind import Decoded, Predictions, TaskOptions, example_id, kind_of


def main_metric(spec: TaskSpec) -> str:
    """The metric a task is ranked (and its best checkpoint kept) by."""
    return kind_of(spec).metric


def score(task: str | TaskSpec, predictions: Predictions, gold: Predictions) -> dict[str, Any]:
    """The task's CLUE metrics of prediction objects against gold ones, matched by id (check
    the ids first: `evaluate_predictions`); scores in percent, plus "task" and "metric"."""
    spec = get_task(task) if isinstance(task, str) else task
    return kind_of(spec).score(spec, predictions, gold)


def baseline(task: str, rows: Sequence[Mapping]) -> float:
    """The task's baseline (majority label, chance, empty answer, no entities) on labelled rows,
    in percent of its main metric."""
    spec = get_task(task)
    return kind_of(spec).baseline(spec, rows)


def evaluate_predictions(task: str, predictions: Predictions, rows: Sequence[Mapping],
                         source: str = "<predictions>") -> dict[str, Any]:
    """Checks `predictions` against the parsed rows (one per id, valid labels; SubmissionError
    naming `source`), then scores them against the rows' gold."""
    submission.check_predictions(task, predictions, rows, source)
    return score(task, predictions, submission.gold_objects(task, rows))


def write_predictions(task: str, predictions: Predictions, rows: Sequence[Mapping], path: Any
                      ) -> Any:
    """Checks `predictions` against the rows, then writes the submission file; its path."""
    submission.check_predictions(task, predictions, rows, path)
    return submission.write_submission(task, predictions, path)


def logits_fn(model: Any, task: str | None = None):
    """jit((params, batch) → float32 logits) of a deterministic forward (`task`: which head of
    a multi-task model)."""
    kw = {} if task is None else {"task": task}

    @jax.jit
    def fn(params, ids, mask, segments):
        return model.apply({"params": params}, ids, mask, segments, deterministic=True, **kw)

    return lambda params, batch: fn(params, batch["input_ids"], batch["attention_mask"],
                                    batch["segment_ids"])


def run(fn, params, batches: Iterable[dict], limit: int = 0
        ) -> Iterable[tuple[dict, np.ndarray]]:
    """(batch, host logits) of each batch (the first `limit` only, when limit > 0)."""
    for k, batch in enumerate(batches):
        if limit and k >= limit:
            return
        yield batch, np.asarray(jax.device_get(fn(params, batch)))


def predict_rows(spec: TaskSpec, rows: Sequence[Mapping], tok: Any, *, fn: Any, params: Any,
                 opts: TaskOptions, batch_size: int, features: Any = None,
                 label_names: Sequence[str] = (), limit: int = 0,
                 complete: bool = True) -> tuple[Decoded, Any]:
    """(decoded predictions, features) of parsed rows: features (built unless given), one
    ordered pass of batches on every process (all rows), the model, the kind's decoding."""
    kind = kind_of(spec)
    if features is None:
        features = kind.features(spec, rows, tok, opts)
    batches = kind.batches(spec, rows, tok, features, opts, train=False, batch_size=batch_size,
                           shard=(0, 1))
    decoded = kind.decode(spec, rows, run(fn, params, batches, limit), features, label_names,
                          opts, complete)
    return decoded, features


class DevEval:
    """A trainer dev hook: params → the task's CLUE metrics (percent) over the dev rows (or those
    of the first config.eval_batches batches, when set)."""

    def __init__(self, model: Any, spec: TaskSpec, rows: Sequence[Mapping], features: Any,
                 tok: Any, opts: TaskOptions, batch_size: int, eval_batches: int = 0,
                 task: str | None = None):
        self.spec, self.features, self.tok, self.opts = spec, features, tok, opts
        self.rows = [rows[i] for i in range(len(rows))]  # random access, once
        self.batch_size, self.eval_batches = batch_size, eval_batches
        self.fn = logits_fn(model, task)

    def __call__(self, params) -> dict[str, float]:
        decoded, _ = predict_rows(self.spec, self.rows, self.tok, fn=self.fn, params=params,
                                  opts=self.opts, batch_size=self.batch_size,
                                  features=self.features, limit=self.eval_batches,
                                  complete=not self.eval_batches)
        rows, objects = self.rows, decoded.objects
        if self.eval_batches:  # score only what was predicted
            rows = [self.rows[i] for i in sorted(decoded.seen)]
            if isinstance(objects, dict):
                keep = {example_id(r) for r in rows}
                objects = {k: v for k, v in objects.items() if k in keep}
        kind = kind_of(self.spec)
        result = kind.score(self.spec, objects, kind.gold(self.spec, rows))
        return {k: float(v) for k, v in result.items()
                if isinstance(v, int | float) and not isinstance(v, bool)}
