"""Fine-tuning methods: a registry name → builder of (model, trainable mask, trunk location).

A builder is `fn(model_config, num_classes, config) -> MethodSpec`:
    model         a Flax module called as model.apply({"params": p}, input_ids, attention_mask,
                  segment_ids, deterministic=..., rngs={"dropout": k}) -> [b, K] float32 logits
    trainable     fn(params) -> bool pytree; False leaves are frozen (update 0, and no optimizer
                  state at all: optax.multi_transform routes them to set_to_zero)
    encoder_path  where the pretrained trunk's params go inside the model's params
                  (config.init_from is loaded there; the rest, e.g. a head, stays freshly init)

`full` (every parameter trainable) is built in. Other methods are either registered

    @register_method("mine")
    def build_mine(model_config, num_classes, config) -> MethodSpec: ...

or listed in PLUGINS as "module:function" and imported on first use. A plugin function lives
with its model (gau_jax/models/lst.py, peft.py) and, since models never import train, may return
a plain tuple (model, trainable[, encoder_path]) instead of a MethodSpec.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from gau_jax.models import Classifier, build_encoder
from gau_jax.train.optim import trainable_all


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    model: nn.Module
    trainable: Callable[[Any], Any]
    encoder_path: tuple[str, ...] = ("encoder",)


Builder = Callable[..., MethodSpec]
_REGISTRY: dict[str, Builder] = {}
# Methods implemented with their models: name → "module:function" (imported on first use).
PLUGINS: dict[str, str] = {
    "lst": "gau_jax.models.lst:build_method",
    "lora": "gau_jax.models.peft:build_lora",
    "adapter": "gau_jax.models.peft:build_adapter",
    "bitfit": "gau_jax.models.peft:build_bitfit",
}


def register_method(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make `name` a value of config.method."""

    def wrap(fn: Builder) -> Builder:
        _REGISTRY[name] = fn
        return fn

    return wrap


def available_methods() -> list[str]:
    return sorted(set(_REGISTRY) | set(PLUGINS))


def _lookup(name: str) -> Builder:
    if name in _REGISTRY:
        return _REGISTRY[name]
    module, _, fn = PLUGINS[name].partition(":")
    try:
        return getattr(importlib.import_module(module), fn)
    except (ModuleNotFoundError, AttributeError) as e:
        raise ValueError(f"config.method={name!r} needs {PLUGINS[name]}, which is not "
                         f"available ({e})") from None


def check_method(name: str) -> None:
    """Raises ValueError naming the known methods when `name` is not one of them."""
    if name not in _REGISTRY and name not in PLUGINS:
        raise ValueError(f"config.method={name!r} unknown; choose one of {available_methods()}")


def build_method(name: str, model_config: Any, num_classes: int, config: Any) -> MethodSpec:
    """The MethodSpec of method `name` (ValueError if unknown or not registered by its module)."""
    check_method(name)
    spec = _lookup(name)(model_config, num_classes, config)
    return spec if isinstance(spec, MethodSpec) else MethodSpec(*spec)


@register_method("full")
def build_full(model_config: Any, num_classes: int, config: Any) -> MethodSpec:
    """Full fine-tuning: encoder + [CLS] classifier, every parameter trained."""
    model = Classifier(encoder=build_encoder(model_config), num_classes=num_classes,
                       dropout_rate=config.get("classifier_dropout", 0.1))
    return MethodSpec(model=model, trainable=trainable_all, encoder_path=("encoder",))
