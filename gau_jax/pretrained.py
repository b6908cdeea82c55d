"""One loader for every encoder checkpoint: `pre = load(path)`; load_pretrained builds on it.

`path` is one of (detect_format; checked in this order):
    "hf"         config.json with model_type roformer | gau_alpha (+ model.safetensors or
                 pytorch_model.bin) + vocab.txt — the PyTorch ports' Hugging Face format
    "workdir"    a training run's folder (pretraining or fine-tuning with any method):
                 config.json (encoder model config) + checkpoints/ and/or best/ (+ vocab.txt,
                 train_config.json)
    "gau_jax"    config.json of our model config + vocab.txt + params/ (Orbax {"params": …}),
                 as written by `python -m gau_jax.convert`
    "bert4keras" bert_model.ckpt.{index,data-*} + bert_config.json + vocab.txt

`load` returns a Pretrained: the encoder's model config (scan_layers=True), its params as float32
numpy in the scanned layout ("layers" with leading axis L), vocab.txt (or None), the format and
what exactly was read. Of a workdir it reads DIR/best's step when there is one (the best dev
evaluation of a fine-tuning run), else the latest checkpoint (gau_jax/workdir.py), and takes
the encoder out of the run's params (`encoder_params`): the trained encoder of a full / adapter /
bitfit run, LST's frozen trunk, LoRA's merged kernels W + (α/r)·A·B. An LST run trained from
cached trunk features stores no trunk: its frozen trunk is its config.init_from's, loaded from
there.

Where the encoder sits in a params tree (found by structure):
    "embeddings" at the top               pretraining: the tree is the encoder
    "encoder"                             full / adapter / bitfit; LST (the frozen trunk)
    "base"/"encoder" + "<path>/A", "/B"   LoRA: the trained kernels are W + (α/r)·A·B
                                          (peft.merge_lora), α = train_config.json lora.alpha
`model.apply({"params": params}, input_ids, attention_mask)` of load_pretrained returns an
EncoderOutput (last_hidden_state [b, n, d], tied-head logits [b, n, vocab]). Every tensor's name
and shape is checked against the model the config builds (ConvertError names the culprit).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from gau_jax import workdir
from gau_jax.convert import bert4keras, hf
from gau_jax.convert.common import (
    ConvertError,
    check_params,
    check_vocab,
    import_params,
    read_json,
)
from gau_jax.data.tokenizer import ChineseTokenizer
from gau_jax.models import Encoder, build_encoder, presets, stack_layers, unstack_layers
from gau_jax.models.peft import merge_lora
from gau_jax.models.tree import path_names

PyTree = Any
FORMATS = ("hf", "workdir", "gau_jax", "bert4keras")


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """An encoder read from disk (module docstring)."""

    config: ml_collections.ConfigDict  # encoder model config, scan_layers=True
    params: dict                       # encoder params: float32 numpy, scanned layout
    vocab: Path | None                 # vocab.txt beside it, if any
    format: str                        # "hf" | "bert4keras" | "gau_jax" | "workdir"
    source: str                        # what exactly was read


def _read_json(path: Path) -> dict:
    return read_json(path)  # ConvertError naming file and line / byte offset


def detect_format(path: str | os.PathLike) -> str:
    """'hf', 'workdir', 'gau_jax' or 'bert4keras' for a folder (FileNotFoundError otherwise)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such checkpoint folder")
    if p.is_dir() and (p / "config.json").exists():
        cfg = _read_json(p / "config.json")
        if "model_type" in cfg:
            return "hf"
        if "block" in cfg:
            return "workdir" if workdir.is_workdir(p) else "gau_jax"
        raise ConvertError(f"{p / 'config.json'}: neither a Hugging Face config (no "
                           "'model_type') nor a gau_jax model config (no 'block')")
    if (p.is_dir() and list(p.glob("*.index"))) or Path(f"{p}.index").exists():
        return "bert4keras"
    raise FileNotFoundError(f"{p}: no config.json (Hugging Face / gau_jax / workdir) and no "
                            "TensorFlow *.index checkpoint (bert4keras)")


