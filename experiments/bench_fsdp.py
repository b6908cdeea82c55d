"""Per-device memory of the train step at fsdp 1, 2, 4, 8 on 8 simulated CPU devices.

    python -m experiments.bench_fsdp --config configs/bench_fsdp.py:full --workdir runs/fsdp

For each model and fsdp size f the project's MLM train step (make_train_step with mlm_sums_fn,
the config's optimizer, state donated) is compiled from shapes only (jax.eval_shape, nothing is
run) exactly as the trainer compiles it: `partition.JitMesh` on a (devices / f, f, 1) mesh,
parameter and optimizer shardings from partition.RULES, the block-boundary activation rules.
Per device, from XLA's memory_analysis of the partitioned program (gau_jax/train/compiled_costs.py):

    argument   the arrays the step receives: train state (params, optimizer state) + batch
    temp       activations and workspace of one step
    total      argument + output − alias + temp (the donated state aliases its output)
    state      params + optimizer state bytes on one device, summed from the shardings
               (shape / split of each leaf): what the argument bytes should be, minus the batch

Results: results_dir (default: the workdir)/fsdp.{md,json}.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import time

import ml_collections

from experiments import cli

MB = 2.0**20


def _simulate_devices(n: int) -> None:
    """n CPU devices for this process (only possible before JAX's backends start)."""
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def model_config(c: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    from gau_jax.models import presets

    m = presets.get_model_config(name)
    m.update(dict(c.model_overrides))
    m.dtype = c.dtype
    return m


def _shard_bytes(x) -> int:
    """Bytes of one device's piece of an abstract array with a NamedSharding."""
    spec, mesh = x.sharding.spec, x.sharding.mesh
    parts = math.prod(mesh.shape[a] for s in spec if s
                      for a in ((s,) if isinstance(s, str) else s))
    return int(math.prod(x.shape)) * x.dtype.itemsize // parts


def measure(c: ml_collections.ConfigDict, name: str, fsdp: int) -> dict:
    """One row: compile the train step of model `name` at this fsdp size (module docstring)."""
    import jax
    import jax.numpy as jnp

    from gau_jax.data import synthetic
    from gau_jax.models import build_encoder
    from gau_jax.train import compiled_costs, optim, partition
    from gau_jax.train import state as train_state
    from gau_jax.train import step as train_step

    m = model_config(c, name)
    model = build_encoder(m)
    tx = optim.make_optimizer(c.optimizer, optim.piecewise_linear_schedule(1e-4, 10))

    def init():
        params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]
        return train_state.create_state(params, tx, 0)

    mesh = partition.make_mesh(fsdp=fsdp, data=c.devices // fsdp)
    par = partition.JitMesh(mesh, min_size=c.min_split_size)
    state = par.restore_target(jax.eval_shape(init))
    step = train_step.make_train_step(train_step.mlm_sums_fn(model, c.max_predictions), tx)
    evaluate = train_step.make_eval_step(train_step.mlm_sums_fn(model, c.max_predictions))
    compiled_step, _ = par.compile(step, evaluate)
    sharding = partition.batch_sharding(mesh)
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding) for k, v in
             synthetic.mlm_batch(c.batch_size, c.max_length, m.vocab_size, 1).items()}
    t0 = time.time()
    with par.context():
        compiled = compiled_step.lower(state, batch).compile()
    out = compiled_costs.step_costs(compiled)
    leaves = jax.tree_util.tree_leaves(state)
    return {"model": name, "fsdp": fsdp, "data": c.devices // fsdp,
            "params": sum(int(math.prod(x.shape)) for x in jax.tree_util.tree_leaves(
                state.params)),
            "state_bytes": sum(_shard_bytes(x) for x in leaves),
            "state_bytes_replicated": sum(int(math.prod(x.shape)) * x.dtype.itemsize
                                          for x in leaves),
            "compile_s": time.time() - t0,
            **{k: out[k] for k in ("argument_bytes", "output_bytes", "alias_bytes",
                                   "temp_bytes", "total_bytes")}}


