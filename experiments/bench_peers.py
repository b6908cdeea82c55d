"""gau_jax's MLM train step vs the PyTorch ports' (`gau-alpha`, `roformer`), side by side.

    python -m experiments.bench_peers [--quick] [--results_dir experiments/results]
        [--variants default,unrolled] [--rounds 5] [--sizes small,base]

Both sides run the same train step at the same shapes: MLM cross-entropy over every token
(logits [b·n, V], the tied head over all positions), AdamW (lr 1e-4, weight decay 0.01,
ε 1e-6), dropout off, float32, random init, all tokens real.

    small   6 layers, hidden 384, FFN / expansion 768, key size 64 (RoFormerV2: 6 heads),
            batch 8 × 256
    base    the released base sizes (RoFormerV2 base: 12 layers; GAU-α base: 24 GAU layers,
            e = 1536, s = 128), batch 8 × 128

The port side is experiments/peers_port.py in the parity venv (GAU_JAX_PARITY_PYTHON or
.venv-parity/bin/python), a separate process that waits on its stdin while gau_jax runs, so the
two never compete for the cores. Per (size, block): both sides warm up (gau_jax: compile, one
call), then `rounds` times the port takes one step and every gau_jax variant takes one step right
after it. The ratio is the median over rounds of (gau_jax step ÷ the port's step of that round):
pairs taken seconds apart see the same machine load. Variants are gau_jax model-config
overrides on the presets' defaults ("default": none; "rolled": scan_unroll=1, the nn.scan loop
rolled, one compiled layer; "unrolled": scan_layers=False, separate layer modules).

Results: peers.md and peers.json in --results_dir (default: experiments/results).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from gau_jax.models import build_encoder, presets
from gau_jax.train import compiled_costs, optim, runlog
from gau_jax.train import state as train_state
from gau_jax.train import step as train_step

ROOT = pathlib.Path(__file__).resolve().parents[1]
PORT = pathlib.Path(__file__).with_name("peers_port.py")
VARIANTS = {"default": {}, "rolled": {"scan_unroll": 1}, "unrolled": {"scan_layers": False}}

# size: (batch, n, {block: (gau_jax preset, overrides)})
SIZES = {
    "small": (8, 256, {
        "gau": ("gau_alpha_base", dict(num_layers=6, hidden_size=384, intermediate_size=768,
                                       key_size=64)),
        "roformer_v2": ("roformer_v2_small", dict(intermediate_size=768)),
    }),
    "base": (8, 128, {"gau": ("gau_alpha_base", {}), "roformer_v2": ("roformer_v2_base", {})}),
    "quick": (2, 32, {
        "gau": ("gau_alpha_tiny", dict(num_layers=2, key_size=16)),
        "roformer_v2": ("roformer_v2_tiny", {}),
    }),
}


def port_config(m) -> tuple[str, dict]:
    """(port kind, port config) with the shapes of gau_jax model config `m`, dropout off."""
    common = dict(vocab_size=m.vocab_size, hidden_size=m.hidden_size,
                  num_hidden_layers=m.num_layers, intermediate_size=m.intermediate_size,
                  max_position_embeddings=1024, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0, use_bias=m.use_bias,
                  layer_norm_eps=m.norm_eps)
    if m.block == "gau":
        return "gau_alpha", dict(common, attention_key_size=m.key_size,
                                 normalization=m.attention_norm)
    return "roformer", dict(common, num_attention_heads=m.num_heads, norm_type="rms_norm",
                            hidden_act="relu")


class Port:
    """The port worker process (experiments/peers_port.py), one JSON line per request."""

    def __init__(self, python: str, threads: int = 0):
        env = dict(os.environ, USE_TF="0", TRANSFORMERS_VERBOSITY="error")
        if threads:
            env["PEERS_THREADS"] = str(threads)
        self.proc = subprocess.Popen([python, str(PORT)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, **job) -> dict:
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"port worker {PORT} exited (code {self.proc.poll()}) on {job}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"port worker: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)


def model_config(preset: str, overrides: dict, variant: dict):
    m = presets.get_model_config(preset)
    m.update(dict(overrides, hidden_dropout=0.0, attention_dropout=0.0, **variant))
    return m


def jax_step(m, batch: int, n: int):
    """(compiled donated train step, state, batch) of gau_jax's MLM step over every token."""
    model = build_encoder(m)
    tx = optim.make_optimizer("adamw", optim.piecewise_linear_schedule(1e-4, 10),
                              weight_decay=0.01)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, m.vocab_size, (batch, n), dtype=np.int32)
    data = {"input_ids": ids, "segment_ids": np.zeros_like(ids),
            "attention_mask": np.ones_like(ids), "mlm_targets": ids,
            "mlm_weights": np.ones((batch, n), np.float32)}

    def init(key):
        params = model.init(key, jnp.zeros((1, 8), jnp.int32))["params"]
        return train_state.create_state(params, tx, 0)

    step = train_step.make_train_step(train_step.mlm_sums_fn(model, 0), tx)
    compiled = compiled_costs.compile_step(step, jax.eval_shape(init, jax.random.PRNGKey(0)), data,
                                  donate_argnums=0)
    return compiled, jax.jit(init)(jax.random.PRNGKey(0)), data


