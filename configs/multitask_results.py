"""Does RoFormerV2's multi-task stage help a small trunk? Direct fine-tuning vs the multi-task
stage then fine-tuning, at the same optimisation steps per task.

    python -m experiments.multitask --config configs/multitask_results.py:full \
        --workdir runs/multitask_results --config.data_dir=../shared/data/clue \
        --config.results_dir=experiments/results
    python -m experiments.multitask --config configs/multitask_results.py:smoke \
        --workdir /tmp/multitask_results --config.data_dir=DIR   # tests: 2 tasks, 2 steps

`arg` is "full" (experiments/results/multitask.md; sized for a shared 2-core CPU) or "smoke".
The trunk is experiments/lst_clue.py's recipe pretrained for pretrain_steps on People's Daily
plus the train texts of corpus_tasks (init_from skips it). Per seed: (a) each task fine-tuned
from the trunk for `steps` steps; (b) the multi-task stage (configs/multitask.py, uniform
mixture: mixture_alpha = 0) for len(tasks) · steps / 2 steps, so each task gets steps / 2 of
them in expectation, then each task fine-tuned from the stage for steps / 2 steps. Both arms
run the same shared overrides; every score is `experiments.evaluate`'s on the first dev_rows
dev rows.
"""

from __future__ import annotations

import ml_collections


def get_config(arg: str = "full") -> ml_collections.ConfigDict:
    """Experiment config; arg is "full" or "smoke"."""
    if arg not in ("full", "smoke"):
        raise ValueError(f"configs/multitask_results.py: arg {arg!r} is not 'full' or 'smoke'")
    c = ml_collections.ConfigDict()
    c.data_dir = ""                  # the CLUE folder (required)
    c.init_from = ""                 # a trunk to start from instead of pretraining one here
    c.pretrain_steps = 600           # MLM steps of the trunk
    c.corpus_tasks = ("tnews", "iflytek", "afqmc", "ocnli")  # train texts added to the corpus
    c.tasks = ("tnews", "csl", "c3", "cluener")  # three task kinds
    c.steps = 200                    # optimisation steps per task, in each arm
    c.learning_rate = 1e-2           # full fine-tuning, both arms and the stage
    c.seeds = (0, 1)
    c.dev_rows = 300                 # dev rows scored per task (0 = all), the first ones
    # Shared overrides (fields of configs/finetune.py and configs/multitask.py).
    c.overrides = ml_collections.ConfigDict({
        "batch_size": 16, "max_length": 96, "grad_accum_steps": 1, "eval_batches": 2})
    c.results_dir = ""               # multitask.md ("" = the workdir)
    c.command = ("python -m experiments.multitask --config configs/multitask_results.py:full "
                 "--workdir runs/multitask_results --config.data_dir=../shared/data/clue")
    if arg == "smoke":
        c.pretrain_steps = 2
        c.tasks = ("tnews", "cluener")
        c.steps = 4
        c.seeds = (0,)
        c.dev_rows = 4
        c.overrides.batch_size = 8  # divisible by 8 forced host devices (the test suite)
        c.overrides.max_length = 32
        c.command = ("python -m experiments.multitask --config configs/multitask_results.py:smoke "
                     "--workdir /tmp/multitask_results --config.data_dir=DIR")
    return c
