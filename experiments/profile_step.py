"""Where a gau_jax train step's time goes: per-HLO-op times from a jax.profiler trace, by category.

    python -m experiments.profile_step [--sizes small] [--variants default,unrolled]
        [--steps 3] [--results_dir experiments/results]

The step is experiments/bench_peers.py's (MLM over every token, AdamW, dropout off, float32).
It is compiled, run once, then traced for `steps` calls. On XLA:CPU every executed HLO op (a
thunk: a fusion, a dot, a copy, ...) is one event of the trace; its name is
the HLO instruction's name in `compiled.as_text()`. Each op is put in one category:

    matmul              the op is or contains a dot (sub-split by the source file of the dot:
                        attention QKᵀ / A·V, dense layers, the tied MLM head)
    otherwise, by the innermost source frame of the op's root instruction (HLO metadata):
    rope                gau_jax/layers/rope.py
    attention norm      gau_jax/layers/attention.py (mask, softmax(_plus), relu²)
    rms norm / scale    gau_jax/layers/norms.py
    gau elementwise     gau_jax/layers/gau.py (swish, split, gating U ⊙ AV)
    loss                gau_jax/train/step.py and optax losses (log-softmax over V, argmax)
    optimizer           optax (AdamW, global norm) and the step's finite-check selects
    nn.scan slicing / stacking  ops whose source is flax's scan (per-layer slices of the stacked
                        parameters, stacking residuals and gradients)
    data movement       copy / transpose / (dynamic-)slice / concatenate / pad / ... with no
                        source above
    other               everything else (named by the op)

A while loop (nn.scan) is not counted itself: its body's ops are events of their own.
Ops run on the client thread and on XLA's thread pool (independent thunks may overlap), so the
summed op time can differ from the step's wall time, which is also reported; shares are of the
summed op time. Results: profile.md in
--results_dir.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import pathlib
import re
import shlex
import sys
import tempfile
import time

import jax
import numpy as np

from experiments import bench_peers
from gau_jax.train import compiled_costs, runlog

MOVES = {"copy", "transpose", "slice", "dynamic-slice", "dynamic-update-slice", "concatenate",
         "pad", "broadcast", "reshape", "bitcast", "gather", "scatter", "copy-start",
         "copy-done", "reverse", "iota", "tuple", "get-tuple-element", "parameter"}
CONTAINERS = {"while", "conditional", "call"}  # their bodies' ops are traced one by one
_INSTR = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (?:\(.*?\)|\S+) ([\w\-]+)\((.*)$")
_FRAME = re.compile(r"^(\d+) \{file_location_id=(\d+) parent_frame_id=(\d+)\}")
_LOC = re.compile(r"^(\d+) \{file_name_id=(\d+) function_name_id=\d+ line=(\d+)")
_NAME = re.compile(r'^(\d+) "(.*)"$')


class Hlo:
    """Instructions of a compiled module: name → (opcode, called computation, root frame)."""

    def __init__(self, text: str):
        files, locs, frames = {}, {}, {}
        section = ""
        self.ops, comps, current = {}, collections.defaultdict(list), None
        for line in text.splitlines():
            s = line.strip()
            if s in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
                section = s
                continue
            if section and s and s[0].isdigit():
                if section == "FileNames" and (m := _NAME.match(s)):
                    files[int(m[1])] = m[2]
                elif section == "FileLocations" and (m := _LOC.match(s)):
                    locs[int(m[1])] = (int(m[2]), int(m[3]))
                elif section == "StackFrames" and (m := _FRAME.match(s)):
                    frames[int(m[1])] = (int(m[2]), int(m[3]))
                continue
            section = "" if s else section
            if s.endswith("{") and "->" in s and "=" not in s.split("(")[0]:
                current = s.removeprefix("ENTRY ").split()[0].lstrip("%")
                continue
            m = _INSTR.match(line)
            if not m or current is None:
                continue
            name, opcode, rest = m[1], m[2], m[3]
            calls = re.search(r"calls=%?([\w.\-]+)", rest)
            frame = re.search(r"stack_frame_id=(\d+)", rest)
            comps[current].append(opcode)
            self.ops[name] = (opcode, calls[1] if calls else None,
                              int(frame[1]) if frame else None, line.startswith("  ROOT"))
        self.comp_ops = comps
        self.files, self.locs, self.frames = files, locs, frames

    def stack(self, frame: int | None) -> list[str]:
        """Source files of a stack frame, innermost first."""
        out, seen = [], set()
        while frame and frame not in seen and frame in self.frames:
            seen.add(frame)
            loc, parent = self.frames[frame]
            file_id, line = self.locs.get(loc, (0, 0))
            out.append(f"{self.files.get(file_id, '?')}:{line}")
            frame = parent
        return out


def _source_category(stack: list[str]) -> str | None:
    for entry in stack:
        f = entry.split(":")[0]
        if "gau_jax/layers/rope.py" in f:
            return "rope"
        if "gau_jax/layers/attention.py" in f:
            return "attention norm"
        if "gau_jax/layers/norms.py" in f:
            return "rms norm / scale"
        if "gau_jax/layers/gau.py" in f:
            return "gau elementwise"
        if "optax/losses" in f:
            return "loss / step"
        if "optax" in f:
            return "optimizer"
    return None


def categorize(hlo: Hlo, name: str) -> tuple[str, str]:
    """(category, detail) of the op `name` (module docstring)."""
    base = name.split(":")[0]
    if base not in hlo.ops:
        return "other", base
    opcode, calls, frame, _ = hlo.ops[base]
    inner = hlo.comp_ops.get(calls, []) if calls else []
    stack = hlo.stack(frame)  # a fusion's: its computation's root's (_root_frames)
    if opcode in CONTAINERS:
        return "container", opcode
    where = next((s for s in stack if "gau_jax/" in s), stack[0] if stack else "")
    if opcode in ("dot", "convolution") or "dot" in inner or base.startswith("ynn"):
        if "attention.py" in where or "gau.py" in where and "einsum" not in where:
            sub = "attention / gau dots"
        elif "encoder.py" in where:
            sub = "tied head / embeddings"
        else:
            sub = "dense layers"
        return "matmul", sub
    if stack and "flax/core/axes_scan.py" in stack[0]:
        return "nn.scan slicing / stacking", opcode
    cat = _source_category(stack)
    if cat:
        return cat, where
    if "step.py" in where:
        return "loss / step", where
    if "encoder.py" in where:
        return "encoder (embeddings, residual)", where
    ops = set(inner) | {opcode}
    if ops <= MOVES | {"fusion"}:
        return "data movement", opcode
    return "other", f"{opcode} {where}"


def _root_frames(hlo: Hlo, text: str) -> None:
    """Give each fusion / wrapped op the stack frame of its called computation's root."""
    roots, current = {}, None
    for line in text.splitlines():
        s = line.strip()
        if s.endswith("{") and "->" in s and "=" not in s.split("(")[0]:
            current = s.removeprefix("ENTRY ").split()[0].lstrip("%")
        elif s.startswith("ROOT") and current:
            fr = re.search(r"stack_frame_id=(\d+)", s)
            if fr:
                roots[current] = int(fr[1])
    for name, (opcode, calls, _frame, is_root) in list(hlo.ops.items()):
        if calls in roots:
            hlo.ops[name] = (opcode, calls, roots[calls], is_root)