def reading(c: ml_collections.ConfigDict, records: list[dict]) -> list[str]:
    """One line per model: how state and total memory per device scale with fsdp."""
    lines = []
    for name in dict.fromkeys(r["model"] for r in records):
        rows = sorted((r for r in records if r["model"] == name), key=lambda r: r["fsdp"])
        one, top = rows[0], rows[-1]
        if one["fsdp"] != 1 or top is one:
            continue
        f = top["fsdp"]
        lines.append(
            f"- {name}: at fsdp {f} the train state per device is "
            f"{top['state_bytes'] / one['state_bytes']:.3f}x that of fsdp 1 (1/{f} = "
            f"{1 / f:.3f}), total memory {top['total_bytes'] / one['total_bytes']:.2f}x; temp "
            f"{one['temp_bytes'] / MB:.0f} -> {top['temp_bytes'] / MB:.0f} MiB: temp holds one "
            f"step's activations of the {c.batch_size // c.devices} rows every device has in "
            "every row of the table (not divided by fsdp) and the weights / gradients being "
            "gathered and reduced.")
    return lines


def write_report(c: ml_collections.ConfigDict, records: list[dict], out: pathlib.Path) -> None:
    """fsdp.md (the table) and fsdp.json under `out`."""
    from gau_jax.train.runlog import markdown_table, results_header

    out.mkdir(parents=True, exist_ok=True)
    base = {r["model"]: r for r in records if r["fsdp"] == 1}
    rows = []
    for r in records:
        ref = base.get(r["model"], r)
        rows.append([r["model"], f"{r['data']} x {r['fsdp']}", f"{r['params'] / 1e6:.1f}",
                     f"{r['state_bytes'] / MB:.0f}", f"{r['argument_bytes'] / MB:.0f}",
                     f"{r['temp_bytes'] / MB:.0f}", f"{r['total_bytes'] / MB:.0f}",
                     f"{r['total_bytes'] / ref['total_bytes']:.2f}",
                     f"{r['state_bytes'] / ref['state_bytes']:.2f}"])
    table = markdown_table(["model", "mesh data x fsdp", "params (M)", "state MiB",
                            "argument MiB", "temp MiB", "total MiB", "total / fsdp 1",
                            "state / fsdp 1"], rows)
    md = results_header("FSDP: per-device memory of the train step", c.command) + [
        f"{c.devices} simulated CPU devices; global batch {c.batch_size} x {c.max_length} tokens "
        f"({c.max_predictions} scored per row), {c.optimizer}, {c.dtype}, scanned layers. "
        "Compile only (shapes): XLA's memory_analysis of the partitioned step, per device. "
        "`state` = params + optimizer state on one device, summed from the shardings of "
        "gau_jax/train/partition.py (RULES; tensors under "
        f"{c.min_split_size} elements replicated); `argument` adds the batch; `total` = "
        "argument + output - alias + temp.", "", table, "", *reading(c, records), ""]
    (out / "fsdp.md").write_text("\n".join(md))
    (out / "fsdp.json").write_text(json.dumps(records, indent=1) + "\n")


def run(c: ml_collections.ConfigDict, workdir: pathlib.Path) -> list[dict]:
    _simulate_devices(c.devices)
    import jax

    if jax.device_count() < c.devices:
        raise ValueError(f"config.devices={c.devices} but JAX sees {jax.device_count()}; run "
                         f"with XLA_FLAGS=--xla_force_host_platform_device_count={c.devices}")
    records = []
    for name in cli.names(c.models):
        for fsdp in c.fsdp:
            if c.devices % int(fsdp):
                raise ValueError(f"config.fsdp entry {fsdp} does not divide config.devices="
                                 f"{c.devices}")
            records.append(measure(c, name, int(fsdp)))
            r = records[-1]
            print(f"{name} fsdp={fsdp}: state {r['state_bytes'] / MB:.0f} MiB, argument "
                  f"{r['argument_bytes'] / MB:.0f} MiB, temp {r['temp_bytes'] / MB:.0f} MiB, "
                  f"total {r['total_bytes'] / MB:.0f} MiB ({r['compile_s']:.0f}s)", flush=True)
    write_report(c, records, cli.results_dir(c, workdir))
    return records


if __name__ == "__main__":
    cli.main(run, "bench_fsdp")
