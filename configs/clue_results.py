"""All eleven CLUE tasks, full fine-tuning and LST of one small trunk pretrained here.

    python -m experiments.clue_results --config configs/clue_results.py:full \
        --workdir runs/clue_results --config.data_dir=../shared/data/clue
    # the committed file: add --config.results_dir=experiments/results
    python -m experiments.clue_results --config configs/clue_results.py:smoke \
        --workdir /tmp/clue_results --config.data_dir=DIR   # tests: tnews, LST, 2 steps

`arg` is "full" (experiments/results/clue.md; sized for a shared 2-core CPU: a short trunk,
about a minute per run, short rows, the first dev_rows dev rows) or "smoke". The trunk is
experiments/lst_clue.py's recipe (TRUNK there) pretrained for pretrain_steps on People's Daily
plus the train texts of `corpus_tasks`; init_from skips it. Per task: configs/finetune.py:
task=T,model=gau_alpha_tiny,method=M with the overrides below (`task_overrides[T]` on top of
the shared ones), then `experiments.evaluate` of the run's final params on dev. A task whose
folder is missing from data_dir (the snapshot has no CMNLI) is listed as not run.
"""

from __future__ import annotations

import ml_collections

TASKS = ("afqmc", "tnews", "iflytek", "cmnli", "ocnli", "cluewsc2020", "csl", "cmrc2018", "c3",
         "chid", "chid_fewclue", "cluener")  # chid: CLUE's ChID; chid_fewclue: FewCLUE's


def get_config(arg: str = "full") -> ml_collections.ConfigDict:
    """Experiment config; arg is "full" or "smoke"."""
    if arg not in ("full", "smoke"):
        raise ValueError(f"configs/clue_results.py: arg {arg!r} is not 'full' or 'smoke'")
    c = ml_collections.ConfigDict()
    c.data_dir = ""                  # the CLUE folder (required)
    c.init_from = ""                 # a trunk to fine-tune instead of pretraining one here
    c.pretrain_steps = 600           # MLM steps of the trunk
    c.corpus_tasks = ("tnews", "iflytek", "afqmc", "ocnli")  # train texts added to the corpus
    c.tasks = TASKS
    c.methods = ("full", "lst")
    c.steps = 100                    # fine-tuning steps per run
    c.learning_rate = "full=1e-2,lst=3e-2"  # one rate, or method=rate pairs
    c.dev_rows = 300                 # dev rows scored per task (0 = all), the first ones
    c.seed = 0
    # Shared fine-tuning overrides (fields of configs/finetune.py), then per task.
    c.overrides = ml_collections.ConfigDict({
        "batch_size": 16, "max_length": 64, "grad_accum_steps": 1, "eval_batches": 2})
    c.task_overrides = ml_collections.ConfigDict({
        "cmrc2018": {"max_length": 128, "stride": 64, "max_question_length": 24},
        "c3": {"batch_size": 4, "max_length": 128},
        "chid": {"batch_size": 4},
        "chid_fewclue": {"batch_size": 4},
        "iflytek": {"max_length": 96},
    })
    c.results_dir = ""               # clue.md ("" = the workdir)
    c.command = ("python -m experiments.clue_results --config configs/clue_results.py:full "
                 "--workdir runs/clue_results --config.data_dir=../shared/data/clue")  # set by CLI
    if arg == "smoke":
        c.pretrain_steps = 2
        c.tasks = ("tnews",)
        c.methods = ("lst",)
        c.steps = 2
        c.dev_rows = 4
        c.overrides.batch_size = 8  # divisible by 8 forced host devices (the test suite)
        c.overrides.max_length = 32
        c.task_overrides.cmrc2018.max_length = 48
        c.task_overrides.cmrc2018.stride = 16
        c.task_overrides.cmrc2018.max_question_length = 8
        c.command = ("python -m experiments.clue_results --config configs/clue_results.py:smoke "
                     "--workdir /tmp/clue_results --config.data_dir=DIR")
    return c