def trace_step(compiled, state, data, steps: int) -> tuple[dict, float]:
    """({op name: total seconds over the traced calls}, wall seconds per call)."""
    state, _ = compiled_costs.timed_call(compiled, state, data)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        with jax.profiler.trace(d):
            for _ in range(steps):
                state, _ = compiled_costs.timed_call(compiled, state, data)
        wall = (time.perf_counter() - t0) / steps
        path = sorted(glob.glob(f"{d}/**/*.xplane.pb", recursive=True))[-1]
        pd = jax.profiler.ProfileData.from_file(path)
    totals = collections.Counter()
    for plane in pd.planes:
        for line in plane.lines:
            if "XLA" not in line.name:  # the client thread and XLA's Eigen pool threads
                continue
            for e in line.events:
                if e.name.startswith(("ThreadpoolListener", "end: ", "ThunkExecutor")):
                    continue
                totals[e.name] += e.duration_ns * 1e-9 / steps
    return dict(totals), wall


def profile(size: str, block: str, variant: str, steps: int) -> dict:
    batch, n, blocks = bench_peers.SIZES[size]
    preset, overrides = blocks[block]
    m = bench_peers.model_config(preset, overrides, bench_peers.VARIANTS[variant])
    compiled, state, data = bench_peers.jax_step(m, batch, n)
    text = compiled.as_text()
    hlo = Hlo(text)
    _root_frames(hlo, text)
    ops, wall = trace_step(compiled, state, data, steps)
    cats, details = collections.Counter(), collections.Counter()
    for name, sec in ops.items():
        cat, detail = categorize(hlo, name)
        if cat == "container":
            continue
        cats[cat] += sec
        details[(cat, detail)] += sec
    total = sum(cats.values())
    rec = dict(size=size, block=block, variant=variant, batch=batch, n=n, wall_s=wall,
               op_s=total, categories={k: v for k, v in cats.most_common()},
               top_ops=[(k, v) for k, v in collections.Counter(ops).most_common(12)],
               details=[(c, d, v) for (c, d), v in details.most_common(25)])
    print(json.dumps({k: rec[k] for k in ("size", "block", "variant", "wall_s", "op_s",
                                          "categories")}), flush=True)
    return rec


