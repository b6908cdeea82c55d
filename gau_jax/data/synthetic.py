"""Synthetic and in-memory batches: no corpus, no grain, layouts of docs/batches.md.

    mlm_batch(b, n, V, k)             random ids in [5, V), k predicted positions per row
                                      (mlm_targets = the id there, mlm_weights = 1)
    classification_batch(b, n, V, K)  random ids, labels = first id mod K, weights 1
    pad=True                          row lengths drawn from [n/2, n]: attention_mask 0 and
                                      [PAD] = 0 beyond them; predictions only on real tokens

Iterators the trainer can checkpoint (`get_state()` / `set_state()`, a small JSON dict):

    IndexedBatches   batch i is a pure function `batch(i)` (subclass and define it)
    ShuffledRows     in-memory rows {key: [N, ...]} in seeded random order, `batch_size` a batch;
                     the order is one np.random.default_rng(seed).permutation(N) after another
                     and runs on across epochs (a batch may span two)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

Batch = dict[str, np.ndarray]


def _ids_and_mask(rng: np.random.Generator, batch: int, n: int, vocab_size: int,
                  pad: bool) -> tuple[np.ndarray, np.ndarray]:
    ids = rng.integers(5, vocab_size, (batch, n), dtype=np.int32)
    mask = np.ones_like(ids)
    if pad:
        lengths = rng.integers(max(1, n // 2), n + 1, size=(batch, 1))
        mask = (np.arange(n)[None] < lengths).astype(np.int32)
        ids = ids * mask
    return ids, mask


def mlm_batch(batch: int, n: int, vocab_size: int, predictions: int, *, seed: int = 0,
              pad: bool = False) -> Batch:
    """A random MLM batch with `predictions` predicted positions per row (fewer on a padded row
    shorter than that)."""
    rng = np.random.default_rng(seed)
    ids, mask = _ids_and_mask(rng, batch, n, vocab_size, pad)
    w = np.zeros((batch, n), np.float32)
    for row, length in zip(w, mask.sum(1), strict=True):
        row[rng.choice(length, min(predictions, length), replace=False)] = 1.0
    return {"input_ids": ids, "segment_ids": np.zeros_like(ids), "attention_mask": mask,
            "mlm_targets": ids * (w > 0), "mlm_weights": w}


def classification_batch(batch: int, n: int, vocab_size: int, num_classes: int = 2, *,
                         seed: int = 0, pad: bool = False) -> Batch:
    """A random classification batch; label = first token id mod num_classes."""
    rng = np.random.default_rng(seed)
    ids, mask = _ids_and_mask(rng, batch, n, vocab_size, pad)
    return {"input_ids": ids, "attention_mask": mask, "segment_ids": np.zeros_like(ids),
            "labels": (ids[:, 0] % num_classes).astype(np.int32),
            "weights": np.ones(batch, np.float32)}


class IndexedBatches:
    """Iterator whose batch i is `self.batch(i)`; its state is the number of batches served."""

    index: int = 0

    def batch(self, i: int) -> Batch:
        raise NotImplementedError

    def __iter__(self) -> IndexedBatches:
        return self

    def __next__(self) -> Batch:
        self.index += 1
        return self.batch(self.index - 1)

    def get_state(self) -> dict:
        return {"index": self.index}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.index = int(state["index"])


class ShuffledRows:
    """Shuffled epochs of in-memory rows (module docstring); set_state replays the order."""

    def __init__(self, rows: Mapping[str, np.ndarray], batch_size: int, seed: int = 0):
        sizes = {k: len(v) for k, v in rows.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"ShuffledRows: rows have different lengths {sizes}")
        self.rows, self.batch_size, self.seed = dict(rows), batch_size, seed
        self.size = next(iter(sizes.values()))
        if not 0 < batch_size <= self.size:
            raise ValueError(f"ShuffledRows: batch_size={batch_size} must be in [1, {self.size}] "
                             "(the number of rows)")
        self.set_state({"index": 0})

    def _indices(self) -> np.ndarray:
        if len(self._order) < self.batch_size:
            self._order = np.concatenate([self._order, self._rng.permutation(self.size)])
        idx, self._order = self._order[: self.batch_size], self._order[self.batch_size:]
        self.index += 1
        return idx

    def __iter__(self) -> ShuffledRows:
        return self

    def __next__(self) -> Batch:
        idx = self._indices()
        return {k: v[idx] for k, v in self.rows.items()}

    def get_state(self) -> dict:
        return {"index": self.index}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.index, self._rng = 0, np.random.default_rng(self.seed)
        self._order = np.zeros(0, np.int64)
        for _ in range(int(state["index"])):
            self._indices()
