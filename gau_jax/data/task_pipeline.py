"""grain batches for span (CMRC2018), entity (CLUENER) and multiple-choice (C3, ChID) features.

Same conventions as `pipeline.classification_dataset` (docs/batches.md): per-process rows p, p+P,
...; training shuffles (seeded, reshuffled each epoch), repeats and keeps full batches;
evaluation is one ordered pass whose last batch is filled with weight-0 rows; every batch is
padded to the smallest multiple of `pad_multiple` >= its longest sequence, capped at max_len.

Batch keys (all kinds): `weights` [b] float32 (0 = filler), `row_ids` [b] int32 (index into
`features.meta`, -1 = filler), so that predictions map back to the original text.
- span / ner: `input_ids`, `segment_ids`, `attention_mask` [b, n]; `span_labels` [b, T, n, n]
  int8, 1 at (type, start token, end token), end inclusive (GlobalPointer targets).
- multiple_choice: `input_ids`, `segment_ids`, `attention_mask` [b, c, n]; `choice_mask` [b, c]
  int32 (1 = a real choice; padded choices are all-[PAD] rows); `labels` [b] int32.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grain
import numpy as np

from gau_jax.data.pipeline import (
    _FILLER,
    _fill,
    bucket_length,
    classification_dataset,
    process_shard,
    shard_rows,
)
from gau_jax.data.task_features import Features, span_features
from gau_jax.data.task_features_ner_mc import choice_features, ner_features
from gau_jax.data.tasks import TaskSpec
from gau_jax.data.tokenizer import ChineseTokenizer


class _Numbered:
    """source[i] -> (i, rows[i]), so a batch knows which meta rows it holds."""

    def __init__(self, rows: Sequence[Any]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[int, Any]:
        return i, self.rows[i]


def _pad_into(out: np.ndarray, seq: np.ndarray) -> None:
    out[: len(seq)] = seq[: len(out)]


class FeatureCollator:
    """(row id, feature row) items -> the batch of the module docstring."""

    def __init__(self, features: Features, batch_size: int, pad_multiple: int):
        self.kind, self.batch_size, self.pad_multiple = features.kind, batch_size, pad_multiple
        self.max_len, self.pad_id = features.max_len, features.pad_id
        self.num_types, self.num_choices = features.num_types, features.num_choices

    def __call__(self, items: Sequence[tuple[int, Mapping] | None]) -> dict[str, np.ndarray]:
        items, weights = _fill(list(items), self.batch_size)
        row_ids = np.asarray([-1 if it is _FILLER else it[0] for it in items], np.int32)
        rows = [None if it is _FILLER else it[1] for it in items]
        out = (self._choices(rows) if self.kind == "multiple_choice" else self._spans(rows))
        return out | {"weights": weights, "row_ids": row_ids}

    def _length(self, seqs: Iterable[np.ndarray]) -> int:
        return bucket_length(max([len(s) for s in seqs] or [1]), self.max_len, self.pad_multiple)

    def _spans(self, rows: list[Mapping | None]) -> dict[str, np.ndarray]:
        b = len(rows)
        n = self._length(r["input_ids"] for r in rows if r is not None)
        ids = np.full((b, n), self.pad_id, np.int32)
        seg, mask = np.zeros((b, n), np.int32), np.zeros((b, n), np.int32)
        labels = np.zeros((b, self.num_types, n, n), np.int8)
        for k, r in enumerate(rows):
            if r is None:
                continue
            _pad_into(ids[k], r["input_ids"])
            _pad_into(seg[k], r["segment_ids"])
            mask[k, : len(r["input_ids"])] = 1
            for t, i, j in r["spans"]:
                labels[k, t, i, j] = 1
        return {"input_ids": ids, "segment_ids": seg, "attention_mask": mask,
                "span_labels": labels}

    def _choices(self, rows: list[Mapping | None]) -> dict[str, np.ndarray]:
        b, c = len(rows), self.num_choices
        n = self._length(s for r in rows if r is not None for s in r["input_ids"])
        ids = np.full((b, c, n), self.pad_id, np.int32)
        seg, mask = np.zeros((b, c, n), np.int32), np.zeros((b, c, n), np.int32)
        choice_mask, labels = np.zeros((b, c), np.int32), np.zeros(b, np.int32)
        for k, r in enumerate(rows):
            if r is None:
                continue
            for q, (s_ids, s_seg) in enumerate(zip(r["input_ids"], r["segment_ids"],
                                                   strict=True)):
                _pad_into(ids[k, q], s_ids)
                _pad_into(seg[k, q], s_seg)
                mask[k, q, : len(s_ids)] = 1
                choice_mask[k, q] = 1
            labels[k] = r["label"]
        return {"input_ids": ids, "segment_ids": seg, "attention_mask": mask,
                "choice_mask": choice_mask, "labels": labels}


def task_dataset(features: Features, *, batch_size: int, train: bool, seed: int = 0,
                 num_epochs: int | None = None, pad_multiple: int = 32,
                 shard_index: int | None = None, shard_count: int | None = None,
                 num_threads: int = 4) -> grain.IterDataset:
    """Batches of span / ner / multiple-choice features (module docstring). train=True:
    shuffled, repeated num_epochs times (None = forever), full batches only; train=False: one
    ordered pass with weight-0 filler rows (row_ids -1)."""
    rows = shard_rows(_Numbered(features.rows), process_shard(shard_index, shard_count), train)
    ds = grain.MapDataset.source(rows)
    collate = FeatureCollator(features, batch_size, pad_multiple)
    if train:
        ds = ds.shuffle(seed=seed).repeat(num_epochs)
    ds = ds.batch(batch_size, drop_remainder=train, batch_fn=collate)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                                prefetch_buffer_size=8))


def build_features(task: str, examples: Iterable[Mapping], tokenizer: ChineseTokenizer,
                   *, max_len: int, stride: int = 128, max_question_len: int = 64,
                   truncate: str = "keep_head") -> Features:
    """Features of a CLUE span / entity / multiple-choice task by name (cmrc2018, cluener, c3,
    chid); stride / max_question_len apply to cmrc2018, truncate to c3."""
    if task == "cmrc2018":
        return span_features(examples, tokenizer, max_len=max_len, stride=stride,
                             max_question_len=max_question_len)
    if task == "cluener":
        return ner_features(examples, tokenizer, max_len=max_len)
    if task in ("c3", "chid"):
        return choice_features(examples, tokenizer, task, max_len=max_len, truncate=truncate)
    raise ValueError(f"build_features handles cmrc2018, cluener, c3, chid; not {task!r}")


def task_batches(spec: TaskSpec, examples: Any, tokenizer: ChineseTokenizer,
                 features: Features | None = None, *, train: bool, batch_size: int,
                 max_len: int, seed: int = 0, pad_multiple: int = 32, num_threads: int = 4,
                 shard_index: int | None = None,
                 shard_count: int | None = None) -> Iterable[dict[str, Any]]:
    """Batches of a split for any task kind: classification from the examples, the others from
    their Features (train: shuffled, repeated; else one ordered pass with weight-0 filler)."""
    kw = dict(batch_size=batch_size, train=train, seed=seed, pad_multiple=pad_multiple,
              num_threads=num_threads, shard_index=shard_index, shard_count=shard_count)
    if spec.kind == "classification":
        return classification_dataset(examples, tokenizer, spec, max_len=max_len, **kw)
    return task_dataset(features, **kw)
