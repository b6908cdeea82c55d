"""Fuzzing the checkpoint importers with hypothesis (fixed seed, bounded example counts): the
TensorFlow bundle reader and safetensors files with flipped, cut or inserted bytes; config.json /
bert_config.json as random bytes and as mutated configs (missing keys, wrong types, edge
integers); import_params with missing, reshaped, integer, NaN and leftover tensors.

Each input must give either ConvertError naming the file (or the source given) and, for a
tensor, its name, or a result that is right: tensors read are arrays, configs have positive
sizes, imported params are exactly the tensors given, in the model's shapes.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gau_jax.convert import bert4keras, hf
from gau_jax.convert.common import (
    ConvertError,
    _nest,
    check_params,
    expected_shapes,
    export_params,
    import_params,
    read_json,
)
from gau_jax.convert.tf_checkpoint import read_tf_checkpoint
from gau_jax.models import get_model_config, stack_layers, unstack_layers
from tests.fuzz_helpers import (
    COUNTS,
    JSON,
    dumps,
    fuzz,
    hostile_bytes,
    mutated,
    one_field_changed,
)

TMP = pathlib.Path(tempfile.mkdtemp(prefix="gau_fuzz_convert_"))
BUNDLE = pathlib.Path(__file__).with_name("data") / "tf_bundle"
INDEX, SHARD = "tiny.ckpt.index", "tiny.ckpt.data-00000-of-00001"


def _tiny():
    cfg = get_model_config("gau_alpha_tiny")
    cfg.update(vocab_size=12, hidden_size=8, num_layers=2, intermediate_size=12, key_size=4)
    rng = np.random.default_rng(0)
    flat = {p: rng.standard_normal(s).astype(np.float32) for p, s in expected_shapes(cfg).items()}
    return cfg, stack_layers(_nest(flat))


CFG, PARAMS = _tiny()
TENSORS = export_params(PARAMS, CFG, hf.name_fn("gau"))
HF_CONFIG = hf.config_to_hf(CFG)
_ROFORMER = get_model_config("roformer_v2_tiny")
_ROFORMER.update(vocab_size=12, hidden_size=8, num_layers=2, intermediate_size=12, num_heads=2,
                 key_size=4)
HF_ROFORMER = hf.config_to_hf(_ROFORMER)
B4K = {k: np.zeros(v.shape, np.float32)
       for k, v in export_params(PARAMS, CFG, bert4keras.name_fn("gau")).items()}
B4K_CONFIG = {"hidden_act": "swish", "vocab_size": 12, "hidden_size": 8,
              "num_hidden_layers": 2, "intermediate_size": 12, "attention_key_size": 4}


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    print("\nfuzzed inputs per reader:", dict(sorted(COUNTS.items())))
    COUNTS.clear()
    shutil.rmtree(TMP, ignore_errors=True)


@st.composite
def corrupted(draw, data: bytes) -> bytes:
    """`data` with 1-4 flipped, cut or inserted bytes."""
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.sampled_from(["flip", "flip", "cut", "insert", "drop"]))
        if op == "flip" and data:
            data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
        elif op == "cut":
            data = data[:i]
        elif op == "insert":
            data = data[:i] + draw(st.binary(min_size=1, max_size=8)) + data[i:]
        else:
            data = data[:i] + data[i + 1:]
    return data


def _names(e: ConvertError, where: str) -> None:
    assert str(e).startswith(where), str(e)


# ------------------------------------------------------------------ TensorFlow bundle
@fuzz(100)
@given(which=st.sampled_from([INDEX, INDEX, SHARD]), data=st.data())
def test_tf_bundle_reader(which, data):
    COUNTS["read_tf_checkpoint"] += 1
    folder = TMP / "bundle"
    folder.mkdir(exist_ok=True)
    for name in (INDEX, SHARD):
        raw = (BUNDLE / name).read_bytes()
        (folder / name).write_bytes(data.draw(corrupted(raw)) if name == which else raw)
    try:
        got = read_tf_checkpoint(folder)
    except ConvertError as e:
        _names(e, str(folder))
        return
    assert all(isinstance(v, np.ndarray) for v in got.values())
    if which == SHARD:  # the index is intact: every tensor read must have its own shape
        assert {k: v.shape for k, v in got.items()} == {
            "bert/embeddings/word_embeddings": (2, 3), "global_step": (), "layer_0/gamma": (4,)}


# ------------------------------------------------------------------ safetensors, JSON files
@fuzz(60)
@given(data=st.data())
def test_safetensors_reader(data):
    COUNTS["hf.read_tensors"] += 1
    from safetensors.numpy import save_file

    folder = TMP / "st"
    folder.mkdir(exist_ok=True)
    save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.int64)},
              folder / "model.safetensors")
    path = folder / "model.safetensors"
    path.write_bytes(data.draw(corrupted(path.read_bytes())))
    try:
        got = hf.read_tensors(folder)
    except ConvertError as e:
        _names(e, str(path))
        return
    assert all(isinstance(v, np.ndarray) for v in got.values())


@fuzz(60)
@given(raw=st.one_of(st.binary(max_size=200),
                     st.builds(dumps, JSON, st.booleans()),
                     st.builds(dumps, mutated(HF_CONFIG), st.booleans())
                     .flatmap(lambda b: hostile_bytes([b]))))
def test_json_config_reader(raw):
    COUNTS["read_json"] += 1
    path = TMP / "config.json"
    path.write_bytes(raw)
    try:
        value = read_json(path)
    except ConvertError as e:
        _names(e, str(path))
        return
    assert isinstance(value, dict)


# ------------------------------------------------------------------ configs
def _sane(cfg) -> None:
    for field in ("vocab_size", "hidden_size", "num_layers", "intermediate_size", "key_size",
                  "num_heads", "type_vocab_size"):
        assert type(cfg[field]) is int and cfg[field] >= 1, (field, cfg[field])
    for field in ("hidden_dropout", "attention_dropout", "norm_eps"):
        assert type(cfg[field]) is float and 0 <= cfg[field] <= 1, (field, cfg[field])
    assert isinstance(cfg.use_bias, bool)


@fuzz(120)
@given(config=st.one_of(*(one_field_changed(c) for c in (HF_CONFIG, HF_ROFORMER)),
                        mutated(HF_CONFIG, max_edits=3), mutated(HF_ROFORMER, max_edits=3)))
def test_hf_config(config):
    COUNTS["hf.config_from_hf"] += 1
    try:
        cfg = hf.config_from_hf(config, "src/config.json")
    except ConvertError as e:
        _names(e, "src/config.json")
        return
    _sane(cfg)
    if "use_bias" in config:
        assert cfg.use_bias is config["use_bias"]  # never bool("false")
    if cfg.num_layers <= 3 and max(cfg.hidden_size, cfg.intermediate_size, cfg.key_size) <= 64:
        assert expected_shapes(cfg)  # the model this config describes can be built


@fuzz(80)
@given(config=st.one_of(one_field_changed(B4K_CONFIG), mutated(B4K_CONFIG)),
       names=st.lists(st.sampled_from(sorted(B4K)), max_size=2),
       shape=st.lists(st.integers(0, 40), max_size=3),
       layer=st.sampled_from([None, 2, 1023, 123456, 10**12]))
def test_bert4keras_config(config, names, shape, layer):
    COUNTS["bert4keras.config_from_bert4keras"] += 1
    tensors = dict(B4K)
    if layer is not None:  # a variable of a layer far beyond the others
        tensors[f"GAU_alpha/encoder/layer_{layer}/gau/o_dense/kernel"] = np.zeros((12, 8))
    for i, name in enumerate(names):  # first name loses its tensor, the second gets a new shape
        if i == 0:
            del tensors[name]
        else:
            tensors[name] = np.zeros(shape, np.float32)
    try:
        cfg = bert4keras.config_from_bert4keras(config, tensors, "ckpt")
    except ConvertError as e:
        _names(e, "ckpt")
        return
    _sane(cfg)


# ------------------------------------------------------------------ import_params
def _edit(v: np.ndarray, op: str) -> np.ndarray:
    if op == "shape":
        return np.zeros(v.shape + (1,), v.dtype)
    if op == "int":
        return v.astype(np.int32)
    if op == "nan":
        return np.where(np.arange(v.size).reshape(v.shape) == 0, np.nan, v).astype(v.dtype)
    return np.float32(1.0) if op == "scalar" else v.T


@fuzz(40)
@given(edits=st.lists(st.tuples(st.sampled_from(sorted(TENSORS) + ["gau_alpha.encoder.x"]),
                                st.sampled_from(["drop", "shape", "int", "nan", "scalar", "T"])),
                      max_size=2))
def test_import_params(edits):
    COUNTS["import_params"] += 1
    tensors = dict(TENSORS)
    for name, op in edits:
        v = tensors.pop(name, np.ones(3, np.float32))
        if op != "drop":
            tensors[name] = _edit(v, op)
    try:
        params = import_params(tensors, CFG, hf.name_fn("gau"), "src", hf.owned_fn("gau_alpha"))
    except ConvertError as e:
        _names(e, "src: tensor")
        assert any(name in str(e) for name, _ in edits), str(e)
        return
    check_params(params, CFG, "src")
    got = export_params(params, CFG, hf.name_fn("gau"))
    assert all(np.array_equal(got[k], tensors[k]) for k in got)
    assert unstack_layers(params).keys() == unstack_layers(PARAMS).keys()
