"""Device placement: a ('data', 'fsdp', 'tensor') mesh for jit, or a replicated pytree for pmap.

jit mode (default): a mesh of sizes config.mesh.{data, fsdp, tensor} (-1 = the rest of the
devices; config.fsdp > 1 is a shorthand for config.mesh.fsdp), axis types Auto (Linen's
nn.Dropout fails on Explicit axes). The batch is split over the data-parallel devices,
P(('data', 'fsdp')), and replicated over 'tensor'. Parameters get the PartitionSpec of the first
rule of RULES whose regex matches their path ("encoder/layers/gau/uvz/kernel"):

    biases, norm / offset scales, LST gates, LoRA factors, segment table   replicated
    token embedding [V, d]                                                 (tensor, fsdp)
    query / key / value / uvz / intermediate kernels [d, out]              (fsdp, tensor)
    output kernels [in, d]                                                 (tensor, fsdp)
    any other Dense kernel (classifier, LST down_k / up, adapters)         (fsdp, -)
    anything else                                                          its largest dim
                                                                           divisible by fsdp
A rule names the *last* dims of a leaf (a scanned [L, d, out] kernel keeps its layer axis
whole); a dim the named mesh axes do not divide stays whole, and a leaf of fewer than
config.mesh.min_split_size elements is replicated. Optimizer-state leaves take the spec of the
parameter whose path their own path ends with (adam's mu / nu, adafactor's v) when their shape
is the parameter's; any other leaf (adafactor's factored v_row / v_col, counts) is replicated.

Activations: the encoder constrains its block boundaries with the logical axes ("batch",
"length", "embed"); `ACTIVATION_RULES` maps them (batch → the data-parallel axes) while the jit
strategy traces its steps. Under pmap and outside the steps there are no rules: a no-op.

Global batches are built from each process's local rows (jax.make_array_from_process_local_data;
processes whose batches were padded to different lengths are padded to the longest first).
pmap mode: state replicated on every local device, batch reshaped to [devices, rows / devices].

The trainer sees one strategy object (`strategy(config)`): `JitMesh` or `Pmap`, with the same
methods (restore_target, init, place, compile, device_batch, host, first, context). Checkpoints
hold global arrays: a restore onto another mesh or device count lands in `restore_target`'s
shardings.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from gau_jax.models.tree import path_names

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")
MIN_SPLIT_SIZE = 2**14
PARALLEL = ("jit", "pmap")  # config.parallel: NamedSharding on a mesh | jax.pmap
LARGEST = "largest dim divisible by fsdp"  # big_vision's shape-only rule

# Parameter sharding rules: (regex searched in the leaf path, spec of the leaf's last dims).
RULES: tuple[tuple[str, P | str], ...] = (
    (r"(^|/)(bias|scale)$", P()),                   # biases, RMS / offset scales
    (r"(^|/)(gate_\d+|head_gate)$", P()),           # LST gates (scalars)
    (r"(^|/)[AB]$", P()),                           # LoRA factors (rank r << d)
    (r"segment_embedding/embedding$", P()),         # [type_vocab, d]: two rows
    (r"token_embedding/embedding$", P("tensor", "fsdp")),                 # [V, d]
    (r"(query|key|value|uvz|intermediate)/kernel$", P("fsdp", "tensor")),  # [d, out]
    (r"output/kernel$", P("tensor", "fsdp")),       # [in, d]
    (r"kernel$", P("fsdp", None)),                  # classifier, LST down_k / up, adapters
    (r".*", LARGEST),                               # anything else
)
# Logical activation axes (gau_jax/models/encoder.py) → mesh axes, while the jit steps trace.
ACTIVATION_RULES = (("batch", BATCH_AXES), ("length", None), ("embed", None))


# ----------------------------------------------------------------------------- mesh
def mesh_shape(data: int = -1, fsdp: int = 1, tensor: int = 1,
               n_devices: int | None = None) -> dict[str, int]:
    """{'data', 'fsdp', 'tensor'} sizes whose product is the device count (-1: the rest)."""
    n = jax.device_count() if n_devices is None else n_devices
    sizes = {"data": int(data), "fsdp": int(fsdp), "tensor": int(tensor)}
    for k, v in sizes.items():
        if v == 0 or v < -1:
            raise ValueError(f"config.mesh.{k}={v} must be a positive size or -1 (the rest)")
    free = [k for k, v in sizes.items() if v == -1]
    if len(free) > 1:
        raise ValueError(f"config.mesh: only one of data, fsdp, tensor may be -1, got {sizes}")
    fixed = math.prod(v for v in sizes.values() if v != -1)
    if free and n % fixed == 0:
        sizes[free[0]] = n // fixed
    elif free or fixed != n:
        raise ValueError(f"config.mesh data x fsdp x tensor = {sizes} does not fit the {n} "
                         "devices (jax.device_count()); the sizes must multiply to it (one of "
                         "them may be -1: the rest)")
    return sizes


def mesh_sizes(config: Any, n_devices: int | None = None) -> dict[str, int]:
    """Mesh sizes of a run config: config.mesh (the source of truth), with config.fsdp > 1 as
    a shorthand for config.mesh.fsdp (both set and different: an error)."""
    mesh = config.get("mesh") or {}
    fsdp, short = int(mesh.get("fsdp", 1)), int(config.get("fsdp", 1))
    if short != 1:
        if fsdp not in (1, short):
            raise ValueError(f"config.fsdp={short} and config.mesh.fsdp={fsdp} differ; set only "
                             "config.mesh.fsdp")
        fsdp = short
    return mesh_shape(mesh.get("data", -1), fsdp, mesh.get("tensor", 1), n_devices)


def make_mesh(fsdp: int = 1, data: int = -1, tensor: int = 1) -> jax.sharding.Mesh:
    """('data', 'fsdp', 'tensor') mesh over all devices (sizes as in `mesh_shape`)."""
    s = mesh_shape(data, fsdp, tensor)
    return jax.make_mesh((s["data"], s["fsdp"], s["tensor"]), MESH_AXES,
                         axis_types=(AxisType.Auto,) * 3)


def data_parallel_size(mesh: jax.sharding.Mesh) -> int:
    return math.prod(mesh.shape[a] for a in BATCH_AXES)


# ----------------------------------------------------------------------------- checks
def check_batch_size(batch_size: int, grad_accum_steps: int = 1,
                     data_parallel: int | None = None) -> None:
    """Clear error, before training, when the global batch cannot be split evenly over the
    data-parallel devices (default: all devices)."""
    n = jax.device_count() if data_parallel is None else data_parallel
    where = "devices (jax.device_count())" if data_parallel is None else \
        "data-parallel devices (config.mesh data x fsdp)"
    if batch_size % n:
        raise ValueError(f"config.batch_size={batch_size} is not divisible by the {n} {where}")
    if batch_size % grad_accum_steps or (batch_size // grad_accum_steps) % n:
        raise ValueError(f"config.batch_size={batch_size} must split into "
                         f"config.grad_accum_steps={grad_accum_steps} micro-batches whose size "
                         f"is divisible by the {n} {where}")


def parallel_mode(config: Any) -> str:
    """config.parallel, checked: one of PARALLEL (a ValueError naming the field otherwise)."""
    if config.parallel not in PARALLEL:
        raise ValueError(f"config.parallel={config.parallel!r} must be one of {PARALLEL}")
    return config.parallel


def check_config(config: Any) -> None:
    """The parallelism errors of a run config (mode, mesh vs devices, batch), before any
    compilation."""
    if parallel_mode(config) == "pmap":
        mesh = dict(config.get("mesh") or {})
        if int(config.get("fsdp", 1)) != 1 or {k: int(v) for k, v in mesh.items()
                                               if k in MESH_AXES and int(v) not in (-1, 1)}:
            raise ValueError("config.mesh / config.fsdp other than the default need "
                             "config.parallel='jit'")
        check_batch_size(config.batch_size, config.grad_accum_steps)
        return
    sizes = mesh_sizes(config)
    check_batch_size(config.batch_size, config.grad_accum_steps,
                     sizes["data"] * sizes["fsdp"])


# ----------------------------------------------------------------------------- rules
def _fit(spec: P, shape: tuple[int, ...], mesh: jax.sharding.Mesh) -> P:
    """`spec` on the last dims of `shape`; axes of size 1 or that do not divide a dim dropped."""
    if len(spec) > len(shape):
        return P()
    dims = [None] * (len(shape) - len(spec))
    for size, axes in zip(shape[len(dims):], spec, strict=True):
        names = tuple(a for a in ((axes,) if isinstance(axes, str) else axes or ())
                      if mesh.shape[a] > 1)
        if not names or size % math.prod(mesh.shape[a] for a in names):
            dims.append(None)
        else:
            dims.append(names[0] if len(names) == 1 else names)
    while dims and dims[-1] is None:
        dims.pop()
    return P(*dims)


def _largest(shape: tuple[int, ...], fsdp: int) -> P:
    if fsdp <= 1:
        return P()
    for i in sorted(range(len(shape)), key=lambda i: -shape[i]):
        if shape[i] % fsdp == 0:
            return P(*([None] * i), "fsdp")
    return P()


def param_spec(path: str, shape: tuple[int, ...], mesh: jax.sharding.Mesh,
               min_size: int = MIN_SPLIT_SIZE, rules=RULES) -> P:
    """The PartitionSpec of a parameter at `path` ("a/b/kernel"): the first matching rule."""
    if int(np.prod(shape)) < max(min_size, 1) or not shape:
        return P()
    for pattern, spec in rules:
        if re.search(pattern, path):
            return _largest(shape, mesh.shape["fsdp"]) if spec == LARGEST else \
                _fit(spec, shape, mesh)
    return P()


def _is_spec(x: Any) -> bool:
    return isinstance(x, P)


def _paths(tree: Any) -> list[tuple[str, Any]]:
    return [("/".join(path_names(p)), x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]]


def param_specs(params: Any, mesh: jax.sharding.Mesh, min_size: int = MIN_SPLIT_SIZE,
                rules=RULES) -> Any:
    """PartitionSpec per leaf of a (possibly abstract) parameter tree."""
    return jax.tree_util.tree_map_with_path(
        lambda p, x: param_spec("/".join(path_names(p)), tuple(x.shape), mesh, min_size, rules),
        params)


def follow_params(tree: Any, params: Any, specs: Any) -> Any:
    """Spec per leaf of `tree` (an optimizer state): the spec of the longest parameter path its
    path ends with, when the shapes are equal; P() otherwise."""
    table = {tuple(p.split("/")): (tuple(x.shape), s) for (p, x), s in
             zip(_paths(params), jax.tree_util.tree_leaves(specs, is_leaf=_is_spec), strict=True)}
    longest = max((len(k) for k in table), default=0)

    def spec(path, x):
        names = path_names(path)
        for k in range(min(longest, len(names)), 0, -1):
            hit = table.get(names[-k:])
            if hit is not None:
                return hit[1] if hit[0] == tuple(x.shape) else P()
        return P()

    return jax.tree_util.tree_map_with_path(spec, tree)


def state_specs(abstract_state: Any, mesh: jax.sharding.Mesh, min_size: int = MIN_SPLIT_SIZE,
                rules=RULES) -> Any:
    """PartitionSpecs of a TrainState (params by the rules, opt_state following them, the rest
    replicated), or of any other tree (every leaf by the rules, by its own path)."""
    if not (hasattr(abstract_state, "params") and hasattr(abstract_state, "opt_state")):
        return param_specs(abstract_state, mesh, min_size, rules)
    params = param_specs(abstract_state.params, mesh, min_size, rules)
    opt = follow_params(abstract_state.opt_state, abstract_state.params, params)
    rest = jax.tree_util.tree_map(lambda _: P(), abstract_state)
    return rest.replace(params=params, opt_state=opt)


def state_shardings(abstract_state: Any, mesh: jax.sharding.Mesh,
                    min_size: int = MIN_SPLIT_SIZE, rules=RULES) -> Any:
    """NamedSharding per leaf of a (possibly abstract) state (`state_specs`)."""
    return jax.tree_util.tree_map(lambda s: NamedSharding(mesh, s),
                                  state_specs(abstract_state, mesh, min_size, rules),
                                  is_leaf=_is_spec)


def rule_table(params: Any, mesh: jax.sharding.Mesh, min_size: int = MIN_SPLIT_SIZE,
               rules=RULES) -> list[tuple[str, tuple[int, ...], P]]:
    """[(path, shape, spec)] of every parameter: what the rules split, for docs and tests."""
    return [(p, tuple(x.shape), param_spec(p, tuple(x.shape), mesh, min_size, rules))
            for p, x in _paths(params)]


# ----------------------------------------------------------------------------- batches
def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(BATCH_AXES))


def _agree_lengths(local: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Multi-process: leaves of rank >= 2 ([rows, length, ...]) zero-padded along axis 1 to the
    longest any process has (each host pads its own batch; the global array needs one shape)."""
    if jax.process_count() == 1:
        return local
    keys = sorted(k for k, v in local.items() if np.ndim(v) >= 2)
    mine = np.asarray([np.shape(local[k])[1] for k in keys], np.int32)
    longest = np.max(multihost_utils.process_allgather(mine), axis=0) if keys else mine
    out = dict(local)
    for k, n in zip(keys, longest, strict=True):
        v = np.asarray(local[k])
        if v.shape[1] < n:
            pad = [(0, 0), (0, int(n) - v.shape[1])] + [(0, 0)] * (v.ndim - 2)
            out[k] = np.pad(v, pad)
    return out


