"""GAU-α vs RoFormerV2: train-step FLOPs, compiled memory, tokens/s and compute efficiency.

    python -m experiments.bench_arch --config configs/bench_arch.py:full

The step is the project's MLM train step (gau_jax.train.step.make_train_step with mlm_sums_fn,
AdamW, state donated), jitted and compiled per (model, n). Each row predicts k = round(mlm_rate·n)
tokens and the tied head scores only those k (BERT's max_predictions_per_seq; mlm_rate = 1: the
head over every position).

    FLOPs        compiled.cost_analysis()["flops"]                  (whole step, per call)
    memory       compiled.memory_analysis(): temp (activations + workspace) and arguments
    tokens/s     batch·n / step time;  ratio = tokens/s ÷ the baseline's at the same n, same run
    efficiency   (FLOPs / step time) ÷ FLOP/s of [m,m]·[m,m] jnp.dots run right after the step
    MFU          (FLOPs / step time) ÷ peak_flops  (only with --config.peak_flops > 0, for GPUs)

`matmul_flops` is the closed form the FLOP count is checked against: 3× the forward matmuls
(backward = 2× forward), per layer with d = hidden, L layers, V = vocab, b·n tokens:

    roformer_v2: 2bn·d·3hk + 2bn·hk·d + 2·2b·h·n²·k + 2·2bn·d·f
    gau:         2bn·d(2e+s) + 2bn·e·d + 2b·n²(s+e)      (quadratic)
                 chunked (c, g = ⌈n/c⌉): 2b·g·c²(s+e) + 2·2bn·s·e    (chunks + linear part)
    head:        2bk·d·V            (k predicted tokens per row)
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gau_jax.models import build_encoder, presets
from gau_jax.train import optim
from gau_jax.train import state as train_state
from gau_jax.train import step as train_step


def model_config(c: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """Model config of benchmark entry `name` (preset + overrides + benchmark-wide fields)."""
    spec = c.models[name]
    m = presets.get_model_config(spec.preset)
    m.update(dict(spec.overrides))
    m.update(dtype=c.dtype, scan_layers=c.scan_layers, remat=c.remat,
             hidden_dropout=c.dropout, attention_dropout=c.dropout)
    return m


def predictions(c: ml_collections.ConfigDict, n: int) -> int:
    """Predicted (masked) tokens per row of length n."""
    return max(1, min(n, round(c.mlm_rate * n)))


def matmul_flops(m: ml_collections.ConfigDict, batch: int, n: int, k: int | None = None) -> float:
    """Closed-form train-step matmul FLOPs (module docstring): 3 × forward; k predicted tokens
    per row (None: every position)."""
    d, L, V, t = m.hidden_size, m.num_layers, m.vocab_size, batch * n
    k = n if k is None else k
    if m.block == "roformer_v2":
        hk = m.num_heads * m.key_size
        layer = 2 * t * d * 3 * hk + 2 * t * hk * d + 4 * batch * n * n * hk
        layer += 4 * t * d * m.intermediate_size
    else:
        e, s = m.intermediate_size, m.key_size
        layer = 2 * t * d * (2 * e + s) + 2 * t * e * d
        if m.chunk_size > 0:
            c = m.chunk_size
            layer += 2 * batch * math.ceil(n / c) * c * c * (s + e) + 4 * t * s * e
        else:
            layer += 2 * batch * n * n * (s + e)
    return 3.0 * (L * layer + 2 * batch * k * d * V)


def make_batch(m: ml_collections.ConfigDict, batch: int, n: int, k: int, seed: int = 0) -> dict:
    """A random MLM batch with k predicted positions per row, in the CONTRACT layout."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, m.vocab_size, (batch, n), dtype=np.int32)
    w = np.zeros((batch, n), np.float32)
    for row in w:
        row[rng.choice(n, k, replace=False)] = 1.0
    return {"input_ids": ids, "segment_ids": np.zeros_like(ids),
            "attention_mask": np.ones_like(ids), "mlm_targets": ids * (w > 0),
            "mlm_weights": w}


def compile_step(c: ml_collections.ConfigDict, m: ml_collections.ConfigDict, n: int):
    """(compiled step, abstract state, batch, n_params): AOT-compiled from shapes only."""
    model = build_encoder(m)
    k = predictions(c, n)
    batch = make_batch(m, c.batch_size, n, k)
    tx = optim.make_optimizer(c.optimizer, optim.piecewise_linear_schedule(1e-4, 10))

    def init(key):
        params = model.init(key, jnp.zeros((1, 8), jnp.int32))["params"]
        return train_state.create_state(params, tx, 0)

    abstract = jax.eval_shape(init, jax.random.PRNGKey(0))
    step = jax.jit(train_step.make_train_step(train_step.mlm_sums_fn(model, k), tx),
                   donate_argnums=0)
    compiled = step.lower(abstract, batch).compile()
    return compiled, init, batch, optim.count_trainable(abstract.params)


