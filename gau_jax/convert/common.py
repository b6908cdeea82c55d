"""Format-independent weight mapping: flat {name: array} checkpoints ↔ our Encoder parameters.

A format supplies `name_of(path, layer) -> (name, transpose)` for every parameter path of our
Encoder (`layer` is the block index for paths under "layers", else None). Import walks the
parameter tree the config *must* have (from `jax.eval_shape` of `Encoder.init`, never from the
checkpoint), so a missing tensor, a wrong shape or a leftover tensor of the model raises
ConvertError naming it before anything is returned: no half-loaded models.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gau_jax.models import build_encoder

NameFn = Callable[[tuple[str, ...], int | None], tuple[str, bool]]
PyTree = Any


class ConvertError(ValueError):
    """A checkpoint cannot be mapped onto (or from) a gau_jax Encoder; the message names why."""


def expected_shapes(cfg: ml_collections.ConfigDict) -> dict[tuple[str, ...], tuple[int, ...]]:
    """{param path: shape} of the unrolled (scan_layers=False) Encoder this config builds."""
    c = ml_collections.ConfigDict(cfg.to_dict())
    c.update(scan_layers=False, dtype="float32", remat="none")  # shape-neutral fields
    return dict(_shapes(json.dumps(c.to_dict(), sort_keys=True)))


@functools.lru_cache(maxsize=32)
def _shapes(cfg_json: str) -> tuple:
    model = build_encoder(json.loads(cfg_json))
    ids = jnp.zeros((1, 2), jnp.int32)
    tree = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), ids))["params"]
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return tuple((tuple(k.key for k in path), tuple(leaf.shape)) for path, leaf in flat)


def _split_layer(path: tuple[str, ...]) -> tuple[int | None, tuple[str, ...]]:
    if path[0].startswith("layers_"):
        return int(path[0][len("layers_"):]), path[1:]
    return None, path


def _nest(flat: Mapping[tuple[str, ...], np.ndarray]) -> dict:
    out: dict = {}
    for path, value in flat.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


def import_params(tensors: Mapping[str, np.ndarray], cfg: ml_collections.ConfigDict,
                  name_of: NameFn, source: str, owned: Callable[[str], bool],
                  ignore: Iterable[str] = ()) -> dict:
    """Encoder params (float32 numpy, layout of cfg.scan_layers) from flat `tensors`.

    owned(name) says whether a name belongs to the encoder in this format: such a tensor left
    unused is an error (the checkpoint has parameters our model lacks); other leftovers (task
    heads, optimizer slots) are logged and skipped. `ignore` names are dropped silently.
    """
    used = set(ignore)
    flat: dict[tuple[str, ...], np.ndarray] = {}
    for path, shape in expected_shapes(cfg).items():
        layer, sub = _split_layer(path)
        name, transpose = name_of(sub, layer)
        if name not in tensors:
            raise ConvertError(f"{source}: tensor {name!r} is missing (needed for parameter "
                               f"{'/'.join(path)} of a {cfg.block} model)")
        value = np.asarray(tensors[name])
        value = value.T if transpose else value
        if value.shape != shape:
            got = value.T.shape if transpose else value.shape
            want = shape[::-1] if transpose else shape
            raise ConvertError(f"{source}: tensor {name!r} has shape {got}, the config implies "
                               f"{want} (vocab_size={cfg.vocab_size}, hidden_size="
                               f"{cfg.hidden_size}, intermediate_size={cfg.intermediate_size}, "
                               f"key_size={cfg.key_size})")
        if not np.issubdtype(value.dtype, np.floating):
            raise ConvertError(f"{source}: tensor {name!r} has dtype {value.dtype}, not float")
        flat[path] = np.ascontiguousarray(value, dtype=np.float32)
        used.add(name)
    leftovers = sorted(set(tensors) - used)
    foreign = [n for n in leftovers if owned(n)]
    if foreign:
        raise ConvertError(f"{source}: tensor(s) {foreign[:5]} of the encoder have no place in "
                           f"a gau_jax {cfg.block} model (unsupported variant, e.g. LayerNorm "
                           "gains/biases of a plain RoFormer/BERT)")
    if leftovers:
        logging.warning("%s: ignoring %d tensor(s) outside the encoder: %s", source,
                        len(leftovers), leftovers[:8])
    params = _nest(flat)
    return stack(params, cfg.num_layers) if cfg.scan_layers else params


def stack(params: dict, num_layers: int) -> dict:
    """Unrolled numpy params (layers_0 …) → scanned layout ("layers", leading axis L)."""
    out = {k: v for k, v in params.items() if not k.startswith("layers_")}
    per_layer = [params[f"layers_{i}"] for i in range(num_layers)]
    out["layers"] = jax.tree.map(lambda *xs: np.stack(xs), *per_layer)
    return out


def unstack(params: dict) -> dict:
    """Scanned numpy params → unrolled (a no-op for params that are already unrolled)."""
    if "layers" not in params:
        return params
    out = {k: v for k, v in params.items() if k != "layers"}
    n = jax.tree.leaves(params["layers"])[0].shape[0]
    for i in range(n):
        out[f"layers_{i}"] = jax.tree.map(lambda x, i=i: np.asarray(x[i]), params["layers"])
    return out


def export_params(params: PyTree, cfg: ml_collections.ConfigDict,
                  name_of: NameFn) -> dict[str, np.ndarray]:
    """Flat {name: float32 array} of a format from our params (either layer layout)."""
    check_params(params, cfg, "params")
    flat = jax.tree_util.tree_flatten_with_path(unstack(jax.tree.map(np.asarray, params)))[0]
    out: dict[str, np.ndarray] = {}
    for path, value in flat:
        layer, sub = _split_layer(tuple(k.key for k in path))
        name, transpose = name_of(sub, layer)
        value = np.asarray(value, np.float32)
        out[name] = np.ascontiguousarray(value.T if transpose else value)
    return out


def check_params(params: PyTree, cfg: ml_collections.ConfigDict, source: str) -> None:
    """Raise ConvertError naming the first leaf of `params` that the config does not expect."""
    got = jax.tree_util.tree_flatten_with_path(unstack(params))[0]
    got = {tuple(k.key for k in p): tuple(np.shape(v)) for p, v in got}
    want = expected_shapes(cfg)
    for path, shape in want.items():
        if path not in got:
            raise ConvertError(f"{source}: parameter {'/'.join(path)} is missing")
        if got[path] != shape:
            raise ConvertError(f"{source}: parameter {'/'.join(path)} has shape {got[path]}, "
                               f"the config implies {shape}")
    extra = sorted(set(got) - set(want))
    if extra:
        raise ConvertError(f"{source}: unexpected parameter(s) {['/'.join(p) for p in extra[:5]]}")


def count_vocab(path: Any) -> int:
    """Number of tokens (lines) in a vocab.txt."""
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.rstrip("\r\n"))


def check_vocab(path: Any, cfg: ml_collections.ConfigDict) -> None:
    """vocab.txt must have exactly as many tokens as the embedding has rows."""
    n = count_vocab(path)
    if n != cfg.vocab_size:
        raise ConvertError(f"{path}: {n} tokens, but the token embedding has "
                           f"vocab_size={cfg.vocab_size} rows")
