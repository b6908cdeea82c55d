"""Device placement: a ('data', 'fsdp') mesh for jit, or a replicated pytree for pmap.

jit mode (default): mesh of shape (n_devices / fsdp, fsdp) with axis types Auto (Linen's
nn.Dropout fails on Explicit axes). The batch is split over all devices, P(('data', 'fsdp')).
Parameters and optimizer state are replicated, P(), unless fsdp > 1: then each array of at least
`min_size` elements is split along its largest dimension divisible by the fsdp size (big_vision's
rule) — the same rule works for any optimizer-state leaf, since it only looks at shapes.
Global batches are assembled from each process's local rows with
jax.make_array_from_process_local_data, so multi-host runs feed only local data.

pmap mode: state replicated on every local device (leading device axis), batch reshaped to
[devices, rows / devices, ...].
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

BATCH_AXES = ("data", "fsdp")


def make_mesh(fsdp: int = 1) -> jax.sharding.Mesh:
    """('data', 'fsdp') mesh over all devices; fsdp must divide the device count."""
    n = jax.device_count()
    if fsdp < 1 or n % fsdp:
        raise ValueError(f"config.fsdp={fsdp} must divide the device count {n}")
    return jax.make_mesh((n // fsdp, fsdp), BATCH_AXES, axis_types=(AxisType.Auto,) * 2)


def check_batch_size(batch_size: int, grad_accum_steps: int = 1) -> None:
    """Clear error, before training, when the global batch cannot be split evenly."""
    n = jax.device_count()
    if batch_size % n:
        raise ValueError(f"config.batch_size={batch_size} is not divisible by the "
                         f"{n} devices (jax.device_count())")
    if batch_size % grad_accum_steps or (batch_size // grad_accum_steps) % n:
        raise ValueError(f"config.batch_size={batch_size} must split into "
                         f"config.grad_accum_steps={grad_accum_steps} micro-batches whose size "
                         f"is divisible by the {n} devices")


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(BATCH_AXES))


def _leaf_spec(shape: tuple[int, ...], fsdp: int, min_size: int) -> P:
    if fsdp <= 1 or int(np.prod(shape)) < min_size:
        return P()
    dims = sorted(range(len(shape)), key=lambda i: -shape[i])
    for i in dims:
        if shape[i] % fsdp == 0:
            spec = [None] * len(shape)
            spec[i] = "fsdp"
            return P(*spec)
    return P()


def state_shardings(abstract_state: Any, mesh: jax.sharding.Mesh, min_size: int = 2**14) -> Any:
    """NamedSharding per leaf of a (possibly abstract) state: replicated, or fsdp-split."""
    fsdp = mesh.shape["fsdp"]
    return jax.tree_util.tree_map(
        lambda x: NamedSharding(mesh, _leaf_spec(tuple(x.shape), fsdp, min_size)), abstract_state
    )


def global_batch(local: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
    """Global jax.Arrays sharded over the batch axes, built from this process's local rows."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local.items()}


# ----------------------------------------------------------------------------- pmap mode
def replicate(tree: Any) -> Any:
    """Copies a pytree onto every local device (leading axis = device)."""
    devices = jax.local_devices()
    sharding = NamedSharding(jax.sharding.Mesh(np.array(devices), ("batch",)), P("batch"))
    return jax.tree_util.tree_map(
        lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (len(devices), *np.shape(x))),
                                 sharding), tree)


def unreplicate(tree: Any) -> Any:
    """First device's copy of a replicated pytree."""
    return jax.tree_util.tree_map(lambda x: x[0], tree)


def shard_for_pmap(local: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """[rows, ...] → [local devices, rows / devices, ...]."""
    n = jax.local_device_count()
    return {k: np.asarray(v).reshape(n, -1, *np.shape(v)[1:]) for k, v in local.items()}
