"""Orbax checkpoints of a run: resume state and best-dev params; pretrained trunks into a model.

Writes the Orbax folders of the workdir layout (its names and readers: gau_jax/workdir.py):
    DIR/checkpoints/<step>/{state, data, meta}   every N steps and at the end, keep-last-K, async
    DIR/best/<step>/{params, meta}               the best dev evaluation's params, synchronous
    DIR/checkpoints_corrupt/<step>-<time>/       steps found incomplete or damaged (moved aside)

Data-iterator state: each process p's iterator state (JSON, as bytes) is row p of a uint8 array
[P, L] sharded over processes, so Orbax's multi-host saving writes every host's position and a
restore hands each host its own row. A restore under another process count restores the model
and optimizer but not the positions (the rows of a split are dealt to processes differently);
the iterators then start over, and a warning says so.

Atomicity is Orbax's: a step is written into `<step>.orbax-checkpoint-tmp-*` and renamed when
complete, so a crash mid-write leaves the last good step restorable. On restore the newest step
is checked (its `_CHECKPOINT_METADATA`, every item directory, readable metadata) and restored
whole; a step that is incomplete or fails to restore is named in a warning ("skipping
checkpoint …"), moved to DIR/checkpoints_corrupt and the previous step is tried — never a half
restore. A stored model of another shape is not damage: that is an error naming the first leaf
that differs. A failed write raises CheckpointWriteError naming the path.

Replica-parallel saving: Orbax splits an array replicated over R devices into R slices, one
written by each replica, each slice a compiled `jax.lax.slice_in_dim` program per shape. An array
whose slice would be under MIN_REPLICA_SLICE_BYTES is written whole by its first replica instead
(importing this module registers that jax.Array handler with Orbax): a bias or a small model
compiles no slice programs, and the large kernels of a real model are still written in parallel.

Fault injection (tests): with GAU_JAX_FAULT_SAVE_DELAY_S=<s> in the environment every write
pauses <s> seconds once its step's temporary directory exists, before it is finalised.

Reading a pretrained encoder (`init_from`: any workdir, converted or released folder) is
gau_jax.pretrained.load; `merge_pretrained` puts its params into a freshly initialised model.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from orbax.checkpoint._src.metadata import array_metadata_store  # Orbax's default handler has one

from gau_jax import workdir as layout
from gau_jax.models.tree import path_names, tree_shape_diff

PyTree = Any
_log = logging.getLogger(__name__)

MIN_REPLICA_SLICE_BYTES = 1 << 20  # smaller replica slices: the array is written whole
ocp.type_handlers.register_type_handler(jax.Array, ocp.type_handlers.ArrayHandler(
    array_metadata_store=array_metadata_store.Store(),
    min_slice_bytes_for_replica_parallel=MIN_REPLICA_SLICE_BYTES), override=True)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (read-only or full disk, ...); names the path."""


class _ModelMismatch(ValueError):
    """The stored model differs from the config's: a user error, not damage to skip."""


class _SlowJson(ocp.JsonCheckpointHandler):
    """JSON handler that pauses before writing (GAU_JAX_FAULT_SAVE_DELAY_S, tests only)."""

    def async_save(self, directory, *args, **kwargs):
        time.sleep(float(os.environ["GAU_JAX_FAULT_SAVE_DELAY_S"]))
        return super().async_save(directory, *args, **kwargs)


