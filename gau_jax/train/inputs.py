"""`RunSetup`, what a run trains on: model, loss sums, trainable mask, data iterators,
pretrained trunk; and the helpers every stage's setup shares.

    pretrain: gau_jax/train/setup.py (prepared corpora, MLM).
    finetune / multitask: gau_jax/train/task_setup.py — the task kinds (gau_jax/tasks) give
              features, batches, head, loss sums and the dev metric; the method's plugin
              (gau_jax/train/methods.py) builds the model around the head(s).

`build_inputs` (gau_jax/train/setup.py) never changes the config it is given: it works on
`resolve_config`'s copy, fills in what the run derives (the vocabulary size, init_from's model
config with the user's shape-neutral `model.*` overrides on top) and returns it as
`RunSetup.config`. Once the workdir's
checkpoint (if any) is known to fit, the trainer writes DIR/config.json (the encoder's model
config), DIR/vocab.txt and DIR/train_config.json (the resolved config), so a workdir is itself a
valid `init_from`. Iterators yield this process's rows (batch_size / process_count) as numpy
dicts in the layouts of docs/batches.md and expose get_state() / set_state() for checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import flax.linen as nn
import jax
import ml_collections

from gau_jax import pretrained as pretrained_lib
from gau_jax import workdir as layout
from gau_jax.atomic import write_text_atomic
from gau_jax.data.tokenizer import ChineseTokenizer, build_char_vocab, load_tokenizer
from gau_jax.models import presets
from gau_jax.tasks.losses import SumsFn


class BatchIterator(Protocol):
    def __next__(self) -> dict[str, Any]: ...
    def get_state(self) -> Any: ...
    def set_state(self, state: Any) -> None: ...


@dataclasses.dataclass
class RunSetup:
    model: nn.Module
    sums_fn: SumsFn
    train: BatchIterator
    dev_batches: Callable[[], Iterable[dict[str, Any]]] | None  # None: no dev evaluation
    trainable: Callable[[Any], Any] | None = None  # None = every parameter trains
    pretrained: Any = None  # encoder params to load at encoder_path (fine-tuning)
    encoder_path: tuple[str, ...] = ("encoder",)
    keep_fresh: Callable[[tuple[str, ...]], bool] | None = None  # leaves init_from may lack
    post_init: Callable[[Any], Any] | None = None  # params → params after the trunk is loaded
    model_config: ml_collections.ConfigDict | None = None  # the encoder's (DIR/config.json)
    tokenizer: ChineseTokenizer | None = None
    label_names: tuple[str, ...] = ()  # classification: label id → name (DIR/labels.json)
    config: ml_collections.ConfigDict | None = None  # the resolved run config
    data_sizes: dict[str, int] = dataclasses.field(default_factory=dict)  # for the start block
    dev_eval: Callable[[Any], dict[str, float]] | None = None  # params → CLUE dev metrics
    best_metric: str = "accuracy"  # the dev metric keep_best compares (em, f1, accuracy)
    features: dict[str, Any] = dataclasses.field(default_factory=dict)  # split → Features
    clip_groups: Callable[[Any], Any] | None = None  # params → label per leaf: clipped apart


def resolve_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """An unlocked copy of `config` with the compute dtype override applied to the model."""
    c = ml_collections.ConfigDict(config.to_dict())
    if c.get("dtype"):
        c.model.dtype = c.dtype
    return c


def local_batch_size(config: ml_collections.ConfigDict) -> int:
    return config.batch_size // jax.process_count()


def write_model_files(workdir: Path, inputs: RunSetup, config: ml_collections.ConfigDict) -> None:
    """DIR/config.json, DIR/vocab.txt (what init_from and gau_jax.convert read), labels.json and
    DIR/train_config.json (the resolved run config), each written atomically."""
    if jax.process_index() != 0:
        return
    write_text_atomic(workdir / layout.TRAIN_CONFIG, config.to_json_best_effort(indent=2) + "\n")
    if inputs.model_config is not None:
        write_text_atomic(workdir / layout.MODEL_CONFIG, inputs.model_config.to_json(indent=2)
                          + "\n")
    if inputs.tokenizer is not None:
        write_text_atomic(workdir / layout.VOCAB, inputs.tokenizer.vocab_text())
    if inputs.label_names:
        write_text_atomic(workdir / layout.LABELS,
                          json.dumps(list(inputs.label_names), ensure_ascii=False) + "\n")


def tokenizer_for(config, workdir: Path, texts: Callable[[], Iterator[str]],
                  vocab: Path | None = None) -> ChineseTokenizer:
    """Priority: an explicit vocab (init_from's), config.vocab_path, the workdir's own (resume),
    else a char vocab of model.vocab_size built from `texts`."""
    for path in (vocab, config.get("vocab_path") or None, workdir / "vocab.txt"):
        if path and Path(path).exists():
            return load_tokenizer(path)
    logging.info("building a %d-token character vocabulary", config.model.vocab_size)
    return build_char_vocab(texts(), config.model.vocab_size)


def load_trunk(config) -> tuple[Any, Path | None]:
    """init_from's encoder params (layout of the resolved model config) and vocab; sets
    config.model to the checkpoint's config with the user's model.* overrides on top."""
    pre = pretrained_lib.load(config.init_from)
    config.model = presets.apply_overrides(pre.config, config.model)
    if jax.process_index() == 0:
        print(f"init_from: loaded {pre.source}", flush=True)
    return pretrained_lib.trunk_params(pre, config.model), pre.vocab
