"""LoRA / adapters / BitFit: unchanged output at init, the right leaves train, clear errors."""

import jax
import numpy as np
import pytest

from configs import finetune
from gau_jax.models import build_encoder, classifier, get_model_config
from gau_jax.train import methods


def build_method(name, model_config, num_classes, config):
    return methods.get(name).build(config, model_config, num_classes)


def run_config(**overrides):
    """The fine-tuning config (every method's defaults) with `overrides`."""
    c = finetune.get_config()
    c.update_from_flattened_dict(overrides)
    return c


def cfg(block="gau"):
    c = get_model_config("gau_alpha_tiny" if block == "gau" else "roformer_v2_tiny")
    c.update(vocab_size=40, num_layers=2, hidden_dropout=0.0, attention_dropout=0.0)
    return c


IDS = (np.arange(24).reshape(2, 12) % 37 + 3).astype(np.int32)


def leaves_where(mask, params):
    return {"/".join(str(getattr(k, "key", k)) for k in p)
            for p, m in jax.tree_util.tree_flatten_with_path(mask)[0] if m}


@pytest.mark.parametrize("block", ["gau", "roformer_v2"])
def test_lora_zero_b_leaves_output_unchanged(block):
    config = run_config(**{"lora.rank": 2, "lora.alpha": 4.0,
                           "lora.targets": ("query", "value", "uvz")})
    spec = build_method("lora", cfg(block), 3, config)
    p = jax.jit(spec.model.init)(jax.random.PRNGKey(0), IDS)["params"]
    assert spec.encoder_path == ("base", "encoder")
    plain = classifier(build_encoder(cfg(block)), 3)
    want = jax.jit(plain.apply)({"params": p["base"]}, IDS)
    apply = jax.jit(spec.model.apply)
    np.testing.assert_allclose(apply({"params": p}, IDS), want, rtol=1e-6, atol=1e-6)
    trained = leaves_where(spec.trainable(p), p)
    assert trained and all(k.startswith(("base/classifier", "layers")) or "/A" in k or "/B" in k
                           for k in trained)
    assert not any(k.startswith("base/encoder") for k in trained)
    # a nonzero B changes the output: the update is really applied
    p2 = jax.tree_util.tree_map_with_path(
        lambda path, x: x + 0.1 if str(getattr(path[-1], "key", "")).endswith("/B") else x, p)
    assert not np.allclose(apply({"params": p2}, IDS), want)


def test_adapter_identity_at_init_and_mask():
    config = run_config(adapter_size=8)
    spec = build_method("adapter", cfg(), 3, config)
    p = jax.jit(spec.model.init)(jax.random.PRNGKey(0), IDS)["params"]
    plain = classifier(build_encoder(cfg()), 3)
    q = {"classifier": p["classifier"],
         "encoder": {k: v for k, v in p["encoder"].items() if k != "layers"}}
    q["encoder"]["layers"] = {k: v for k, v in p["encoder"]["layers"].items()
                              if not k.startswith("Adapter")}
    np.testing.assert_allclose(jax.jit(spec.model.apply)({"params": p}, IDS),
                               jax.jit(plain.apply)({"params": q}, IDS), rtol=1e-6, atol=1e-6)
    trained = leaves_where(spec.trainable(p), p)
    assert trained == {k for k in trained if "Adapter" in k or k.startswith("classifier")}
    assert any("Adapter" in k for k in trained)


def test_bitfit_biases_only_and_pretrained_error():
    spec = build_method("bitfit", cfg(), 3, run_config(init_from=""))
    p = jax.jit(spec.model.init)(jax.random.PRNGKey(0), IDS)["params"]
    trained = leaves_where(spec.trainable(p), p)
    assert any(k.endswith("bias") and k.startswith("encoder") for k in trained)
    assert all(k.endswith("bias") or k.startswith("classifier") for k in trained)
    with pytest.raises(ValueError, match="has no biases"):
        build_method("bitfit", cfg(), 3, run_config(init_from="runs/x"))