def bench_pair(port: Port, size: str, block: str, variants: list[str], rounds: int) -> dict:
    batch, n, blocks = SIZES[size]
    preset, overrides = blocks[block]
    m0 = model_config(preset, overrides, {})
    kind, pcfg = port_config(m0)
    info = port.ask(op="setup", kind=kind, config=pcfg, batch=batch, n=n, seed=0)
    steps = {}
    for v in variants:
        t0 = time.time()
        compiled, state, data = jax_step(model_config(preset, overrides, VARIANTS[v]), batch, n)
        state, _ = compiled_costs.timed_call(compiled, state, data)  # warm-up
        steps[v] = [compiled, state, data, time.time() - t0]
    port.ask(op="steps", count=1)  # warm-up
    load0 = os.getloadavg()[0]
    port_t, jax_t = [], {v: [] for v in variants}
    for _ in range(rounds):
        port_t += port.ask(op="steps", count=1)["times"]
        for v in variants:
            compiled, state, data, _ = steps[v]
            steps[v][1], t = compiled_costs.timed_call(compiled, state, data)
            jax_t[v].append(t)
    rec = dict(size=size, block=block, batch=batch, n=n, port=kind, port_params=info["params"],
               torch=info["torch"], torch_threads=info["threads"], rounds=rounds,
               load_avg=[round(load0, 2), round(os.getloadavg()[0], 2)],
               port_s=float(np.median(port_t)), port_times=port_t, variants={})
    for v in variants:
        ratios = np.asarray(jax_t[v]) / np.asarray(port_t)
        rec["variants"][v] = dict(step_s=float(np.median(jax_t[v])), times=jax_t[v],
                                  ratio=float(np.median(ratios)),
                                  ratio_min=float(ratios.min()), ratio_max=float(ratios.max()),
                                  compile_s=round(steps[v][3], 1),
                                  overrides=VARIANTS[v])
    print(json.dumps(rec), flush=True)
    return rec


def report(records: list[dict], command: str) -> str:
    lines = runlog.results_header("gau_jax vs the PyTorch ports: train step time", command)
    r0 = records[0]
    lines += [
        f"Ports: `roformer` (RoFormerV2, norm_type=rms_norm) and `gau-alpha`, torch "
        f"{r0['torch']}, in their own process (cores: all = both sides use every core; 1 = both "
        "pinned to one core, one thread each). Same shapes on "
        "both sides: MLM cross-entropy over every token (tied head over all positions), AdamW, "
        "dropout off, float32. Each round the port takes one step and each gau_jax variant one "
        "step right after it; ratio = median over rounds of gau_jax step ÷ the port's step of "
        "that round (< 1: gau_jax faster), [min–max] over rounds. Load average (1 min) before "
        "and after each pair is recorded: the 2-core machine is shared.", ""]
    rows = []
    for r in records:
        for v, x in r["variants"].items():
            rows.append([r["size"], r["block"], f"{r['batch']}×{r['n']}",
                         r.get("threads") or "all", v,
                         f"{r['port_s'] * 1e3:.0f}", f"{x['step_s'] * 1e3:.0f}",
                         f"**{x['ratio']:.2f}**", f"{x['ratio_min']:.2f}–{x['ratio_max']:.2f}",
                         r["rounds"], f"{r['load_avg'][0]}→{r['load_avg'][1]}"])
    lines.append(runlog.markdown_table(
        ["size", "block", "batch×n", "cores", "gau_jax variant", "port ms", "gau_jax ms",
         "ratio", "range", "rounds", "load"], rows))
    lines += ["", "Variants: " + "; ".join(f"`{v}` = {json.dumps(o)}" for v, o in VARIANTS.items()
                                          if any(v in r["variants"] for r in records)) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny models, 2 rounds (tests)")
    p.add_argument("--sizes", default="small,base")
    p.add_argument("--blocks", default="gau,roformer_v2")
    p.add_argument("--variants", default="default")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=0,
                   help="> 0: both sides pinned to this many cores (0: all cores)")
    p.add_argument("--merge", action="store_true",
                   help="keep peers.json's other (size, block, threads) records")
    p.add_argument("--results_dir", default=str(ROOT / "experiments" / "results"))
    p.add_argument("--python", default=os.environ.get("GAU_JAX_PARITY_PYTHON")
                   or str(ROOT / ".venv-parity" / "bin" / "python"))
    a = p.parse_args(argv)
    sizes = ["quick"] if a.quick else a.sizes.split(",")
    rounds = 2 if a.quick else a.rounds
    variants = a.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"--variants: {v!r} is not one of {sorted(VARIANTS)}")
    if not pathlib.Path(a.python).exists():
        raise SystemExit(f"parity venv python {a.python} not found: run `make parity-venv` or "
                         "set GAU_JAX_PARITY_PYTHON")
    command = "python -m experiments.bench_peers " + shlex.join(argv if argv is not None
                                                                else sys.argv[1:])
    if a.threads:  # before JAX creates its CPU client (its thread pool follows the affinity)
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:a.threads])
    port, records = Port(a.python, a.threads), []
    try:
        for size in sizes:
            for block in a.blocks.split(","):
                records.append(bench_pair(port, size, block, variants, rounds))
    finally:
        port.close()
    for r in records:
        r["threads"], r["command"] = a.threads, command.strip()
    write(records, pathlib.Path(a.results_dir), a.merge)
    return records


def write(records: list[dict], out: pathlib.Path, merge: bool = False) -> None:
    """peers.json and peers.md in `out`; merge: keep the records of peers.json already there
    whose (size, block, threads) this run did not measure (each run's command is listed)."""
    out.mkdir(parents=True, exist_ok=True)
    if merge and (out / "peers.json").exists():
        key = lambda r: (r["size"], r["block"], r.get("threads", 0))
        new = {key(r) for r in records}
        old = [r for r in json.loads((out / "peers.json").read_text()) if key(r) not in new]
        records = old + records
    (out / "peers.json").write_text(json.dumps(records, indent=1))
    commands = list(dict.fromkeys(r.get("command", "") for r in records))
    (out / "peers.md").write_text(report(records, " ; ".join(c for c in commands if c)))


if __name__ == "__main__":
    main()
