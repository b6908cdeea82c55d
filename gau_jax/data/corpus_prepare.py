"""Raw text → a prepared corpus (gau_jax/data/corpus_format.py), in parallel and resumably.

Inputs are UTF-8 text files (one document per line), JSON Lines files (`.jsonl` / `.json`, the
document in `text_field`), `.gz` of either, or folders of them (recursively, sorted by path).
Each file is cut into input shards of `shard_mb` megabytes at line starts (a `.gz` file is one
shard); everything is streamed line by line, never a whole file in memory. Three passes:

  1. scan (a process pool over shards): per line, decode; invalid UTF-8, bad JSON or a missing /
     non-string text field is a bad line (skipped, counted, the first few named by file:line);
     a blank line is skipped; a document is line.strip(), its key the 64-bit BLAKE2b hash of
     its whitespace-normalised text (" ".join(text.split())). Writes the shard's keys.
  2. de-duplicate: a document is kept iff it is the first with its key in (shard, line) order.
  3. encode (the pool again): kept documents whose key falls below dev_fraction (key / 2^64)
     go to dev, the rest to train; each is tokenised with the vocabulary (exactly
     ChineseTokenizer's ids, [CLS] text [SEP]) and segmented into words (`segmenter`, word
     starts as gau_jax/data/masking.py's word_units); the shard's stream of tokens is cut into
     windows of max_length tokens and written as one ArrayRecord file per split.

Every shard's outputs depend on the shard alone, so the files are byte-identical for any worker
count. The ledger DIR/.prepare-<fingerprint>/ holds each finished shard's results (written
atomically); killed and rerun, only the shards that were in flight are redone. The fingerprint
hashes the inputs (path, size, mtime), the vocabulary's bytes and every setting (segmenter and
tokenizers versions included): a folder prepared or half-prepared under another fingerprint is
refused, naming both, never mixed. DIR/manifest.json is written last; its presence marks a
complete corpus.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import io
import itertools
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gau_jax.atomic import write_text_atomic
from gau_jax.data import corpus_format as fmt
from gau_jax.data.masking import SEGMENTERS, segmenter_version, word_starts
from gau_jax.data.readers import DataError

DEV_FRACTION = 0.01
SHARD_MB = 16  # input shard size: small enough that workers finish together
ENCODE_BATCH = 512  # documents tokenised per tokenizers call
LOG_BAD_LINES = 5
TEXT_SUFFIXES = (".txt", ".jsonl", ".json")


@dataclasses.dataclass(frozen=True)
class Settings:
    max_length: int = 512
    dev_fraction: float = DEV_FRACTION
    segmenter: str = "rjieba"
    text_field: str = "text"
    shard_mb: float = SHARD_MB


@dataclasses.dataclass(frozen=True)
class Shard:
    path: str
    start: int  # byte range [start, end) of line starts; end -1 = to the end (.gz: whole file)
    end: int

    @functools.cached_property
    def jsonl(self) -> bool:
        return Path(self.path.removesuffix(".gz")).suffix in (".jsonl", ".json")


def input_files(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The files of INPUT paths: files as given, folders' text / JSON Lines (+ .gz) files."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file()
                           and f.name.removesuffix(".gz").endswith(TEXT_SUFFIXES))
            if not found:
                raise DataError(p, f"no {'/'.join(TEXT_SUFFIXES)} files (or .gz) in this folder")
            files += found
        else:
            raise DataError(p, "input not found (a text / JSON Lines file or a folder of them)")
    return files


def plan_shards(files: Sequence[Path], shard_mb: float) -> list[Shard]:
    """Byte ranges of about shard_mb MB per shard (a .gz file is one shard)."""
    size = max(1, int(shard_mb * 2**20))
    shards = []
    for f in files:
        n = f.stat().st_size
        if f.suffix == ".gz" or n <= size:
            shards.append(Shard(str(f), 0, -1))
        else:
            shards += [Shard(str(f), a, min(a + size, n) if a + size < n else -1)
                       for a in range(0, n, size)]
    return shards


def fingerprint(files: Sequence[Path], vocab: Path, settings: Settings) -> str:
    facts = {"format": fmt.FORMAT_VERSION, "settings": dataclasses.asdict(settings),
             "segmenter": segmenter_version(settings.segmenter),
             "tokenizers": _version("tokenizers"), "vocab": fmt.file_sha256(vocab),
             "inputs": [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:20]


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


# ----------------------------------------------------------------------------- reading
def shard_lines(shard: Shard) -> Iterator[bytes]:
    """Raw lines (without \\n / \\r\\n) of the lines that start in the shard's byte range."""
    if shard.path.endswith(".gz"):
        with gzip.open(shard.path, "rb") as f:
            for line in f:
                yield line.rstrip(b"\n").removesuffix(b"\r")
        return
    with open(shard.path, "rb") as raw:
        f = io.BufferedReader(raw, 1 << 20)
        pos = shard.start
        if pos > 0:  # the line that straddles the start belongs to the shard before
            f.seek(pos - 1)
            pos += len(f.readline()) - 1
        while shard.end < 0 or pos < shard.end:
            line = f.readline()
            if not line:
                break
            pos += len(line)
            yield line.rstrip(b"\n").removesuffix(b"\r")


