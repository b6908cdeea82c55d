"""Fine-tuning methods as plugins: a registry name → one `Method` object.

A Method says, for a resolved run config, model config and the task head(s) its task kind(s)
ask for (gau_jax/tasks: a HeadSpec, or one per task of a multi-task run),

    build(config, model_config, head) -> Built         (head: an int K = K-class classification)
        model          model.apply({"params": p}, input_ids, attention_mask, segment_ids,
                       deterministic=..., rngs={"dropout": k}[, task=t]) -> float32 logits of
                       the head (classification [b, K], multiple choice [b, C] from [b, C, n]
                       inputs, GlobalPointer spans [b, T, n, n]; gau_jax/models/heads.py)
        trainable      fn(params) -> bool pytree (None = every leaf trains); False leaves are
                       frozen: no gradient (the train step differentiates the trainable
                       partition only), update 0, no optimizer state (optax.multi_transform)
        encoder_path   where config.init_from's encoder params go inside the model's params
        model_config   the encoder config the model really has (written to DIR/config.json)
        keep_fresh     fn(leaf path) -> True for leaves a pretrained trunk need not have
                       (e.g. adapters): they keep their fresh init
    prepare(inputs, config, workdir, splits, task) -> inputs      optional input hook
        (LST: pruned side init, cached trunk features; gau_jax/train/lst_method.py)

Built in: full (here), lora, adapter, bitfit (here, models in gau_jax/models/peft.py) and lst
(gau_jax/train/lst_method.py, imported on first use). Each composes its trunk (or LST's side
network) with the head it is given (`task_model`), so every method trains every task kind and
the multi-task stage. A new method registers itself:

    register(Method("mine", build=build_mine))

Models take explicit arguments; only the builders here read the run config.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from gau_jax.models import Heads, HeadSpec, TaskModel, build_encoder, peft
from gau_jax.models.heads import HEAD_DROPOUT

PathFn = Callable[[tuple[str, ...]], bool]


@dataclasses.dataclass(frozen=True)
class Built:
    """What a method builds for one run (module docstring)."""

    model: nn.Module
    model_config: Any
    trainable: Callable[[Any], Any] | None = None
    encoder_path: tuple[str, ...] = ("encoder",)
    keep_fresh: PathFn | None = None


@dataclasses.dataclass(frozen=True)
class Method:
    """A fine-tuning method: its builder and an optional input hook."""

    name: str
    build: Callable[[Any, Any, Any], Built]
    prepare: Callable[..., Any] | None = None


_REGISTRY: dict[str, Method] = {}
# Methods that live in their own train module, imported on first use: name → module.
PLUGINS: dict[str, str] = {"lst": "gau_jax.train.lst_method"}


def register(method: Method) -> Method:
    """Make `method.name` a value of config.method (a later registration replaces it)."""
    _REGISTRY[method.name] = method
    return method


def available() -> list[str]:
    return sorted(set(_REGISTRY) | set(PLUGINS))


def check(name: str) -> None:
    """ValueError naming the known methods when `name` is not one of them."""
    if name not in _REGISTRY and name not in PLUGINS:
        raise ValueError(f"config.method={name!r} unknown; choose one of {available()}")


def get(name: str) -> Method:
    """The Method registered as `name` (its plugin module is imported on first use)."""
    check(name)
    if name not in _REGISTRY:
        importlib.import_module(PLUGINS[name])
        if name not in _REGISTRY:
            raise ValueError(f"config.method={name!r}: {PLUGINS[name]} did not register it")
    return _REGISTRY[name]


def task_model(model_config: Any, head: HeadSpec | Heads) -> TaskModel:
    """Encoder + the task head(s)."""
    return TaskModel(encoder=build_encoder(model_config), head=head)


def as_head(config: Any, head: HeadSpec | Heads | int) -> HeadSpec | Heads:
    """A builder's head argument: an int K is a classification head of K classes (dropout
    config.classifier_dropout)."""
    if isinstance(head, int):
        return HeadSpec("classification", head, float(config.get("classifier_dropout",
                                                                  HEAD_DROPOUT)))
    return head


def _full(config: Any, model_config: Any, head: HeadSpec | Heads) -> Built:
    """Full fine-tuning: encoder + task head, every parameter trained."""
    return Built(task_model(model_config, as_head(config, head)), model_config)


def _lora(config: Any, model_config: Any, head: HeadSpec | Heads) -> Built:
    """config.lora.{rank, alpha, targets}; the trunk at ("base", "encoder") is frozen."""
    o = config.lora
    model = peft.LoRA(task_model(model_config, as_head(config, head)), rank=int(o.rank),
                      alpha=float(o.alpha), targets=tuple(o.targets))
    return Built(model, model_config, peft.lora_trainable, ("base", "encoder"))


def _adapter(config: Any, model_config: Any, head: HeadSpec | Heads) -> Built:
    """Houlsby adapters of config.adapter_size; a trunk without adapters is a valid init_from."""
    cfg = peft.adapter_config(model_config, config.adapter_size)
    return Built(task_model(cfg, as_head(config, head)), cfg, peft.adapter_trainable,
                 keep_fresh=peft.is_adapter)


def _bitfit(config: Any, model_config: Any, head: HeadSpec | Heads) -> Built:
    """Biases + task head (gau_jax/models/peft.py says when it refuses)."""
    cfg = peft.bitfit_config(model_config, config.init_from)
    return Built(task_model(cfg, as_head(config, head)), cfg, peft.bitfit_trainable)


for _method in (Method("full", _full), Method("lora", _lora), Method("adapter", _adapter),
                Method("bitfit", _bitfit)):
    register(_method)
