"""Conversion without the ports: TF bundle reader, round trips through every format, the CLI,
the init_from layout, and clear errors on bad input (nothing half-loaded)."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from gau_jax.convert import bert4keras, hf
from gau_jax.convert.__main__ import main as convert_main
from gau_jax.convert.common import (
    ConvertError,
    _nest,
    expected_shapes,
    export_params,
    import_params,
)
from gau_jax.convert.tf_checkpoint import read_tf_checkpoint
from gau_jax.models import build_encoder, get_model_config, stack_layers
from gau_jax.pretrained import detect_format, load, load_pretrained
from tests.convert_fixtures import padded_batch, write_vocab

DATA = Path(__file__).with_name("data")
V = 40


def _tiny(block: str, use_bias: bool = False, norm: str = "softmax_plus"):
    cfg = get_model_config("roformer_v2_tiny" if block == "roformer_v2" else "gau_alpha_tiny")
    cfg.update(vocab_size=V, hidden_size=16, num_layers=2, intermediate_size=24, use_bias=use_bias)
    if block == "roformer_v2":
        cfg.update(num_heads=2, key_size=8)
    else:
        cfg.update(key_size=8, attention_norm=norm)
    rng = np.random.default_rng(len(block) + use_bias)  # random params of the right shapes
    flat = {p: rng.standard_normal(s).astype(np.float32) for p, s in expected_shapes(cfg).items()}
    return cfg, stack_layers(_nest(flat))


def _hf_folder(tmp: Path, block: str, **kw) -> tuple:
    cfg, params = _tiny(block, **kw)
    vocab = write_vocab(tmp, V)
    hf.save(tmp / "hf", cfg, params, vocab)
    return cfg, params


def _assert_same(a, b):
    flat_a, flat_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
    for (path, x), (_, y) in zip(flat_a, flat_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


def test_tf_bundle_reader_matches_values_written_by_tensorflow():
    got = read_tf_checkpoint(DATA / "tf_bundle")  # written by tf.raw_ops.SaveV2
    assert sorted(got) == ["bert/embeddings/word_embeddings", "global_step", "layer_0/gamma"]
    np.testing.assert_array_equal(got["bert/embeddings/word_embeddings"],
                                  np.arange(6, dtype=np.float32).reshape(2, 3) / 4)
    assert got["global_step"].dtype == np.int64 and int(got["global_step"]) == 7
    np.testing.assert_array_equal(got["layer_0/gamma"], np.linspace(-1, 1, 4).astype(np.float16))


def test_tf_bundle_reader_rejects_non_checkpoints(tmp_path):
    (tmp_path / "x.index").write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match="bad table magic"):
        read_tf_checkpoint(tmp_path)


@pytest.mark.parametrize("block,use_bias", [("roformer_v2", False), ("roformer_v2", True),
                                            ("gau", False), ("gau", True)])
def test_hf_round_trip(tmp_path, block, use_bias):
    cfg, params = _hf_folder(tmp_path, block, use_bias=use_bias)
    assert detect_format(tmp_path / "hf") == "hf"
    pre = load(tmp_path / "hf")
    cfg2, params2 = pre.config, pre.params
    for field in ("block", "vocab_size", "hidden_size", "num_layers", "intermediate_size",
                  "key_size", "num_heads", "attention_norm", "use_bias", "norm_eps"):
        assert cfg2[field] == cfg[field], field
    _assert_same(params, params2)


@pytest.mark.parametrize("block", ["roformer_v2", "gau"])
def test_bert4keras_names_round_trip(block):
    cfg, params = _tiny(block)
    tensors = export_params(params, cfg, bert4keras.name_fn(block))
    if block == "gau":
        assert tensors["GAU_alpha/encoder/layer_1/gau/i_dense/kernel"].shape == (16, 2 * 24 + 8)
        assert "GAU_alpha/encoder/layer_0/gau/k_scaleoffset/gamma" in tensors
    else:
        assert tensors["bert/encoder/layer_1/attention/self/query/kernel"].shape == (16, 16)
        assert tensors["bert/encoder/layer_0/output/dense/kernel"].shape == (24, 16)
    bert_cfg = {"num_attention_heads": 2, "hidden_act": "relu" if block == "roformer_v2" else
                "swish", "vocab_size": V, "hidden_size": 16}
    cfg2 = bert4keras.config_from_bert4keras(bert_cfg, tensors, "ckpt")
    assert (cfg2.block, cfg2.intermediate_size, cfg2.key_size) == (block, 24, 8)
    got = import_params(tensors, cfg2, bert4keras.name_fn(block), "ckpt", bert4keras.owned)
    _assert_same(params, got)


def test_convert_cli_writes_the_init_from_layout(tmp_path):
    cfg, params = _hf_folder(tmp_path, "gau")
    assert convert_main([str(tmp_path / "hf"), str(tmp_path / "ours")]) == 0
    out = tmp_path / "ours"
    assert {p.name for p in out.iterdir()} >= {"config.json", "vocab.txt", "params"}
    assert json.loads((out / "config.json").read_text())["block"] == "gau"
    assert detect_format(out) == "gau_jax"
    pre = load(out)  # what fine-tuning's init_from reads
    raw, cfg_dict, vocab = pre.params, pre.config.to_dict(), pre.vocab
    assert cfg_dict["vocab_size"] == V and vocab == out / "vocab.txt"
    _assert_same(params, raw)
    model, params2, tok = load_pretrained(out)
    batch = padded_batch(V, lengths=(6, 3))
    fwd = lambda m: jax.jit(lambda p, *x: m.apply({"params": p}, *x))  # one compile, not per op
    a = fwd(build_encoder(cfg))(params, batch["input_ids"], batch["attention_mask"])
    b = fwd(model)(params2, batch["input_ids"], batch["attention_mask"])
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-6)
    assert tok.vocab_size == V and a.logits.shape == (2, 6, V)
    assert convert_main([str(out), str(tmp_path / "back"), "--to", "hf"]) == 0
    _assert_same(params, load(tmp_path / "back").params)


def test_load_pretrained_unrolled_and_dtype_overrides(tmp_path):
    cfg, params = _hf_folder(tmp_path, "roformer_v2")
    model, p, _ = load_pretrained(tmp_path / "hf", scan_layers=False, hidden_dropout=0.0)
    assert "layers_1" in p and model.config.hidden_dropout == 0.0
    with pytest.raises(ConvertError, match="no_such_field"):
        load_pretrained(tmp_path / "hf", no_such_field=1)


# ------------------------------------------------------------------------------ bad input
def _edit(folder: Path, fn) -> None:
    from safetensors.numpy import load_file, save_file

    t = dict(load_file(folder / "model.safetensors"))
    fn(t)
    save_file(t, folder / "model.safetensors", metadata={"format": "pt"})


def _edit_config(folder: Path, **kw) -> None:
    c = json.loads((folder / "config.json").read_text())
    c.update(kw)
    (folder / "config.json").write_text(json.dumps(c))


def test_missing_tensor_is_named(tmp_path):
    _hf_folder(tmp_path, "gau")
    _edit(tmp_path / "hf", lambda t: t.pop("gau_alpha.encoder.layer.1.gau.o_dense.weight"))
    with pytest.raises(ConvertError, match=r"gau_alpha\.encoder\.layer\.1\.gau\.o_dense\.weight"
                                           r"' is missing"):
        load_pretrained(tmp_path / "hf")


def test_shape_mismatch_is_named(tmp_path):
    _hf_folder(tmp_path, "roformer_v2")
    _edit_config(tmp_path / "hf", intermediate_size=30)
    with pytest.raises(ConvertError, match=r"intermediate\.dense\.weight' has shape \(24, 16\)"):
        load_pretrained(tmp_path / "hf")


def test_unknown_model_type_and_plain_roformer(tmp_path):
    _hf_folder(tmp_path, "roformer_v2")
    _edit_config(tmp_path / "hf", model_type="bert")
    with pytest.raises(ConvertError, match="model_type='bert' unknown"):
        load_pretrained(tmp_path / "hf")
    _edit_config(tmp_path / "hf", model_type="roformer", norm_type="layer_norm")
    with pytest.raises(ConvertError, match="norm_type='layer_norm'"):
        load_pretrained(tmp_path / "hf")


def test_vocab_disagreeing_with_embedding(tmp_path):
    _hf_folder(tmp_path, "gau")
    write_vocab(tmp_path / "hf", V + 3)
    with pytest.raises(ConvertError, match=rf"vocab.txt: {V + 3} tokens.*vocab_size={V}"):
        load_pretrained(tmp_path / "hf")
    write_vocab(tmp_path / "hf", V)
    _edit_config(tmp_path / "hf", vocab_size=V + 1)
    with pytest.raises(ConvertError, match=r"word_embeddings\.weight' has shape"):
        load_pretrained(tmp_path / "hf")


def test_untied_head_and_unexpected_encoder_tensor(tmp_path):
    _hf_folder(tmp_path, "roformer_v2")
    _edit(tmp_path / "hf", lambda t: t.update({hf.HEAD: t[hf.HEAD] + 1}))
    with pytest.raises(ConvertError, match="untied MLM head"):
        load_pretrained(tmp_path / "hf")
    _hf_folder(tmp_path, "roformer_v2")
    extra = "roformer.encoder.layer.0.attention.output.LayerNorm.weight"
    _edit(tmp_path / "hf", lambda t: t.update({extra: np.ones(16, np.float32)}))
    with pytest.raises(ConvertError, match=extra.replace(".", r"\.")):
        load_pretrained(tmp_path / "hf")


def test_bin_without_torch_names_the_extra(tmp_path):
    pytest.importorskip("safetensors")
    try:
        import torch  # noqa: F401
        pytest.skip("torch is installed here: the missing-extra message cannot be shown")
    except ImportError:
        pass
    _hf_folder(tmp_path, "gau")
    (tmp_path / "hf" / "model.safetensors").rename(tmp_path / "hf" / "pytorch_model.bin")
    with pytest.raises(ImportError, match=r"pip install gau_jax\[torch\]"):
        load_pretrained(tmp_path / "hf")


def test_export_refuses_what_the_ports_cannot_express(tmp_path):
    cfg, params = _tiny("gau")
    cfg.attention_fixed_n = 512
    with pytest.raises(ConvertError, match="attention_fixed_n"):
        hf.save(tmp_path / "x", cfg, params, None)
    assert not (tmp_path / "x").exists()


def test_unrecognised_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        detect_format(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConvertError, match="neither"):
        detect_format(tmp_path)


def test_init_from_reads_a_released_hf_folder_directly(tmp_path):
    """One-command fine-tuning: config.init_from may name the downloaded port folder itself."""
    cfg, params = _hf_folder(tmp_path, "roformer_v2")
    pre = load(tmp_path / "hf")
    raw, cfg_dict, vocab = pre.params, pre.config.to_dict(), pre.vocab
    assert cfg_dict["block"] == "roformer_v2" and vocab == tmp_path / "hf" / "vocab.txt"
    _assert_same(params, raw)
