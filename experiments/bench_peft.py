"""Side-by-side cost of fine-tuning methods: full FT, LoRA, adapters, BitFit, LST (MHA / GAU side,
cached trunk features).

    python -m experiments.bench_peft --model gau_alpha_base,roformer_v2_base --seq_len 128,512 \
        --batch 32 --out experiments/results/peft.md --json experiments/results/peft.json

Per (trunk, sequence length, method), from the compiled train step (AdamW, 2 classes, no real
params: jax.eval_shape + jit(...).lower(...).compile()): trainable parameters, optimizer-state
bytes, XLA memory_analysis (argument, output, temp, alias; total = argument + output − alias +
temp), FLOPs per step from cost_analysis, and the ratios to full fine-tuning. Step time is
measured on real params at a reduced size (--time_batch × --time_seq on the trunk scaled to
--time_width / --time_layers; all methods interleaved in the same process, median of
--time_steps) because base models at 32×512 are too slow on a 2-core CPU; its ratio to full FT
is reported. LST-cached's step reads features [b, n, K, d] (bfloat16) instead of token ids:
building the cache costs one trunk forward per example, so it pays back after
t_forward / (t_lst − t_cached) epochs (printed as the break-even).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from gau_jax.models import get_model_config
from gau_jax.models.encoder import encoder_config
from gau_jax.models.lst import build_model, feature_indices, lst_config
from gau_jax.train import methods
from gau_jax.train.feature_cache import cached_sums_fn, trunk_features_fn
from gau_jax.train.optim import count_trainable, make_optimizer
from gau_jax.train.state import create_state
from gau_jax.train.step import classification_sums_fn, make_train_step

METHODS = ("full", "lora", "adapter", "bitfit", "lst", "lst_gau", "lst_cached")
LST_COMMON = {"reduction": 8, "fusion": "gated", "dropout": 0.1, "remat": "full"}
LST_VARIANTS = {"lst": {"side_block": "roformer_v2"},
                "lst_gau": {"side_block": "gau"}, "lst_cached": {"side_block": "gau"}}


def method_config(method: str, model_cfg, **lst_overrides) -> ml_collections.ConfigDict:
    """Options of `method`; the MHA side gets heads of size 8 (12 heads at base size)."""
    lst = {**LST_COMMON, **LST_VARIANTS.get(method, {}), **lst_overrides}
    if method == "lst":
        lst["side_heads"] = max(1, model_cfg.hidden_size // LST_COMMON["reduction"] // 8)
    return ml_collections.ConfigDict({
        "classifier_dropout": 0.1, "init_from": "", "adapter_size": 64, "lst": lst,
        "lora": {"rank": 8, "alpha": 16.0, "targets": ("query", "value", "uvz")}})


def build(method: str, model_cfg, batch: int, seq: int, num_classes: int = 2, **lst_overrides):
    """(model, trainable fn, sums_fn, example batch of ShapeDtypeStruct-compatible arrays)."""
    cfg = method_config(method, model_cfg, **lst_overrides)
    ids = jax.ShapeDtypeStruct((batch, seq), jnp.int32)
    b = {"input_ids": ids, "attention_mask": ids, "segment_ids": ids,
         "labels": jax.ShapeDtypeStruct((batch,), jnp.int32),
         "weights": jax.ShapeDtypeStruct((batch,), jnp.float32)}
    if method == "lst_cached":
        model = build_model(model_cfg, num_classes, cfg.lst, use_trunk=False)
        k = len(feature_indices(encoder_config(model_cfg), lst_config(cfg.lst)))
        b = {"features": jax.ShapeDtypeStruct((batch, seq, k, model_cfg.hidden_size),
                                              jnp.bfloat16),
             "attention_mask": ids, "labels": b["labels"], "weights": b["weights"]}
        return model, None, cached_sums_fn(model), b
    name = "lst" if method.startswith("lst") else method
    spec = methods.build_method(name, model_cfg, num_classes, cfg)
    return spec.model, spec.trainable, classification_sums_fn(spec.model), b


def tx_for(trainable):
    return make_optimizer("adamw", optax.constant_schedule(1e-4), weight_decay=0.01,
                          grad_clip_norm=1.0, trainable=trainable)


def _nbytes(tree) -> int:
    return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize
                   for x in jax.tree_util.tree_leaves(tree) if hasattr(x, "shape")))


def compile_step(method: str, model_cfg, batch: int, seq: int, **lst_overrides):
    """(param shapes, trainable fn, state shapes, the compiled train step with state donated)."""
    model, trainable, sums, b = build(method, model_cfg, batch, seq, **lst_overrides)
    init_ids = jnp.ones((1, 8), jnp.int32)
    params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), init_ids)["params"])
    tx = tx_for(trainable)
    state = jax.eval_shape(lambda p: create_state(p, tx, 0), params)
    compiled = jax.jit(make_train_step(sums, tx), donate_argnums=0).lower(state, b).compile()
    return params, trainable, state, compiled


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost.get("flops", float("nan")))


def compiled_stats(method: str, model_cfg, batch: int, seq: int) -> dict:
    """Trainable params, optimizer bytes, compiled memory and FLOPs of one train step.

    The LST side runs under lax.scan, whose body XLA's cost_analysis counts once: its FLOPs come
    from a second compile with the side unrolled (config.lst.scan_layers=False, same math)."""
    params, trainable, state, compiled = compile_step(method, model_cfg, batch, seq)
    mem = compiled.memory_analysis()
    flops = _flops(compile_step(method, model_cfg, batch, seq, scan_layers=False)[3]
                   if method.startswith("lst") else compiled)
    arg, out = mem.argument_size_in_bytes, mem.output_size_in_bytes
    tmp, alias = mem.temp_size_in_bytes, mem.alias_size_in_bytes
    return {"trainable_params": count_trainable(params, trainable),
            "total_params": count_trainable(params),
            "optimizer_state_bytes": _nbytes(state.opt_state),
            "compiled_bytes": {"argument": arg, "output": out, "temp": tmp, "alias": alias,
                               "total": arg + out - alias + tmp},
            "flops": flops}


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
    rng = np.random.default_rng(0)
    ids = rng.integers(5, model_cfg.vocab_size, (batch, seq)).astype(np.int32)
    data = {"input_ids": ids, "attention_mask": np.ones_like(ids),
            "segment_ids": np.zeros_like(ids), "labels": (ids[:, 0] % 2).astype(np.int32),
            "weights": np.ones(batch, np.float32)}
    runs = {}
    for m in which:
        model, trainable, sums, spec = build(m, model_cfg, batch, seq)
        if m == "lst_cached":
            k = spec["features"].shape[2]
            b = {"features": rng.normal(size=(batch, seq, k, model_cfg.hidden_size)).astype(
                jnp.bfloat16), **{x: data[x] for x in ("attention_mask", "labels", "weights")}}
        else:
            b = data
        params = jax.jit(model.init)(jax.random.PRNGKey(0), ids[:1, :8])["params"]
        tx = tx_for(trainable)
        step = jax.jit(make_train_step(sums, tx), donate_argnums=0)
        state = create_state(params, tx, 0)
        state, _ = step(state, b)  # compile
        jax.block_until_ready(state)
        runs[m] = [step, state, b, []]
    for _ in range(steps):
        for r in runs.values():
            t0 = time.perf_counter()
            r[1], met = r[0](r[1], r[2])
            jax.block_until_ready(met)
            r[3].append(time.perf_counter() - t0)
    return {m: float(np.median(r[3])) for m, r in runs.items()}


def forward_time(model_cfg, batch: int, seq: int, steps: int) -> float:
    """Median seconds of the trunk forward that builds one cache batch (the cache's cost)."""
    trunk = encoder_config(model_cfg)
    idx = feature_indices(trunk, lst_config({**LST_COMMON, "side_block": "gau"}))
    fn = trunk_features_fn(trunk, idx)
    from gau_jax.models import build_encoder

    params = jax.jit(build_encoder(model_cfg).init)(jax.random.PRNGKey(0),
                                                    jnp.ones((1, 8), jnp.int32))["params"]
    ids = np.full((batch, seq), 7, np.int32)
    b = {"input_ids": ids, "attention_mask": np.ones_like(ids), "segment_ids": 0 * ids}
    jax.block_until_ready(fn(params, b))
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        np.asarray(fn(params, b)).astype(jnp.bfloat16).tobytes()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


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
            trunk, n = key.split("@")
            lines.append(f"| {trunk} | {n} | {m} | {r['trainable_params'] / 1e6:.2f} M "
                         f"({100 * r['trainable_params'] / r['total_params']:.1f} %) | "
                         f"{_gb(r['optimizer_state_bytes'])} | {_gb(cb['argument'])} | "
                         f"{_gb(cb['temp'])} | {_gb(cb['total'])} | {rel} | "
                         f"{r['flops'] / 1e9:.0f} | {frel} |")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
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


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="gau_alpha_base,roformer_v2_base")
    p.add_argument("--seq_len", default="128,512")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--json", default="")
    p.add_argument("--out", default="experiments/results/peft.md")
    p.add_argument("--time_width", type=int, default=256)
    p.add_argument("--time_layers", type=int, default=0, help="0 = the trunk's")
    p.add_argument("--time_batch", type=int, default=8)
    p.add_argument("--time_seq", type=int, default=128)
    p.add_argument("--time_steps", type=int, default=5, help="0 = no timing")
    p.add_argument("--merge", default="", help="A.json,B.json: only write the report of earlier "
                   "--json outputs (later files override per trunk and method)")
    a = p.parse_args(argv)
    if a.merge:
        results, timing = {}, {}
        for f in a.merge.split(","):
            d = json.loads(Path(f).read_text())
            for k, per in d["results"].items():
                results.setdefault(k, {}).update(per)
            timing.update(d["timing"])
        write_report(results, timing, a)
        return {"results": results, "timing": timing}
    which = [m.strip() for m in a.methods.split(",") if m.strip()]
    bad = sorted(set(which) - set(METHODS))
    if bad:
        p.error(f"--methods: unknown {bad}; choose from {METHODS}")
    if "full" not in which:
        which = ["full", *which]
    results, timing = {}, {}
    for preset in a.model.split(","):
        for n in (int(x) for x in a.seq_len.split(",")):
            per = results[f"{preset}@{n}"] = {}
            for m in which:
                t0 = time.time()
                cfg = get_model_config(preset)
                cfg.scan_layers = False  # XLA's cost_analysis counts a scanned layer only once
                per[m] = compiled_stats(m, cfg, a.batch, n)
                print(f"{preset} n={n} {m}: total {_gb(per[m]['compiled_bytes']['total'])} GiB, "
                      f"{per[m]['flops'] / 1e9:.0f} GFLOPs ({time.time() - t0:.0f}s)", flush=True)
        if a.time_steps:
            base = get_model_config(preset)
            tcfg = time_model_config(preset, a.time_width, a.time_layers or base.num_layers)
            t = step_times(tcfg, a.time_batch, a.time_seq, a.time_steps, which)
            fwd = forward_time(tcfg, a.time_batch, a.time_seq, a.time_steps)
            timing[preset] = {"config": {k: tcfg[k] for k in ("hidden_size", "num_layers",
                                                                "intermediate_size", "key_size",
                                                                "num_heads")},
                              "batch": a.time_batch, "seq_len": a.time_seq, "seconds": t,
                              "trunk_forward_s": fwd}
            print(f"{preset} step times (s): {t}; trunk forward {fwd:.4f}s", flush=True)
    write_report(results, timing, a)
    return {"results": results, "timing": timing}