def cost(compiled) -> dict:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, list | tuple) else ca
    ma = compiled.memory_analysis()
    return {"flops": float(ca["flops"]), "temp_bytes": int(ma.temp_size_in_bytes),
            "argument_bytes": int(ma.argument_size_in_bytes),
            "output_bytes": int(ma.output_size_in_bytes),
            "alias_bytes": int(ma.alias_size_in_bytes)}


def matmul_rate(size: int, dtype: str, seconds: float = 1.0) -> float:
    """Mean FLOP/s of back-to-back [size,size]·[size,size] jnp.dot calls over ~`seconds` (after a
    warm-up), so the reference sees the same machine load as a step timed next to it."""
    x = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.dtype(dtype))
    f = jax.jit(jnp.dot)
    f(x, x).block_until_ready()
    calls, t0 = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - t0 < seconds:
        f(x, x).block_until_ready()
        calls += 1
    return 2.0 * size**3 * calls / (time.perf_counter() - t0)


def time_step(c: ml_collections.ConfigDict, compiled, init, batch) -> float:
    """Median seconds per step: a warm-up call, then timed calls until max_reps or min_time_s.

    A warm-up call longer than 5·min_time_s is itself the measurement (long steps on a CPU; the
    one-time cost it includes is small next to it).
    """
    state = jax.jit(init)(jax.random.PRNGKey(0))
    t0 = time.perf_counter()
    state, _ = compiled(state, batch)
    jax.block_until_ready(state)
    warm = time.perf_counter() - t0
    if c.min_time_s > 0 and warm > 5 * c.min_time_s:
        return warm
    times: list[float] = []
    while len(times) < max(1, c.max_reps) and (not times or sum(times) < c.min_time_s):
        t0 = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench(c: ml_collections.ConfigDict) -> list[dict]:
    """One record per (model, n): cost and memory; timing fields where n <= time_max_len.

    Per n, every model is compiled first, then the timed ones run back to back (each next to its
    own matmul reference), so the ratios compare steps taken under the same machine load.
    """
    records = []
    for n in sorted({n for name in c.models for n in c.models[name].lengths}):
        timed = []
        for name in (k for k in c.models if n in c.models[k].lengths):
            m, t0 = model_config(c, name), time.time()
            compiled, init, batch, n_params = compile_step(c, m, n)
            rec = dict(model=name, n=n, block=m.block, chunk_size=m.chunk_size,
                       params=n_params, closed_form_flops=matmul_flops(m, c.batch_size, n,
                                                                      predictions(c, n)),
                       **cost(compiled))
            rec["compile_s"] = round(time.time() - t0, 1)
            records.append(rec)
            if n <= c.models[name].time_max_len:
                timed.append((rec, compiled, init, batch))
            else:
                print(json.dumps(rec), flush=True)
        for rec, compiled, init, batch in timed:
            step_s = time_step(c, compiled, init, batch)
            ref = matmul_rate(c.matmul_size, c.dtype, min(max(step_s, 1.0), 5.0))
            rec.update(matmul_flops_per_s=ref, step_s=step_s,
                       tokens_per_s=c.batch_size * n / step_s, flops_per_s=rec["flops"] / step_s)
            rec["efficiency"] = rec["flops_per_s"] / ref
            if c.peak_flops > 0:
                rec["mfu"] = rec["flops_per_s"] / c.peak_flops
            print(json.dumps(rec), flush=True)
        del timed
    by_key = {(r["model"], r["n"]): r for r in records}
    for r in records:
        base = by_key.get((c.models[r["model"]].baseline, r["n"]))
        if base:
            r["memory_ratio"] = r["temp_bytes"] / base["temp_bytes"]
            if "tokens_per_s" in r and "tokens_per_s" in base:
                r["speed_ratio"] = r["tokens_per_s"] / base["tokens_per_s"]
    return records


def run(c: ml_collections.ConfigDict) -> list[dict]:
    """Benchmark, then results_dir/arch.{md,json,png}."""
    from experiments.bench_report import write_report

    records = bench(c)
    write_report(c, records, pathlib.Path(c.results_dir))
    return records


def main(argv: Sequence[str]) -> None:
    del argv
    run(_CONFIG.value)


if __name__ == "__main__":
    from absl import app
    from ml_collections import config_flags

    _CONFIG = config_flags.DEFINE_config_file("config", None, "configs/bench_arch.py:full")
    app.run(main)
