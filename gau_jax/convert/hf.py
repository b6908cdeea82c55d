"""Hugging Face-format folders of the PyTorch ports: `roformer` (RoFormerV2) and `gau-alpha`.

Folder: config.json (model_type "roformer" or "gau_alpha") + model.safetensors (or a sharded
model.safetensors.index.json, or pytorch_model.bin — that one needs PyTorch) + vocab.txt.

Weights (torch Linear stores [out, in]; our Dense kernels are [in, out], hence a transpose):
    {p}.embeddings.word_embeddings.weight         → embeddings/token_embedding/embedding
    {p}.embeddings.token_type_embeddings.weight   → embeddings/segment_embedding/embedding
    roformer  {p}.encoder.layer.i.attention.self.{query,key,value} → attention/{query,key,value}
              {p}.encoder.layer.i.attention.output.dense           → attention/output
              {p}.encoder.layer.i.{intermediate,output}.dense      → ffn/{intermediate,output}
    gau_alpha {p}.encoder.layer.i.gau.{i_dense,o_dense}            → gau/{uvz,output}
              {p}.encoder.layer.i.gau.{q,k}_scaleoffset.{weight,bias} → gau/{q,k}_scale/{scale,bias}
    cls.predictions.decoder.weight: the MLM head, tied to the word embeddings (checked, not kept).
{p} is "roformer" / "gau_alpha" (a bare *Model checkpoint has no prefix). Both ports rotate
adjacent pairs with RoPE (the GAU port concatenates the rotated halves of q and k alike, which
leaves q·k unchanged), so no permutation is needed. The ports' embedding order Norm→Dropout
versus ours Dropout→Norm only differs in training.
"""

from __future__ import annotations

import json
import os
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
from gau_jax.models import get_model_config

PREFIX = {"roformer_v2": "roformer", "gau": "gau_alpha"}
MODEL_TYPE = {"roformer": "roformer_v2", "gau_alpha": "gau"}
HEAD = "cls.predictions.decoder.weight"
_EMB = {"token_embedding": "embeddings.word_embeddings.weight",
        "segment_embedding": "embeddings.token_type_embeddings.weight"}
_LAYER = {
    ("attention", "query"): "attention.self.query", ("attention", "key"): "attention.self.key",
    ("attention", "value"): "attention.self.value",
    ("attention", "output"): "attention.output.dense",
    ("ffn", "intermediate"): "intermediate.dense", ("ffn", "output"): "output.dense",
    ("gau", "uvz"): "gau.i_dense", ("gau", "output"): "gau.o_dense",
    ("gau", "q_scale"): "gau.q_scaleoffset", ("gau", "k_scale"): "gau.k_scaleoffset",
}
_LEAF = {"kernel": ("weight", True), "bias": ("bias", False), "scale": ("weight", False)}
_NORMS = {"softmax": "softmax", "softmax_plus": "softmax_plus", "squared_relu": "relu2"}


def name_fn(block: str, prefix: str | None = None) -> NameFn:
    """Our parameter path → (HF tensor name, transpose?) for a block type."""
    p = PREFIX[block] if prefix is None else prefix
    dot = f"{p}." if p else ""

    def name_of(path: tuple[str, ...], layer: int | None) -> tuple[str, bool]:
        if layer is None:
            return dot + _EMB[path[1]], False
        leaf, transpose = _LEAF[path[-1]]
        return f"{dot}encoder.layer.{layer}.{_LAYER[path[:2]]}.{leaf}", transpose

    return name_of


def _need(hf: dict, field: str, allowed: tuple, source: str) -> None:
    value = hf.get(field)
    if not isinstance(value, str | bool | None) or value not in allowed:
        raise ConvertError(f"{source}: {field}={hf.get(field)!r} is not supported by gau_jax "
                           f"(supported: {allowed})")


def read_config(folder: str | os.PathLike) -> dict:
    """A port's config.json (ConvertError naming file and line when it is not a JSON object)."""
    return read_json(Path(folder) / "config.json")


