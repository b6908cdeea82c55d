"""Span extraction: a question over a passage → the answer's text (CMRC2018).

    input     [CLS] question [SEP] window [SEP]: windows of the context every `stride` tokens
              (gau_jax/data/task_features.py `span_features`)
    head      GlobalPointer with one type, the answer (gau_jax/tasks/global_pointer.py)
    loss      config.span_loss: GlobalPointer's multilabel loss, or (CMRC2018's recipe, Su's
              src/cmrc2018.py) softmax cross-entropy over the window's cells whose tokens are
              [CLS] or context — question and [SEP] cells masked; a window without the answer
              targets (0, 0)
    decode    per question the best-scoring context span over all its windows, at most
              `max_answer_length` tokens (task_features.AnswerAggregator)
    score     EM and F1 of CMRC2018's official script (gau_jax/data/clue_metrics.py), ranked
              by EM
    baseline  the empty answer
    file      one JSON object {question id: answer text}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gau_jax.data import clue_metrics
from gau_jax.data.task_features import AnswerAggregator, Features, records, span_features
from gau_jax.data.tasks import TaskSpec, as_text
from gau_jax.tasks import losses
from gau_jax.tasks.global_pointer import GlobalPointerKind
from gau_jax.tasks.kind import Decoded, TaskOptions, example_id, register


class Span(GlobalPointerKind):
    name = "span"
    metric = "em"
    metrics = ("em", "f1")
    one_object = True

    def num_types(self, spec: TaskSpec, num_classes: int) -> int:
        return 1

    def sums_fn(self, model: Any, opts: TaskOptions | None = None):
        """opts.span_loss: GlobalPointer's multilabel loss, or Su's softmax over a window's
        context cells (question cells masked out; gau_jax/tasks/losses.py)."""
        if opts is not None and opts.span_loss == "softmax_cells":
            return losses.span_softmax_sums_fn(model)
        return super().sums_fn(model, opts)

    def features(self, spec, rows, tok, opts) -> Features:
        return span_features(rows, tok, max_len=opts.max_length, stride=opts.stride,
                             max_question_len=opts.max_question_length)

    def decode(self, spec: TaskSpec, rows: Sequence[Mapping], outputs: Iterable[tuple],
               features: Any, label_names: Sequence[str], opts: TaskOptions,
               complete: bool = True) -> Decoded:
        agg = AnswerAggregator(features, opts.max_answer_length)
        seen: set[int] = set()
        for batch, logits in outputs:
            agg.add(batch["row_ids"], logits)
            seen.update(features.meta[r]["index"] for r in batch["row_ids"].tolist() if r >= 0)
        return Decoded(agg.answers(), [None] * len(rows), seen)

    def label(self, spec: TaskSpec, row: Mapping) -> list[str]:
        return [as_text(a["text"]) for a in records(row[spec.label_field])]

    def gold(self, spec: TaskSpec, rows: Iterable[Mapping]) -> dict[Any, list[str]]:
        return {example_id(r): self.label(spec, r) for r in rows}

    def score(self, spec, predictions, gold) -> dict[str, Any]:
        return {"task": spec.name, "metric": self.metric,
                **clue_metrics.cmrc2018_scores(predictions, gold)}

    def constant(self, spec: TaskSpec, rows: Sequence[Mapping]) -> dict[Any, str]:
        return {example_id(r): "" for r in rows}

    def label_problem(self, spec: TaskSpec, label: Any, row: Mapping) -> str | None:
        return None if isinstance(label, str) else "answer is not a string"


SPAN = register(Span())
