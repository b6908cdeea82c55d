"""What the span and entity kinds share: GlobalPointer over token pairs (Su 2021, "GlobalPointer:
a unified treatment of nested and flat NER", kexue.fm/archives/8373).

    head      s_α(i, j) from RoPE'd q / k projections of every token      [b, T, n, n]
              (T = spec's span types; gau_jax/models/global_pointer.py)
    loss      multi-label cross-entropy over (i, j) cells, mean over types, on `span_labels`
    batches   `input_ids`, `segment_ids`, `attention_mask` [b, n]; `span_labels` [b, T, n, n]
              int8, 1 at (type, start token, end token), end inclusive; `weights` [b] (0 =
              filler); `row_ids` [b] (-1 = filler: index into `features.meta`)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gau_jax.data.pipeline import FeatureCollator
from gau_jax.data.tasks import TaskSpec, as_text
from gau_jax.models.heads import HeadSpec
from gau_jax.tasks import losses
from gau_jax.tasks.kind import TaskKind, TaskOptions


class SpanCollator(FeatureCollator):
    """(row id, feature row) items → the batch of the module docstring."""

    def __call__(self, items: Sequence[tuple[int, Mapping] | None]) -> dict[str, np.ndarray]:
        f = self.features
        rows, weights, row_ids = self.rows(items)
        b, n = len(rows), self.length(len(r["input_ids"]) for r in rows if r is not None)
        ids = np.full((b, n), f.pad_id, np.int32)
        seg, mask = np.zeros((b, n), np.int32), np.zeros((b, n), np.int32)
        labels = np.zeros((b, f.num_types, n, n), np.int8)
        for k, r in enumerate(rows):
            if r is None:
                continue
            ids[k, :len(r["input_ids"])] = r["input_ids"][:n]
            seg[k, :len(r["segment_ids"])] = r["segment_ids"][:n]
            mask[k, :len(r["input_ids"])] = 1
            for t, i, j in r["spans"]:
                labels[k, t, i, j] = 1
        return {"input_ids": ids, "segment_ids": seg, "attention_mask": mask,
                "span_labels": labels, "weights": weights, "row_ids": row_ids}


class GlobalPointerKind(TaskKind):
    """The base of the span and entity kinds (module docstring)."""

    decodes_dev = True

    def num_types(self, spec: TaskSpec, num_classes: int) -> int:
        raise NotImplementedError

    def head(self, spec: TaskSpec, num_classes: int, opts: TaskOptions) -> HeadSpec:
        return HeadSpec("global_pointer", self.num_types(spec, num_classes),
                        float(opts.classifier_dropout), int(opts.gp_head_size),
                        bool(opts.gp_efficient), bool(opts.gp_bias))

    def sums_fn(self, model: Any, opts: TaskOptions | None = None):
        return losses.global_pointer_sums_fn(model)

    collator = SpanCollator

    def row_texts(self, spec: TaskSpec, row: Mapping) -> list[str]:
        return [as_text(row[f]) for f in spec.text_fields]