def _vocab_of(p: Path, required: bool = True) -> Path | None:
    vocab = (p if p.is_dir() else p.parent) / "vocab.txt"
    if vocab.exists():
        return vocab
    if required:
        raise FileNotFoundError(f"{vocab}: vocabulary not found beside the checkpoint")
    return None


def _model_config(path: Path) -> ml_collections.ConfigDict:
    """Our model config from a config.json (fields it lacks take presets.base_config values)."""
    cfg = presets.base_config()
    cfg.update(_read_json(path))
    return cfg


def _as_f32(tree: PyTree) -> PyTree:
    return jax.tree.map(lambda x: np.asarray(x, np.float32), tree)


def load(path: str | os.PathLike) -> Pretrained:
    """The encoder stored at `path`, in any format of the module docstring."""
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "workdir":
        return _load_workdir(p)
    if fmt == "hf":
        cfg = hf.config_from_hf(_read_json(p / "config.json"), str(p / "config.json"))
        tensors = hf.read_tensors(p)
        prefix = hf.model_prefix(tensors, cfg.block)
        hf.check_tied_head(tensors, prefix, str(p))
        params = import_params(tensors, cfg, hf.name_fn(cfg.block, prefix), str(p),
                               hf.owned_fn(prefix),
                               ignore=[hf.HEAD, f"{prefix}.encoder.embed_positions.weight"])
        vocab, source = _vocab_of(p), f"Hugging Face folder {p}"
    elif fmt == "bert4keras":
        folder = p if p.is_dir() else p.parent
        tensors = bert4keras.read_tensors(p)
        cfg = bert4keras.config_from_bert4keras(bert4keras.read_config(folder), tensors, str(p))
        params = import_params(tensors, cfg, bert4keras.name_fn(cfg.block), str(p),
                               bert4keras.owned)
        if cfg.block == "gau":
            logging.info("bert4keras GAU-α: softmax_plus_min_n=1 as in bert4keras 0.11.3, "
                         "which trained the release; bert4keras since March 2023 clamps n >= 16 "
                         "(pass softmax_plus_min_n=16 to match it)")
        vocab, source = _vocab_of(p), f"bert4keras checkpoint {p}"
    else:
        item = workdir.orbax_item(p)
        if item is None:
            raise FileNotFoundError(f"{p}: no Orbax checkpoint in {p / 'params'}, "
                                    f"{p / 'checkpoint'} or {p} itself")
        cfg, tree = _model_config(p / "config.json"), workdir.restore_numpy(item)
        source = f"converted folder {item}"
        params = encoder_params(tree.get("params", tree), source, {}, p / workdir.TRAIN_CONFIG)
        vocab = _vocab_of(p, required=False)
    return _checked(cfg, params, vocab, fmt, source)


def _load_workdir(p: Path) -> Pretrained:
    train_cfg = workdir.read_train_config(p)
    tree, source = workdir.read_workdir_params(p, train_cfg)
    vocab = _vocab_of(p, required=False)
    if train_cfg.get("method") == "lst" and "encoder" not in tree:
        init = train_cfg.get("init_from")
        if not init:
            raise ConvertError(f"{source}: LST trained from cached trunk features stores no "
                               "trunk, and its config.init_from is empty (a random trunk)")
        pre = load(init)
        return dataclasses.replace(pre, vocab=vocab or pre.vocab, format="workdir",
                                   source=f"{source}: frozen trunk of {pre.source}")
    params = encoder_params(tree, source, train_cfg, p / workdir.TRAIN_CONFIG)
    return _checked(_model_config(p / "config.json"), params, vocab, "workdir", source)


def encoder_params(tree: PyTree, source: str, train_cfg: dict, train_cfg_file: Path) -> PyTree:
    """The encoder params inside any params tree the project writes (module docstring)."""
    if "embeddings" in tree:
        return tree
    if "base" in tree and "encoder" in tree["base"]:
        if not any(k.endswith("/A") for k in tree):
            return tree["base"]["encoder"]
        alpha = (train_cfg.get("lora") or {}).get("alpha")
        if alpha is None:
            raise ConvertError(f"{source}: LoRA params, but {train_cfg_file} has no lora.alpha "
                               "to merge W + (alpha/rank)·A·B with"
                               + ("" if train_cfg_file.exists() else " (the file is missing)"))
        return merge_lora(tree, float(alpha))["encoder"]
    if "encoder" in tree and "embeddings" in tree["encoder"]:
        return tree["encoder"]
    raise ConvertError(f"{source}: no encoder in the params (top-level keys {sorted(tree)[:8]}); "
                       "expected 'embeddings' (pretraining), 'encoder' (fine-tuning) or "
                       "'base'/'encoder' (LoRA)")


