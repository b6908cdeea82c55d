"""Per-device memory of the train step under FSDP: 8 simulated CPU devices, fsdp 1, 2, 4, 8.

    python -m experiments.bench_fsdp --config configs/bench_fsdp.py:full --workdir runs/fsdp
    # the committed file: add --config.results_dir=experiments/results
    python -m experiments.bench_fsdp --config configs/bench_fsdp.py:smoke --workdir /tmp/fsdp

`arg` is "full" (experiments/results/fsdp.md: gau_alpha_base and roformer_v2_base; compile
only, minutes on a 2-core CPU) or "smoke" (tests: tiny models; seconds). Every (model, fsdp) is
compiled from shapes only on a (devices / fsdp, fsdp) mesh with the trainer's rules
(gau_jax/train/partition.py) and measured with XLA's memory_analysis (per device).
"""

from __future__ import annotations

import ml_collections


def get_config(arg: str = "full") -> ml_collections.ConfigDict:
    """Benchmark config; arg is "full" or "smoke"."""
    if arg not in ("full", "smoke"):
        raise ValueError(f"configs/bench_fsdp.py: arg {arg!r} is not 'full' or 'smoke'")
    c = ml_collections.ConfigDict()
    c.devices = 8                    # simulated CPU devices (XLA_FLAGS set by the script)
    c.fsdp = (1, 2, 4, 8)            # mesh (devices / fsdp, fsdp, 1) per row
    c.models = ("gau_alpha_base", "roformer_v2_base")  # presets (configs/models.py)
    c.batch_size = 16                # global rows per step (2 per device)
    c.max_length = 128               # tokens per row
    c.max_predictions = 20           # masked tokens the tied head scores per row
    c.optimizer = "adamw"            # its mu / nu follow the parameters' shardings
    c.dtype = "float32"              # compute dtype
    c.min_split_size = 2**14         # params with fewer elements stay replicated
    c.model_overrides = ml_collections.ConfigDict()  # fields set on every model
    c.results_dir = ""               # fsdp.{md,json} ("" = the workdir)
    c.command = ("python -m experiments.bench_fsdp --config configs/bench_fsdp.py:full "
                 "--workdir runs/fsdp")  # set to the real one by the CLI
    if arg == "smoke":
        c.fsdp = (1, 8)
        c.models = ("gau_alpha_tiny",)
        c.batch_size = 8
        c.max_length = 32
        c.max_predictions = 4
        c.min_split_size = 0
        c.model_overrides = ml_collections.ConfigDict(dict(
            num_layers=1, hidden_size=64, intermediate_size=128, key_size=32, vocab_size=512))
        c.command = ("python -m experiments.bench_fsdp --config configs/bench_fsdp.py:smoke "
                     "--workdir /tmp/fsdp")
    return c