def write_report(results: dict, timing: dict, a) -> None:
    for key, per in results.items():
        t = timing.get(key.split("@")[0])
        for m, r in per.items():
            r["step_time_ratio"] = t["seconds"].get(m, np.nan) / t["seconds"]["full"] if t \
                else None
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    md = [f"# PEFT / LST cost, batch {a.batch} (generated by experiments/bench_peft.py)", "",
          f"Command: `python -m experiments.bench_peft --model {a.model} --seq_len {a.seq_len} "
          f"--batch {a.batch} --methods {a.methods}`", "",
          "AdamW (weight decay, clipping); frozen leaves have no optimizer state. Memory and "
          "FLOPs are XLA's (CPU backend) for one jitted train step with the state donated; "
          "total = argument + output − alias + temp. LST: r = 8, gated ladders from every "
          "trunk layer, side `lst` = RoFormerV2 blocks with 12 heads, `lst_gau` = single-head "
          "GAU blocks, `lst_cached` = the GAU side fed bfloat16 features [b, n, K, d] from the "
          "cache (no trunk in the step).", "", table(results), ""]
    if timing:
        md += ["## Step time relative to full fine-tuning (measured side by side)", "",
               "| trunk (timed size) | " + " | ".join(next(iter(timing.values()))["seconds"])
               + " | cache break-even (epochs) |",
               "|---|" + "---|" * (len(next(iter(timing.values()))["seconds"]) + 1)]
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
    out.write_text("\n".join(md) + "\n")
    plot(results, out.with_suffix(".png"))
    if a.json:
        Path(a.json).write_text(json.dumps({"results": results, "timing": timing}, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