def trunk_params(pre: Pretrained, model_config: ml_collections.ConfigDict) -> PyTree:
    """pre.params in the layer layout of `model_config`: as stored (scanned, leading axis L)
    when model_config.scan_layers, else unrolled (one subtree per layer)."""
    return pre.params if model_config.scan_layers else unstack_layers(pre.params)


def _checked(cfg: ml_collections.ConfigDict, params: PyTree, vocab: Path | None, fmt: str,
             source: str) -> Pretrained:
    cfg = ml_collections.ConfigDict(cfg.to_dict())
    cfg.scan_layers = True
    params = _as_f32(stack_layers(params))
    _fit_config(cfg, params, source)
    check_params(params, cfg, source)
    if vocab is not None:
        check_vocab(vocab, cfg)
    return Pretrained(cfg, params, vocab, fmt, source)


def _fit_config(cfg: ml_collections.ConfigDict, params: PyTree, source: str) -> None:
    """A config.json written before a method's encoder change (adapters, BitFit's biases) was
    recorded: take adapter_size / use_bias from the params (check_params then verifies all)."""
    flat = {path_names(p): x for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    adapter = lambda n: any(k.startswith("Adapter") for k in n)
    downs = [x.shape[-1] for n, x in flat.items() if adapter(n) and n[-2:] == ("down", "kernel")]
    if downs and not cfg.adapter_size:
        logging.info("%s: adapters of width %d in the params: model.adapter_size=%d", source,
                     downs[0], downs[0])
        cfg.adapter_size = int(downs[0])
    if not cfg.use_bias and any(n[-1] == "bias" and not adapter(n) for n in flat):
        logging.info("%s: biases in the params (BitFit): model.use_bias=True", source)
        cfg.use_bias = True


def load_pretrained(path: str | os.PathLike, **overrides: Any
                    ) -> tuple[Encoder, PyTree, ChineseTokenizer]:
    """(Flax Encoder, params, tokenizer) from a folder of any supported format.

    overrides set model config fields that do not change parameter shapes (e.g. dtype="bfloat16",
    hidden_dropout=0.0, scan_layers=False — params are then unrolled to match).
    """
    pre = load(path)
    if pre.vocab is None:
        raise FileNotFoundError(f"{path}: no vocab.txt beside the checkpoint (the tokenizer "
                                f"needs one); read {pre.source}")
    cfg = ml_collections.ConfigDict(pre.config.to_dict())
    for key, value in overrides.items():
        if key not in cfg:
            raise ConvertError(f"load_pretrained: unknown model config field {key!r}")
        cfg[key] = value
    params = trunk_params(pre, cfg)
    check_params(params, cfg, str(path))
    return build_encoder(cfg), params, ChineseTokenizer.from_vocab_file(pre.vocab)


def save_gau_jax(out: str | os.PathLike, cfg: ml_collections.ConfigDict, params: PyTree,
                 vocab: str | os.PathLike | None) -> Path:
    """Write OUT/config.json (model config), OUT/vocab.txt (when given) and OUT/params (Orbax
    checkpoint of {"params": encoder params}, scan layout) — a folder `init_from` accepts."""
    import orbax.checkpoint as ocp

    out = Path(out).absolute()
    check_params(params, cfg, "params")
    if (out / "params").exists():
        raise FileExistsError(f"{out / 'params'} exists; choose an empty output folder")
    out.mkdir(parents=True, exist_ok=True)
    cfg = ml_collections.ConfigDict(cfg.to_dict())
    cfg.scan_layers = True
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    if vocab is not None:
        (out / "vocab.txt").write_bytes(Path(vocab).read_bytes())
    with ocp.PyTreeCheckpointer() as ckptr:
        ckptr.save(out / "params", args=ocp.args.PyTreeSave(
            {"params": _as_f32(stack_layers(params))}))
    return out