def global_batch(local: dict[str, np.ndarray], mesh: jax.sharding.Mesh,
                 static: bool = False) -> dict[str, jax.Array]:
    """Global jax.Arrays sharded over the batch axes, built from this process's local rows
    (static=True: every process's batches have one shape, so no lengths are exchanged)."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in (local if static else _agree_lengths(local)).items()}


def local_rows(config: Any, batch_size: int) -> slice:
    """The rows of a global batch that this process's devices hold (jit: by the mesh's batch
    sharding; pmap: the process's block)."""
    p, n = jax.process_index(), jax.process_count()
    if parallel_mode(config) == "pmap":
        return slice(p * batch_size // n, (p + 1) * batch_size // n)
    index = batch_sharding(make_mesh(**mesh_sizes(config))).addressable_devices_indices_map(
        (batch_size,))
    start = min(s[0].start or 0 for s in index.values())
    stop = max(s[0].stop or batch_size for s in index.values())
    return slice(start, stop)


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


def shard_for_pmap(local: dict[str, np.ndarray], static: bool = False) -> dict[str, np.ndarray]:
    """[rows, ...] → [local devices, rows / devices, ...]."""
    n = jax.local_device_count()
    return {k: np.asarray(v).reshape(n, -1, *np.shape(v)[1:])
            for k, v in (local if static else _agree_lengths(local)).items()}


# ----------------------------------------------------------------------------- strategies
def with_activation_rules(fn: Any, mesh: jax.sharding.Mesh) -> Any:
    """`fn` traced with ACTIVATION_RULES and `mesh` in context (the encoder's constraints)."""

    @functools.wraps(fn)
    def traced(*args):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh), \
                nn.logical_axis_rules(ACTIVATION_RULES):
            return fn(*args)

    return traced


