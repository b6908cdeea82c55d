"""Classification: a sentence or sentence pair → one of K labels (afqmc, tnews, iflytek, cmnli,
ocnli, cluewsc2020, csl, sentiment, a user's JSON Lines).

    input     [CLS] text_a [SEP] (text_b [SEP])      (TaskSpec.texts; gau_jax/data/pipeline.py)
    head      logits = Dense_K(Drop(h_L[:, 0]))                                   [b, K]
    loss      softmax cross-entropy on `labels`
    decode    label = label_names[argmax_k logits]
    score     accuracy = 100 · #{predicted = gold} / n          (CLUE; by id)
    baseline  the majority gold label
    file      JSON Lines {"id", "label"}, the label as the data writes it ("100", "entailment")
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from gau_jax.data import clue_metrics
from gau_jax.data.pipeline import classification_dataset
from gau_jax.data.tasks import TaskSpec
from gau_jax.models.heads import HeadSpec
from gau_jax.tasks import losses
from gau_jax.tasks.kind import Decoded, TaskKind, TaskOptions, by_id, example_id, register


class Classification(TaskKind):
    name = "classification"
    metric = "accuracy"
    lst_cache = True

    def head(self, spec: TaskSpec, num_classes: int, opts: TaskOptions) -> HeadSpec:
        return HeadSpec("classification", int(num_classes), float(opts.classifier_dropout))

    def sums_fn(self, model: Any, opts: TaskOptions | None = None):
        return losses.classification_sums_fn(model)

    def batches(self, spec, rows, tok, features, opts, *, train, batch_size, seed=0,
                shard=None):
        shard = shard or (None, None)
        return classification_dataset(rows, tok, spec, batch_size=batch_size,
                                      max_len=opts.max_length, train=train, seed=seed,
                                      pad_multiple=opts.pad_multiple, shard_index=shard[0],
                                      shard_count=shard[1], num_threads=opts.data_threads)

    def row_texts(self, spec: TaskSpec, row: Mapping) -> list[str]:
        return [t for t in spec.texts(row) if t]

    def decode(self, spec: TaskSpec, rows: Sequence[Mapping], outputs: Iterable[tuple],
               features: Any, label_names: Sequence[str], opts: TaskOptions,
               complete: bool = True) -> Decoded:
        names = tuple(label_names) or tuple(spec.label_names)
        raw: list = []
        labels: list = []
        for batch, logits in outputs:  # one ordered pass: real rows in order, filler weight 0
            for r in np.nonzero(np.asarray(batch["weights"]) > 0)[0]:
                k = int(np.argmax(logits[r]))
                raw.append(logits[r])
                labels.append(names[k] if names else k)
        objects = [{"id": example_id(rows[i]), "label": labels[i]} for i in range(len(labels))]
        return Decoded(objects, raw + [None] * (len(rows) - len(raw)), set(range(len(labels))))

    def label(self, spec: TaskSpec, row: Mapping) -> Any:
        label = int(row[spec.label_field])
        return None if label < 0 else spec.label_names[label]

    def score(self, spec, predictions, gold) -> dict[str, Any]:
        pairs = by_id(predictions, gold)
        return {"task": spec.name, "metric": self.metric,
                "accuracy": clue_metrics.accuracy([p for p, _ in pairs], [g for _, g in pairs]),
                "count": len(pairs)}

    def constant(self, spec: TaskSpec, rows: Sequence[Mapping]) -> list[dict]:
        gold = self.gold(spec, rows)
        top = collections.Counter(g["label"] for g in gold).most_common(1)[0][0]
        return [{"id": g["id"], "label": top} for g in gold]

    def label_problem(self, spec: TaskSpec, label: Any, row: Mapping) -> str | None:
        if label in spec.label_names:
            return None
        shown = ", ".join(spec.label_names[:8]) + (", ..." if spec.num_classes > 8 else "")
        return f"label {label!r} is not one of the task's labels ({shown})"


CLASSIFICATION = register(Classification())
