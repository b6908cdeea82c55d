"""Parameter-efficient fine-tuning baselines beside LST, as gau_jax.train.methods plugins.

    lora     W' = W + (α/r)·A·B on the chosen encoder kernels (A [in, r] ~ N(0, 1/in), B = 0, so
             the model is unchanged at step 0); the merged kernels are built from the frozen
             trunk before each forward. Trainable: A, B and the classifier.
    adapter  Houlsby adapters after each sublayer (model.adapter_size; up-projection = 0, so the
             identity at init). Trainable: adapters and the classifier.
    bitfit   Only biases and the classifier train. The released RoFormerV2 / GAU-α have NO biases
             (use_bias=False): with init_from that is an error; from scratch the encoder is
             built with use_bias=True (biases init 0) and a warning says so.

Each builder returns (model, trainable, encoder_path) with model.apply(...) -> [b, K] logits.
"""

from __future__ import annotations

import logging
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from gau_jax.models.encoder import build_encoder
from gau_jax.models.heads import Classifier

DEFAULT_TARGETS = ("query", "value", "uvz")


def _names(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def _is_target(names: tuple[str, ...], targets: tuple[str, ...]) -> bool:
    return names[-1] == "kernel" and len(names) >= 2 and names[-2] in targets


class LoRA(nn.Module):
    """A Classifier whose encoder kernels named in `targets` get a low-rank update A·B."""

    classifier: Classifier  # its params live under "base" (applied unbound, with merged kernels)
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = DEFAULT_TARGETS

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, segment_ids=None, *,
                 deterministic: bool = True, residual_scale: float | jnp.ndarray = 1.0):
        inner = self.classifier.clone(parent=None)
        base = self.param("base", lambda rng: inner.init(rng, input_ids)["params"])
        lora = {}
        for path, w in jax.tree_util.tree_flatten_with_path(base["encoder"])[0]:
            names = _names(path)
            if _is_target(names, self.targets):
                *lead, d_in, d_out = w.shape
                key = "/".join(names[:-1])
                a = self.param(f"{key}/A", nn.initializers.normal(d_in ** -0.5),
                               (*lead, d_in, self.rank), jnp.float32)
                b = self.param(f"{key}/B", nn.initializers.zeros, (*lead, self.rank, d_out),
                               jnp.float32)
                lora[names] = (a, b)
        if not lora:
            raise ValueError(f"config.lora.targets={self.targets} matches no encoder kernel")
        scale = self.alpha / self.rank

        def merge(path, w):
            ab = lora.get(_names(path))
            return w if ab is None else w + scale * jnp.matmul(*ab)

        params = dict(base, encoder=jax.tree_util.tree_map_with_path(merge, base["encoder"]))
        rngs = {} if deterministic else {"dropout": self.make_rng("dropout")}
        return inner.apply({"params": params}, input_ids, attention_mask, segment_ids,
                               deterministic=deterministic, residual_scale=residual_scale,
                               rngs=rngs)


def _classifier(model_config: Any, num_classes: int, config: Any) -> Classifier:
    return Classifier(encoder=build_encoder(model_config), num_classes=num_classes,
                      dropout_rate=config.get("classifier_dropout", 0.1))


def _mask(pred):
    return lambda params: jax.tree_util.tree_map_with_path(lambda p, _: pred(_names(p)), params)


def build_lora(model_config: Any, num_classes: int, config: Any):
    """config.lora.{rank, alpha, targets}; trunk at ("base", "encoder") is frozen."""
    c = config.get("lora") or {}
    model = LoRA(_classifier(model_config, num_classes, config), rank=int(c.get("rank", 8)),
                 alpha=float(c.get("alpha", 16.0)),
                 targets=tuple(c.get("targets", DEFAULT_TARGETS)))
    trainable = _mask(lambda n: n[0] != "base" or n[1] == "classifier")
    return model, trainable, ("base", "encoder")


def build_adapter(model_config: Any, num_classes: int, config: Any):
    """Encoder with model.adapter_size = config.adapter_size (if the model has none set)."""
    cfg = ml_collections.ConfigDict(dict(model_config))
    if not cfg.get("adapter_size", 0):
        cfg.adapter_size = int(config.get("adapter_size", 64))
    trainable = _mask(lambda n: n[0] == "classifier" or any(k.startswith("Adapter") for k in n))
    return _classifier(cfg, num_classes, config), trainable, ("encoder",)


def build_bitfit(model_config: Any, num_classes: int, config: Any):
    """Biases + classifier; raises for a pretrained bias-free trunk (see module docstring)."""
    cfg = ml_collections.ConfigDict(dict(model_config))
    if not cfg.use_bias:
        if config.get("init_from"):
            raise ValueError(f"config.method='bitfit': the pretrained model in "
                             f"config.init_from={config.init_from} has no biases "
                             "(model.use_bias=False, as in the RoFormerV2 / GAU-α releases), so "
                             "BitFit would train only the classifier")
        logging.warning("bitfit: model.use_bias=False; building the encoder from scratch with "
                        "use_bias=True (zero-initialised biases)")
        cfg.use_bias = True
    trainable = _mask(lambda n: n[0] == "classifier" or n[-1] == "bias")
    return _classifier(cfg, num_classes, config), trainable, ("encoder",)
