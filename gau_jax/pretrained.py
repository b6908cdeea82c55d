"""Load released RoFormerV2 / GAU-α weights: `model, params, tokenizer = load_pretrained(path)`.

`path` is one of (detected in this order):
    "hf"         config.json with model_type roformer | gau_alpha (+ model.safetensors or
                 pytorch_model.bin) + vocab.txt — the PyTorch ports' Hugging Face format
    "gau_jax"    config.json of our model config + vocab.txt + params/ (Orbax {"params": …}),
                 as written by `python -m gau_jax.convert` (or a pretraining workdir)
    "bert4keras" bert_model.ckpt.{index,data-*} + bert_config.json + vocab.txt
`model.apply({"params": params}, input_ids, attention_mask)` returns an EncoderOutput with
last_hidden_state [b, n, d] and logits [b, n, vocab] (the tied MLM head). Every tensor's name
and shape is checked against the model the config builds (ConvertError names the culprit).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from gau_jax.convert import bert4keras, hf
from gau_jax.convert.common import ConvertError, check_params, check_vocab, import_params
from gau_jax.data.tokenizer import ChineseTokenizer
from gau_jax.models import Encoder, build_encoder, presets

PyTree = Any
FORMATS = ("hf", "gau_jax", "bert4keras")


def detect_format(path: str | os.PathLike) -> str:
    """'hf', 'gau_jax' or 'bert4keras' for a checkpoint folder (FileNotFoundError otherwise)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such checkpoint folder")
    if p.is_dir() and (p / "config.json").exists():
        try:
            cfg = json.loads((p / "config.json").read_text())
        except json.JSONDecodeError as e:
            raise ConvertError(f"{p / 'config.json'}: invalid JSON ({e})") from e
        if "model_type" in cfg:
            return "hf"
        if "block" in cfg:
            return "gau_jax"
        raise ConvertError(f"{p / 'config.json'}: neither a Hugging Face config (no "
                           "'model_type') nor a gau_jax model config (no 'block')")
    if (p.is_dir() and list(p.glob("*.index"))) or Path(f"{p}.index").exists():
        return "bert4keras"
    raise FileNotFoundError(f"{p}: no config.json (Hugging Face / gau_jax) and no TensorFlow "
                            "*.index checkpoint (bert4keras)")


def _vocab_of(p: Path) -> Path:
    vocab = (p if p.is_dir() else p.parent) / "vocab.txt"
    if not vocab.exists():
        raise FileNotFoundError(f"{vocab}: vocabulary not found beside the checkpoint")
    return vocab


def load_params(path: str | os.PathLike) -> tuple[ml_collections.ConfigDict, PyTree, Path]:
    """(our model config, encoder params as float32 numpy in the scan layout, vocab.txt path)."""
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "hf":
        source = str(p / "config.json")
        cfg = hf.config_from_hf(json.loads((p / "config.json").read_text()), source)
        tensors = hf.read_tensors(p)
        prefix = hf.model_prefix(tensors, cfg.block)
        hf.check_tied_head(tensors, prefix, str(p))
        params = import_params(tensors, cfg, hf.name_fn(cfg.block, prefix), str(p),
                               hf.owned_fn(prefix),
                               ignore=[hf.HEAD, f"{prefix}.encoder.embed_positions.weight"])
    elif fmt == "bert4keras":
        folder = p if p.is_dir() else p.parent
        tensors = bert4keras.read_tensors(p)
        cfg = bert4keras.config_from_bert4keras(bert4keras.read_config(folder), tensors, str(p))
        params = import_params(tensors, cfg, bert4keras.name_fn(cfg.block), str(p),
                               bert4keras.owned)
        if cfg.block == "gau":
            logging.info("bert4keras GAU-α: softmax_plus clamps n >= 16 there, not here; rows "
                         "shorter than 16 tokens differ slightly from bert4keras itself")
    else:
        from gau_jax.train.checkpoint import load_pretrained as load_native

        raw, cfg_dict, _ = load_native(p)
        cfg = presets.base_config()
        cfg.update(cfg_dict)
        cfg.scan_layers = True
        params = raw if "layers" in raw else _stack(raw, cfg.num_layers)
        check_params(params, cfg, str(p))
        params = {k: _as_f32(v) for k, v in params.items()}
    vocab = _vocab_of(p)
    check_vocab(vocab, cfg)
    return cfg, params, vocab


def _stack(params: dict, num_layers: int) -> dict:
    from gau_jax.convert.common import stack

    return stack(params, num_layers)


def _as_f32(tree: PyTree) -> PyTree:
    import jax

    return jax.tree.map(lambda x: np.asarray(x, np.float32), tree)


def load_pretrained(path: str | os.PathLike, **overrides: Any
                    ) -> tuple[Encoder, PyTree, ChineseTokenizer]:
    """(Flax Encoder, params, tokenizer) from a checkpoint folder of any supported format.

    overrides set model config fields that do not change parameter shapes (e.g. dtype="bfloat16",
    hidden_dropout=0.0, scan_layers=False — params are then unrolled to match).
    """
    cfg, params, vocab = load_params(path)
    for key, value in overrides.items():
        if key not in cfg:
            raise ConvertError(f"load_pretrained: unknown model config field {key!r}")
        cfg[key] = value
    if not cfg.scan_layers:
        from gau_jax.convert.common import unstack

        params = unstack(params)
    check_params(params, cfg, str(path))
    return build_encoder(cfg), params, ChineseTokenizer.from_vocab_file(vocab)


def save_gau_jax(out: str | os.PathLike, cfg: ml_collections.ConfigDict, params: PyTree,
                 vocab: str | os.PathLike) -> Path:
    """Write OUT/config.json (model config), OUT/vocab.txt and OUT/params (Orbax checkpoint of
    {"params": encoder params}, scan layout) — the folder `init_from` of fine-tuning accepts."""
    import orbax.checkpoint as ocp

    out = Path(out).absolute()
    check_params(params, cfg, "params")
    if (out / "params").exists():
        raise FileExistsError(f"{out / 'params'} exists; choose an empty output folder")
    out.mkdir(parents=True, exist_ok=True)
    cfg = ml_collections.ConfigDict(cfg.to_dict())
    cfg.scan_layers = True
    if "layers" not in params:
        params = _stack(params, cfg.num_layers)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    (out / "vocab.txt").write_bytes(Path(vocab).read_bytes())
    with ocp.PyTreeCheckpointer() as ckptr:
        ckptr.save(out / "params", args=ocp.args.PyTreeSave({"params": _as_f32(params)}))
    return out
