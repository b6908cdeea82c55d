"""grain input pipelines over random-access sources, yielding the batches of docs/batches.md.

Sources are anything with `__len__`/`__getitem__`: a TFDS data source (`clue.load_sources`),
or an in-memory list of dicts / strings. Per process (host) p of P the rows are p, p+P, ...
(training: every host keeps floor(N/P) rows; evaluation: ceil(N/P) rows, the missing ones are
filler rows with weight 0, so all hosts yield the same number of batches).

Training: shuffle (seeded; reshuffled each epoch) -> repeat -> encode/mask -> batch
(drop_remainder) -> pad. Evaluation: source order, one pass, last batch filled with weight-0
rows. Each batch is padded to the smallest multiple of `pad_multiple` >= its longest row,
capped at max_len, so at most max_len / pad_multiple shapes are ever compiled. Packed MLM
(pack=True) concatenates documents and splits at max_len (grain ConcatThenSplit; documents
attend to each other, as in RoBERTa's FULL-SENTENCES), every batch is [b, max_len].

Everything is deterministic for a seed: masking draws its randomness per row from
(seed, row index) via `random_map`. The iterator `it = iter(ds)` has `it.get_state()` (a small
JSON-able dict) and `it.set_state(state)`; a restored iterator yields exactly the batches the
uninterrupted one would. With Orbax, save it next to the model via grain's handler:

    import grain, orbax.checkpoint as ocp
    mngr = ocp.CheckpointManager(dir, item_handlers={"state": ocp.StandardCheckpointHandler(),
                                                     "data": grain.checkpoint.CheckpointHandler()})
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(train_state),
                                            data=grain.checkpoint.CheckpointSave(it)))
    mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                               data=grain.checkpoint.CheckpointRestore(it)))

(grain 0.2.18: `grain.checkpoint.CheckpointHandler/CheckpointSave/CheckpointRestore`, which
write `process_<i>-of-<n>.json` per host.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grain
import numpy as np

from gau_jax.data.masking import WholeWordMasker
from gau_jax.data.tasks import TaskSpec, as_text
from gau_jax.data.tokenizer import ChineseTokenizer

_FILLER = None  # evaluation rows beyond the end of the source
DATA_THREADS = 2  # grain threads building batches (config.data_threads' default)


def process_shard(shard_index: int | None, shard_count: int | None) -> tuple[int, int]:
    if shard_index is None or shard_count is None:
        import jax

        return jax.process_index(), jax.process_count()
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index={shard_index} not in [0, {shard_count})")
    return shard_index, shard_count


class _Rows:
    """Random-access view source[indices[i]] (None index -> filler row)."""

    def __init__(self, source: Any, indices: Sequence[int | None]):
        self.source, self.indices = source, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        j = self.indices[i]
        return _FILLER if j is None else self.source[j]


def shard_rows(source: Any, shard: tuple[int, int], train: bool) -> _Rows:
    p, count = shard
    n = len(source)
    if n == 0:
        raise ValueError("the data source is empty")
    per_host = n // count if train else math.ceil(n / count)
    if per_host == 0:
        raise ValueError(f"{n} rows cannot feed {count} processes")
    idx = [p + count * k for k in range(per_host)]
    return _Rows(source, [i if i < n else None for i in idx])


def bucket_length(n: int, max_len: int, pad_multiple: int) -> int:
    """Smallest multiple of pad_multiple >= n, capped at max_len."""
    return min(max_len, max(pad_multiple, -(-n // pad_multiple) * pad_multiple))


def pad_rows(rows: Sequence[np.ndarray], length: int, dtype: Any, value: int = 0) -> np.ndarray:
    out = np.full((len(rows), length), value, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r[:length]
    return out


def fill(rows: list, batch_size: int) -> tuple[list, np.ndarray]:
    """Rows padded to batch_size with filler; weights 1 for real rows, 0 for filler."""
    real = [r is not _FILLER for r in rows] + [False] * (batch_size - len(rows))
    return list(rows) + [_FILLER] * (batch_size - len(rows)), np.asarray(real, np.float32)


class ClassificationCollator:
    """Rows -> {input_ids, segment_ids, attention_mask, labels, weights}."""

    def __init__(self, tokenizer: ChineseTokenizer, spec: TaskSpec, batch_size: int,
                 max_len: int, pad_multiple: int):
        self.tok, self.spec, self.batch_size = tokenizer, spec, batch_size
        self.max_len, self.pad_multiple = max_len, pad_multiple

    def __call__(self, rows: Sequence[Mapping | None]) -> dict[str, np.ndarray]:
        rows, weights = fill(list(rows), self.batch_size)
        texts = [self.spec.texts(r) if r is not _FILLER else ("", None) for r in rows]
        firsts = [a for a, _ in texts]
        pairs = [b or "" for _, b in texts] if any(b for _, b in texts) else None
        encs = self.tok.encode_batch(firsts, pairs, max_len=self.max_len)
        if pairs is not None:  # rows without a second text get no trailing [SEP] segment
            encs = [e if b else self.tok.encode(a, None, max_len=self.max_len)
                    for e, (a, b) in zip(encs, texts, strict=True)]
        length = bucket_length(max(len(e.input_ids) for e in encs), self.max_len,
                               self.pad_multiple)
        ids = pad_rows([np.asarray(e.input_ids) for e in encs], length, np.int32,
                       self.tok.pad_id)
        seg = pad_rows([np.asarray(e.segment_ids) for e in encs], length, np.int32)
        mask = pad_rows([np.ones(len(e.input_ids)) for e in encs], length, np.int32)
        labels = np.asarray([int(r[self.spec.label_field]) if r is not _FILLER else 0
                             for r in rows], np.int32)
        return {"input_ids": ids, "segment_ids": seg, "attention_mask": mask,
                "labels": labels, "weights": weights}


def classification_dataset(source: Any, tokenizer: ChineseTokenizer, spec: TaskSpec, *,
                           batch_size: int, max_len: int, train: bool, seed: int = 0,
                           num_epochs: int | None = None, pad_multiple: int = 32,
                           shard_index: int | None = None, shard_count: int | None = None,
                           num_threads: int = DATA_THREADS) -> grain.IterDataset:
    """Classification batches (docs/batches.md). train=True: shuffled, repeated num_epochs times
    (None = forever), full batches only; train=False: one ordered pass, weight-0 filler rows.
    Test rows without labels carry label -1."""
    if not spec.reads_text_pair:
        raise ValueError(f"task {spec.name!r} is {spec.kind}: its rows are not text pairs")
    rows = shard_rows(source, process_shard(shard_index, shard_count), train)
    ds = grain.MapDataset.source(rows)
    collate = ClassificationCollator(tokenizer, spec, batch_size, max_len, pad_multiple)
    if train:
        ds = ds.shuffle(seed=seed).repeat(num_epochs)
        ds = ds.batch(batch_size, drop_remainder=True, batch_fn=collate)
    else:
        ds = ds.batch(batch_size, drop_remainder=False, batch_fn=collate)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                                prefetch_buffer_size=8))


class MLMCollator:
    """Masked rows -> {input_ids, segment_ids, attention_mask, mlm_targets, mlm_weights}."""

    def __init__(self, pad_id: int, max_len: int, pad_multiple: int, packed: bool,
                 batch_size: int | None = None):
        self.pad_id, self.max_len, self.pad_multiple = pad_id, max_len, pad_multiple
        self.packed, self.batch_size = packed, batch_size

    def __call__(self, rows: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        if self.batch_size is not None and len(rows) < self.batch_size:  # eval: filler rows
            empty = {k: np.zeros(self.max_len if self.packed else 0, v.dtype)
                     for k, v in rows[0].items()}
            rows = list(rows) + [empty] * (self.batch_size - len(rows))
        if self.packed:
            length = self.max_len
            lens = [int(np.count_nonzero(r["input_ids_segment_ids"])) for r in rows]
        else:
            lens = [len(r["input_ids"]) for r in rows]
            length = bucket_length(max(lens), self.max_len, self.pad_multiple)
        ids = pad_rows([r["input_ids"][:n] for r, n in zip(rows, lens, strict=True)], length,
                       np.int32, self.pad_id)
        tgt = pad_rows([r["mlm_targets"][:n] for r, n in zip(rows, lens, strict=True)], length,
                       np.int32)
        wgt = pad_rows([r["mlm_weights"][:n] for r, n in zip(rows, lens, strict=True)], length,
                       np.float32)
        mask = pad_rows([np.ones(n) for n in lens], length, np.int32)
        return {"input_ids": ids, "segment_ids": np.zeros_like(ids), "attention_mask": mask,
                "mlm_targets": tgt, "mlm_weights": wgt}


def mlm_dataset(texts: Any, tokenizer: ChineseTokenizer, *, batch_size: int, max_len: int,
                seed: int = 0, mask_rate: float = 0.15, pack: bool = False,
                train: bool = True, num_epochs: int | None = None, pad_multiple: int = 32,
                text_field: str = "text", shard_index: int | None = None,
                shard_count: int | None = None, num_threads: int = DATA_THREADS,
                mask_unit: str = "word") -> grain.IterDataset:
    """Masked MLM batches from a source of strings (or rows with `text_field`).

    mask_unit "word" masks whole jieba words, "token" single tokens.

    Without packing each document is one row, truncated to max_len tokens; with pack=True
    documents are concatenated and cut into max_len rows. train=False keeps source order,
    one pass whose last batch is filled with empty rows (attention_mask and mlm_weights 0);
    masks are still drawn from `seed`, so evaluation batches are the same every time."""
    shard = process_shard(shard_index, shard_count)
    rows = shard_rows(texts, shard, train=True)
    masker = WholeWordMasker(tokenizer, None if pack else max_len, mask_rate, mask_unit)

    def mask_row(row: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
        text = row if isinstance(row, str | bytes) else row[text_field]
        return masker(as_text(text), rng)

    ds = grain.MapDataset.source(rows)
    if train:
        ds = ds.shuffle(seed=seed).repeat(num_epochs)
    ds = ds.random_map(mask_row, seed=seed)
    collate = MLMCollator(tokenizer.pad_id, max_len, pad_multiple, packed=pack,
                          batch_size=None if train else batch_size)
    opts = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=8)
    if not pack:
        ds = ds.batch(batch_size, drop_remainder=train, batch_fn=collate)
        return ds.to_iter_dataset(opts)
    it = ds.to_iter_dataset(opts)
    lengths = {"input_ids": max_len, "mlm_targets": max_len, "mlm_weights": max_len}
    packed = grain.experimental.ConcatThenSplitIterDataset(it, length_struct=lengths)
    return _JsonSafeState(packed.batch(batch_size, drop_remainder=train, batch_fn=collate))


def _tuples_for_slices(state: Any) -> Any:
    """grain 0.2.18's ConcatThenSplit compares `remainder_slices` values with the tuple (-1, -1);
    after a JSON round trip (grain.checkpoint.CheckpointHandler) they are lists and a restored
    iterator would replay a stale remainder. Turn them back into tuples."""
    if isinstance(state, dict):
        return {k: ({n: tuple(v) for n, v in s.items()} if k == "remainder_slices"
                    else _tuples_for_slices(s)) for k, s in state.items()}
    return state


class _JsonSafeState(grain.IterDataset):
    def __init__(self, parent: grain.IterDataset):
        super().__init__(parent)

    def __iter__(self) -> grain.DatasetIterator:
        return _JsonSafeStateIterator(self._parent.__iter__())


class _JsonSafeStateIterator(grain.DatasetIterator):
    def __init__(self, parent: grain.DatasetIterator):
        super().__init__(parent)

    def __next__(self) -> Any:
        return next(self._parent)

    def get_state(self) -> dict[str, Any]:
        return self._parent.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(_tuples_for_slices(state))


class _Numbered:
    """source[i] -> (i, rows[i]), so a batch knows which meta rows it holds."""

    def __init__(self, rows: Sequence[Any]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[int, Any]:
        return i, self.rows[i]


def feature_dataset(rows: Sequence[Any], collate: Callable[[list], dict[str, np.ndarray]], *,
                    batch_size: int, train: bool, seed: int = 0, num_epochs: int | None = None,
                    shard_index: int | None = None, shard_count: int | None = None,
                    num_threads: int = DATA_THREADS) -> grain.IterDataset:
    """Batches of feature rows (multiple choice, span, entity tasks): `collate` turns a list of
    (row index, row) items — None for filler — into a batch. train=True: shuffled, repeated
    num_epochs times (None = forever), full batches only; train=False: one ordered pass."""
    rows = shard_rows(_Numbered(rows), process_shard(shard_index, shard_count), train)
    ds = grain.MapDataset.source(rows)
    if train:
        ds = ds.shuffle(seed=seed).repeat(num_epochs)
    ds = ds.batch(batch_size, drop_remainder=train, batch_fn=collate)
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                                prefetch_buffer_size=8))


class FeatureCollator:
    """The base of the feature-row collators (gau_jax/tasks): a batch's real rows, weights and
    row ids from (row index, row) items, and its padded length."""

    def __init__(self, features: Any, batch_size: int, pad_multiple: int):
        self.features, self.batch_size, self.pad_multiple = features, batch_size, pad_multiple

    def rows(self, items: Sequence[tuple[int, Mapping] | None]
             ) -> tuple[list[Mapping | None], np.ndarray, np.ndarray]:
        """(rows with None for filler, weights [b], row_ids [b] with -1 for filler)."""
        items, weights = fill(list(items), self.batch_size)
        row_ids = np.asarray([-1 if it is None else it[0] for it in items], np.int32)
        return [None if it is None else it[1] for it in items], weights, row_ids

    def length(self, lengths: Sequence[int]) -> int:
        """The padded length of sequences of these lengths (`bucket_length`)."""
        return bucket_length(max(list(lengths) or [1]), self.features.max_len, self.pad_multiple)
