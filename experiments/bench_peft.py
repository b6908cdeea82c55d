"""Side-by-side cost of fine-tuning methods: full FT, LoRA, adapters, BitFit, LST (MHA / GAU side,
cached trunk features).

    python -m experiments.bench_peft --config configs/bench_peft.py:full --workdir runs/bench_peft

Per (trunk, sequence length, method), from the compiled train step (AdamW, 2 classes, no real
params: jax.eval_shape + jit(...).lower(...).compile(), gau_jax/train/compiled_costs.py): trainable
parameters, optimizer-state bytes, XLA memory_analysis (argument, output, temp, alias; total =
argument + output − alias + temp), FLOPs per step from cost_analysis, and the ratios to full
fine-tuning. Step time is measured on real params at a reduced size (time_batch × time_seq on the
trunk scaled to time_width / time_layers; all methods interleaved in the same process, median of
time_steps) because base models at 32×512 are too slow on a 2-core CPU; its ratio to full FT is
reported. LST-cached's step reads features [b, n, K, d] (bfloat16) instead of token ids: building
the cache costs one trunk forward per example, so it pays back after
t_forward / (t_lst − t_cached) epochs (printed as the break-even).

Results: results_dir (default: the workdir)/peft.{md,json,png}. A peft.json already there is
merged with this run (later results replace earlier ones per trunk@n and method; the batch must
match), so a run over one trunk or a few methods updates its rows only; `merge` (peft.json files)
writes the report of earlier runs without benchmarking. Methods: Hu et al. 2021 (LoRA,
arXiv:2106.09685), Houlsby et al. 2019 (adapters, arXiv:1902.00751), Ben Zaken et al. 2021
(BitFit, arXiv:2106.10199), Sung et al. 2022 (LST, arXiv:2206.06522).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from configs import finetune
from configs.bench_peft import METHODS
from experiments import cli
from gau_jax.data import synthetic
from gau_jax.models import build_encoder, get_model_config
from gau_jax.models.encoder import encoder_config
from gau_jax.tasks.losses import classification_sums_fn
from gau_jax.train import compiled_costs
from gau_jax.train.optim import count_trainable, make_optimizer
from gau_jax.train.runlog import results_header
from gau_jax.train.state import create_state
from gau_jax.train.step import make_train_step

LST_VARIANTS = {"lst": {"side_block": "roformer_v2"},
                "lst_gau": {"side_block": "gau"}, "lst_cached": {"side_block": "gau"},
                "lst_gau_fp32": {"side_block": "gau", "trunk_dtype": "float32"}}


def method_config(method: str, model_cfg, **lst_overrides) -> ml_collections.ConfigDict:
    """The fine-tuning config's defaults for `method` (configs/finetune.py: one source), with the
    LST variant's side block; the MHA side gets heads of size 8 (12 heads at base size)."""
    c = finetune.get_config()
    c.lst.update({**LST_VARIANTS.get(method, {}), **lst_overrides})
    if method == "lst":
        c.lst.side_heads = max(1, model_cfg.hidden_size // c.lst.reduction // 8)
    return c


@dataclasses.dataclass
class MethodModel:
    """What the benchmark needs of one method: its model, trainable mask and loss sums; for
    lst_cached the number K of cached features per token and the trunk's feature function."""

    model: Any
    trainable: Callable | None
    sums_fn: Callable
    num_features: int = 0
    trunk_features: Callable | None = None
    store: Callable = lambda params: params  # params as the run stores them (LST: cast_trunk)


def method_model(method: str, model_cfg, num_classes: int = 2, **lst_overrides) -> MethodModel:
    """The one place that calls the fine-tuning method API (the registry of
    gau_jax/train/methods.py, the LST model and its feature cache)."""
    from gau_jax.models.lst import (
        build_model,
        cast_trunk,
        feature_indices,
        lst_config,
        trainable_side,
    )
    from gau_jax.train import feature_cache, methods

    cfg = method_config(method, model_cfg, **lst_overrides)
    if method == "lst_cached":
        trunk = encoder_config(model_cfg)
        idx = feature_indices(trunk, lst_config(cfg.lst))
        model = build_model(model_cfg, num_classes, cfg.lst, use_trunk=False)
        return MethodModel(model, trainable_side, feature_cache.cached_sums_fn(model), len(idx),
                           feature_cache.trunk_features_fn(trunk, idx))
    name = "lst" if method.startswith("lst") else method
    built = methods.get(name).build(cfg, model_cfg, num_classes)
    store = (lambda p: cast_trunk(p, cfg.lst)) if name == "lst" else (lambda p: p)
    return MethodModel(built.model, built.trainable, classification_sums_fn(built.model),
                       store=store)


def example_batch(mm: MethodModel, model_cfg, batch: int, seq: int, seed: int = 0) -> dict:
    """A random batch of the method's step (lst_cached: bfloat16 features instead of ids)."""
    b = synthetic.classification_batch(batch, seq, model_cfg.vocab_size, seed=seed)
    if not mm.num_features:
        return b
    rng = np.random.default_rng(seed)
    shape = (batch, seq, mm.num_features, model_cfg.hidden_size)
    return {"features": rng.normal(size=shape).astype(jnp.bfloat16),
            **{k: b[k] for k in ("attention_mask", "labels", "weights")}}


def tx_for(trainable):
    return make_optimizer("adamw", optax.constant_schedule(1e-4), weight_decay=0.01,
                          grad_clip_norm=1.0, trainable=trainable)


def _nbytes(tree) -> int:
    return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize
                   for x in jax.tree_util.tree_leaves(tree) if hasattr(x, "shape")))


