"""The original bert4keras checkpoints of RoFormerV2 and GAU-α (Su Jianlin / ZhuiyiTechnology).

Folder: bert_model.ckpt.{index,data-*} (TensorFlow tensor bundle, read without TensorFlow by
`tf_checkpoint`) + bert_config.json + vocab.txt. Variable names are those of bert4keras'
`variable_mapping()` (Keras Dense kernels are [in, out] like ours: no transposes):

    bert/embeddings/word_embeddings                       [V, d]  → token_embedding
    bert/embeddings/token_type_embeddings                 [2, d]  → segment_embedding
    RoFormerV2 (BERT names minus every LayerNorm gamma/beta and bias):
    bert/encoder/layer_i/attention/self/{query,key,value}/kernel   → attention/{…}/kernel
    bert/encoder/layer_i/attention/output/dense/kernel             → attention/output/kernel
    bert/encoder/layer_i/{intermediate,output}/dense/kernel        → ffn/{intermediate,output}
    GAU-α:
    GAU_alpha/encoder/layer_i/gau/i_dense/kernel          [d, 2e+s] → gau/uvz/kernel
    GAU_alpha/encoder/layer_i/gau/o_dense/kernel          [e, d]    → gau/output/kernel
    GAU_alpha/encoder/layer_i/gau/{q,k}_scaleoffset/gamma [s]       → gau/{q,k}_scale/scale
    (…/bias and …/beta when use_bias.) The MLM head is the tied embedding: no tensor of its own.

softmax_plus's clamp: softmax(a·log(max(n, m))/log 512). The released GAU-α was trained with
bert4keras 0.11.3, whose attention_normalize has m = 1 — the default here, which also matches
the gau-alpha PyTorch port. bert4keras commits of March 2023 raised m to 2, then 16, so today's
bert4keras differs on rows with fewer than 16 real tokens; `load_pretrained(path,
softmax_plus_min_n=16)` reproduces it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import ml_collections
import numpy as np

from gau_jax.convert.common import (
    MAX_LAYERS,
    ConvertError,
    NameFn,
    config_float,
    config_int,
    read_json,
)
from gau_jax.convert.tf_checkpoint import read_tf_checkpoint
from gau_jax.models import get_model_config

TOKEN = "bert/embeddings/word_embeddings"
SEGMENT = "bert/embeddings/token_type_embeddings"
LAYER_PREFIX = {"roformer_v2": "bert/encoder/layer_{}/", "gau": "GAU_alpha/encoder/layer_{}/"}
_LAYER = {
    ("attention", "query"): "attention/self/query", ("attention", "key"): "attention/self/key",
    ("attention", "value"): "attention/self/value",
    ("attention", "output"): "attention/output/dense",
    ("ffn", "intermediate"): "intermediate/dense", ("ffn", "output"): "output/dense",
    ("gau", "uvz"): "gau/i_dense", ("gau", "output"): "gau/o_dense",
    ("gau", "q_scale"): "gau/q_scaleoffset", ("gau", "k_scale"): "gau/k_scaleoffset",
}
_SCALE_LEAF = {"scale": "gamma", "bias": "beta"}


def name_fn(block: str) -> NameFn:
    """Our parameter path → (bert4keras variable name, transpose?=False)."""

    def name_of(path: tuple[str, ...], layer: int | None) -> tuple[str, bool]:
        if layer is None:
            return (TOKEN if path[1] == "token_embedding" else SEGMENT), False
        leaf = path[-1]
        if path[1].endswith("_scale"):
            leaf = _SCALE_LEAF[leaf]
        return LAYER_PREFIX[block].format(layer) + f"{_LAYER[path[:2]]}/{leaf}", False

    return name_of


_SLOTS = re.compile(r"/(adam_[mv]|Adam(_1)?|Momentum|ExponentialMovingAverage)$")


def owned(name: str) -> bool:
    """Names in the encoder's namespace (a leftover one is an unsupported parameter);
    optimizer slots (…/adam_m, …/Adam_1, …) are not: they are skipped with a warning."""
    return (name.startswith(("bert/embeddings/", "bert/encoder/", "GAU_alpha/encoder/"))
            and not _SLOTS.search(name))


def read_tensors(source: str | os.PathLike | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Variables of a bert4keras checkpoint (folder or prefix), or a dict of arrays as is."""
    if isinstance(source, Mapping):
        return {k: np.asarray(v) for k, v in source.items()}
    return read_tf_checkpoint(source)


def _num_layers(tensors: Mapping[str, np.ndarray], block: str, source: str) -> int:
    pat = re.compile(re.escape(LAYER_PREFIX[block]).replace(r"\{\}", r"([0-9]{1,9})"))
    found = {int(m.group(1)) for k in tensors if (m := pat.match(k))}
    if not found:
        raise ConvertError(f"{source}: no {LAYER_PREFIX[block].format('<i>')}* variables in "
                           "the checkpoint")
    if max(found) >= MAX_LAYERS:
        raise ConvertError(f"{source}: variable names imply {max(found) + 1} layers (> "
                           f"{MAX_LAYERS}): a corrupted checkpoint?")
    return max(found) + 1


