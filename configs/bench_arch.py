"""GAU-α vs RoFormerV2 train-step benchmark: FLOPs, compiled memory, speed, compute efficiency.

    python -m experiments.bench_arch --config configs/bench_arch.py:full --workdir runs/bench_arch
    # the committed files: add --config.results_dir=experiments/results
    # on a GPU: bfloat16, MFU against the chip's peak FLOP/s, e.g. an H100 SXM
    python -m experiments.bench_arch --config configs/bench_arch.py:full --workdir runs/arch_gpu \
        --config.dtype=bfloat16 --config.peak_flops=989e12 --config.batch_size=8
    python -m experiments.bench_arch --config configs/bench_arch.py:smoke --workdir /tmp/arch

`arg` is "full" (experiments/results/arch.md; ~10 min on a shared 2-core CPU), "base8" (the base
pair at batch 8 × 512 timed and at 1024 compiled: compute efficiency at a realistic batch and the
memory ratio; experiments/results/arch_base8.md) or "smoke" (tests: tiny models, 2 lengths;
seconds). Every model is compiled at each of its `lengths` (FLOPs from
cost_analysis, memory from memory_analysis; compile only) and timed at lengths up to its
`time_max_len` (base models on a 2-core CPU are timed only at short lengths, with batch 1).
arch.{md,json,png} go to results_dir (default: the workdir).
Models: a preset name plus field overrides; GAU-α small is ours (the presets of docs/math.md
have no small GAU-α): 12 GAU layers of width 384 match RoFormerV2-small's 6 MHA+FFN layers in
parameters.
"""

from __future__ import annotations

import ml_collections


def _model(preset: str, lengths: tuple[int, ...], time_max_len: int, baseline: str = "",
           quadratic: str = "", **overrides) -> ml_collections.ConfigDict:
    """preset + overrides; baseline: entry its speed/memory ratios use; quadratic: for a chunked
    GAU, the quadratic entry it is checked against."""
    return ml_collections.ConfigDict(dict(preset=preset, lengths=lengths,
                                          time_max_len=time_max_len, baseline=baseline,
                                          quadratic=quadratic,
                                          overrides=ml_collections.ConfigDict(overrides)))


def get_config(arg: str = "full") -> ml_collections.ConfigDict:
    """Benchmark config; arg is "full" or "smoke"."""
    if arg not in ("full", "base8", "smoke"):
        raise ValueError(f"configs/bench_arch.py: arg {arg!r} is not 'full', 'base8' or 'smoke'")
    c = ml_collections.ConfigDict()
    c.batch_size = 1                 # rows per train step (compile and timing)
    c.mlm_rate = 0.15                # predicted tokens a row = round(rate·n); the head scores those
    c.dtype = "float32"              # compute dtype ("bfloat16" on GPU/TPU)
    c.dropout = 0.0                  # hidden and attention dropout in the benchmarked step
    c.scan_layers = False            # unrolled: XLA's cost_analysis counts a scanned body once
    c.remat = "none"
    c.optimizer = "adamw"
    c.matmul_size = 2048             # reference jnp.dot of [m, m] x [m, m] float32 (or dtype)
    c.min_time_s = 2.0               # repeat a timed step until this much time has passed ...
    c.max_reps = 3                   # ... or this many timed runs (after one warm-up run)
    c.peak_flops = 0.0               # > 0: also report MFU = FLOP/s / peak_flops (GPU/TPU)
    lengths = (128, 512, 1024, 2048)
    c.models = ml_collections.ConfigDict()
    c.models.roformer_v2_base = _model("roformer_v2_base", lengths, 512)
    c.models.gau_alpha_base = _model("gau_alpha_base", lengths, 512, "roformer_v2_base")
    c.models.roformer_v2_small = _model("roformer_v2_small", lengths, 2048)
    small_gau = dict(num_layers=12, hidden_size=384, intermediate_size=768)
    c.models.gau_alpha_small = _model("gau_alpha_base", lengths + (4096,), 4096,
                                      "roformer_v2_small", **small_gau)
    c.models.gau_alpha_small_chunk256 = _model("gau_alpha_base", lengths + (4096,), 4096,
                                               "roformer_v2_small", "gau_alpha_small",
                                               chunk_size=256, **small_gau)
    c.results_dir = ""               # where the results files go ("" = the workdir)
    c.results_name = "arch"          # their stem: <results_name>.{md,json,png}
    c.command = ("python -m experiments.bench_arch --config configs/bench_arch.py:full "
                 "--workdir runs/bench_arch")  # set to the real one by the CLI
    if arg == "base8":
        c.results_name = "arch_base8"
        c.batch_size = 8
        c.max_reps = 2
        c.models = ml_collections.ConfigDict()
        c.models.roformer_v2_base = _model("roformer_v2_base", (512, 1024), 512)
        c.models.gau_alpha_base = _model("gau_alpha_base", (512, 1024), 512, "roformer_v2_base")
        c.command = ("python -m experiments.bench_arch --config configs/bench_arch.py:base8 "
                     "--workdir runs/bench_arch_base8")
    if arg == "smoke":
        c.matmul_size = 256
        c.min_time_s = 0.0
        c.max_reps = 1
        c.models = ml_collections.ConfigDict()
        tiny = dict(hidden_size=128, vocab_size=1000, num_layers=2, key_size=64)
        gau = dict(intermediate_size=256, **tiny)
        c.models.roformer_v2_tiny = _model("roformer_v2_tiny", (128, 256), 128, num_heads=2,
                                           intermediate_size=512, **tiny)
        c.models.gau_alpha_tiny = _model("gau_alpha_tiny", (128, 256), 128, "roformer_v2_tiny",
                                         **gau)
        c.models.gau_alpha_tiny_chunk64 = _model("gau_alpha_tiny", (256,), 256,
                                                 "roformer_v2_tiny", "gau_alpha_tiny",
                                                 chunk_size=64, **gau)
        c.command = ("python -m experiments.bench_arch --config configs/bench_arch.py:smoke "
                     "--workdir /tmp/arch")
    return c