class JitMesh:
    """jit over a ('data', 'fsdp', 'tensor') mesh: state sharded by RULES, batch split."""

    axis_name = None  # the step sums over the global batch itself (no collective to name)
    static = False  # True: batches of one shape on every process (no per-step length exchange)

    def __init__(self, mesh: jax.sharding.Mesh | None = None, min_size: int = MIN_SPLIT_SIZE,
                 rules=RULES):
        self.mesh = make_mesh() if mesh is None else mesh
        self.min_size, self.rules = min_size, rules
        self.shardings = None

    def context(self):
        return jax.set_mesh(self.mesh)

    def restore_target(self, abstract_state: Any) -> Any:
        """ShapeDtypeStructs carrying the shardings a restored state must have."""
        self.shardings = state_shardings(abstract_state, self.mesh, self.min_size, self.rules)
        return jax.tree_util.tree_map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            abstract_state, self.shardings)

    def init(self, init_fn: Any) -> Any:
        with self.context():
            return jax.jit(init_fn, out_shardings=self.shardings)()

    def place(self, state: Any) -> Any:
        return state

    def compile(self, train_step: Any, eval_step: Any) -> tuple[Any, Any]:
        bs = batch_sharding(self.mesh)
        train = with_activation_rules(train_step, self.mesh)
        evaluate = with_activation_rules(eval_step, self.mesh)
        return (jax.jit(train, in_shardings=(self.shardings, bs),
                        out_shardings=(self.shardings, None), donate_argnums=(0,)),
                jax.jit(evaluate, in_shardings=(self.shardings, bs)))

    def device_batch(self, batch: dict[str, np.ndarray]) -> Any:
        return global_batch(batch, self.mesh, self.static)

    def host(self, tree: Any) -> Any:
        """The state as a checkpoint stores it."""
        return tree

    def first(self, tree: Any) -> Any:
        """Step outputs (metrics, sums) on the host."""
        return jax.device_get(tree)