def compile_step(method: str, model_cfg, batch: int, seq: int,
                 cpu_scheduler: str = "default", **lst_overrides):
    """(param shapes, trainable fn, state shapes, the compiled train step with state donated;
    scheduled by `cpu_scheduler` on the CPU, compiled_costs.CPU_SCHEDULERS)."""
    mm = method_model(method, model_cfg, **lst_overrides)
    init_ids = jnp.ones((1, 8), jnp.int32)
    params = jax.eval_shape(lambda: mm.store(mm.model.init(jax.random.PRNGKey(0),
                                                           init_ids)["params"]))
    tx = tx_for(mm.trainable)
    state = jax.eval_shape(lambda p: create_state(p, tx, 0), params)
    b = compiled_costs.abstract(example_batch(mm, model_cfg, batch, seq))
    compiled = compiled_costs.compile_step(
        make_train_step(mm.sums_fn, tx, trainable=mm.trainable), state, b, donate_argnums=0,
        cpu_scheduler=cpu_scheduler)
    return params, mm.trainable, state, compiled


def compiled_stats(method: str, model_cfg, batch: int, seq: int,
                   cpu_scheduler: str = "default") -> dict:
    """Trainable params, optimizer bytes, compiled memory and FLOPs of one train step.

    The LST side runs under lax.scan, whose body XLA's cost_analysis counts once: its FLOPs come
    from a second compile with the side unrolled (config.lst.scan_layers=False, same math)."""
    params, trainable, state, compiled = compile_step(method, model_cfg, batch, seq, cpu_scheduler)
    cost = compiled_costs.step_costs(compiled)
    if method.startswith("lst"):
        flops_of = compile_step(method, model_cfg, batch, seq, cpu_scheduler,
                                scan_layers=False)[3]
        cost["flops"] = compiled_costs.step_costs(flops_of)["flops"]
    return {"trainable_params": count_trainable(params, trainable),
            "total_params": count_trainable(params),
            "optimizer_state_bytes": _nbytes(state.opt_state),
            "compiled_bytes": {k: cost[f"{k}_bytes"]
                               for k in ("argument", "output", "temp", "alias", "total")},
            "flops": cost["flops"]}


def time_model_config(preset: str, width: int, layers: int):
    """The trunk at a CPU-timable size (same block type; widths scaled together)."""
    c = get_model_config(preset)
    scale = width / c.hidden_size
    c.update(hidden_size=width, num_layers=layers, vocab_size=12000,
             intermediate_size=int(c.intermediate_size * scale),
             num_heads=max(1, int(c.num_heads * scale)) if c.block == "roformer_v2" else 1,
             key_size=64 if c.block == "roformer_v2" else int(c.key_size * scale))
    return c


def step_times(model_cfg, batch: int, seq: int, steps: int, which) -> dict[str, float]:
    """Median seconds per train step of each method, measured round-robin on real params."""
    runs = {}
    for m in which:
        mm = method_model(m, model_cfg)
        b = example_batch(mm, model_cfg, batch, seq)
        params = mm.store(jax.jit(mm.model.init)(jax.random.PRNGKey(0),
                                                 jnp.ones((1, 8), jnp.int32))["params"])
        tx = tx_for(mm.trainable)
        step = jax.jit(make_train_step(mm.sums_fn, tx, trainable=mm.trainable),
                       donate_argnums=0)
        state, _ = compiled_costs.timed_call(step, create_state(params, tx, 0), b)  # compile
        runs[m] = [step, state, b, []]
    for _ in range(steps):
        for r in runs.values():
            r[1], t = compiled_costs.timed_call(r[0], r[1], r[2])
            r[3].append(t)
    return {m: float(np.median(r[3])) for m, r in runs.items()}


