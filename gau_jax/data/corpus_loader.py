"""MLM batches from prepared corpora: global batch t is a pure function of (seed, t).

    batches = CorpusBatches(BatchMaker([PreparedCorpus(d)], [1.0], batch_size=64, rows=slice(0, 32),
                                       seed=0), start=0)
    batch = next(batches)            # this process's rows of global batch 0 (docs/batches.md)

Row j of global batch t is stream position k = t·B + j; gau_jax/data/corpus_order.py maps k to
a corpus of the mixture and a window of it (seeded per-epoch permutations, O(1) memory). A
process reads only the windows of its own rows (`rows`, the slice of the global batch its
devices hold), then masks them (gau_jax/data/masking.py `mask_windows`, randomness keyed by
(seed, k)). So the batches are the same on any number of processes: the data checkpoint is
t itself (`get_state` → {"batch": t, "fingerprints": [...]}), restorable on another process
count, and refused for a corpus whose fingerprint changed.

Dev batches: the dev windows of every corpus in order, one pass, masked with DEV_SEED, the last
batch filled with empty rows (attention_mask and mlm_weights 0).

`workers` > 0 computes batches in grain worker processes (`mp_prefetch`); 0 computes them in
`prefetch` background threads (NumPy and the shard reads release the GIL), that many ahead.
"""

from __future__ import annotations

import collections
import concurrent.futures
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from gau_jax.data.corpus_format import PreparedCorpus, decode_windows
from gau_jax.data.corpus_order import Mixture, stream_windows
from gau_jax.data.masking import mask_windows
from gau_jax.data.readers import DataError
from gau_jax.data.tokenizer import load_tokenizer

DEV_SEED = 12345


class BatchMaker:
    """The pure functions batch t → rows, picklable (corpora open their files lazily)."""

    def __init__(self, corpora: Sequence[PreparedCorpus], weights: Sequence[float], *,
                 names: Sequence[str] | None = None, batch_size: int, rows: slice, seed: int,
                 mask_rate: float = 0.15, mask_unit: str = "word"):
        self.corpora, self.weights = list(corpora), [float(w) for w in weights]
        self.names = list(names or [c.path.name for c in self.corpora])
        if len(self.corpora) != len(self.weights) or not self.corpora:
            raise ValueError("one weight per corpus is needed")
        first = self.corpora[0]
        for c in self.corpora[1:]:
            if c.manifest["vocab"]["sha256"] != first.manifest["vocab"]["sha256"]:
                raise DataError(c.path, f"its vocabulary differs from {first.path}'s: a mixture "
                                        "needs corpora prepared with one vocabulary")
            if c.max_length != first.max_length:
                raise DataError(c.path, f"max_length {c.max_length} differs from {first.path}'s "
                                        f"{first.max_length}")
        for c in self.corpora:
            if c.num_windows("train") == 0:
                raise DataError(c.path, "has no train windows")
        self.length, self.batch_size = first.max_length, int(batch_size)
        self.rows = range(*rows.indices(self.batch_size))
        self.seed, self.mask_rate, self.mask_unit = int(seed), float(mask_rate), mask_unit
        self.mixture = Mixture(self.weights, self.batch_size)
        tok = load_tokenizer(first.vocab_path)
        self.mask_id = tok.mask_id
        self.special_ids = np.asarray(sorted({tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id}))
        self.random_ids = tok.normal_token_ids()
        self.fingerprints = [c.fingerprint for c in self.corpora]

    def _read(self, corpus: np.ndarray, windows: np.ndarray, split: str) -> list[bytes]:
        records: list[bytes | None] = [None] * len(windows)
        for i in np.unique(corpus):
            sel = np.nonzero(corpus == i)[0]
            for j, rec in zip(sel, self.corpora[i].read(split, windows[sel]), strict=True):
                records[j] = rec
        return records  # type: ignore[return-value]

    def _masked(self, records: list[bytes], keys: np.ndarray, seed: int) -> dict[str, np.ndarray]:
        ids, starts, lengths = decode_windows(records, self.length, self.corpora[0].dtype)
        masked, targets, weights = mask_windows(
            ids, starts, keys, seed, mask_id=self.mask_id, special_ids=self.special_ids,
            random_ids=self.random_ids, mask_rate=self.mask_rate, unit=self.mask_unit)
        attention = (np.arange(self.length)[None] < lengths[:, None]).astype(np.int32)
        return {"input_ids": masked, "segment_ids": np.zeros_like(masked),
                "attention_mask": attention, "mlm_targets": targets, "mlm_weights": weights}

    def __call__(self, t: int) -> dict[str, np.ndarray]:
        """This process's rows of global train batch t."""
        k = t * self.batch_size + np.asarray(self.rows, np.int64)
        corpus, position = self.mixture.locate(k)
        windows = np.empty_like(position)
        for i in np.unique(corpus):
            sel = corpus == i
            windows[sel] = stream_windows(position[sel], self.corpora[i].num_windows("train"),
                                          self.seed, int(i))
        return self._masked(self._read(corpus, windows, "train"), k, self.seed)

    def rows_drawn(self, batches: int) -> dict[str, int]:
        """Rows each corpus supplied to the first `batches` global batches."""
        drawn = self.mixture.rows_drawn(batches * self.batch_size)
        return {name: int(n) for name, n in zip(self.names, drawn, strict=True)}

    # -------------------------------------------------------------------------- dev
    def dev_windows(self) -> int:
        return sum(c.num_windows("dev") for c in self.corpora)

    def dev_batch(self, b: int) -> dict[str, np.ndarray]:
        """This process's rows of dev batch b (positions past the end are empty rows)."""
        sizes = np.asarray([c.num_windows("dev") for c in self.corpora])
        k = b * self.batch_size + np.asarray(self.rows, np.int64)
        real = k < sizes.sum()
        corpus = np.searchsorted(np.cumsum(sizes), k[real], side="right")
        windows = k[real] - np.concatenate([[0], np.cumsum(sizes)])[corpus]
        out = self._masked(self._read(corpus, windows, "dev"), k[real], DEV_SEED)
        if real.all():
            return out
        full = {n: np.zeros((len(k), self.length), v.dtype) for n, v in out.items()}
        for n, v in out.items():
            full[n][real] = v
        return full

    def dev_batches(self, max_batches: int = 0) -> Iterator[dict[str, np.ndarray]]:
        n = math.ceil(self.dev_windows() / self.batch_size)
        for b in range(min(n, max_batches) if max_batches else n):
            yield self.dev_batch(b)


