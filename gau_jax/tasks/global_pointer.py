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

from gau_jax.data.pipeline import bucket_length, feature_dataset, fill
from gau_jax.data.task_features import Features
from gau_jax.data.tasks import TaskSpec, as_text
from gau_jax.models.heads import HeadSpec
from gau_jax.tasks import losses
from gau_jax.tasks.kind import TaskKind, TaskOptions


class SpanCollator:
    """(row id, feature row) items → the batch of the module docstring."""

    def __init__(self, features: Features, batch_size: int, pad_multiple: int):
        self.features, self.batch_size, self.pad_multiple = features, batch_size, pad_multiple

    def __call__(self, items: Sequence[tuple[int, Mapping] | None]) -> dict[str, np.ndarray]:
        f = self.features
        items, weights = fill(list(items), self.batch_size)
        rows = [None if it is None else it[1] for it in items]
        b = len(rows)
        n = bucket_length(max([len(r["input_ids"]) for r in rows if r is not None] or [1]),
                          f.max_len, self.pad_multiple)
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
        row_ids = np.asarray([-1 if it is None else it[0] for it in items], np.int32)
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
                        bool(opts.gp_efficient))

    def sums_fn(self, model: Any):
        return losses.global_pointer_sums_fn(model)

    def batches(self, spec, rows, tok, features, opts, *, train, batch_size, seed=0,
                shard=None):
        shard = shard or (None, None)
        return feature_dataset(features.rows, SpanCollator(features, batch_size,
                                                           opts.pad_multiple),
                               batch_size=batch_size, train=train, seed=seed,
                               shard_index=shard[0], shard_count=shard[1],
                               num_threads=opts.data_threads)

    def row_texts(self, spec: TaskSpec, row: Mapping) -> list[str]:
        return [as_text(row[f]) for f in spec.text_fields]
