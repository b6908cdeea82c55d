"""Multi-process start: every process of a run calls `initialize` once, first thing.

    initialize(coordinator_address, num_processes, process_id)
        all three given              jax.distributed.initialize(address, n, i)
        coordinator_address="auto"   jax.distributed.initialize(): JAX's cluster detection
        none given, a cluster found  jax.distributed.initialize() (`detected_cluster` names it:
                                     a TPU pod slice, SLURM srun tasks, Open MPI ranks, or
                                     JAX_COORDINATOR_ADDRESS in the environment)
        none given, no cluster       nothing: one process driving its local devices

On a Cloud TPU VM pod slice (GCE) the worker list comes from the metadata server, not the
environment: pass coordinator_address="auto" there (GKE / multislice set TPU_WORKER_HOSTNAMES
or MEGASCALE_* and are detected).

It must run before any JAX computation (jax.devices(), an array, a jit call initialise the
backends, after which JAX refuses to join a cluster): a RuntimeError says so. Afterwards
jax.devices() lists every process's devices, each process feeds its own rows
(gau_jax.data.pipeline shards every split by jax.process_index()), jit steps run on global
arrays, and only process 0 writes logs, summaries and config files (Orbax coordinates
checkpoint writes itself). On the CPU, cross-process collectives go through gloo.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

import jax


def _count(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def detected_cluster(environ: Mapping[str, str] | None = None) -> str | None:
    """Which multi-process launcher set this process up, from its environment, or None."""
    env = os.environ if environ is None else environ
    hosts = env.get("TPU_WORKER_HOSTNAMES") or env.get("TPU_PROCESS_ADDRESSES") or ""
    if len([h for h in hosts.split(",") if h.strip()]) > 1 or env.get(
            "MEGASCALE_COORDINATOR_ADDRESS"):
        return "tpu-pod"
    if _count(env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")) > 1:
        return "slurm"
    if _count(env.get("OMPI_COMM_WORLD_SIZE")) > 1:
        return "openmpi"
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return "JAX_COORDINATOR_ADDRESS"
    return None


def _backends_started() -> bool:
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def _require_fresh_backends(why: str) -> None:
    if _backends_started():
        raise RuntimeError(f"{why}, but JAX's backends are already initialised in this process: "
                           "gau_jax.train.distributed.initialize() must run before any JAX "
                           "computation (jax.devices(), creating an array, a jit call)")


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Joins this process to a multi-process run (module docstring); a no-op for one process.

    coordinator_address is HOST:PORT of process 0 (every process passes the same one), or
    "auto" for JAX's own cluster detection. Calling it again after a successful start is a
    no-op."""
    if jax.distributed.is_initialized():
        return
    given = (coordinator_address, num_processes, process_id)
    if coordinator_address == "auto" or all(v is None for v in given):
        cluster = "requested" if coordinator_address == "auto" else detected_cluster()
        if cluster is None:
            return
        if coordinator_address == "auto" and (num_processes, process_id) != (None, None):
            raise ValueError("--coordinator_address=auto detects --num_processes and "
                             "--process_id; do not pass them")
        _require_fresh_backends(f"a multi-process start ({cluster}) was asked for")
        logging.info("jax.distributed.initialize(): cluster auto-detection (%s)", cluster)
        jax.distributed.initialize()
        return
    if any(v is None for v in given):
        missing = [n for n, v in zip(("coordinator_address", "num_processes", "process_id"),
                                     given, strict=True) if v is None]
        raise ValueError(f"multi-process start: also pass --{' --'.join(missing)} (all three, "
                         "or none for auto-detection)")
    if not re.fullmatch(r"\[?[\w.\-:]+\]?:\d+", str(coordinator_address)):
        raise ValueError(f"--coordinator_address={coordinator_address!r} must be HOST:PORT "
                         "(process 0's host)")
    if int(num_processes) < 1 or not 0 <= int(process_id) < int(num_processes):
        raise ValueError(f"--process_id={process_id} must be in [0, --num_processes="
                         f"{num_processes})")
    _require_fresh_backends(f"--num_processes={num_processes} was asked for")
    logging.info("jax.distributed.initialize(%s, %d, %d)", coordinator_address,
                 int(num_processes), int(process_id))
    jax.distributed.initialize(coordinator_address, int(num_processes), int(process_id))
