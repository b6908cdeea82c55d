"""Why LST's pruned initialisation lost to a random side network: each suspect alone.

    python -m experiments.lst_prune_ablation --config configs/lst_prune_ablation.py:full \
        --workdir runs/lst_clue --config.data_dir=../shared/data/clue
    # the committed file: add --config.results_dir=experiments/results
    python -m experiments.lst_prune_ablation --config configs/lst_prune_ablation.py:smoke \
        --workdir /tmp/lst_clue --config.data_dir=../shared/data/clue

`arg` is "full" (experiments/results/lst_prune_ablation.md) or "smoke" (tests: afqmc, exact and
one edit, 2 steps).
Every field of configs/lst_clue.py is here with the same value, so that the ablation shares the
trunk and the runs of experiments/lst_clue.py in the same workdir: an ablation without changes
(`random`, `exact`, `side`) is that experiment's run of its variant.
"""

from __future__ import annotations

import ml_collections

from configs import lst_clue

# Ablation name → (configs/lst_clue.py variant it starts from, extra configs/finetune.py
# overrides, edits of the pruned side params — experiments/lst_prune_ablation.py EDITS).
# "exact" is the pruned init as the LST paper's procedure reads literally: the trunk's function
# on the kept channels. Each other row changes one thing of it.
ABLATIONS = {
    "random": ("lst", {}, ()),
    "exact": ("lst_pruned_exact", {}, ()),
    "exact+own_rope": ("lst_pruned_exact", {}, ("own_rope",)),
    "exact+sqrt_scale": ("lst_pruned_exact", {}, ("sqrt_scale",)),
    "exact+no_bias": ("lst_pruned_exact", {}, ("no_bias",)),
    "exact+fresh_qk_scale": ("lst_pruned_exact", {}, ("fresh_qk_scale",)),
    "exact+random_down": ("lst_pruned_exact", {}, ("random_down",)),
    "exact+random_blocks": ("lst_pruned_exact", {}, ("random_blocks",)),
    "exact+magnitude": ("lst_pruned_exact", {"lst.init": "magnitude"}, ()),
    "exact+batch_fisher": ("lst_pruned_exact", {"lst.fisher_estimate": "batch_mean"}, ()),
    "side": ("lst_pruned", {}, ()),  # = exact + own_rope + sqrt_scale (lst.prune_form=side)
}


def get_config(arg: str = "full") -> ml_collections.ConfigDict:
    """Experiment config; arg is "full" or "smoke"."""
    if arg not in ("full", "smoke"):
        raise ValueError(f"configs/lst_prune_ablation.py: arg {arg!r} is not 'full' or 'smoke'")
    c = lst_clue.get_config(arg)  # trunk, steps, batch, length, evaluation: lst_clue's
    c.ablation_tasks = ("iflytek", "tnews") if arg == "full" else ("afqmc",)  # runs on these
    #                                  (c.tasks, lst_clue's, stay: their texts are the trunk's)
    c.ablations = tuple(ABLATIONS)   # names of ABLATIONS to run
    c.learning_rate = 3e-2           # every run (lst's rate chosen by lst_clue's sweep)
    c.results_name = "lst_prune_ablation.md"
    c.title = "LST's pruned initialisation, one change at a time"
    c.command = (f"python -m experiments.lst_prune_ablation --config "
                 f"configs/lst_prune_ablation.py:{arg} --workdir runs/lst_clue "
                 "--config.data_dir=../shared/data/clue")  # set by the CLI
    if arg == "smoke":
        c.ablations = ("exact", "exact+own_rope")
    return c
