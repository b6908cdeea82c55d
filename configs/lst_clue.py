"""Full fine-tuning vs LST vs LoRA / adapters / BitFit on CLUE tasks, one trunk pretrained here.

    python -m experiments.lst_clue --config configs/lst_clue.py:full --workdir runs/lst_clue \
        --config.data_dir=../shared/data/clue
    # the committed file: add --config.results_dir=experiments/results
    python -m experiments.lst_clue --config configs/lst_clue.py:smoke --workdir /tmp/lst_clue \
        --config.data_dir=../shared/data/clue

`arg` is "full" (experiments/results/lst_clue.md), "inits" (experiments/results/lst_inits.md: the
side network's start — random, pruned from the trunk in either form, or the ladder pretrained
beside the trunk — next to full fine-tuning, at the rates the full sweep chose, so that the full
config in the same workdir reuses these runs) or "smoke" (tests: afqmc; full, LST and LST from
the ladder, 2 steps each). data_dir is the CLUE folder (DIR/<task>/train.json, dev.json) and
must be set.

The protocol: one trunk for every run; every variant (VARIANTS) gets the same steps, batch, length
and evaluation; each method's learning rate is chosen once, on dev of `sweep_task` with seed
seeds[0], from `learning_rates[method]` (the variant named like the method is swept; the other
variants of that method use its rate), then fixed for every task and seed. Every run is keyed
by all of its settings, so a rerun reads finished runs back and a changed setting trains anew.
"""

from __future__ import annotations

import ml_collections

# Variant name → (method, configs/finetune.py overrides). The trunk is 256 wide, so r = 8 is the
# paper's side width (d/8 = 32; min_side_width = 0 keeps it) and r = 2 a wider one (128).
LST_R8 = {"lst.reduction": 8, "lst.min_side_width": 0}
VARIANTS = {
    "full": ("full", {}),
    "lst": ("lst", LST_R8),                                          # random init (Su)
    # pruned from the trunk (Fisher): the side's own RoPE θ and kernels x √r, or the trunk's
    # function on the kept channels (its θ, unscaled); prune_form named so runs of either are
    # keyed by it
    "lst_pruned": ("lst", {**LST_R8, "lst.init": "fisher", "lst.fisher_examples": 256,
                           "lst.prune_form": "side"}),
    "lst_pruned_exact": ("lst", {**LST_R8, "lst.init": "fisher", "lst.fisher_examples": 256,
                                 "lst.prune_form": "exact"}),
    # the side network pretrained beside the trunk (config.ladder: the trunk run trains it)
    "lst_ladder": ("lst", {**LST_R8, "lst.init": "ladder"}),
    "lst_cached": ("lst", {**LST_R8, "lst.cache": True}),            # trunk features cached
    "lst_wide": ("lst", {"lst.reduction": 2, "lst.min_side_width": 0}),
    "lora": ("lora", {}),
    "adapter": ("adapter", {}),
    "bitfit": ("bitfit", {}),
}


def get_config(arg: str = "full") -> ml_collections.ConfigDict:
    """Experiment config; arg is "full", "inits" or "smoke"."""
    if arg not in ("full", "inits", "smoke"):
        raise ValueError(f"configs/lst_clue.py: arg {arg!r} is not 'full', 'inits' or 'smoke'")
    c = ml_collections.ConfigDict()
    c.data_dir = ""                  # the CLUE folder (required)
    c.init_from = ""                 # a trunk to fine-tune instead of pretraining one here
    c.pretrain_steps = 3000          # MLM steps of the trunk
    c.ladder = True                  # the trunk run also pretrains the r = 8 side network
    #                                  (variant lst_ladder); the trunk's own loss is unchanged
    c.cost_steps = 100               # steps timed with and without the ladder (0 = not timed)
    c.tasks = ("tnews", "iflytek", "ocnli")
    c.variants = tuple(VARIANTS)     # names of VARIANTS to run
    c.cached_tasks = ("iflytek",)    # variants with lst.cache run on these only (disk, time)
    c.sweep_task = "tnews"           # learning rates are chosen on its dev set (seed seeds[0])
    # Per method, the values swept: each grid is centred where an earlier tnews sweep peaked
    # (full 3e-3/1e-2/3e-2 → 38/46/49 %, adapter 1e-2/3e-2/1e-1 → 31/18/10 %, bitfit 3e-2/1e-1/3e-1
    # → 35/35/14 %), so that no chosen rate sits at the edge of its grid.
    c.learning_rates = ml_collections.ConfigDict({
        "full": (1e-2, 3e-2, 1e-1), "lst": (1e-2, 3e-2, 1e-1), "lora": (3e-2, 1e-1, 3e-1),
        "adapter": (3e-3, 1e-2, 3e-2), "bitfit": (1e-2, 3e-2, 1e-1)})
    c.seeds = (0, 1)                 # fine-tuning seeds (params init, dropout, data order)
    c.steps = 600                    # fine-tuning steps per run (120 x 16 learns nothing)
    c.batch_size = 32
    c.max_length = 64
    c.evals = 1                      # dev evaluations per run (the best is reported)
    c.dev_rows = 1024                # evaluate on the first rows of dev (0 = all; CPU budget)
    c.results_dir = ""               # where results_name goes ("" = the workdir)
    c.results_name = "lst_clue.md"
    c.title = "Full FT vs LST vs LoRA / adapters / BitFit on CLUE"  # of the results file
    c.train = True                   # False: report the finished runs only (train nothing)
    c.command = ("python -m experiments.lst_clue --config configs/lst_clue.py:full "
                 "--workdir runs/lst_clue --config.data_dir=../shared/data/clue")  # set by CLI
    if arg == "inits":  # the side network's start: random, pruned (two forms), pretrained
        c.variants = ("full", "lst", "lst_pruned", "lst_pruned_exact", "lst_ladder")
        # the rates the full sweep chose on an earlier trunk of this recipe (CPU budget)
        c.learning_rates = ml_collections.ConfigDict({"full": (1e-2,), "lst": (3e-2,)})
        c.results_name = "lst_inits.md"
        c.title = "LST's side network: random, pruned or pretrained start, on CLUE"
        c.command = ("python -m experiments.lst_clue --config configs/lst_clue.py:inits "
                     "--workdir runs/lst_clue --config.data_dir=../shared/data/clue")
    if arg == "smoke":
        c.pretrain_steps = 2
        c.tasks = ("afqmc",)
        c.variants = ("full", "lst", "lst_ladder")
        c.cost_steps = 0
        c.sweep_task = "afqmc"
        c.learning_rates = ml_collections.ConfigDict({"full": (1e-2,), "lst": (3e-2,)})
        c.seeds = (0,)
        c.steps = 2
        c.batch_size = 8
        c.max_length = 32
        c.evals = 1
        c.dev_rows = 256
        c.command = ("python -m experiments.lst_clue --config configs/lst_clue.py:smoke "
                     "--workdir /tmp/lst_clue --config.data_dir=../shared/data/clue")
    return c