class Pmap:
    """pmap over the local devices: state replicated (leading device axis), batch reshaped."""

    axis_name = "batch"
    static = False

    def context(self):
        return contextlib.nullcontext()

    def restore_target(self, abstract_state: Any) -> Any:
        return abstract_state

    def init(self, init_fn: Any) -> Any:
        return jax.jit(init_fn)()

    def place(self, state: Any) -> Any:
        return replicate(state)

    def compile(self, train_step: Any, eval_step: Any) -> tuple[Any, Any]:
        return (jax.pmap(train_step, axis_name=self.axis_name, donate_argnums=(0,)),
                jax.pmap(eval_step, axis_name=self.axis_name))

    def device_batch(self, batch: dict[str, np.ndarray]) -> Any:
        return shard_for_pmap(batch, self.static)

    def host(self, tree: Any) -> Any:
        return unreplicate(tree)

    def first(self, tree: Any) -> Any:
        return jax.tree_util.tree_map(lambda x: np.asarray(x)[0], jax.device_get(tree))


def strategy(config: Any) -> JitMesh | Pmap:
    """The strategy of a run config: config.parallel ("jit" on the mesh of config.mesh /
    config.fsdp, rules RULES, config.mesh.min_split_size; or "pmap"), checked first."""
    check_config(config)
    if parallel_mode(config) == "pmap":
        return Pmap()
    mesh = config.get("mesh") or {}
    return JitMesh(make_mesh(**mesh_sizes(config)),
                   min_size=int(mesh.get("min_split_size", MIN_SPLIT_SIZE)))