def line_text(line: bytes, jsonl: bool, text_field: str) -> str:
    """The document of one line ('' for a blank line); ValueError says why a line is bad."""
    text = line.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if jsonl and text.strip():
        row = json.loads(text)
        if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
            raise ValueError(f"no string field {text_field!r}")
        text = row[text_field]
    return text.strip()


def doc_key(text: str) -> int:
    """64-bit hash of the whitespace-normalised text (de-duplication and dev split)."""
    digest = hashlib.blake2b(" ".join(text.split()).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def iter_documents(shard: Shard, text_field: str) -> Iterator[str]:
    """The shard's documents in order (bad and blank lines skipped)."""
    for line in shard_lines(shard):
        try:
            text = line_text(line, shard.jsonl, text_field)
        except ValueError:
            continue
        if text:
            yield text


# ----------------------------------------------------------------------------- passes
def scan_shard(shard: Shard, settings: Settings, out: Path) -> dict[str, Any]:
    """Pass 1: the shard's document keys (out.npy) and line counts (out.json)."""
    bad: list[tuple[int, str]] = []
    keys, lines = [], 0
    for lines, line in enumerate(shard_lines(shard), 1):  # noqa: B007 (lines: the count)
        try:
            text = line_text(line, shard.jsonl, settings.text_field)
        except ValueError as e:
            bad.append((lines, f"{type(e).__name__}: {e}"[:200]))
            continue
        if text:
            keys.append(doc_key(text))
    stats = {"lines": lines, "documents": len(keys), "bad_lines": len(bad),
             "bad_examples": bad[:LOG_BAD_LINES]}
    buf = io.BytesIO()
    np.save(buf, np.asarray(keys, np.uint64))
    write_text_atomic(out.with_suffix(".npy"), buf.getvalue())
    write_text_atomic(out.with_suffix(".json"), json.dumps(stats))
    return stats


class _Encoder:
    """Documents → (ids, word starts) of [CLS] text [SEP], the tokenizer's exact ids."""

    def __init__(self, vocab: Path, segmenter: str):
        from gau_jax.data.tokenizer import load_tokenizer

        self.tok = load_tokenizer(vocab)
        self.segment = SEGMENTERS[segmenter]
        inv = self.tok.inv_vocab
        self.continuation = np.asarray([inv[i].startswith("##") for i in range(len(inv))])

    def __call__(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text (ids, word starts); one vectorised word_starts over the whole batch (the
        texts laid end to end: [CLS] / [SEP] separate them as they separate units)."""
        chain = itertools.chain.from_iterable
        encs = self.tok.encode_raw_batch(texts)
        counts = [len(e.ids) for e in encs]
        ids = np.fromiter(chain(e.ids for e in encs), np.int64, sum(counts))
        offsets = np.fromiter(chain(chain(e.offsets for e in encs)), np.int64,
                              2 * len(ids)).reshape(-1, 2)
        lens = np.asarray([len(t) for t in texts], np.int64)
        base = np.concatenate([[0], np.cumsum(lens)[:-1]])
        offsets += np.repeat(base, counts)[:, None]
        words = list(chain(self.segment(t) for t in texts))  # they tile the texts end to end
        word_lens = np.fromiter(map(len, words), np.int64, len(words))
        if word_lens.sum() != lens.sum():
            raise ValueError(f"segmenter words do not cover the text (first text {texts[0]!r:.80})")
        char_word = np.repeat(np.arange(len(words)), word_lens)
        starts = word_starts(offsets, char_word, self.continuation[ids])
        cuts = np.cumsum(counts)[:-1]
        return list(zip(np.split(ids, cuts), np.split(starts, cuts), strict=True))


class _WindowWriter:
    """Cuts a token stream into max_length windows, one ArrayRecord file."""

    def __init__(self, path: Path, max_length: int, dtype: np.dtype):
        from array_record.python.array_record_module import ArrayRecordWriter

        self.path, self.tmp = path, path.with_name(f".{path.name}.tmp{os.getpid()}")
        self.writer = ArrayRecordWriter(str(self.tmp), fmt.RECORD_OPTIONS)
        self.max_length, self.dtype = max_length, dtype
        self.ids, self.starts, self.windows, self.tokens, self.pending = [], [], 0, 0, 0

    def add(self, ids: np.ndarray, starts: np.ndarray) -> None:
        self.ids.append(ids)
        self.starts.append(starts)
        self.tokens += len(ids)
        self.pending += len(ids)
        if self.pending >= 64 * self.max_length:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self.ids:
            return
        ids, starts = np.concatenate(self.ids), np.concatenate(self.starts)
        n = self.max_length
        cut = len(ids) if final else len(ids) // n * n
        for a in range(0, cut, n):
            self.writer.write(fmt.encode_window(ids[a:a + n], starts[a:a + n], self.dtype))
            self.windows += 1
        self.ids, self.starts = ([ids[cut:]], [starts[cut:]]) if cut < len(ids) else ([], [])
        self.pending = len(ids) - cut

    def close(self) -> int:
        self._flush(final=True)
        self.writer.close()
        os.replace(self.tmp, self.path)
        return self.windows


def encode_shard(shard: Shard, index: int, count: int, keep: np.ndarray, settings: Settings,
                 vocab: Path, output: Path, out: Path) -> dict[str, Any]:
    """Pass 3: the shard's train / dev ArrayRecord files and their counts (out.json)."""
    encoder = _Encoder(vocab, settings.segmenter)
    dtype = fmt.id_dtype(encoder.tok.vocab_size)
    names = {s: f"{s}-{index:05d}-of-{count:05d}.array_record" for s in fmt.SPLITS}
    writers = {s: _WindowWriter(output / names[s], settings.max_length, dtype)
               for s in fmt.SPLITS}
    stats = {"raw_bytes": 0, "unk": 0, "documents": {s: 0 for s in fmt.SPLITS}}
    threshold = settings.dev_fraction * 2.0**64
    texts, splits = [], []

    def flush() -> None:
        for (ids, starts), split in zip(encoder(texts), splits, strict=True):
            writers[split].add(ids, starts)
            stats["unk"] += int(np.count_nonzero(ids == encoder.tok.unk_id))
        texts.clear()
        splits.clear()

    for text, kept in zip(iter_documents(shard, settings.text_field), keep, strict=True):
        if not kept:
            continue
        split = "dev" if doc_key(text) < threshold else "train"
        stats["documents"][split] += 1
        stats["raw_bytes"] += len(text.encode("utf-8"))
        texts.append(text)
        splits.append(split)
        if len(texts) >= ENCODE_BATCH:
            flush()
    flush()
    stats["windows"] = {s: w.close() for s, w in writers.items()}
    stats["tokens"] = {s: writers[s].tokens for s in fmt.SPLITS}
    stats["files"] = names
    write_text_atomic(out.with_suffix(".json"), json.dumps(stats))
    return stats


def first_occurrences(keys: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per shard, True where a document's key is seen for the first time in (shard, line)
    order."""
    flat = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    _, first = np.unique(flat, return_index=True)
    keep = np.zeros(len(flat), bool)
    keep[first] = True
    return np.split(keep, np.cumsum([len(k) for k in keys])[:-1])