def forward_time(model_cfg, batch: int, seq: int, steps: int) -> float:
    """Median seconds of the trunk forward that builds one cache batch (the cache's cost)."""
    fn = method_model("lst_cached", model_cfg).trunk_features
    params = jax.jit(build_encoder(model_cfg).init)(jax.random.PRNGKey(0),
                                                    jnp.ones((1, 8), jnp.int32))["params"]
    b = synthetic.classification_batch(batch, seq, model_cfg.vocab_size)
    b = {k: b[k] for k in ("input_ids", "attention_mask", "segment_ids")}
    jax.block_until_ready(fn(params, b))
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        np.asarray(fn(params, b)).astype(jnp.bfloat16).tobytes()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def bench(c: ml_collections.ConfigDict) -> dict:
    """{"batch", "results": {trunk@n: {method: stats}}, "timing": {trunk: step times}}."""
    which = list(cli.names(c.methods))
    bad = sorted(set(which) - set(METHODS))
    if bad:
        raise ValueError(f"config.methods: unknown {bad}; choose from {METHODS}")
    compiled_costs.cpu_scheduler_options(c.cpu_scheduler, "config.cpu_scheduler")  # up front
    if "full" not in which:
        which = ["full", *which]
    results, timing = {}, {}
    tag = "" if c.cpu_scheduler == "default" else f"/{c.cpu_scheduler}"
    for preset in cli.names(c.models):
        for n in c.seq_lens:
            per = results[f"{preset}@{n}{tag}"] = {}
            for m in which:
                t0 = time.time()
                cfg = get_model_config(preset)
                cfg.scan_layers = False  # XLA's cost_analysis counts a scanned layer only once
                per[m] = compiled_stats(m, cfg, c.batch_size, n, c.cpu_scheduler)
                total = _gb(per[m]["compiled_bytes"]["total"])
                print(f"{preset} n={n}{tag} {m}: total {total} GiB, "
                      f"{per[m]['flops'] / 1e9:.0f} GFLOPs ({time.time() - t0:.0f}s)", flush=True)
        if c.time_steps:
            base = get_model_config(preset)
            tcfg = time_model_config(preset, c.time_width, c.time_layers or base.num_layers)
            t = step_times(tcfg, c.time_batch, c.time_seq, c.time_steps, which)
            fwd = forward_time(tcfg, c.time_batch, c.time_seq, c.time_steps)
            timing[preset] = {"config": {k: tcfg[k] for k in ("hidden_size", "num_layers",
                                                                "intermediate_size", "key_size",
                                                                "num_heads")},
                              "batch": c.time_batch, "seq_len": c.time_seq, "seconds": t,
                              "trunk_forward_s": fwd}
            print(f"{preset} step times (s): {t}; trunk forward {fwd:.4f}s", flush=True)
    return {"batch": c.batch_size, "results": results, "timing": timing}


def merge(runs: list[dict], where: list[str]) -> dict:
    """Later runs replace earlier ones per trunk@n and method (and per timed trunk)."""
    out: dict[str, Any] = {"batch": None, "results": {}, "timing": {}}
    for run, name in zip(runs, where, strict=True):
        batch = run.get("batch")
        if batch is not None and out["batch"] is not None and batch != out["batch"]:
            raise ValueError(f"{name}: batch {batch} differs from the batch {out['batch']} of "
                             "the results it would be merged with")
        out["batch"] = batch if batch is not None else out["batch"]
        for k, per in run["results"].items():
            out["results"].setdefault(k, {}).update(per)
        out["timing"].update(run["timing"])
    return out


def run(c: ml_collections.ConfigDict, workdir: str | Path) -> dict:
    """Benchmark (or merge earlier peft.json files), then results_dir/peft.{md,json,png}."""
    out = cli.results_dir(c, workdir)
    if c.merge:
        files = list(cli.names(c.merge))
        data = merge([json.loads(Path(f).read_text()) for f in files], files)
    else:
        data = bench(c)
        old = out / "peft.json"
        if old.exists():
            data = merge([json.loads(old.read_text()), data], [str(old), "this run"])
    if data["batch"] is None:
        data["batch"] = c.batch_size
    write_report(data, c.command, out)
    return data


def _gb(x: float) -> str:
    return f"{x / 2**30:.2f}"


