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
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gau_jax.models import build_encoder, stack_layers, unstack_layers
from gau_jax.models.tree import tree_shape_diff

MAX_LAYERS = 1024  # a config asking for more is corrupt (and would take long to even trace)
NameFn = Callable[[tuple[str, ...], int | None], tuple[str, bool]]
PyTree = Any


class ConvertError(ValueError):
    """A checkpoint cannot be mapped onto (or from) a gau_jax Encoder; the message names why."""


def read_json(path: Any) -> dict:
    """A JSON object file (config.json, bert_config.json, *.index.json); ConvertError names the
    file and the line / byte offset of invalid UTF-8 or JSON, or a top level that is no object."""
    from gau_jax.data.readers import DataError, decode_utf8, parse_json

    try:
        value = parse_json(decode_utf8(Path(path).read_bytes(), path), path, 1)
    except DataError as e:
        raise ConvertError(str(e)) from None
    if not isinstance(value, dict):
        raise ConvertError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def config_int(cfg: Mapping, field: str, source: str, default: Any = None, minimum: int = 1,
               maximum: int = 2**24) -> int:
    """cfg[field] (or default) checked to be an integer in [minimum, maximum]."""
    v = cfg.get(field, default)
    if not isinstance(v, int) or isinstance(v, bool) or not minimum <= v <= maximum:
        raise ConvertError(f"{source}: field {field!r} must be an integer in [{minimum}, "
                           f"{maximum}], got {v!r:.60}")
    return v


def config_float(cfg: Mapping, field: str, source: str, default: float,
                 maximum: float = 1.0) -> float:
    """cfg[field] (or default) checked to be a number in [0, maximum] (epsilons, rates)."""
    v = cfg.get(field, default)
    if not isinstance(v, int | float) or isinstance(v, bool) or not 0 <= v <= maximum:
        raise ConvertError(f"{source}: field {field!r} must be a number in [0, {maximum}], got "
                           f"{v!r:.60}")
    return float(v)


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
        if not np.isfinite(value).all():
            raise ConvertError(f"{source}: tensor {name!r} holds {(~np.isfinite(value)).sum()} "
                               "NaN/inf values (a corrupted checkpoint?)")
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
    return stack_layers(params) if cfg.scan_layers else params


def export_params(params: PyTree, cfg: ml_collections.ConfigDict,
                  name_of: NameFn) -> dict[str, np.ndarray]:
    """Flat {name: float32 array} of a format from our params (either layer layout)."""
    check_params(params, cfg, "params")
    flat = jax.tree_util.tree_flatten_with_path(
        unstack_layers(jax.tree.map(np.asarray, params)))[0]
    out: dict[str, np.ndarray] = {}
    for path, value in flat:
        layer, sub = _split_layer(tuple(k.key for k in path))
        name, transpose = name_of(sub, layer)
        value = np.asarray(value, np.float32)
        out[name] = np.ascontiguousarray(value.T if transpose else value)
    return out


def check_params(params: PyTree, cfg: ml_collections.ConfigDict, source: str) -> None:
    """Raise ConvertError naming the first leaf of `params` (either layer layout) that differs
    from the Encoder the config builds: missing, of another shape, or unexpected."""
    want = _nest({p: jax.ShapeDtypeStruct(s, np.float32) for p, s in expected_shapes(cfg).items()})
    problem = tree_shape_diff(unstack_layers(params), want, "the params",
                              f"the {cfg.block} model of the config")
    if problem:
        raise ConvertError(f"{source}: parameter {problem}")


def count_vocab(path: Any) -> int:
    """Number of tokens (non-empty lines) in a vocab.txt."""
    from gau_jax.data.readers import DataError, iter_lines

    try:
        return sum(1 for _, line in iter_lines(path) if line)
    except DataError as e:
        raise ConvertError(str(e)) from None


def check_vocab(path: Any, cfg: ml_collections.ConfigDict) -> None:
    """vocab.txt must have exactly as many tokens as the embedding has rows."""
    n = count_vocab(path)
    if n != cfg.vocab_size:
        raise ConvertError(f"{path}: {n} tokens, but the token embedding has "
                           f"vocab_size={cfg.vocab_size} rows")
