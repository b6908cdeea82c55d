"""GAU-α vs RoFormerV2: train-step FLOPs, compiled memory, tokens/s and compute efficiency.

    python -m experiments.bench_arch --config configs/bench_arch.py:full --workdir runs/bench_arch

The step is the project's MLM train step (gau_jax.train.step.make_train_step with mlm_sums_fn,
AdamW, state donated), compiled per (model, n) from shapes only
(gau_jax/train/compiled_costs.py). Each row predicts k = round(mlm_rate·n) tokens and the tied
head scores only those k (BERT's max_predictions_per_seq; mlm_rate = 1: the head over every
position).

    FLOPs        compiled.cost_analysis()["flops"]                  (whole step, per call)
    memory       compiled.memory_analysis(): temp (activations + workspace) and arguments
    tokens/s     batch·n / step time;  ratio = tokens/s ÷ the baseline's at the same n, same run
    efficiency   (FLOPs / step time) ÷ FLOP/s of [m,m]·[m,m] jnp.dots run right after the step
    MFU          (FLOPs / step time) ÷ peak_flops  (only with --config.peak_flops > 0, for GPUs)

The FLOP count is checked against the closed form of gau_jax/models/costs.py
(train_matmul_flops). Results: results_dir (default: the workdir)/<results_name>.{md,json,png}
(arch.* unless the config names another).
"""

from __future__ import annotations

import json
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections

from experiments import cli
from gau_jax.data import synthetic
from gau_jax.models import build_encoder, presets
from gau_jax.models.costs import param_count, train_matmul_flops
from gau_jax.train import compiled_costs, optim
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


def compile_step(c: ml_collections.ConfigDict, m: ml_collections.ConfigDict, n: int):
    """(compiled step, init fn of the state, batch): AOT-compiled from shapes only."""
    model = build_encoder(m)
    k = predictions(c, n)
    batch = synthetic.mlm_batch(c.batch_size, n, m.vocab_size, k)
    tx = optim.make_optimizer(c.optimizer, optim.piecewise_linear_schedule(1e-4, 10))

    def init(key):
        params = model.init(key, jnp.zeros((1, 8), jnp.int32))["params"]
        return train_state.create_state(params, tx, 0)

    abstract = jax.eval_shape(init, jax.random.PRNGKey(0))
    step = train_step.make_train_step(train_step.mlm_sums_fn(model, k), tx)
    return compiled_costs.compile_step(step, abstract, batch, donate_argnums=0), init, batch


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
            compiled, init, batch = compile_step(c, m, n)
            cost = {k: v for k, v in compiled_costs.step_costs(compiled).items()
                    if k != "total_bytes"}
            rec = dict(model=name, n=n, block=m.block, chunk_size=m.chunk_size,
                       params=param_count(m),
                       closed_form_flops=train_matmul_flops(m, c.batch_size, n,
                                                            predictions(c, n)),
                       **cost)
            rec["compile_s"] = round(time.time() - t0, 1)
            records.append(rec)
            if n <= c.models[name].time_max_len:
                timed.append((rec, compiled, init, batch))
            else:
                print(json.dumps(rec), flush=True)
        for rec, compiled, init, batch in timed:
            state = jax.jit(init)(jax.random.PRNGKey(0))
            step_s = compiled_costs.time_step(compiled, state, batch, reps=c.max_reps,
                                     min_time_s=c.min_time_s)
            ref = compiled_costs.matmul_rate(c.matmul_size, c.dtype, min(max(step_s, 1.0), 5.0))
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


def run(c: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> list[dict]:
    """Benchmark, then results_dir (default: workdir)/<results_name>.{md,json,png}."""
    from experiments.bench_report import write_report

    records = bench(c)
    write_report(c, records, cli.results_dir(c, workdir))
    return records


if __name__ == "__main__":
    cli.main(run, "bench_arch")
