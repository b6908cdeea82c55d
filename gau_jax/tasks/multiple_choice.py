"""Multiple choice: a question and its choices → the right choice (C3, ChID).

    input     one sequence per choice, [b, C, n] (gau_jax/data/task_features_ner_mc.py; the
              layout is the task's `choice_layout`); absent choices are all-[PAD] rows
    head      score_c = Dense_1(Drop(h_L(x_c)[:, 0])), absent → NEG_INF              [b, C]
    loss      softmax cross-entropy over the choices on `labels`
    decode    choice = argmax_c score_c; the label is its index (`answer_is_index`: ChID, and
              C3 as CLUE reads it: bojone/CLUE-bert4keras src/c3.py writes the argmax) or its
              text (a task whose label names the choice)
    score     accuracy (CLUE; by id)
    baseline  chance: mean over questions of 1 / #choices
    file      JSON Lines {"id", "label"}

Batch keys: `input_ids`, `segment_ids`, `attention_mask` [b, C, n], `choice_mask` [b, C] (1 = a
real choice), `labels` [b], `weights` [b] (0 = filler), `row_ids` [b] (-1 = filler).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from gau_jax.data import clue_metrics
from gau_jax.data.pipeline import FeatureCollator
from gau_jax.data.task_features import Features, texts_of
from gau_jax.data.task_features_ner_mc import choice_features
from gau_jax.data.tasks import TaskSpec, as_text
from gau_jax.models.heads import HeadSpec
from gau_jax.tasks import losses
from gau_jax.tasks.kind import Decoded, TaskKind, TaskOptions, by_id, example_id, register


class ChoiceCollator(FeatureCollator):
    """(row id, feature row) items → the batch of the module docstring."""

    def __call__(self, items: Sequence[tuple[int, Mapping] | None]) -> dict[str, np.ndarray]:
        f = self.features
        rows, weights, row_ids = self.rows(items)
        b, c = len(rows), f.num_choices
        n = self.length(len(s) for r in rows if r is not None for s in r["input_ids"])
        ids = np.full((b, c, n), f.pad_id, np.int32)
        seg, mask = np.zeros((b, c, n), np.int32), np.zeros((b, c, n), np.int32)
        choice_mask, labels = np.zeros((b, c), np.int32), np.zeros(b, np.int32)
        for k, r in enumerate(rows):
            if r is None:
                continue
            for q, (s_ids, s_seg) in enumerate(zip(r["input_ids"], r["segment_ids"],
                                                   strict=True)):
                ids[k, q, :len(s_ids)] = s_ids[:n]
                seg[k, q, :len(s_seg)] = s_seg[:n]
                mask[k, q, :len(s_ids)] = 1
                choice_mask[k, q] = 1
            labels[k] = r["label"]
        return {"input_ids": ids, "segment_ids": seg, "attention_mask": mask,
                "choice_mask": choice_mask, "labels": labels, "weights": weights,
                "row_ids": row_ids}


def _choices(spec: TaskSpec, row: Mapping) -> list[str]:
    return texts_of(row[spec.text_fields[-1]])


class MultipleChoice(TaskKind):
    name = "multiple_choice"
    metric = "accuracy"

    def head(self, spec: TaskSpec, num_classes: int, opts: TaskOptions) -> HeadSpec:
        return HeadSpec("multiple_choice", 1, float(opts.classifier_dropout))

    def sums_fn(self, model: Any, opts: TaskOptions | None = None):
        return losses.multiple_choice_sums_fn(model)

    def features(self, spec, rows, tok, opts) -> Features:
        return choice_features(rows, tok, spec, max_len=opts.max_length, truncate=opts.truncate)

    collator = ChoiceCollator

    def row_texts(self, spec: TaskSpec, row: Mapping) -> list[str]:
        out: list[str] = []
        for f in spec.text_fields:
            v = row[f]
            out += [as_text(v)] if isinstance(v, str | bytes) else texts_of(v)
        return out

    def _answer(self, spec: TaskSpec, row: Mapping, c: int) -> Any:
        return c if spec.answer_is_index else _choices(spec, row)[c]

    def decode(self, spec: TaskSpec, rows: Sequence[Mapping], outputs: Iterable[tuple],
               features: Any, label_names: Sequence[str], opts: TaskOptions,
               complete: bool = True) -> Decoded:
        raw: dict[int, Any] = {}
        labels: dict[int, Any] = {}
        for batch, logits in outputs:
            for k, r in enumerate(np.asarray(batch["row_ids"]).tolist()):
                if r < 0:
                    continue
                i = features.meta[r]["index"]
                raw[i] = logits[k]
                labels[i] = self._answer(spec, rows[i], int(np.argmax(logits[k])))
        objects = [{"id": example_id(rows[i]), "label": labels[i]} for i in sorted(labels)]
        return Decoded(objects, [raw.get(i) for i in range(len(rows))], set(labels))

    def label(self, spec: TaskSpec, row: Mapping) -> Any:
        label = int(row["label"])
        return None if label < 0 else self._answer(spec, row, label)

    def score(self, spec, predictions, gold) -> dict[str, Any]:
        pairs = by_id(predictions, gold)
        return {"task": spec.name, "metric": self.metric,
                "accuracy": clue_metrics.accuracy([p for p, _ in pairs], [g for _, g in pairs]),
                "count": len(pairs)}

    def baseline(self, spec: TaskSpec, rows: Sequence[Mapping]) -> float:
        return 100.0 * sum(1 / len(_choices(spec, r)) for r in rows) / max(len(rows), 1)

    def constant(self, spec: TaskSpec, rows: Sequence[Mapping]) -> list[dict]:
        return [{"id": example_id(r), "label": self._answer(spec, r, 0)} for r in rows]

    def label_problem(self, spec: TaskSpec, label: Any, row: Mapping) -> str | None:
        choices = _choices(spec, row)
        if spec.answer_is_index:
            ok = isinstance(label, int) and not isinstance(label, bool) and \
                0 <= label < len(choices)
            return None if ok else f"label {label!r} is not a candidate index " \
                                   f"0..{len(choices) - 1}"
        return None if label in choices else f"label {label!r} is not one of {choices}"


MULTIPLE_CHOICE = register(MultipleChoice())
