"""Cost of the fine-tuning methods (full, LoRA, adapters, BitFit, LST variants) side by side.

    python -m experiments.bench_peft --config configs/bench_peft.py:full --workdir runs/bench_peft
    # the committed files: add --config.results_dir=experiments/results (merged with the
    # peft.json there); one trunk or a few methods: e.g.
    #   --config.models=gau_alpha_base --config.methods=full,lst,lst_gau,lst_cached
    # only the report of earlier runs: --config.merge=runs/a/peft.json,runs/b/peft.json
    # XLA:CPU's memory-optimised schedule, merged beside the default one's rows (trunk@n/memory):
    #   --config.cpu_scheduler=memory --config.time_steps=0
    python -m experiments.bench_peft --config configs/bench_peft.py:smoke --workdir /tmp/peft

`arg` is "full" (experiments/results/peft.md: base trunks at n = 128 and 512, batch 32; compile
only, ~1 h on a shared 2-core CPU, plus step times at a reduced size) or "smoke" (tests: the tiny
trunk, full FT and cached LST; seconds). peft.{md,json,png} go to results_dir (default: the
workdir). Method options are fixed in experiments/bench_peft.py (method_config).
"""

from __future__ import annotations

import ml_collections

METHODS = ("full", "lora", "adapter", "bitfit", "lst", "lst_gau", "lst_gau_fp32", "lst_cached")


def get_config(arg: str = "full") -> ml_collections.ConfigDict:
    """Benchmark config; arg is "full" or "smoke"."""
    if arg not in ("full", "smoke"):
        raise ValueError(f"configs/bench_peft.py: arg {arg!r} is not 'full' or 'smoke'")
    c = ml_collections.ConfigDict()
    c.models = ("gau_alpha_base", "roformer_v2_base")  # trunk presets (configs/models.py)
    c.seq_lens = (128, 512)          # sequence lengths compiled
    c.batch_size = 32                # rows of the compiled step
    c.cpu_scheduler = "default"  # XLA:CPU's schedule, or "memory" (results keyed trunk@n/memory)
    c.methods = METHODS              # full is always included (the ratios' denominator)
    c.time_width = 256               # timed trunk: hidden size (widths scaled together) ...
    c.time_layers = 0                # ... layers (0 = the trunk's) ...
    c.time_batch = 8                 # ... batch ...
    c.time_seq = 128                 # ... and length
    c.time_steps = 5                 # timed steps per method (median; 0 = no timing)
    c.merge = ()                     # peft.json files: write only their merged report
    c.results_dir = ""               # peft.{md,json,png} ("" = the workdir)
    c.command = ("python -m experiments.bench_peft --config configs/bench_peft.py:full "
                 "--workdir runs/bench_peft")  # set to the real one by the CLI
    if arg == "smoke":
        c.models = ("gau_alpha_tiny",)
        c.seq_lens = (64,)
        c.batch_size = 4
        c.methods = ("lst_cached",)
        c.time_width = 64
        c.time_layers = 2
        c.time_batch = 2
        c.time_seq = 16
        c.time_steps = 1
        c.command = ("python -m experiments.bench_peft --config configs/bench_peft.py:smoke "
                     "--workdir /tmp/peft")
    return c
