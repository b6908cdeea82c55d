"""A prepared pretraining corpus on disk: packed windows of token ids with word-start bits.

Layout of a prepared corpus folder DIR (written by `python -m gau_jax.data.prepare_corpus`):

    DIR/manifest.json                      counts, settings, fingerprint, shard files, command
    DIR/vocab.txt                          the vocabulary the ids refer to
    DIR/train-SSSSS-of-NNNNN.array_record  one shard per input shard (ArrayRecord, group size 1)
    DIR/dev-SSSSS-of-NNNNN.array_record    the documents held out by hash

The token stream of a shard is `[CLS] d1 [SEP] [CLS] d2 [SEP] ...` over its kept documents, cut
into windows of `max_length` tokens (the last window of a shard may be shorter). One record is
one window of n tokens:

    uint32 n | ids: n × uint16 (uint32 when the vocabulary has more than 65,536 ids)
             | word starts: ceil(n / 8) bytes (np.packbits, big-endian bit order)

Word start bit i is 1 when token i begins a whole-word-masking unit (gau_jax/data/masking.py):
a jieba word, with `##` continuations glued to the token before. [CLS] / [SEP] have bit 0.
So a 512-token window costs 4 + 2·512 + 64 bytes: 2.13 bytes a token.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gau_jax.data.readers import DataError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VOCAB = "vocab.txt"
SPLITS = ("train", "dev")
RECORD_OPTIONS = "group_size:1,uncompressed"  # one read per window, no decompression


def id_dtype(vocab_size: int) -> np.dtype:
    """uint16 while every id fits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def encode_window(ids: np.ndarray, starts: np.ndarray, dtype: np.dtype) -> bytes:
    """One record (module docstring)."""
    n = len(ids)
    return (np.uint32(n).tobytes() + np.asarray(ids, dtype).tobytes()
            + np.packbits(np.asarray(starts, bool)).tobytes())


def decode_windows(records: Sequence[bytes], length: int, dtype: np.dtype,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids int32 [r, length] zero-padded, starts bool [r, length], lengths int32 [r])."""
    r = len(records)
    ids = np.zeros((r, length), np.int32)
    starts = np.zeros((r, length), bool)
    lengths = np.zeros(r, np.int32)
    width = dtype.itemsize
    for i, rec in enumerate(records):
        n = int(np.frombuffer(rec, np.uint32, 1)[0])
        if n > length:
            raise DataError("<corpus>", f"a window of {n} tokens exceeds max_length={length}")
        ids[i, :n] = np.frombuffer(rec, dtype, n, 4)
        bits = np.frombuffer(rec, np.uint8, (n + 7) // 8, 4 + n * width)
        starts[i, :n] = np.unpackbits(bits, count=n).astype(bool)
        lengths[i] = n
    return ids, starts, lengths


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_prepared(path: str | os.PathLike) -> bool:
    """A folder with a manifest.json is a prepared corpus."""
    return (Path(path) / MANIFEST).is_file()


class PreparedCorpus:
    """A prepared corpus folder: its manifest and random access to its windows."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not is_prepared(self.path):
            raise DataError(self.path, f"not a prepared corpus (no {MANIFEST}); prepare it with "
                                       "`python -m gau_jax.data.prepare_corpus INPUT --output "
                                       f"{self.path} --vocab VOCAB.txt`")
        self.manifest: dict[str, Any] = json.loads((self.path / MANIFEST).read_text())
        version = self.manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise DataError(self.path / MANIFEST, f"format_version {version}, this gau_jax reads "
                                                  f"{FORMAT_VERSION}; prepare the corpus again")
        self.fingerprint: str = self.manifest["fingerprint"]
        self.max_length: int = int(self.manifest["settings"]["max_length"])
        self.dtype = np.dtype(self.manifest["id_dtype"])
        self.vocab_path = self.path / VOCAB
        self._sources: dict[str, Any] = {}

    def num_windows(self, split: str) -> int:
        return int(self.manifest["windows"][split])

    def files(self, split: str) -> list[str]:
        """The split's non-empty shards as `path[0:n]` (grain's ArrayRecordDataSource reads
        this form without opening a file to count its records)."""
        return [f"{self.path / f}[0:{n}]" for f, n in self.manifest["shards"][split] if n > 0]

    def source(self, split: str) -> Any:
        """grain's ArrayRecordDataSource over the split's non-empty shards."""
        import grain

        files = self.files(split)
        return grain.sources.ArrayRecordDataSource(files) if files else []

    def read(self, split: str, indices: Sequence[int]) -> list[bytes]:
        """The records at `indices` (global window numbers of the split): one read call per
        shard file, readers opened lazily (so a PreparedCorpus pickles to worker processes)."""
        if split not in self._sources:
            shards = [(f, n) for f, n in self.manifest["shards"][split] if n > 0]
            self._sources[split] = ([f for f, _ in shards], np.cumsum([n for _, n in shards]),
                                    {})
        names, ends, readers = self._sources[split]
        indices = np.asarray(indices, np.int64)
        shard = np.searchsorted(ends, indices, side="right")
        position = indices - np.concatenate([[0], ends])[shard]
        out: list[bytes] = [b""] * len(indices)
        for s in np.unique(shard):
            if s not in readers:
                from array_record.python.array_record_module import ArrayRecordReader

                readers[s] = ArrayRecordReader(str(self.path / names[s]),
                                               "readahead_buffer_size:0",
                                               file_reader_buffer_size=32768)
            sel = np.nonzero(shard == s)[0]
            for i, rec in zip(sel, readers[s].read(position[sel].tolist()), strict=True):
                out[i] = rec
        return out

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_sources": {}}