class _Batches:
    """batch t for t in [start, ∞) as a grain MapDataset source (worker processes)."""

    def __init__(self, maker: BatchMaker, start: int):
        self.maker, self.start = maker, start

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return self.maker(self.start + int(i))


class CorpusBatches:
    """The train iterator: next() is batch t, then t + 1, ...; get_state / set_state is t."""

    global_state = True  # the same state on every process: restorable on another count
    static_shapes = True  # every batch is [rows, max_length]

    def __init__(self, maker: BatchMaker, start: int = 0, workers: int = 0, prefetch: int = 2):
        self.maker, self.workers, self.prefetch = maker, int(workers), max(1, int(prefetch))
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._ahead: collections.deque = collections.deque()
        self._grain: Any = None
        self.t = int(start)

    @property
    def index(self) -> int:
        return self.t

    def _restart(self) -> None:
        for f in self._ahead:
            f.cancel()
        self._ahead.clear()
        self._grain = None

    def __iter__(self) -> CorpusBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self.workers > 0:
            if self._grain is None:
                import grain
                from absl import flags

                if not flags.FLAGS.is_parsed():  # grain reads absl flags (notebooks, tests)
                    flags.FLAGS.mark_as_parsed()

                ds = grain.MapDataset.source(_Batches(self.maker, self.t)).to_iter_dataset()
                self._grain = iter(ds.mp_prefetch(grain.MultiprocessingOptions(
                    num_workers=self.workers, per_worker_buffer_size=self.prefetch)))
            batch = next(self._grain)
        else:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(self.prefetch, "batches")
            while len(self._ahead) < self.prefetch:
                t = self.t + len(self._ahead)
                self._ahead.append(self._pool.submit(self.maker, t))
            batch = self._ahead.popleft().result()
        self.t += 1
        return batch

    def get_state(self) -> dict[str, Any]:
        return {"batch": self.t, "fingerprints": self.maker.fingerprints}

    def set_state(self, state: dict[str, Any]) -> None:
        saved = list(state.get("fingerprints") or [])
        if saved != self.maker.fingerprints:
            raise DataError(self.maker.corpora[0].path,
                            f"the checkpoint was trained on corpora with fingerprints {saved}, "
                            f"this run's are {self.maker.fingerprints}: the prepared corpus "
                            "changed; resume with the corpus the run started with")
        self._restart()
        self.t = int(state["batch"])

    def rows_drawn(self) -> dict[str, int]:
        """Rows each corpus supplied so far (all processes), e.g. for metrics.jsonl."""
        return self.maker.rows_drawn(self.t)

    def close(self) -> None:
        self._restart()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
