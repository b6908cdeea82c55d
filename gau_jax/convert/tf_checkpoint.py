"""Read TensorFlow (V2 "tensor bundle") checkpoints with NumPy alone — no TensorFlow needed.

A checkpoint `PREFIX` is `PREFIX.index` plus `PREFIX.data-SSSSS-of-NNNNN`. The index is a LevelDB
table (sorted key → value blocks, an index block and a 48-byte footer ending in a magic number);
key "" holds a BundleHeaderProto, every other key is a tensor name whose value is a
BundleEntryProto (dtype, shape, shard_id, offset, size, crc32c). A tensor's bytes are the
little-endian C-order array at [offset, offset+size) of its data shard. This is the format that
bert4keras' `save_weights_as_checkpoint` (tf.train.Saver) writes.

Only the fields needed here are decoded (a minimal protobuf wire reader); compressed tables,
string tensors and sliced (partitioned) variables raise a ConvertError naming the tensor, and so
does a truncated or corrupted index or data shard (never an IndexError from deep inside).
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np

from gau_jax.convert.common import ConvertError

_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48
# TensorFlow DataType enum → numpy dtype (bfloat16 via ml_dtypes, which jax brings).
_DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?",
           17: "<u2", 19: "<f2", 22: "<u4", 23: "<u8"}
_BFLOAT16 = 14


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a serialized protobuf message (varint/len/fixed fields)."""
    out, pos = [], 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")  # caller names where
        out.append((field, value))
    return out


def _block_entries(data: bytes, offset: int, size: int, where: str) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one table block (prefix-compressed keys, restart array at the end)."""
    if data[offset + size] != 0:  # trailer: compression type byte, then a 4-byte crc
        raise ConvertError(f"{where}: compressed checkpoint index blocks are not supported")
    block = data[offset:offset + size]
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * num_restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos:pos + value_len]))
        pos += value_len
    return entries


def _handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def checkpoint_prefix(path: str | os.PathLike) -> Path:
    """The checkpoint prefix for a folder (via its `checkpoint` file or a single *.index) or a
    prefix / .index path."""
    p = Path(path)
    if p.is_dir():
        state = p / "checkpoint"
        if state.is_file():
            for line in state.read_bytes().decode("utf-8", "replace").splitlines():
                if line.startswith("model_checkpoint_path:"):
                    name = line.split(":", 1)[1].strip().strip('"')
                    cand = Path(name) if Path(name).is_absolute() else p / name
                    if cand.with_name(cand.name + ".index").exists():
                        return cand
        indexes = sorted(p.glob("*.index"))
        if len(indexes) != 1:
            raise FileNotFoundError(f"{p}: expected exactly one TensorFlow checkpoint *.index, "
                                    f"found {[i.name for i in indexes]}")
        return indexes[0].with_suffix("")
    if p.suffix == ".index":
        return p.with_suffix("")
    return p


def read_tf_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All numeric tensors of a TensorFlow checkpoint as {name: numpy array}."""
    prefix = checkpoint_prefix(path)
    index = prefix.with_name(prefix.name + ".index")
    if not index.exists():
        raise FileNotFoundError(f"{index}: TensorFlow checkpoint index not found")
    data = index.read_bytes()
    if len(data) < _FOOTER or struct.unpack_from("<Q", data, len(data) - 8)[0] != _MAGIC:
        raise ConvertError(f"{index}: not a TensorFlow checkpoint index (bad table magic)")
    try:
        entries, num_shards = _index_entries(data, index)
    except ConvertError:
        raise
    except _CORRUPT as e:
        raise ConvertError(f"{index}: corrupted TensorFlow checkpoint index "
                           f"({type(e).__name__}: {e})") from None
    shards: dict[int, bytes] = {}
    out: dict[str, np.ndarray] = {}
    for key, value in entries:
        if not key:
            continue
        try:
            name = key.decode("utf-8")
        except UnicodeDecodeError:
            raise ConvertError(f"{index}: tensor name {key[:60]!r} is not UTF-8 (a corrupted "
                               "index?)") from None
        try:
            out[name] = _read_tensor(prefix, name, value, num_shards, shards)
        except ConvertError:
            raise
        except _CORRUPT as e:
            raise ConvertError(f"{prefix}: tensor {name!r}: corrupted checkpoint entry "
                               f"({type(e).__name__}: {e})") from None
    return out


# What a truncated / corrupted index or entry makes the decoders below raise.
_CORRUPT = (IndexError, struct.error, TypeError, ValueError, OverflowError)


def _index_entries(data: bytes, index: Path) -> tuple[list[tuple[bytes, bytes]], int]:
    """(key, value) pairs of every data block and the header's shard count."""
    _, _, pos = _handle(data, len(data) - _FOOTER)  # metaindex handle (unused)
    idx_off, idx_size, _ = _handle(data, pos)
    entries: list[tuple[bytes, bytes]] = []
    for _, handle in _block_entries(data, idx_off, idx_size, str(index)):
        off, size, _ = _handle(handle)
        entries.extend(_block_entries(data, off, size, str(index)))
    header = dict(_proto_fields(dict(entries).get(b"", b"")))
    num_shards = int(header.get(1, 1))
    if header.get(2, 0) != 0:
        raise ConvertError(f"{index}: big-endian checkpoints are not supported")
    return entries, num_shards


def _read_tensor(prefix: Path, name: str, entry: bytes, num_shards: int,
                 shards: dict[int, bytes]) -> np.ndarray:
    fields = _proto_fields(entry)
    get = dict(fields)
    if any(f == 7 for f, _ in fields):
        raise ConvertError(f"{prefix}: tensor {name!r} is partitioned (slices); not supported")
    dtype_id = int(get.get(1, 0))
    shape = [int(dict(_proto_fields(d)).get(1, 0)) for f, d in _proto_fields(get.get(2, b""))
             if f == 2]
    shard, offset, size = int(get.get(3, 0)), int(get.get(4, 0)), int(get.get(5, 0))
    if dtype_id == _BFLOAT16:
        import ml_dtypes
        dtype = np.dtype(ml_dtypes.bfloat16)
    elif dtype_id in _DTYPES:
        dtype = np.dtype(_DTYPES[dtype_id])
    else:
        raise ConvertError(f"{prefix}: tensor {name!r} has unsupported TensorFlow dtype "
                           f"{dtype_id}")
    if shard not in shards:
        f = prefix.with_name(f"{prefix.name}.data-{shard:05d}-of-{num_shards:05d}")
        if not f.is_file():
            raise ConvertError(f"{f}: data shard of tensor {name!r} not found")
        shards[shard] = f.read_bytes()
    buf = shards[shard]
    count = math.prod(shape)
    if size != count * dtype.itemsize or offset + size > len(buf):
        raise ConvertError(f"{prefix}: tensor {name!r} (shape {shape}, {dtype}) has {size} bytes "
                           "at an offset beyond or inconsistent with its data shard (truncated?)")
    return np.frombuffer(buf, dtype, count, offset).reshape(shape).copy()