def config_from_hf(hf: dict, source: str) -> ml_collections.ConfigDict:
    """Our model config from a port's config.json (dict); every field used is type-checked."""
    if not isinstance(hf, dict):
        raise ConvertError(f"{source}: expected a JSON object, got {type(hf).__name__}")
    kind = hf.get("model_type")
    if not isinstance(kind, str) or kind not in MODEL_TYPE:
        raise ConvertError(f"{source}: model_type={kind!r} unknown; supported: "
                           f"{sorted(MODEL_TYPE)} (ports `roformer` with norm_type='rms_norm', "
                           "and `gau-alpha`)")
    for field in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size"):
        if not isinstance(hf.get(field), int) or isinstance(hf.get(field), bool):
            raise ConvertError(f"{source}: field {field!r} missing or not an integer")
        config_int(hf, field, source, maximum=MAX_LAYERS if field == "num_hidden_layers"
                   else 2**24)
    for field in ("use_bias", "is_decoder"):
        if not isinstance(hf.get(field, False), bool):
            raise ConvertError(f"{source}: field {field!r} must be true or false, got "
                               f"{hf[field]!r:.60}")
    if hf.get("embedding_size") not in (None, hf["hidden_size"]):
        raise ConvertError(f"{source}: embedding_size={hf['embedding_size']} != hidden_size="
                           f"{hf['hidden_size']} (an embedding projection) is not supported")
    if hf.get("is_decoder"):
        raise ConvertError(f"{source}: is_decoder=true is not supported (bidirectional only)")
    block = MODEL_TYPE[kind]
    cfg = get_model_config("roformer_v2_base" if block == "roformer_v2" else "gau_alpha_base")
    cfg.update(preset="", vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
               num_layers=hf["num_hidden_layers"], intermediate_size=hf["intermediate_size"],
               type_vocab_size=config_int(hf, "type_vocab_size", source, 2),
               norm_eps=config_float(hf, "layer_norm_eps", source, 1e-12),
               use_bias=bool(hf.get("use_bias", block == "roformer_v2")),
               hidden_dropout=config_float(hf, "hidden_dropout_prob", source, 0.1),
               attention_dropout=config_float(hf, "attention_probs_dropout_prob", source, 0.1))
    if block == "roformer_v2":
        _need(hf, "norm_type", ("rms_norm",), source + " (plain RoFormer uses LayerNorm)")
        _need(hf, "hidden_act", ("relu",), source)
        _need({"rotary_value": hf.get("rotary_value", False)}, "rotary_value", (False,), source)
        heads = config_int(hf, "num_attention_heads", source, 12)
        if hf["hidden_size"] % heads:
            raise ConvertError(f"{source}: hidden_size={hf['hidden_size']} is not divisible by "
                               f"num_attention_heads={heads}")
        cfg.update(num_heads=heads, key_size=hf["hidden_size"] // heads,
                   attention_norm="softmax")
    else:
        _need(hf, "hidden_act", ("swish", "silu"), source)
        _need({"attention_scale": hf.get("attention_scale", True)}, "attention_scale", (True,),
              source)
        _need({"normalization": hf.get("normalization", "softmax_plus")}, "normalization",
              tuple(_NORMS), source)
        cfg.update(num_heads=1, key_size=config_int(hf, "attention_key_size", source, 128),
                   attention_norm=_NORMS[hf.get("normalization", "softmax_plus")])
    return cfg


def config_to_hf(cfg: ml_collections.ConfigDict) -> dict:
    """A port's config.json (dict) for our config; ConvertError if the port lacks a feature."""
    for field, ok in (("chunk_size", 0), ("adapter_size", 0), ("attention_fixed_n", 0),
                      ("softmax_plus_min_n", 1)):
        if cfg.get(field, ok) != ok:
            raise ConvertError(f"model.{field}={cfg[field]} has no counterpart in the PyTorch "
                               f"ports; export needs it to be {ok}")
    common = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                  num_hidden_layers=cfg.num_layers, intermediate_size=cfg.intermediate_size,
                  type_vocab_size=cfg.type_vocab_size, layer_norm_eps=cfg.norm_eps,
                  use_bias=bool(cfg.use_bias), hidden_dropout_prob=cfg.hidden_dropout,
                  attention_probs_dropout_prob=cfg.attention_dropout, pad_token_id=0,
                  tie_word_embeddings=True)
    if cfg.block == "roformer_v2":
        if cfg.attention_norm != "softmax":
            raise ConvertError(f"model.attention_norm={cfg.attention_norm!r}: the roformer port "
                               "only has softmax attention")
        return dict(common, model_type="roformer", architectures=["RoFormerForMaskedLM"],
                    num_attention_heads=cfg.num_heads, hidden_act="relu", norm_type="rms_norm",
                    rotary_value=False, max_position_embeddings=1536)
    norm = {v: k for k, v in _NORMS.items()}[cfg.attention_norm]
    return dict(common, model_type="gau_alpha", architectures=["GAUAlphaForMaskedLM"],
                attention_key_size=cfg.key_size, hidden_act="swish", normalization=norm,
                attention_scale=True, max_position_embeddings=512)


