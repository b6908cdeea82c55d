"""What a jitted step costs: XLA's FLOP and memory counts, its measured time, the matmul rate.

    compiled = compile_step(fn, *args, donate_argnums=0)   args: arrays or jax.ShapeDtypeStruct
        cpu_scheduler="memory": XLA:CPU's memory-optimised instruction scheduler instead of its
        default (concurrency-optimised in jax 0.10), which starts independent work early (e.g. the
        float32 copies of every layer's bfloat16 kernels) so that it can run in parallel, at
        the cost of live memory; ignored off the CPU
    step_costs(compiled):
        flops           compiled.cost_analysis()["flops"]  (a lax.scan body is counted once:
                        unroll layers to count them all)
        argument_bytes, output_bytes, temp_bytes, alias_bytes   compiled.memory_analysis()
        total_bytes     argument + output − alias + temp  (donated inputs alias their outputs)
    time_step(step, state, batch):  one warm-up call, then the median of up to `reps` calls
        state, _ = step(state, batch); jax.block_until_ready(...)  (the state is threaded, so a
        donating step can be timed)
    matmul_rate(m):  FLOP/s of back-to-back [m, m]·[m, m] jnp.dot calls (2·m³ FLOPs each),
        the reference of compute efficiency = (flops / step seconds) ÷ matmul_rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def abstract(tree: Any) -> Any:
    """The tree's arrays as jax.ShapeDtypeStruct (compile from shapes only, no data)."""
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), tree)


CPU_SCHEDULERS = {"default": None, "memory": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}  # name →
# XLA's xla_cpu_scheduler_type (None: XLA's own choice, concurrency-optimised in jax 0.10)


def cpu_scheduler_options(cpu_scheduler: str, field: str = "cpu_scheduler") -> dict | None:
    """XLA compile options that select `cpu_scheduler` (a CPU_SCHEDULERS name; None for XLA's
    own choice or off the CPU). An unknown name is a ValueError naming `field`."""
    if cpu_scheduler not in CPU_SCHEDULERS:
        raise ValueError(f"{field}={cpu_scheduler!r}: choose from {sorted(CPU_SCHEDULERS)}")
    kind = CPU_SCHEDULERS[cpu_scheduler]
    return {"xla_cpu_scheduler_type": kind} if kind and jax.default_backend() == "cpu" else None


def compile_step(fn: Callable, *args: Any, donate_argnums: int | Sequence[int] = (),
                 cpu_scheduler: str = "default") -> Any:
    """jax.jit(fn).lower(*args).compile(): the compiled executable for these shapes, scheduled
    by `cpu_scheduler` (a CPU_SCHEDULERS name) on the CPU backend."""
    options = cpu_scheduler_options(cpu_scheduler)
    return jax.jit(fn, donate_argnums=donate_argnums).lower(*args).compile(options)


def step_costs(compiled: Any) -> dict[str, float]:
    """FLOPs and memory (bytes) of a compiled executable (module docstring)."""
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, list | tuple) else ca
    ma = compiled.memory_analysis()
    arg, out = int(ma.argument_size_in_bytes), int(ma.output_size_in_bytes)
    temp, alias = int(ma.temp_size_in_bytes), int(ma.alias_size_in_bytes)
    return {"flops": float(ca.get("flops", float("nan"))), "argument_bytes": arg,
            "output_bytes": out, "temp_bytes": temp, "alias_bytes": alias,
            "total_bytes": arg + out - alias + temp}


def timed_call(step: Callable, state: Any, *args: Any) -> tuple[Any, float]:
    """(new state, seconds) of one `state, aux = step(state, *args)`, waited for."""
    t0 = time.perf_counter()
    out = step(state, *args)
    jax.block_until_ready(out)
    return out[0], time.perf_counter() - t0


def time_step(step: Callable, state: Any, *args: Any, reps: int = 3,
              min_time_s: float = 0.0) -> float:
    """Median seconds per call: a warm-up call, then timed calls until `reps` of them or, when
    min_time_s > 0, until they add up to min_time_s (whichever comes first, at least one).

    With min_time_s > 0 a warm-up call longer than 5·min_time_s is itself the measurement (a long
    step on a CPU; the one-time cost it includes is small next to it).
    """
    state, warm = timed_call(step, state, *args)
    if min_time_s > 0 and warm > 5 * min_time_s:
        return warm
    times: list[float] = []
    while len(times) < max(1, reps) and (min_time_s <= 0 or not times
                                         or sum(times) < min_time_s):
        state, t = timed_call(step, state, *args)
        times.append(t)
    return float(np.median(times))


def matmul_rate(size: int, dtype: str = "float32", seconds: float = 1.0) -> float:
    """Mean FLOP/s of back-to-back [size, size]·[size, size] jnp.dot calls over ~`seconds`
    (after a warm-up), so the reference sees the machine load of a step timed next to it."""
    x = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.dtype(dtype))
    f = jax.jit(jnp.dot)
    f(x, x).block_until_ready()
    calls, t0 = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - t0 < seconds:
        f(x, x).block_until_ready()
        calls += 1
    return 2.0 * size**3 * calls / (time.perf_counter() - t0)