def _manager(directory: Path, items: dict, keep: int, async_save: bool) -> ocp.CheckpointManager:
    """CheckpointManager with a handler registry (items: name → (save args, restore args))."""
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    slow = os.environ.get("GAU_JAX_FAULT_SAVE_DELAY_S")
    for name, (save, restore) in items.items():
        handler = _SlowJson() if slow and save is ocp.args.JsonSave else None
        registry.add(name, save, handler)
        registry.add(name, restore, handler)
    opts = ocp.CheckpointManagerOptions(
        preservation_policy=ocp.checkpoint_managers.LatestN(keep), create=True,
        enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
    return ocp.CheckpointManager(directory, options=opts, handler_registry=registry)


def _write_error(path: Path, e: BaseException) -> BaseException:
    """CheckpointWriteError naming `path` when an OSError is behind `e`, else `e` itself."""
    cause = e
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return e
    return CheckpointWriteError(cause.errno, f"could not write checkpoint {path}: {cause}; the "
                                "previous checkpoint is kept (free space or fix permissions, "
                                "then rerun)")


# ------------------------------------------------------------------- per-process data state
def _process_sharding() -> NamedSharding:
    """Row p of a [P, ...] array on process p's devices (replicated over them)."""
    n = jax.process_count()
    devices = np.array([[d for d in jax.devices() if d.process_index == p] for p in range(n)])
    return NamedSharding(jax.sharding.Mesh(devices, ("process", "local")), P("process"))


def _encode(state: Any) -> bytes:
    """Iterator states may be bytes (grain) or JSON-able objects: JSON bytes either way."""
    obj = ({"__bytes_b64__": base64.b64encode(state).decode("ascii")}
           if isinstance(state, bytes) else {"__json__": state})
    return json.dumps(obj).encode()


def _decode(obj: Any) -> Any:
    if obj is None:
        return None
    if "__bytes_b64__" in obj:
        return base64.b64decode(obj["__bytes_b64__"])
    return obj["__json__"]


def data_rows(state: Any) -> dict:
    """{"bytes": uint8 [P, L], "length": int32 [P, 1]} holding this process's iterator state
    in its row (a collective: every process calls it)."""
    raw = _encode(state)
    n = jax.process_count()
    width = len(raw) if n == 1 else int(np.max(multihost_utils.process_allgather(
        np.int32(len(raw)))))
    row = np.zeros((1, max(width, 1)), np.uint8)
    row[0, :len(raw)] = np.frombuffer(raw, np.uint8)
    length = np.full((1, 1), len(raw), np.int32)
    if n == 1:
        return {"bytes": row, "length": length}
    sharding = _process_sharding()
    return {"bytes": jax.make_array_from_process_local_data(sharding, row, (n, row.shape[1])),
            "length": jax.make_array_from_process_local_data(sharding, length, (n, 1))}


def _local_row(x: Any) -> np.ndarray:
    x = x.addressable_shards[0].data if isinstance(x, jax.Array) else x
    return np.asarray(x)[0]


class Checkpointer:
    """Resume checkpoints (keep last K) plus, optionally, the best-dev params."""

    def __init__(self, workdir: str | Path, *, max_to_keep: int = 2, async_save: bool = True):
        self.workdir = Path(workdir).absolute()
        self.dir = self.workdir / layout.CHECKPOINTS
        self.best_dir = self.workdir / layout.BEST
        std, js = (ocp.args.StandardSave, ocp.args.StandardRestore), \
            (ocp.args.JsonSave, ocp.args.JsonRestore)
        handlers = {"state": std, "data": std, "params": std, "meta": js}
        self.manager = _manager(self.dir, {k: handlers[k] for k in layout.STATE_ITEMS},
                                max_to_keep, async_save)
        self.best = _manager(self.best_dir, {k: handlers[k] for k in layout.BEST_ITEMS}, 1, False)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: PyTree, data_state: Any = None, meta: dict | None = None,
             force: bool = False) -> None:
        """Writes DIR/checkpoints/<step> (asynchronously) unless it exists; every process
        calls it with its own data-iterator state."""
        if step in self.manager.all_steps():
            return
        rows = data_rows(data_state)
        try:
            self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.StandardSave(rows),
                meta=ocp.args.JsonSave(meta or {})), force=force)
        except Exception as e:
            raise _write_error(self.dir / str(step), e) from e

    # ----------------------------------------------------------------------------- restore
    def restore(self, abstract_state: PyTree) -> tuple[PyTree, Any, dict] | None:
        """(state, this process's data-iterator state, meta) of the newest complete step, laid
        out like `abstract_state` (ShapeDtypeStructs with shardings); None when there is no
        complete step. Damaged steps are skipped (module docstring)."""
        for step in sorted(self.manager.all_steps(), reverse=True):
            where = self.dir / str(step)
            try:
                problem = _incomplete(where)
                if problem is None:
                    return self._restore(step, abstract_state)
            except _ModelMismatch:
                raise
            except Exception as e:  # damaged in a way the checks above did not see
                problem = f"{type(e).__name__}: {e}"
            _log.warning("skipping checkpoint %s: %s", where, problem)
            self._set_aside(step)
        return None

    def _restore(self, step: int, abstract_state: PyTree) -> tuple[PyTree, Any, dict]:
        where = self.dir / str(step)
        stored = self.manager.item_metadata(step)["state"]
        stored = getattr(stored, "tree", stored)
        problem = tree_shape_diff(stored["params"], abstract_state.params, "the checkpoint",
                                  "this config's model")
        if problem:
            raise _ModelMismatch(f"checkpoint {where} was written by a different model: "
                                 f"{problem}. Use a fresh --workdir.")
        if _shapes(stored) != _shapes(abstract_state):
            raise _ModelMismatch(f"checkpoint {where} does not fit this config's train state (a "
                                 "different optimizer or method?). Use a fresh --workdir.")
        data_abstract, data_note = self._data_target(step)
        items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
        if not data_note:  # under another process count the positions are not restored
            items["data"] = ocp.args.StandardRestore(data_abstract)
        out = self.manager.restore(step, args=ocp.args.Composite(**items))
        data = None
        if data_note:
            _log.warning("checkpoint %s: %s", where, data_note)
        else:
            row, n = _local_row(out["data"]["bytes"]), int(_local_row(out["data"]["length"])[0])
            data = _decode(json.loads(bytes(row[:n]).decode()))
        return out["state"], data, dict(out["meta"] or {})

    def _data_target(self, step: int) -> tuple[Any, str | None]:
        """Abstract data rows to restore, or (None, why not) under another process count."""
        meta = self.manager.item_metadata(step)["data"]
        tree = getattr(meta, "tree", meta)
        stored = int(tree["bytes"].shape[0])
        n = jax.process_count()
        if stored != n:
            return None, (f"holds the data-iterator positions of {stored} process(es) but this "
                          f"run has {n}: model and optimizer state restore, the data "
                          "iterators start over (a different order than the interrupted run)")
        if n == 1:
            return None, None
        sharding = _process_sharding()
        return ({k: jax.ShapeDtypeStruct(tuple(v.shape), v.dtype, sharding=sharding)
                 for k, v in tree.items()}, None)

    def _set_aside(self, step: int) -> None:
        """Moves a damaged step out of the manager's folder (kept for inspection)."""
        if jax.process_index() == 0:
            dest = self.workdir / layout.CORRUPT / f"{step}-{int(time.time())}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(self.dir / str(step)), dest)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"checkpoint_set_aside_{step}")
        self.manager.reload()

    # ----------------------------------------------------------------------------- best
    def save_best(self, step: int, params: PyTree, meta: dict) -> None:
        """Replaces DIR/best with these params (synchronous; the old one goes after). A best
        step at or after `step` is one a killed run wrote past its last checkpoint: the resumed
        run replaces it."""
        for stale in [x for x in self.best.all_steps() if x >= step]:
            self.best.delete(stale)
        try:
            self.best.save(step, args=ocp.args.Composite(
                params=ocp.args.StandardSave({"params": params}),
                meta=ocp.args.JsonSave(meta)), force=True)
        except Exception as e:
            raise _write_error(self.best_dir / str(step), e) from e

    def best_meta(self) -> dict | None:
        step = self.best.latest_step()
        if step is None:
            return None
        out = self.best.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out["meta"])

    def wait(self) -> None:
        """Blocks until every write has finished (an async write's error surfaces here)."""
        try:
            self.manager.wait_until_finished()
            self.best.wait_until_finished()
        except Exception as e:
            raise _write_error(self.dir, e) from e

    def close(self) -> None:
        self.manager.close()
        self.best.close()