def read_tensors(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a HF folder as numpy: safetensors (no PyTorch needed) or pytorch_model.bin."""
    folder = Path(folder)
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.exists() or index.exists():
        try:
            from safetensors.numpy import load_file
        except ImportError as e:  # pragma: no cover - safetensors is a core dependency
            raise ImportError("reading .safetensors needs `pip install safetensors`") from e
        if single.exists():
            return _load_safetensors(load_file, single)
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not all(
                isinstance(v, str) and v and Path(v).name == v for v in weight_map.values()):
            raise ConvertError(f"{index}: expected a 'weight_map' of tensor name -> shard file "
                               "name (in this folder)")
        out: dict[str, np.ndarray] = {}
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).is_file():
                raise ConvertError(f"{index}: shard {shard!r} is not in {folder}")
            out.update(_load_safetensors(load_file, folder / shard))
        return out
    binary = folder / "pytorch_model.bin"
    if binary.exists():
        try:
            import torch
        except ImportError as e:
            raise ImportError(f"{binary}: reading PyTorch .bin checkpoints needs PyTorch: "
                              "pip install gau_jax[torch] (or convert it to safetensors)") from e
        state = torch.load(binary, map_location="cpu", weights_only=True)
        return {k: v.detach().float().numpy() for k, v in state.items()}
    raise FileNotFoundError(f"{folder}: no model.safetensors, model.safetensors.index.json or "
                            "pytorch_model.bin")


def _load_safetensors(load_file, path: Path) -> dict[str, np.ndarray]:
    """load_file(path) with the reader's failures (truncated or not safetensors, a dtype numpy
    lacks such as bfloat16) as ConvertError naming the file."""
    from safetensors import SafetensorError

    try:
        return dict(load_file(path))
    except (SafetensorError, TypeError, ValueError, OSError) as e:
        hint = " (bfloat16 tensors need converting to float32 first)" * isinstance(e, TypeError)
        raise ConvertError(f"{path}: cannot read this safetensors file ({type(e).__name__}: "
                           f"{e}){hint}") from None


def model_prefix(tensors: dict[str, np.ndarray], block: str) -> str:
    """'roformer'/'gau_alpha' for *ForMaskedLM-style checkpoints, '' for a bare *Model."""
    p = PREFIX[block]
    return p if any(k.startswith(p + ".") for k in tensors) else ""


def owned_fn(prefix: str):
    """Names in the encoder's namespace (a leftover one is an unsupported parameter)."""
    dot = f"{prefix}." if prefix else ""
    return lambda n: n.startswith((dot + "embeddings.", dot + "encoder."))


def check_tied_head(tensors: dict[str, np.ndarray], prefix: str, source: str) -> None:
    """The MLM decoder, when stored, must equal the word embeddings (our head is tied)."""
    if HEAD not in tensors:
        return
    emb = tensors[(f"{prefix}." if prefix else "") + _EMB["token_embedding"]]
    head = np.asarray(tensors[HEAD])
    if head.shape != emb.shape or not np.allclose(head, emb, atol=1e-6):
        raise ConvertError(f"{source}: {HEAD} differs from the word embeddings: an untied MLM "
                           "head is not supported (gau_jax ties it)")


def write_folder(folder: str | os.PathLike, tensors: dict[str, np.ndarray], hf_config: dict,
                 vocab: str | os.PathLike | None) -> None:
    """config.json + model.safetensors (+ vocab.txt) that the ports' from_pretrained loads."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    if vocab is not None:
        (folder / "vocab.txt").write_bytes(Path(vocab).read_bytes())


def save(folder: str | os.PathLike, cfg: ml_collections.ConfigDict, params: dict,
         vocab: str | os.PathLike | None) -> Path:
    """Export our params to a HF folder (ForMaskedLM names, tied head stored explicitly)."""
    from gau_jax.convert.common import export_params

    hf_config = config_to_hf(cfg)  # raises before anything is written
    tensors = export_params(params, cfg, name_fn(cfg.block))
    tensors[HEAD] = tensors[f"{PREFIX[cfg.block]}.{_EMB['token_embedding']}"].copy()
    write_folder(folder, tensors, hf_config, vocab)
    return Path(folder)
