"""Results files of experiments/bench_arch.py: arch.md (tables, target checks), .json, .png.

Targets the benchmark checks (GAU-α's claim of being faster and lighter at the same parameter
budget, Su, kexue.fm/archives/9052; chunked GAU's linear cost, Hua et al. 2022,
arXiv:2202.10447): GAU-α base temp memory ≤ 0.6× RoFormerV2 base at n = 1024; compute efficiency
of a GAU/RoFormer pair within 10% of each other at every timed n; base train step at n = 512
≥ 85% of the matmul rate; chunked GAU at 4096 ≥ 2× faster and ≥ 4× less temp memory than
quadratic GAU, and its time and memory grow linearly in n.
"""

from __future__ import annotations

import json
import pathlib

import ml_collections

from experiments import cli
from gau_jax.train.runlog import markdown_table, results_header

MB = 2.0**20


def _fmt(r: dict, key: str, f: str, scale: float = 1.0) -> str:
    return format(r[key] * scale, f) if key in r else "–"


def target_checks(c: ml_collections.ConfigDict, records: list[dict]) -> list[str]:
    """Each target (module docstring) the records can decide, as '- [x] ...' / '- [ ] ...'."""
    at = {(r["model"], r["n"]): r for r in records}
    out = []

    def line(ok: bool, text: str) -> None:
        out.append(f"- [{'x' if ok else ' '}] {text}")

    g, r = at.get(("gau_alpha_base", 1024)), at.get(("roformer_v2_base", 1024))
    if g and r:
        ratio = g["temp_bytes"] / r["temp_bytes"]
        line(ratio <= 0.6, f"GAU-α base temp memory at 1024 = {ratio:.2f}× RoFormerV2 base "
                           "(target ≤ 0.6×)")
    for x in records:
        if "efficiency" in x and x.get("speed_ratio") is not None and not x["chunk_size"]:
            base = [y for y in records if y["n"] == x["n"] and "efficiency" in y
                    and y["model"] != x["model"] and y["block"] == "roformer_v2"
                    and y["params"] < 2 * x["params"] and x["params"] < 2 * y["params"]]
            for y in base:
                rel = x["efficiency"] / y["efficiency"]
                line(abs(rel - 1) <= 0.1, f"{x['model']} vs {y['model']} at {x['n']}: efficiency "
                                          f"{100 * x['efficiency']:.0f}% vs "
                                          f"{100 * y['efficiency']:.0f}% (within 10%)")
    for name in ("roformer_v2_base", "gau_alpha_base"):
        x = at.get((name, 512))
        if x and "efficiency" in x:
            line(x["efficiency"] >= 0.85, f"{name} train step at 512: "
                                          f"{100 * x['efficiency']:.0f}% of matmul rate (≥ 85%)")
    for name in (k for k in c.models if c.models[k].quadratic):
        chunk = sorted((x for x in records if x["model"] == name), key=lambda x: x["n"])
        top = chunk[-1]
        q = at.get((c.models[name].quadratic, top["n"]))
        if q and "step_s" in q and "step_s" in top:
            s = q["step_s"] / top["step_s"]
            line(s >= 2, f"chunked GAU at {top['n']}: {s:.1f}× faster than quadratic (≥ 2×)")
        if q:
            mem = q["temp_bytes"] / top["temp_bytes"]
            line(mem >= 4, f"chunked GAU at {top['n']}: {mem:.1f}× less temp memory (≥ 4×)")
        timed = [x for x in chunk if "step_s" in x]
        if len(timed) >= 2:
            a, b = timed[-2], timed[-1]
            k = b["n"] / a["n"]
            t, mm = b["step_s"] / a["step_s"], b["temp_bytes"] / a["temp_bytes"]
            line(t <= 1.25 * k and mm <= 1.25 * k,
                 f"chunked GAU {a['n']}→{b['n']} (×{k:g}): time ×{t:.2f}, temp memory ×{mm:.2f} "
                 "(linear: ≤ 1.25× the length ratio)")
    return out


def write_report(c: ml_collections.ConfigDict, records: list[dict], out: pathlib.Path) -> None:
    """<c.results_name>.md, .json and .png under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    stem = c.results_name
    (out / f"{stem}.json").write_text(json.dumps(records, indent=1))
    rows = [[r["model"], r["n"], f"{r['params'] / 1e6:.1f}",
             f"{r['flops'] / (c.batch_size * r['n']) / 1e9:.3f}",
             f"{r['flops'] / r['closed_form_flops']:.3f}", f"{r['temp_bytes'] / MB:.0f}",
             _fmt(r, "memory_ratio", ".2f"), f"{r['argument_bytes'] / MB:.0f}",
             _fmt(r, "step_s", ".3f"), _fmt(r, "tokens_per_s", ".0f"),
             _fmt(r, "speed_ratio", ".2f"), _fmt(r, "efficiency", ".0f", 100),
             _fmt(r, "mfu", ".1f", 100)] for r in records]
    headers = ["model", "n", "params M", "GFLOP/token", "FLOPs ÷ closed form", "temp MiB",
               "temp ÷ baseline", "args MiB", "step s", "tokens/s", "tokens/s ÷ baseline",
               "efficiency %", "MFU %"]
    spec = [[k, v.preset, json.dumps(dict(v.overrides)), v.baseline or "–", v.time_max_len]
            for k, v in c.models.items()]
    parts = results_header("GAU-α vs RoFormerV2: train-step FLOPs, memory, speed", c.command)
    parts += [f"Train step: MLM ({c.mlm_rate:.0%} of each row predicted; the tied head scores "
              f"only those tokens), {c.optimizer}, state donated, batch "
              f"{c.batch_size}, dtype {c.dtype}, dropout {c.dropout}, scan_layers "
              f"{c.scan_layers}, remat {c.remat}. FLOPs from cost_analysis, memory from "
              "memory_analysis (compile "
              "only; temp = activations + workspace, args = params + optimizer state + batch). "
              "Timed only up to each model's time_max_len, one warm-up then the median of up to "
              f"{c.max_reps} runs; efficiency = achieved FLOP/s ÷ FLOP/s of a "
              f"{c.matmul_size}² jnp.dot run back to back for about as long as the step, right "
              "after it. The machine is shared, so times are noisy: compare ratios.", "",
              markdown_table(["entry", "preset", "overrides", "baseline", "timed up to n"], spec),
              "", "## Results", "", markdown_table(headers, rows), "",
              "## Targets", ""] + target_checks(c, records) + [""] + cli.reading_notes(out, stem)
    (out / f"{stem}.md").write_text("\n".join(parts))
    fig, axes = cli.figure(1, 3, figsize=(15, 4))
    axes = axes[0]
    panels = [("temp_bytes", MB, "temp memory MiB (compiled)", True),
              ("step_s", 1.0, "seconds per train step", True),
              ("efficiency", 0.01, "% of jnp.dot FLOP/s", False)]
    for ax, (key, scale, label, log) in zip(axes, panels, strict=True):
        for name in c.models:
            pts = [(r["n"], r[key] / scale) for r in records if r["model"] == name and key in r]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=name)
        ax.set(xscale="log", xlabel="sequence length n", ylabel=label)
        ns = sorted({r["n"] for r in records})
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.minorticks_off()
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=100)
