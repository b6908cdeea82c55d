"""LST's pruned initialisation, one change at a time: which part made it lose to a random init.

    python -m experiments.lst_prune_ablation --config configs/lst_prune_ablation.py:full \
        --workdir runs/lst_clue --config.data_dir=../shared/data/clue

The trunk and the protocol are experiments/lst_clue.py's (same workdir: its trunk, and its runs
of the unchanged variants, are reused). Each ablation (configs/lst_prune_ablation.py ABLATIONS)
starts from a lst_clue variant — "exact" is the pruned init that computes the trunk's function on
the kept channels (lst.prune_form=exact, gau_jax/models/lst_init.py) — and changes one thing:
an extra config override (magnitude instead of Fisher importance, the batch-mean Fisher), or an
edit of the pruned side params made after the init, before training (EDITS below; `fresh` is
the run's own random init of the same leaves):

    own_rope        every side block's RoPE θ ← the side's own θ_j = base^(−2j/k_s)
    sqrt_scale      every pruned block kernel × √r (r = d / d_s: each fan-in shrank by r)
    no_bias         the pruned Dense biases ← 0
    fresh_qk_scale  GAU's per-channel q / k scale-offsets ← fresh
    random_down     the ladders Down_k ← fresh (blocks stay pruned)
    random_blocks   the side blocks ← fresh (only Down_k pruned)

Runs: tasks × seeds, lr config.learning_rate; dev accuracy as lst_clue reports it. Results:
results_dir (default: WORKDIR)/lst_prune_ablation.md. LST: Sung, Cho & Bansal 2022
(arXiv:2206.06522).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from configs.lst_prune_ablation import ABLATIONS
from experiments import cli, lst_clue
from gau_jax.train.inputs import RunSetup
from gau_jax.train.runlog import RunLog, markdown_table, mean_spread, results_header

Tree = dict[str, Any]


def _blocks(params: Tree) -> list[str]:
    return sorted(k for k in params if k.startswith("side_"))


def _own_rope(p: Tree, fresh: Tree) -> Tree:
    def put(block: Any, new: Any) -> Any:
        if isinstance(block, dict):
            return {k: new[k] if k == "rope_inv_freq" else put(v, new[k])
                    for k, v in block.items()}
        return block
    return {**p, **{k: put(p[k], fresh[k]) for k in _blocks(p)}}


def _sqrt_scale(p: Tree, fresh: Tree) -> Tree:
    d, d_s = np.shape(p["down_0"]["kernel"])
    scale = np.float32(np.sqrt(d / d_s))
    scaled = lambda path, x: x * scale if path[-1].key == "kernel" else x
    return {**p, **{k: jax.tree_util.tree_map_with_path(scaled, p[k]) for k in _blocks(p)}}


def _no_bias(p: Tree, fresh: Tree) -> Tree:
    def zero(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        return {k: (np.zeros_like(np.asarray(v)) if k == "bias" and "kernel" in node
                    else zero(v)) for k, v in node.items()}
    return {**p, **{k: zero(p[k]) for k in _blocks(p)}}


def _fresh_qk_scale(p: Tree, fresh: Tree) -> Tree:
    def put(node: Any, new: Any) -> Any:
        if not isinstance(node, dict):
            return node
        return {k: new[k] if k in ("q_scale", "k_scale") else put(v, new[k])
                for k, v in node.items()}
    return {**p, **{k: put(p[k], fresh[k]) for k in _blocks(p)}}


def _random_down(p: Tree, fresh: Tree) -> Tree:
    return {**p, **{k: fresh[k] for k in p if k.startswith("down_")}}


def _random_blocks(p: Tree, fresh: Tree) -> Tree:
    return {**p, **{k: fresh[k] for k in _blocks(p)}}


EDITS: dict[str, Callable[[Tree, Tree], Tree]] = {
    "own_rope": _own_rope, "sqrt_scale": _sqrt_scale, "no_bias": _no_bias,
    "fresh_qk_scale": _fresh_qk_scale, "random_down": _random_down,
    "random_blocks": _random_blocks}


def edited_init(edits: tuple[str, ...]) -> Callable[[RunSetup], RunSetup]:
    """RunSetup → the same with `edits` applied to the params after the method's own post_init
    (the pruned side), each given the run's fresh params."""
    unknown = [e for e in edits if e not in EDITS]
    if unknown:
        raise ValueError(f"ablation edits {unknown} unknown; choose from {sorted(EDITS)}")

    def adjust(inputs: RunSetup) -> RunSetup:
        first = inputs.post_init

        def post_init(params: Tree) -> Tree:
            out = first(params) if first is not None else params
            for e in edits:
                out = EDITS[e](out, params)
            return out

        return dataclasses.replace(inputs, post_init=post_init)

    return adjust