def config_from_bert4keras(bert_cfg: dict, tensors: Mapping[str, np.ndarray],
                           source: str) -> ml_collections.ConfigDict:
    """Our model config from bert_config.json and the variable shapes (cross-checked)."""
    block = "gau" if any(k.startswith("GAU_alpha/") for k in tensors) else "roformer_v2"
    if not isinstance(bert_cfg, dict):
        raise ConvertError(f"{source}: bert_config.json is not a JSON object")
    if TOKEN not in tensors:
        raise ConvertError(f"{source}: variable {TOKEN!r} is missing (not a bert4keras "
                           "RoFormerV2 / GAU-α checkpoint?)")
    shapes = {k: np.shape(v) for k, v in tensors.items()}
    for name in (TOKEN, SEGMENT, f"{LAYER_PREFIX[block].format(0)}intermediate/dense/kernel",
                 f"{LAYER_PREFIX[block].format(0)}gau/i_dense/kernel"):
        if name in shapes and len(shapes[name]) != 2:
            raise ConvertError(f"{source}: variable {name!r} has shape {shapes[name]}, "
                               "expected a matrix")
    q_scale = f"{LAYER_PREFIX[block].format(0)}gau/q_scaleoffset/gamma"
    if q_scale in shapes and len(shapes[q_scale]) != 1:
        raise ConvertError(f"{source}: variable {q_scale!r} has shape {shapes[q_scale]}, "
                           "expected a vector")
    for field in ("hidden_act",):
        if not isinstance(bert_cfg.get(field, ""), str):
            raise ConvertError(f"{source}: bert_config.json field {field!r} is not a string")
    vocab, d = tensors[TOKEN].shape
    cfg = get_model_config("roformer_v2_base" if block == "roformer_v2" else "gau_alpha_base")
    inferred = {"vocab_size": vocab, "hidden_size": d,
                "num_hidden_layers": _num_layers(tensors, block, source)}
    if SEGMENT in tensors:
        inferred["type_vocab_size"] = tensors[SEGMENT].shape[0]
    first = LAYER_PREFIX[block].format(0)
    act = bert_cfg.get("hidden_act", "relu" if block == "roformer_v2" else "swish")
    if block == "roformer_v2":
        kernel = tensors.get(first + "intermediate/dense/kernel")
        if kernel is not None:
            inferred["intermediate_size"] = kernel.shape[1]
        if "num_attention_heads" not in bert_cfg:
            raise ConvertError(f"{source}: bert_config.json lacks 'num_attention_heads'")
        heads = config_int(bert_cfg, "num_attention_heads", source)
        key = (config_int(bert_cfg, "attention_key_size", source)
               if bert_cfg.get("attention_key_size") else d // heads)
        if act != "relu":
            raise ConvertError(f"{source}: hidden_act={act!r}; RoFormerV2 uses 'relu'")
        use_bias = first + "attention/self/query/bias" in tensors
        cfg.update(num_heads=heads, key_size=key, attention_norm="softmax")
    else:
        s = tensors.get(first + "gau/q_scaleoffset/gamma")
        kernel = tensors.get(first + "gau/i_dense/kernel")
        if s is not None and kernel is not None:
            inferred["attention_key_size"] = s.shape[0]
            inferred["intermediate_size"] = (kernel.shape[1] - s.shape[0]) // 2
        if act not in ("swish", "silu"):
            raise ConvertError(f"{source}: hidden_act={act!r}; GAU-α uses 'swish'")
        use_bias = first + "gau/i_dense/bias" in tensors
        cfg.update(num_heads=1, attention_norm="softmax_plus")
    for field, value in inferred.items():
        if field in bert_cfg and config_int(bert_cfg, field, source, minimum=0) != int(value):
            raise ConvertError(f"{source}: bert_config.json says {field}={bert_cfg[field]}, the "
                               f"checkpoint's variables imply {value}")
    merged = {**bert_cfg, **inferred}
    for field in ("intermediate_size",) + (("attention_key_size",) if block == "gau" else ()):
        if field not in merged:
            raise ConvertError(f"{source}: cannot determine {field} (bert_config.json lacks it "
                               "and the checkpoint lacks layer 0)")
    for field in ("num_hidden_layers", "intermediate_size", "vocab_size", "hidden_size"):
        config_int(merged, field, source, maximum=MAX_LAYERS if field == "num_hidden_layers"
                   else 2**24)
    if block == "roformer_v2" and key < 1:
        raise ConvertError(f"{source}: hidden_size={d} with num_attention_heads={heads} leaves "
                           "no key dimension")
    cfg.update(preset="", vocab_size=int(vocab), hidden_size=int(d),
               num_layers=int(merged["num_hidden_layers"]),
               intermediate_size=int(merged["intermediate_size"]),
               type_vocab_size=config_int(merged, "type_vocab_size", source, 2),
               norm_eps=config_float(bert_cfg, "layer_norm_eps", source, 1e-12),
               use_bias=use_bias,
               hidden_dropout=config_float(bert_cfg, "hidden_dropout_prob", source, 0.1),
               attention_dropout=config_float(bert_cfg, "attention_probs_dropout_prob", source,
                                              0.1))
    if block == "gau":
        cfg.key_size = config_int(merged, "attention_key_size", source)
    return cfg


def read_config(folder: str | os.PathLike) -> dict:
    """bert_config.json of a bert4keras folder ({} if absent)."""
    path = Path(folder) / "bert_config.json"
    if not path.exists():
        return {}
    return read_json(path)
