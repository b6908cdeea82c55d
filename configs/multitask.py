"""RoFormerV2's multi-task supervised stage: one trunk trained on a weighted mixture of labelled
tasks, a head per task, before fine-tuning on each (Su 2022, "RoFormerV2: a faster and better
RoFormer", kexue.fm/archives/8998).

    python -m experiments.train \
        --config configs/multitask.py:tasks=tnews+afqmc+cmrc2018+c3,model=gau_alpha_tiny \
        --workdir runs/multitask --config.data_dir=../shared/data/clue \
        --config.init_from=runs/pretrain_gau_alpha_tiny

    # then any of its tasks, from the stage's trunk and the task's own head:
    python -m experiments.train --config configs/finetune.py:task=tnews \
        --workdir runs/ft_tnews --config.data_dir=../shared/data/clue \
        --config.init_from=runs/multitask
    python -m experiments.predict --workdir runs/multitask --task tnews --split dev

Argument: comma-separated key=value with keys tasks ("+"-joined: any CLUE task, sentiment, or a
user's JSON Lines classification task as name@/path/to/folder; any mix of task kinds), model (a
preset of configs/models.py) and method (full | lst | lora | adapter | bitfit). Each step trains
on one task drawn with rate ∝ (its train rows)^mixture_alpha (gau_jax/tasks/mixture.py argues
one task per step); every evaluation scores every task's dev set with its CLUE metric, and
DIR/best keeps the params of the best mean of the tasks' main metrics. Lengths are shared by the
tasks (max_length, stride, ...); batch_size is every step's; the CLUE tasks' recipe options
(standard GlobalPointer, CMRC2018's span loss) apply, so each head is the one its single-task run
builds. The small variant
(`...,local=1`) shrinks lengths and steps for a CPU.
"""

from __future__ import annotations

import ml_collections

from configs import models
from configs.common import trainer_config
from configs.finetune import method_fields, task_fields
from gau_jax.data.tasks import CLUE_TASKS

ARG_KEYS = ("tasks", "model", "method", "local")
DEFAULTS = {"tasks": "tnews+afqmc+cmrc2018+c3", "model": "gau_alpha_tiny", "method": "full",
            "local": ""}


def parse_arg(arg: str | None) -> dict[str, str]:
    out = dict(DEFAULTS)
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in ARG_KEYS:
            raise ValueError(f"configs/multitask.py argument {item!r}: expected key=value with "
                             f"key in {ARG_KEYS}")
        out[key.strip()] = value.strip()
    return out


def recipe_options(tasks: str) -> dict:
    """The union of the CLUE tasks' recipe options (gau_jax/data/tasks.py `Recipe.options`), so
    each task's head and loss are those its single-task run builds (and its workdir fits
    init_from either way); ValueError when two tasks' recipes disagree on one."""
    out: dict = {}
    for name in tasks.split("+"):
        spec = CLUE_TASKS.get(name.strip())
        for key, value in (spec.recipe.options if spec and spec.recipe else {}).items():
            if key in out and out[key] != value:
                raise ValueError(f"configs/multitask.py: tasks={tasks!r}: the recipes disagree on "
                                 f"{key} ({out[key]!r} vs {value!r}); set --config.{key}")
            out[key] = value
    return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Multi-task config for 'tasks=a+b+...,model=...,method=...[,local=1]'."""
    a = parse_arg(arg)
    c = trainer_config()
    c.stage = "multitask"
    c.tasks = a["tasks"]             # "+"-joined task names (docstring)
    c.task = ""                      # (single-task runs only)
    c.mixture_alpha = 1.0            # rate of task t ∝ n_t^α (α=0 uniform, 1 by size)
    c.model = models.get_config(a["model"])  # encoder (replaced by init_from's config.json)
    c.num_classes = 0                # (single-task runs only; each task's label set is used)
    c.vocab_path = ""                # vocab.txt when init_from has none ("" = char vocab)
    task_fields(c)
    c.update(recipe_options(a["tasks"]))  # the tasks' recipes' options (GlobalPointer, span loss)
    c.max_length = 256               # shared by every task
    c.batch_size = 32                # rows of each step's one task
    c.total_steps = 0                # 0: epochs over the tasks' summed train rows
    c.epochs = 2
    method_fields(c, a["method"])
    c.checkpoint_every_steps = 500
    c.eval_every_steps = 500
    c.eval_batches = 0               # whole dev sets
    c.keep_best = True               # DIR/best by the mean of the tasks' main dev metrics
    if a["local"]:
        c.max_length, c.stride, c.max_question_length = 64, 32, 16
        c.batch_size, c.total_steps, c.eval_every_steps, c.eval_batches = 8, 40, 20, 2
    return c