def _shapes(tree: PyTree) -> list[tuple[int, ...]]:
    """Sorted leaf shapes (stored metadata and abstract states flatten in different orders)."""
    return sorted(tuple(x.shape) for x in jax.tree_util.tree_leaves(tree) if hasattr(x, "shape"))


def _incomplete(step_dir: Path) -> str | None:
    """Why a finalised step directory cannot be a complete checkpoint, or None."""
    meta = step_dir / "_CHECKPOINT_METADATA"
    if not meta.is_file():
        return "no _CHECKPOINT_METADATA (the write never completed)"
    try:
        json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"unreadable {meta.name} ({e})"
    for item in layout.STATE_ITEMS:
        if not (step_dir / item).is_dir():
            return f"item {item!r} is missing"
    for item in ("state", "data"):
        m = step_dir / item / "_METADATA"
        try:
            json.loads(m.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            return f"unreadable {item}/_METADATA ({type(e).__name__})"
    return None


# ---------------------------------------------------------------------------- init_from
def merge_pretrained(params: PyTree, pretrained: PyTree, path: tuple[str, ...],
                     keep_fresh: Callable[[tuple[str, ...]], bool] | None = None) -> PyTree:
    """params with the subtree at `path` (e.g. ("encoder",)) replaced by `pretrained` (cast to
    the model's dtypes) after checking every shape; other subtrees (a fresh head) are kept.

    A leaf of the model under `path` that `pretrained` lacks is an error naming it, unless
    keep_fresh(its names below `path`) is True: it then keeps its fresh init (e.g. adapters when
    the pretrained trunk has none)."""
    node = params
    for key in path:
        node = node[key]
    have = {path_names(p) for p, _ in jax.tree_util.tree_flatten_with_path(pretrained)[0]}
    fresh = lambda names: names not in have and keep_fresh is not None and keep_fresh(names)
    wanted = jax.tree_util.tree_map_with_path(
        lambda p, x: None if fresh(path_names(p)) else x, node)
    problem = tree_shape_diff(pretrained, wanted, "config.init_from", "the model")
    if problem:
        raise ValueError(f"config.init_from does not fit the model at {'/'.join(path)}: {problem}")
    flat = {path_names(p): x for p, x in jax.tree_util.tree_flatten_with_path(pretrained)[0]}
    restored = jax.tree_util.tree_map_with_path(
        lambda p, old: old if fresh(path_names(p)) else np.asarray(flat[path_names(p)], old.dtype),
        node)
    return _set_subtree(params, path, restored)


def _set_subtree(tree: PyTree, path: tuple[str, ...], value: PyTree) -> PyTree:
    if not path:
        return value
    out = dict(tree)
    out[path[0]] = _set_subtree(tree[path[0]], path[1:], value)
    return out
