"""Trainer fields shared by configs/pretrain.py and configs/finetune.py (not a config itself).

Every field can be overridden on the command line: --config.<field>=<value>.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from gau_jax.data.pipeline import DATA_THREADS


def config_dict(options: Any) -> ml_collections.ConfigDict:
    """A ConfigDict section made from an options dataclass (the one source of its defaults)."""
    return ml_collections.ConfigDict(dataclasses.asdict(options))


def trainer_config() -> ml_collections.ConfigDict:
    """Loop, optimizer, parallelism, checkpoint and logging fields with neutral defaults."""
    c = ml_collections.ConfigDict()
    c.stage = ""                     # "pretrain" (MLM) | "finetune" (one task) | "multitask"
    c.seed = 0                       # params init, dropout and data order
    c.total_steps = 1000             # optimizer updates
    c.batch_size = 32                # global batch (all devices, all micro-batches)
    c.grad_accum_steps = 1           # micro-batches per update (batch_size / k rows each)
    c.max_length = 128               # tokens per example incl. [CLS]/[SEP]
    c.data_dir = ""                  # corpus / task folder ("" = default, no download)
    c.pad_multiple = 32              # batches padded to a multiple of this (fewer compiles)
    c.data_threads = DATA_THREADS    # grain threads encoding / masking rows
    c.bad_rows = "raise"             # bad task rows: "raise" (error: file, line) | "skip" (count)
    c.init_from = ""                 # pretraining workdir or converted folder to start from
    # Optimizer (gau_jax/train/optim.py).
    c.optimizer = "adamw"            # "lamb" | "adafactor" | "adamw" | "sgd"
    c.learning_rate = 1e-3           # peak learning rate
    c.relative_step = True           # adafactor: step = lr·max(RMS(param), 1e-3) (T5 recipe);
    #                                  False: absolute step lr (leaves that start at 0 can move)
    c.warmup_steps = 0               # linear 0 → lr over these steps (Su's init needs none)
    c.end_lr_factor = 0.0            # lr at total_steps = learning_rate * end_lr_factor
    c.weight_decay = 0.01            # decoupled, on dense kernels only
    c.grad_clip_norm = 1.0           # global-norm clipping of trainable grads (0 = off)
    c.residual_ramp_steps = 0        # RoFormerV2 from scratch: α = min(1, step/ramp) (0 = off)
    # Parallelism (gau_jax/train/partition.py).
    c.parallel = "jit"               # "jit" (NamedSharding on a mesh) | "pmap"
    c.mesh = ml_collections.ConfigDict()  # jit only; sizes multiply to the device count
    c.mesh.data = -1                 # pure data-parallel axis (-1 = the rest of the devices)
    c.mesh.fsdp = 1                  # batch split AND params / optimizer state split (FSDP)
    c.mesh.tensor = 1                # kernels split along their width; batch replicated
    c.mesh.min_split_size = 2**14    # params with fewer elements stay replicated
    c.fsdp = 1                       # shorthand for mesh.fsdp (mesh.fsdp is the source of truth)
    # Checkpoints, evaluation, logging.
    c.checkpoint_every_steps = 500   # resume checkpoint period (and one at the end)
    c.keep_checkpoints = 2           # resume checkpoints kept (newest)
    c.async_checkpoints = True       # write checkpoints in a background thread
    c.eval_every_steps = 500         # dev evaluation period (and one at the end)
    c.eval_batches = 0               # dev batches per evaluation (0 = whole dev set)
    c.log_every_steps = 50           # train metrics period (metrics.jsonl, TensorBoard)
    c.progress_bar = True            # tqdm bar with loss, steps/s, ETA
    c.tensorboard = True             # TensorBoard event files under DIR/tensorboard
    c.dtype = ""                     # compute dtype override: "" (model's) | float32 | bfloat16
    # Non-finite loss / gradient norm (gau_jax/train/loop.py): stop (default) or skip and count.
    c.skip_nonfinite_updates = False  # True: skip such updates (params unchanged), count them
    c.max_consecutive_skips = 10     # ... and stop after this many in a row
    return c