def ablation_overrides(c: ml_collections.ConfigDict, task: str, name: str, seed: int,
                       trunk: str) -> dict[str, Any]:
    """lst_clue's run identity of the base variant, plus the ablation's changes (none: the very
    run lst_clue trains)."""
    if name not in ABLATIONS:
        raise ValueError(f"config.ablations: {name!r} unknown; choose from {sorted(ABLATIONS)}")
    base, extra, edits = ABLATIONS[name]
    o = lst_clue.run_overrides(c, task, base, float(c.learning_rate), seed, trunk)
    if extra or edits:
        o.update(variant=name, overrides={**o["overrides"], **extra}, edits=list(edits))
    return o


def run(c: ml_collections.ConfigDict, workdir: str | Path) -> list[dict]:
    """Trunk (lst_clue's, unless init_from), every (task, ablation, seed) run not yet in
    WORKDIR/runs.jsonl, the report."""
    workdir = Path(workdir)
    if not c.data_dir:
        raise ValueError("config.data_dir is empty: set the CLUE folder, "
                         "--config.data_dir=/path/to/clue")
    init_from = Path(c.init_from) if c.init_from else lst_clue.pretrain_trunk(c, workdir)
    trunk = c.init_from or init_from.name
    log = RunLog(workdir / "runs.jsonl", key_fields=("run",))
    rows, majority = [], {}
    for name in cli.names(c.ablations):  # ablation-major: a partial run has whole ablations
        for task in cli.names(c.ablation_tasks):
            for seed in (int(s) for s in cli.names(c.seeds)):
                o = ablation_overrides(c, task, name, seed, trunk)
                key = lst_clue.run_name(o)
                row = log.get({"run": key})
                if row is None and c.train:
                    if task not in majority:
                        majority[task] = lst_clue.majority_rate(
                            task, c.data_dir, o["eval_batches"] * c.batch_size)
                    result = lst_clue.finetune_run(
                        lst_clue.finetune_config(o, init_from), workdir / "runs" / key,
                        edited_init(tuple(o.get("edits", ()))))
                    row = log.append({"run": key, "task": task, "variant": o["variant"],
                                      "method": o["method"], "lr": o["learning_rate"],
                                      "seed": seed, "steps": c.steps, **result,
                                      "majority": majority[task]})
                    print(json.dumps(row), flush=True)
                if row is not None:
                    rows.append({**row, "ablation": name})
    text = report(rows, c)
    out = cli.results_dir(c, workdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / c.results_name).write_text(text)
    print(text)
    return rows


def report(rows: list[dict], c: ml_collections.ConfigDict) -> str:
    md = results_header(f"{c.title} (generated by experiments/lst_prune_ablation.py)",
                        c.command)
    tasks = list(cli.names(c.ablation_tasks))
    n = c.dev_rows // c.batch_size * c.batch_size
    md += [f"Trunk and protocol: experiments/lst_clue.py's (`lst_clue.md` / `lst_inits.md`: the "
           f"same trunk); LST r = 8, {c.steps} steps, batch {c.batch_size}, max_length "
           f"{c.max_length}, AdaFactor lr {c.learning_rate:g}; dev accuracy (%) on the first "
           f"{n} dev rows; mean ± sd over seeds {', '.join(map(str, cli.names(c.seeds)))} "
           "(per seed in brackets). Δ: the mean minus the `exact` row's, per task.", ""]
    acc: dict[tuple[str, str], list[float]] = {}
    majority = {}
    for r in rows:
        acc.setdefault((r["ablation"], r["task"]), []).append(100 * r["dev_accuracy"])
        majority[r["task"]] = 100 * r["majority"]
    mean = {k: mean_spread(v) for k, v in acc.items()}
    table = []
    for name in cli.names(c.ablations):
        base, extra, edits = ABLATIONS[name]
        change = ", ".join([f"{k}={v}" for k, v in extra.items()] + list(edits)) or "–"
        cells = []
        for t in tasks:
            if (name, t) not in acc:
                cells += ["not run", ""]
                continue
            m, sd = mean[(name, t)]
            vals = " / ".join(f"{v:.2f}" for v in acc[(name, t)])
            cells.append(f"{m:.2f} ± {sd:.2f} ({vals})")
            ref = mean.get(("exact", t))
            cells.append(f"{m - ref[0]:+.2f}" if ref else "–")
        table.append([name, base, change, *cells])
    md += [markdown_table(["ablation", "lst_clue variant", "change", *[
        h for t in tasks for h in (f"{t} (majority {majority.get(t, 0):.1f})", "Δ")]], table)]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    cli.main(run, "lst_prune_ablation")
