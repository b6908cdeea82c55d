"""Full fine-tuning vs LST vs LoRA on CLUE tasks, from one small trunk pretrained here.

    python -m experiments.lst_clue --config configs/lst_clue.py:full --workdir runs/lst_clue \
        --config.data_dir=../shared/data/clue
    # the committed file: add --config.results_dir=experiments/results
    python -m experiments.lst_clue --config configs/lst_clue.py:smoke --workdir /tmp/lst_clue \
        --config.data_dir=../shared/data/clue

`arg` is "full" (experiments/results/lst_clue.md: a 3000-step trunk, then 600 steps per task and
method, best of 3 dev evaluations; ~2 h on a shared 2-core CPU) or "smoke" (tests: afqmc, full
and LST, 2 steps each; a minute). data_dir is the CLUE folder (DIR/<task>/train.json, dev.json)
and must be set. learning_rate is one rate or method=rate pairs; `lst` and `lora` override the
method sections of configs/finetune.py. Every run is keyed by all of these, so a rerun with
another setting trains a new run and a rerun with the same ones reads the finished one back.
"""

from __future__ import annotations

import ml_collections


def get_config(arg: str = "full") -> ml_collections.ConfigDict:
    """Experiment config; arg is "full" or "smoke"."""
    if arg not in ("full", "smoke"):
        raise ValueError(f"configs/lst_clue.py: arg {arg!r} is not 'full' or 'smoke'")
    c = ml_collections.ConfigDict()
    c.data_dir = ""                  # the CLUE folder (required)
    c.init_from = ""                 # a trunk to fine-tune instead of pretraining one here
    c.pretrain_steps = 3000          # MLM steps of the trunk
    c.tasks = ("tnews", "iflytek", "afqmc", "ocnli")
    c.methods = ("full", "lst", "lora")
    c.steps = 600                    # fine-tuning steps per run
    c.batch_size = 32
    c.max_length = 128
    c.learning_rate = "full=1e-2,lst=3e-2,lora=3e-2"  # one rate, or method=rate pairs
    c.evals = 3                      # dev evaluations per run (the best is reported)
    c.seed = 0                       # fine-tuning seed (params init, dropout, data order)
    # LST: r = 4 (side width d/4), single-head GAU side blocks, ladders from every trunk layer,
    # Fisher-pruned init. LoRA: rank 4 on the GAU projections.
    c.lst = ml_collections.ConfigDict(
        {"reduction": 4, "side_block": "gau", "init": "fisher", "dropout": 0.1})
    c.lora = ml_collections.ConfigDict({"rank": 4, "alpha": 8.0, "targets": ("uvz", "output")})
    c.results_dir = ""               # lst_clue.md ("" = the workdir)
    c.command = ("python -m experiments.lst_clue --config configs/lst_clue.py:full "
                 "--workdir runs/lst_clue --config.data_dir=../shared/data/clue")  # set by CLI
    if arg == "smoke":
        c.pretrain_steps = 2
        c.tasks = ("afqmc",)
        c.methods = ("full", "lst")
        c.steps = 2
        c.batch_size = 8
        c.max_length = 32
        c.evals = 1
        c.command = ("python -m experiments.lst_clue --config configs/lst_clue.py:smoke "
                     "--workdir /tmp/lst_clue --config.data_dir=../shared/data/clue")
    return c
