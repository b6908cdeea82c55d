"""Fine-tuning methods as plugins: a registry name → one `Method` object.

A Method says, for a resolved run config, model config and number of classes,

    build(config, model_config, num_classes) -> Built
        model          model.apply({"params": p}, input_ids, attention_mask, segment_ids,
                       deterministic=..., rngs={"dropout": k}) -> float32 logits of the task's
                       head (`head_of`: classification [b, K], multiple choice [b, C] from
                       [b, C, n] inputs, GlobalPointer spans [b, T, n, n]; gau_jax/models/heads.py)
        trainable      fn(params) -> bool pytree (None = every leaf trains); False leaves are
                       frozen: no gradient (the train step differentiates the trainable
                       partition only), update 0, no optimizer state (optax.multi_transform)
        encoder_path   where config.init_from's encoder params go inside the model's params
        model_config   the encoder config the model really has (written to DIR/config.json)
        keep_fresh     fn(leaf path) -> True for leaves a pretrained trunk need not have
                       (e.g. adapters): they keep their fresh init
    prepare(inputs, config, workdir, splits, task) -> inputs      optional input hook
        (LST: pruned side init, cached trunk features; gau_jax/train/lst.py)

Built in: full (here), lora, adapter, bitfit (here, models in gau_jax/models/peft.py) and lst
(gau_jax/train/lst.py, imported on first use). Each composes its trunk (or LST's side network)
with the head that config.task's kind asks for (`head_of`, `task_model`), so every method trains
every task kind. A new method registers itself:

    register(Method("mine", build=build_mine))

Models take explicit arguments; only the builders here read the run config.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from gau_jax.data.tasks import CLUE_TASKS
from gau_jax.models import Classifier, HeadSpec, TaskModel, build_encoder, head_spec, peft

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
    build: Callable[[Any, Any, int], Built]
    prepare: Callable[..., Any] | None = None


_REGISTRY: dict[str, Method] = {}
# Methods that live in their own train module, imported on first use: name → module.
PLUGINS: dict[str, str] = {"lst": "gau_jax.train.lst"}


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


def task_kind(task: str) -> str:
    """TaskSpec.kind of config.task (sentiment, jsonl and unknown names: classification)."""
    spec = CLUE_TASKS.get(task)
    return spec.kind if spec is not None else "classification"


def head_of(config: Any, num_classes: int) -> HeadSpec:
    """The head config.task needs: classification of num_classes, multiple choice, or a
    GlobalPointer (span: 1 type; ner: num_classes types), with config.classifier_dropout and
    config.gp_head_size / gp_efficient (defaults 64 / True)."""
    return head_spec(task_kind(config.get("task", "")), num_classes,
                     dropout_rate=config.get("classifier_dropout", 0.1),
                     head_size=config.get("gp_head_size", 64),
                     efficient=config.get("gp_efficient", True))


def task_model(model_config: Any, head: HeadSpec) -> Classifier | TaskModel:
    """Encoder + head (a classification head is the plain Classifier)."""
    if head.kind == "classification":
        return Classifier(encoder=build_encoder(model_config), num_classes=head.num_classes,
                          dropout_rate=head.dropout_rate)
    return TaskModel(encoder=build_encoder(model_config), head=head)


def classifier(model_config: Any, num_classes: int, config: Any) -> Classifier | TaskModel:
    """Encoder + the head of config.task (a [CLS] classifier for classification tasks)."""
    return task_model(model_config, head_of(config, num_classes))


def _full(config: Any, model_config: Any, num_classes: int) -> Built:
    """Full fine-tuning: encoder + task head, every parameter trained."""
    return Built(classifier(model_config, num_classes, config), model_config)


def _lora(config: Any, model_config: Any, num_classes: int) -> Built:
    """config.lora.{rank, alpha, targets}; the trunk at ("base", "encoder") is frozen."""
    o = config.lora
    model = peft.LoRA(classifier(model_config, num_classes, config), rank=int(o.rank),
                      alpha=float(o.alpha), targets=tuple(o.targets))
    return Built(model, model_config, peft.lora_trainable, ("base", "encoder"))


def _adapter(config: Any, model_config: Any, num_classes: int) -> Built:
    """Houlsby adapters of config.adapter_size; a trunk without adapters is a valid init_from."""
    cfg = peft.adapter_config(model_config, config.adapter_size)
    return Built(classifier(cfg, num_classes, config), cfg, peft.adapter_trainable,
                 keep_fresh=peft.is_adapter)


def _bitfit(config: Any, model_config: Any, num_classes: int) -> Built:
    """Biases + task head (gau_jax/models/peft.py says when it refuses)."""
    cfg = peft.bitfit_config(model_config, config.init_from)
    return Built(classifier(cfg, num_classes, config), cfg, peft.bitfit_trainable)


for _method in (Method("full", _full), Method("lora", _lora), Method("adapter", _adapter),
                Method("bitfit", _bitfit)):
    register(_method)