def report(records: list[dict], command: str) -> str:
    lines = runlog.results_header("Where the train step's time goes (XLA:CPU, per-op trace)",
                                  command)
    lines += ["Step: MLM over every token, AdamW, dropout off, float32 (the shapes of "
              "experiments/bench_peers.py). Per-op times from a jax.profiler trace of the "
              "compiled step (one event per executed HLO op, on the client thread or XLA's "
              "thread pool), put in categories by the op's kind and the source line of its HLO "
              "metadata (experiments/profile_step.py); while loops are not counted (their "
              "body's ops are). % = share of the summed op time.", ""]
    cats = sorted({c for r in records for c in r["categories"]},
                  key=lambda c: -max(r["categories"].get(c, 0) / r["op_s"] for r in records))
    headers = ["category"] + [f"{r['block']} {r['size']} {r['variant']}" for r in records]
    rows = [[c] + [f"{100 * r['categories'].get(c, 0) / r['op_s']:.1f} % "
                   f"({1e3 * r['categories'].get(c, 0):.0f} ms)" for r in records] for c in cats]
    rows.append(["**sum of ops / wall per step**"] + [
        f"{1e3 * r['op_s']:.0f} / {1e3 * r['wall_s']:.0f} ms" for r in records])
    lines += [runlog.markdown_table(headers, rows), ""]
    for r in records:
        lines += [f"### {r['block']} {r['size']} ({r['batch']}×{r['n']}), {r['variant']}: "
                  "largest entries", ""]
        lines.append(runlog.markdown_table(
            ["category", "detail", "ms / step"],
            [[c, f"`{d}`", f"{1e3 * v:.1f}"] for c, d, v in r["details"][:15]]))
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="small")
    p.add_argument("--blocks", default="gau,roformer_v2")
    p.add_argument("--variants", default="default,unrolled")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--results_dir", default=str(bench_peers.ROOT / "experiments" / "results"))
    a = p.parse_args(argv)
    records = [profile(s, b, v, a.steps) for s in a.sizes.split(",")
               for b in a.blocks.split(",") for v in a.variants.split(",")]
    command = "python -m experiments.profile_step " + shlex.join(
        argv if argv is not None else sys.argv[1:])
    out = pathlib.Path(a.results_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.md").write_text(report(records, command.strip()))
    (out / "profile.json").write_text(json.dumps(records, indent=1, default=str))
    return records


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