def table(results: dict) -> str:
    """Markdown table of every (trunk, seq) block, ratios to full fine-tuning."""
    lines = ["| trunk | n | method | trainable | opt. state GiB | args GiB | temp GiB | "
             "total GiB | total / full | GFLOPs | FLOPs / full |", "|" + "---|" * 11]
    for key, per in results.items():
        full = per.get("full")
        for m, r in per.items():
            cb = r["compiled_bytes"]
            rel = (f"{cb['total'] / full['compiled_bytes']['total']:.3f}" if full else "–")
            frel = f"{r['flops'] / full['flops']:.3f}" if full else "–"
            trunk, n = key.split("@", 1)
            lines.append(f"| {trunk} | {n} | {m} | {r['trainable_params'] / 1e6:.2f} M "
                         f"({100 * r['trainable_params'] / r['total_params']:.1f} %) | "
                         f"{_gb(r['optimizer_state_bytes'])} | {_gb(cb['argument'])} | "
                         f"{_gb(cb['temp'])} | {_gb(cb['total'])} | {rel} | "
                         f"{r['flops'] / 1e9:.0f} | {frel} |")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    keys = list(results)
    fig, axes = cli.figure(1, 2, figsize=(13, 4.5))
    axes = axes[0]
    for ax, what in zip(axes, ("memory", "flops"), strict=True):
        width = 0.8 / max(len(keys), 1)
        ms = [m for m in METHODS if any(m in results[k] for k in keys)]
        for j, k in enumerate(keys):
            full = results[k]["full"]
            vals = [(results[k][m]["compiled_bytes"]["total"] / full["compiled_bytes"]["total"]
                     if what == "memory" else results[k][m]["flops"] / full["flops"])
                    if m in results[k] else 0 for m in ms]
            ax.bar(np.arange(len(ms)) + j * width, vals, width, label=k)
        ax.set_xticks(np.arange(len(ms)) + 0.4 - width / 2, ms, rotation=30)
        ax.set_ylabel(f"{what} / full fine-tuning")
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.set_title(f"train-step {'compiled memory (total)' if what == 'memory' else 'FLOPs'}")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_report(data: dict, command: str, out: Path) -> None:
    """out/peft.md (tables), peft.json (`data`) and peft.png (ratios to full FT)."""
    results, timing = data["results"], data["timing"]
    for key, per in results.items():
        t = timing.get(key.split("@")[0])
        for m, r in per.items():
            r["step_time_ratio"] = t["seconds"].get(m, np.nan) / t["seconds"]["full"] if t \
                else None
    out.mkdir(parents=True, exist_ok=True)
    md = results_header(f"PEFT / LST cost, batch {data['batch']} (generated by "
                        "experiments/bench_peft.py)", command)
    md += ["AdamW (weight decay, clipping); frozen leaves have no optimizer state. Memory and "
           f"FLOPs are XLA's ({jax.default_backend()} backend) for one jitted train step with the "
           "state donated; total = argument + output − alias + temp. LST: r = 8, gated ladders "
           "from every trunk layer, side `lst` = RoFormerV2 blocks with heads of size 8, "
           "`lst_gau` = single-head GAU blocks, `lst_cached` = the GAU side fed bfloat16 "
           "features [b, n, K, d] from the cache (no trunk in the step). On the CPU, n/memory = "
           "compiled with XLA:CPU's memory-optimised instruction scheduler "
           "(`--config.cpu_scheduler=memory`) instead of its default concurrency-optimised "
           "one, which starts independent work early so that it can run in parallel; ratios "
           "compare methods under the same scheduler.", "", table(results), ""]
    if timing:
        names = next(iter(timing.values()))["seconds"]
        md += ["## Step time relative to full fine-tuning (measured side by side)", "",
               "| trunk (timed size) | " + " | ".join(names) + " | cache break-even (epochs) |",
               "|---|" + "---|" * (len(names) + 1)]
        for preset, t in timing.items():
            s = t["seconds"]
            size = (f"{preset}: d={t['config']['hidden_size']}, L={t['config']['num_layers']}, "
                    f"batch {t['batch']} × {t['seq_len']}")
            gain = s.get("lst_gau", np.nan) - s.get("lst_cached", np.nan)
            even = t["trunk_forward_s"] / gain if gain > 0 else float("inf")
            md.append(f"| {size} | " + " | ".join(f"{v / s['full']:.2f}" for v in s.values())
                      + f" | {1 + even:.2f} |")
        md += ["", "Ratios are medians of interleaved steps after compilation (full FT = 1). "
               "Break-even: building the cache costs one trunk forward (+ bfloat16 write) per "
               "batch, t_fwd; each later epoch saves t_lst_gau − t_cached per batch, so the cache "
               "wins from 1 + t_fwd / (t_lst_gau − t_cached) epochs on (disk permitting)."]
    (out / "peft.md").write_text("\n".join(md) + "\n")
    plot(results, out / "peft.png")
    (out / "peft.json").write_text(json.dumps(data, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    cli.main(run, "bench_peft")
