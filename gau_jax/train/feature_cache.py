"""Cached trunk features for LST (used by the LST method, gau_jax/train/lst_method.py).

The frozen trunk is deterministic, so the side network's inputs (h_0 and the ladder layers'
states, K = 1 + L_s of the L+1 hidden states) are a fixed function of each example. They are
computed once per split and streamed to disk, real (unpadded) tokens only:

    DIR/meta.json            fingerprint (trunk config + params + vocab + layers + dtype), sizes
    DIR/<split>.bin          raw [T, K, d] in cache_dtype, T = Σ real tokens (np.memmap)
    DIR/<split>.index.npz    offsets int64[N+1], labels int32[N]

Size = T·K·d·bytes (e.g. base trunk, 12 ladders + h_0, bfloat16: 13·768·2 ≈ 20 KB per token);
the estimate is printed first; a cache above config.lst.cache_budget_gb, or above the free
space of its disk, is refused. meta.json is written last (atomically): a cache without it is
rebuilt. Batches
read from the cache carry features [b, n, K, d] (right-padded to a multiple of pad_multiple),
attention_mask, labels and weights, and train a trunk-less LadderSideTuning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from tqdm import tqdm

from gau_jax.atomic import write_text_atomic
from gau_jax.models.encoder import Encoder
from gau_jax.models.lst import frozen_trunk_config
from gau_jax.tasks.losses import apply_rows, model_kwargs, weighted_sums

DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def estimate_bytes(num_tokens: int, num_features: int, hidden: int, dtype: str) -> int:
    """Bytes of a cache of num_tokens real tokens × K features × d in `dtype`."""
    return int(num_tokens) * num_features * hidden * np.dtype(DTYPES[dtype]).itemsize


def fingerprint(model_config: dict, trunk_params: Any, vocab: dict, indices: tuple,
                dtype: str) -> str:
    """sha256 of everything the cached features depend on."""
    h = hashlib.sha256(json.dumps([model_config, sorted(vocab.items()), list(indices), dtype],
                                  sort_keys=True, default=str).encode())
    for x in jax.tree_util.tree_leaves(trunk_params):
        h.update(np.ascontiguousarray(np.asarray(x)).tobytes())
    return h.hexdigest()[:16]


def trunk_features_fn(trunk_cfg, indices: tuple[int, ...]):
    """jit fn (trunk params, batch) -> features [b, n, K, d] of the deterministic trunk."""
    enc = Encoder(frozen_trunk_config(trunk_cfg))

    @jax.jit
    def features(params, batch):
        out = enc.apply({"params": params}, batch["input_ids"], batch["attention_mask"],
                        batch["segment_ids"], output_hidden_states=True, return_logits=False)
        return jnp.moveaxis(out.hidden_states[jnp.asarray(indices)], 0, 2)

    return features


def write_split(path: Path, split: str, batches: list[dict], features_fn, params,
                dtype: str) -> None:
    """Streams the real-token features of every weighted row of `batches` to path/split.*."""
    offsets, labels = [0], []
    with open(path / f"{split}.bin", "wb") as f:
        for batch in tqdm(batches, desc=f"feature cache {split}", unit="batch"):
            feats = np.asarray(features_fn(params, batch)).astype(DTYPES[dtype])
            lengths = batch["attention_mask"].sum(1)
            for j in np.nonzero(batch["weights"] > 0)[0]:
                f.write(np.ascontiguousarray(feats[j, :lengths[j]]).tobytes())
                offsets.append(offsets[-1] + int(lengths[j]))
                labels.append(int(batch["labels"][j]))
    np.savez(path / f"{split}.index.npz", offsets=np.asarray(offsets, np.int64),
             labels=np.asarray(labels, np.int32))


@dataclasses.dataclass
class CachedSplit:
    """Batches of one cached split: shuffled epochs (train) or one padded pass (eval)."""

    features: np.ndarray  # memmap [T, K, d]
    offsets: np.ndarray
    labels: np.ndarray
    batch_size: int
    pad_multiple: int = 32
    seed: int = 0
    epoch: int = 0
    index: int = 0
    shard: tuple[int, int] = (0, 1)  # (process p, of P): yields rows p, p+P, … of each batch

    @classmethod
    def open(cls, path: Path, split: str, meta: dict, **kw) -> CachedSplit:
        idx = np.load(path / f"{split}.index.npz")
        feats = np.memmap(path / f"{split}.bin", dtype=DTYPES[meta["dtype"]], mode="r",
                          shape=(int(idx["offsets"][-1]), meta["num_features"], meta["hidden"]))
        return cls(feats, idx["offsets"], idx["labels"], **kw)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, rows: np.ndarray, size: int) -> dict[str, np.ndarray]:
        lengths = self.offsets[rows + 1] - self.offsets[rows]
        m = self.pad_multiple
        n = int(-(-max(lengths.max(initial=1), 1) // m) * m)
        feats = np.zeros((size, n, *self.features.shape[1:]), self.features.dtype)
        mask = np.zeros((size, n), np.int32)
        for j, (r, ln) in enumerate(zip(rows, lengths, strict=True)):
            feats[j, :ln] = self.features[self.offsets[r]:self.offsets[r + 1]]
            mask[j, :ln] = 1
        labels = np.zeros(size, np.int32)
        labels[:len(rows)] = self.labels[rows]
        weights = (np.arange(size) < len(rows)).astype(np.float32)
        return {"features": feats, "attention_mask": mask, "labels": labels, "weights": weights}

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        per_epoch = len(self) // self.batch_size
        if per_epoch == 0:
            raise ValueError(f"cached split has {len(self)} rows < batch_size={self.batch_size}")
        if self.index >= per_epoch:
            self.epoch, self.index = self.epoch + 1, 0
        order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self))
        rows = order[self.index * self.batch_size:(self.index + 1) * self.batch_size]
        self.index += 1
        return self._local(rows)

    def one_pass(self):
        for start in range(0, len(self), self.batch_size):
            yield self._local(np.arange(start, min(start + self.batch_size, len(self))))

    def _local(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """This process's rows of a global batch (filler rows, weight 0, fill it up)."""
        p, count = self.shard
        return self.batch(rows[p::count], self.batch_size // count)

    def get_state(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def set_state(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


def cached_sums_fn(model):
    """Classification sums of a LadderSideTuning fed cached features."""

    def sums(params, batch, rng, residual_scale, train):
        logits = apply_rows(model, params, rng, (None, batch["attention_mask"]),
                            {"features": batch["features"]}, deterministic=not train,
                            **model_kwargs(residual_scale, None))
        return weighted_sums(logits, batch["labels"], batch["weights"])

    return sums


def build_cache(path: Path, trunk_cfg, indices, params, splits: dict[str, list[dict]],
                dtype: str, budget_gb: float, fp: str) -> dict:
    """Builds (or reuses, if the fingerprint matches) the cache of `splits`; returns meta."""
    meta_path = path / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta["fingerprint"] != fp:
            raise ValueError(f"feature cache {path} was built from a different trunk, tokenizer, "
                             f"layers or dtype (fingerprint {meta['fingerprint']} != {fp}); "
                             "delete it or set config.lst.cache_dir")
        return meta
    if dtype not in DTYPES:
        raise ValueError(f"config.lst.cache_dtype={dtype!r} not one of {sorted(DTYPES)}")
    tokens = sum(int(b["attention_mask"][b["weights"] > 0].sum()) for bs in splits.values()
                 for b in bs)
    size = estimate_bytes(tokens, len(indices), trunk_cfg.hidden_size, dtype)
    msg = (f"feature cache {path}: {tokens} real tokens x {len(indices)} layers x "
           f"{trunk_cfg.hidden_size} x {dtype} = {size / 1e9:.3g} GB "
           f"(config.lst.cache_budget_gb={budget_gb})")
    print(msg, flush=True)
    if size > budget_gb * 1e9:
        raise ValueError(f"{msg}: over budget; raise config.lst.cache_budget_gb, lower "
                         "max_length / side_layers, use cache_dtype=bfloat16, or set "
                         "config.lst.cache=False")
    path.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path).free
    if size > free:
        raise ValueError(f"{msg}: the disk holding {path} has only {free / 1e9:.3g} GB free; "
                         "free space, set config.lst.cache_dir elsewhere, or lower the size")
    fn = trunk_features_fn(trunk_cfg, indices)
    for split, batches in splits.items():
        write_split(path, split, batches, fn, params, dtype)
    meta = {"fingerprint": fp, "dtype": dtype, "num_features": len(indices),
            "hidden": trunk_cfg.hidden_size, "bytes": size, "tokens": tokens}
    # meta.json last and atomically: a cache without it (a crash mid-build) is rebuilt
    write_text_atomic(meta_path, json.dumps(meta, indent=2))
    return meta
