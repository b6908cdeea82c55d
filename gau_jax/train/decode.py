"""From a model's logits to CLUE prediction objects, and the training-time CLUE dev metric.

    classification   label = label_names[argmax_k logits]
    multiple choice  choice = argmax_c logits (absent choices are NEG_INF): ChID its index,
                     C3 the choice's text (what the data's `answer` holds)
    ner (CLUENER)    every (type, i, j) with GlobalPointer score s > 0 (decode_spans), mapped to
                     characters by the row's token offsets (task_features.ner_entities)
    span (CMRC2018)  per question the best-scoring context span over all its windows
                     (task_features.AnswerAggregator; end − start < max_answer_length tokens)

Prediction objects are those gau_jax/data/submission.py writes and clue_metrics.score reads:
a list of {"id", "label"} (ids: submission.example_id), or {question_id: answer_text}.
`DevEval` is the trainer's dev hook for span / NER tasks: it predicts the dev examples with the
current params, and scores them with the task's CLUE metric (EM and F1, or entity F1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from gau_jax.data.tasks import CLUE_TASKS, TaskSpec

MAX_ANSWER_LENGTH = 64  # tokens (config.max_answer_length)


def best_metric(task: str) -> str:
    """The dev metric keep_best compares: the task's CLUE metric (accuracy for non-CLUE tasks)."""
    if task not in CLUE_TASKS:
        return "accuracy"
    from gau_jax.data import clue_metrics

    return clue_metrics.main_metric(task)


def logits_fn(model):
    """jit((params, batch) → float32 logits) of a deterministic forward."""

    @jax.jit
    def fn(params, ids, mask, segments):
        return model.apply({"params": params}, ids, mask, segments, deterministic=True)

    return lambda params, batch: fn(params, batch["input_ids"], batch["attention_mask"],
                                    batch["segment_ids"])


def run(fn, params, batches: Iterable[dict], limit: int = 0
        ) -> Iterable[tuple[dict, np.ndarray]]:
    """(batch, host logits) of each batch (the first `limit` only, when limit > 0)."""
    for k, batch in enumerate(batches):
        if limit and k >= limit:
            return
        yield batch, np.asarray(jax.device_get(fn(params, batch)))


def predictions(spec: TaskSpec, examples: Sequence[Mapping],
                outputs: Iterable[tuple[dict, np.ndarray]], features: Any = None,
                label_names: Sequence[str] = (), max_answer_length: int = MAX_ANSWER_LENGTH,
                complete: bool = True) -> tuple[Any, list, set[int]]:
    """(prediction objects, raw outputs per example, indices of the examples predicted) from
    the (batch, logits) of one ordered pass over `examples` (classification) or their features.
    raw: classification / MC the logits row, NER the decoded (type, i, j, score) spans of the
    example's row; CMRC2018 [] (its answers come from all windows together). complete: NER
    examples without a feature row predict no entity ({}) instead of being left out."""
    from gau_jax.data import submission
    from gau_jax.data.task_features import AnswerAggregator
    from gau_jax.data.task_features_ner_mc import ner_entities
    from gau_jax.models.global_pointer import decode_spans

    task = spec.name
    names = tuple(label_names) or tuple(spec.label_names)
    eid = (lambda ex: submission.example_id(task, ex)) if task in CLUE_TASKS else \
        (lambda ex: ex.get("idx", ex.get("id")))
    if spec.kind == "span":
        agg = AnswerAggregator(features, max_answer_length)
        seen: set[int] = set()
        for batch, logits in outputs:
            agg.add(batch["row_ids"], logits)
            seen.update(features.meta[r]["index"] for r in batch["row_ids"].tolist() if r >= 0)
        return agg.answers(), [], seen
    raw: dict[int, Any] = {}
    labels: dict[int, Any] = {}
    if spec.kind == "classification":
        pos = 0
        for batch, logits in outputs:
            for row in np.nonzero(np.asarray(batch["weights"]) > 0)[0]:
                raw[pos] = logits[row]
                labels[pos] = names[int(np.argmax(logits[row]))] if names else \
                    int(np.argmax(logits[row]))
                pos += 1
    else:
        for batch, logits in outputs:
            for row, r in enumerate(np.asarray(batch["row_ids"]).tolist()):
                if r < 0:
                    continue
                meta = features.meta[r]
                i = meta["index"]
                if spec.kind == "ner":
                    spans = decode_spans(logits[row])
                    raw.setdefault(i, []).extend(spans)
                    merged = labels.setdefault(i, {})
                    for etype, ents in ner_entities(meta, spans).items():
                        for text, where in ents.items():
                            have = merged.setdefault(etype, {}).setdefault(text, [])
                            have.extend(w for w in where if w not in have)
                else:  # multiple choice
                    raw[i] = logits[row]
                    c = int(np.argmax(logits[row]))
                    labels[i] = _choice_label(task, examples[i], c)
    seen = set(labels)
    if spec.kind == "ner" and complete:
        labels = {i: labels.get(i, {}) for i in range(len(examples))}
    objects = [{"id": eid(examples[i]), "label": labels[i]} for i in sorted(labels)]
    return objects, [raw.get(i) for i in range(len(examples))], seen


def _choice_label(task: str, example: Mapping, c: int) -> Any:
    """ChID: the candidate's index; C3: the chosen choice's text."""
    if task == "c3":
        from gau_jax.data.task_features import texts_of

        return texts_of(example["choice"])[c]
    return c


class DevEval:
    """Inputs.dev_eval for span / NER tasks: params → {"em", "f1"} | {"f1", "precision", "recall"}
    (percent, clue_metrics.score) over the dev examples (or those of the first
    config.eval_batches batches, when set)."""

    def __init__(self, model, spec: TaskSpec, examples: Sequence[Mapping], features: Any,
                 tokenizer, config):
        self.spec, self.features, self.tok = spec, features, tokenizer
        self.examples = [examples[i] for i in range(len(examples))]  # random access, once
        self.config, self.fn = config, logits_fn(model)

    def __call__(self, params) -> dict[str, float]:
        from gau_jax.data import clue_metrics, submission
        from gau_jax.data.task_pipeline import task_batches

        c = self.config
        batches = task_batches(self.spec, self.examples, self.tok, self.features, train=False,
                               batch_size=c.batch_size, max_len=c.max_length,
                               pad_multiple=c.pad_multiple, num_threads=c.data_threads,
                               shard_index=0, shard_count=1)  # every process: all rows
        objects, _, seen = predictions(
            self.spec, self.examples, run(self.fn, params, batches, c.eval_batches),
            self.features, max_answer_length=c.get("max_answer_length", MAX_ANSWER_LENGTH),
            complete=not c.eval_batches)
        examples = self.examples
        if c.eval_batches:  # score only what was predicted
            examples = [self.examples[i] for i in sorted(seen)]
            if isinstance(objects, dict):
                keep = {submission.example_id(self.spec.name, ex) for ex in examples}
                objects = {k: v for k, v in objects.items() if k in keep}
        gold = submission.gold_objects(self.spec.name, examples)
        result = clue_metrics.score(self.spec.name, objects, gold)
        return {k: float(v) for k, v in result.items()
                if isinstance(v, int | float) and not isinstance(v, bool)}
