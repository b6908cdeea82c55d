"""The Hugging Face name mapping, tensor by tensor, without PyTorch.

The table below is the state dict of the ports' *ForMaskedLM (roformer 0.4.3 with
norm_type="rms_norm", gau-alpha 0.0.3; use_bias=True, 2 layers) written out by hand: torch Linear
weights are [out, in], so our [in, out] kernels are stored transposed; embeddings and
ScaleOffset γ/β are not. A mapping wrong both ways (two tensors swapped) survives a round trip;
here every tensor has distinct values and must land in its own named slot, in export and import.
"""

import json

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from gau_jax.convert import hf
from gau_jax.models import build_encoder, get_model_config, unstack_layers
from gau_jax.pretrained import load
from tests.convert_fixtures import write_vocab

V, D, L = 30, 16, 2

# our path (layer "{i}") -> (HF name, transposed?)
TABLE = {
    "gau": {
        "embeddings/token_embedding/embedding": ("gau_alpha.embeddings.word_embeddings.weight",
                                                 False),
        "embeddings/segment_embedding/embedding": (
            "gau_alpha.embeddings.token_type_embeddings.weight", False),
        "layers_{i}/gau/uvz/kernel": ("gau_alpha.encoder.layer.{i}.gau.i_dense.weight", True),
        "layers_{i}/gau/uvz/bias": ("gau_alpha.encoder.layer.{i}.gau.i_dense.bias", False),
        "layers_{i}/gau/output/kernel": ("gau_alpha.encoder.layer.{i}.gau.o_dense.weight", True),
        "layers_{i}/gau/output/bias": ("gau_alpha.encoder.layer.{i}.gau.o_dense.bias", False),
        "layers_{i}/gau/q_scale/scale": ("gau_alpha.encoder.layer.{i}.gau.q_scaleoffset.weight",
                                         False),
        "layers_{i}/gau/q_scale/bias": ("gau_alpha.encoder.layer.{i}.gau.q_scaleoffset.bias",
                                        False),
        "layers_{i}/gau/k_scale/scale": ("gau_alpha.encoder.layer.{i}.gau.k_scaleoffset.weight",
                                         False),
        "layers_{i}/gau/k_scale/bias": ("gau_alpha.encoder.layer.{i}.gau.k_scaleoffset.bias",
                                        False),
    },
    "roformer_v2": {
        "embeddings/token_embedding/embedding": ("roformer.embeddings.word_embeddings.weight",
                                                 False),
        "embeddings/segment_embedding/embedding": (
            "roformer.embeddings.token_type_embeddings.weight", False),
        **{f"layers_{{i}}/attention/{q}/{leaf}":
           (f"roformer.encoder.layer.{{i}}.attention.self.{q}.{hf_leaf}", leaf == "kernel")
           for q in ("query", "key", "value")
           for leaf, hf_leaf in (("kernel", "weight"), ("bias", "bias"))},
        **{f"layers_{{i}}/{ours}/{leaf}": (f"roformer.encoder.layer.{{i}}.{theirs}.{hf_leaf}",
                                           leaf == "kernel")
           for ours, theirs in (("attention/output", "attention.output.dense"),
                                ("ffn/intermediate", "intermediate.dense"),
                                ("ffn/output", "output.dense"))
           for leaf, hf_leaf in (("kernel", "weight"), ("bias", "bias"))},
    },
}
HF_CONFIG = {
    "gau": {"model_type": "gau_alpha", "attention_key_size": 8, "hidden_act": "swish",
            "normalization": "softmax_plus", "attention_scale": True},
    "roformer_v2": {"model_type": "roformer", "num_attention_heads": 2, "hidden_act": "relu",
                    "norm_type": "rms_norm", "rotary_value": False},
}


def expanded(block):
    """{our path tuple: (HF name, transposed)} for both layers."""
    out = {}
    for ours, (theirs, t) in TABLE[block].items():
        for i in (range(L) if "{i}" in ours else [None]):
            out[tuple(ours.format(i=i).split("/"))] = (theirs.format(i=i), t)
    return out


def tiny(block):
    c = get_model_config("gau_alpha_tiny" if block == "gau" else "roformer_v2_tiny")
    c.update(vocab_size=V, hidden_size=D, num_layers=L, intermediate_size=24, key_size=8,
             num_heads=1 if block == "gau" else 2, use_bias=True, scan_layers=False)
    return c


def distinct_params(block):
    """Unrolled params with a different random value in every element of every tensor."""
    model = build_encoder(tiny(block))
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), np.ones((1, 4), np.int32)))
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes["params"])


def leaf(params, path):
    for k in path:
        params = params[k]
    return np.asarray(params)


@pytest.mark.parametrize("block", ["gau", "roformer_v2"])
def test_name_fn_matches_the_table(block):
    name_of = hf.name_fn(block)
    flat = jax.tree_util.tree_flatten_with_path(distinct_params(block))[0]
    paths = {tuple(k.key for k in p) for p, _ in flat}
    assert paths == set(expanded(block))  # the table covers the whole model
    for path, want in expanded(block).items():
        layer = int(path[0][len("layers_"):]) if path[0].startswith("layers_") else None
        sub = path[1:] if layer is not None else path
        assert name_of(sub, layer) == want, path


@pytest.mark.parametrize("block", ["gau", "roformer_v2"])
def test_export_puts_each_tensor_under_its_name(tmp_path, block):
    params = distinct_params(block)
    hf.save(tmp_path, tiny(block), params, write_vocab(tmp_path, V))
    tensors = load_file(tmp_path / "model.safetensors")
    table = expanded(block)
    head = "cls.predictions.decoder.weight"
    assert set(tensors) == {n for n, _ in table.values()} | {head}
    for path, (name, transposed) in table.items():
        want = leaf(params, path)
        np.testing.assert_array_equal(tensors[name], want.T if transposed else want, name)
    np.testing.assert_array_equal(tensors[head],
                                  leaf(params, ("embeddings", "token_embedding", "embedding")))


@pytest.mark.parametrize("block", ["gau", "roformer_v2"])
def test_import_reads_each_tensor_from_its_name(tmp_path, block):
    params = distinct_params(block)
    tensors = {name: np.ascontiguousarray(leaf(params, path).T if t else leaf(params, path))
               for path, (name, t) in expanded(block).items()}
    save_file(tensors, tmp_path / "model.safetensors")
    config = dict(HF_CONFIG[block], vocab_size=V, hidden_size=D, num_hidden_layers=L,
                  intermediate_size=24, use_bias=True)
    (tmp_path / "config.json").write_text(json.dumps(config))
    write_vocab(tmp_path, V)
    got = unstack_layers(load(tmp_path).params)
    for path in expanded(block):
        np.testing.assert_array_equal(leaf(got, path), leaf(params, path), "/".join(path))
