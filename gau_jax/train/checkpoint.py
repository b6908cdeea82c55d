"""Orbax checkpoints of a run: resume state, best-dev params, and pretrained trunks (init_from).

Workdir layout written here:
    DIR/checkpoints/<step>/{state, data, meta}   TrainState, data-iterator state, run metadata;
                                                 every N steps + at the end, keep-last-K, async
    DIR/best/<step>/{params, meta}               params of the best dev evaluation (fine-tuning)
    DIR/config.json, DIR/vocab.txt               encoder model config and vocabulary (by loop.py)

Atomicity is Orbax's: a step is written into `<step>.orbax-checkpoint-tmp-*` and renamed when
complete, and only finalized step directories are listed, so a crash mid-write leaves the last
good step restorable. Restoring checks every stored array shape against the state the config
builds and names the first leaf that differs (a workdir written by a different model).

`init_from` accepts a pretraining workdir (DIR/checkpoints + config.json + vocab.txt) or a
converted folder (`python -m gau_jax.convert`): config.json + vocab.txt + an Orbax checkpoint of
{"params": encoder params} in DIR/params (DIR/checkpoint or DIR itself are also accepted).
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from gau_jax.train.optim import path_names

PyTree = Any


def _encode_data_state(state: Any) -> Any:
    """Iterator states may be bytes (grain) or JSON-able objects; JSON either way."""
    if isinstance(state, bytes):
        return {"__bytes_b64__": base64.b64encode(state).decode("ascii")}
    return {"__json__": state}


def _decode_data_state(obj: Any) -> Any:
    if obj is None:
        return None
    if "__bytes_b64__" in obj:
        return base64.b64decode(obj["__bytes_b64__"])
    return obj["__json__"]


def _shape_mismatch(stored: PyTree, wanted: PyTree) -> str | None:
    """First leaf whose stored shape differs from the wanted one, or a structure difference."""
    s_flat = {"/".join(path_names(p)): tuple(x.shape) for p, x in
              jax.tree_util.tree_flatten_with_path(stored)[0] if hasattr(x, "shape")}
    w_flat = {"/".join(path_names(p)): tuple(x.shape) for p, x in
              jax.tree_util.tree_flatten_with_path(wanted)[0]}
    for key, shape in w_flat.items():
        if key not in s_flat:
            return f"{key} is missing from the checkpoint"
        if s_flat[key] != shape:
            return f"{key} has shape {s_flat[key]} in the checkpoint but {shape} in the config"
    extra = sorted(set(s_flat) - set(w_flat))
    return f"{extra[0]} is in the checkpoint but not in the model" if extra else None


class Checkpointer:
    """Resume checkpoints (keep last K) plus, optionally, the best-dev params."""

    def __init__(self, workdir: str | Path, *, max_to_keep: int = 2, async_save: bool = True):
        self.dir = Path(workdir).absolute() / "checkpoints"
        opts = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True)
        self.manager = ocp.CheckpointManager(self.dir, options=opts, item_handlers={
            "state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler()})
        best_opts = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False,
                                                 create=True)
        self.best_dir = Path(workdir).absolute() / "best"
        self.best = ocp.CheckpointManager(self.best_dir, options=best_opts, item_handlers={
            "params": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()})

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: PyTree, data_state: Any = None, meta: dict | None = None,
             force: bool = False) -> None:
        """Writes DIR/checkpoints/<step> (asynchronously) unless it exists."""
        if step in self.manager.all_steps():
            return
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(_encode_data_state(data_state)),
            meta=ocp.args.JsonSave(meta or {})), force=force)

    def restore(self, abstract_state: PyTree, step: int | None = None) -> tuple[PyTree, Any, dict]:
        """(state, data-iterator state, meta) of `step` (default latest), laid out like
        `abstract_state` (ShapeDtypeStructs with shardings)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no finalized checkpoint in {self.dir}")
        stored = self.manager.item_metadata(step)["state"]
        stored = getattr(stored, "tree", stored)
        problem = _shape_mismatch(stored["params"], abstract_state.params)
        where = self.dir / str(step)
        if problem:
            raise ValueError(f"checkpoint {where} was written by a different model: {problem}. "
                             "Use a fresh --workdir.")
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"checkpoint {where} does not fit this config's train state (a "
                             f"different optimizer or method?): {e}") from e
        return out["state"], _decode_data_state(out["data"]), dict(out["meta"] or {})

    def save_best(self, step: int, params: PyTree, meta: dict) -> None:
        """Replaces DIR/best with these params (synchronous; the old one goes after)."""
        self.best.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave({"params": params}), meta=ocp.args.JsonSave(meta)),
            force=True)

    def best_meta(self) -> dict | None:
        step = self.best.latest_step()
        if step is None:
            return None
        out = self.best.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out["meta"])

    def wait(self) -> None:
        self.manager.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
        self.best.close()


# ---------------------------------------------------------------------------- init_from
def _is_orbax_item(path: Path) -> bool:
    return path.is_dir() and any((path / f).exists() for f in
                                 ("_METADATA", "_CHECKPOINT_METADATA", "manifest.ocdbt"))


def _numpy_restore_args(metadata: PyTree) -> PyTree:
    """Restore every leaf as a host numpy array (independent of the saving run's devices)."""
    return jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), metadata)


def load_pretrained(init_from: str | Path) -> tuple[PyTree, dict, Path | None]:
    """(encoder params as numpy, model config dict, vocab.txt path or None) from `init_from`."""
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax warns about the items not restored
    try:
        return _load_pretrained(init_from)
    finally:
        absl_logging.set_verbosity(verbosity)


def _load_pretrained(init_from: str | Path) -> tuple[PyTree, dict, Path | None]:
    root = Path(init_from)
    if root.is_dir() and not (root / "checkpoints").is_dir():
        from gau_jax import pretrained  # a released checkpoint (HF port or bert4keras) as is

        if pretrained.detect_format(root) in ("hf", "bert4keras"):
            cfg, params, vocab = pretrained.load_params(root)
            logging.info("init_from: imported %s checkpoint %s", cfg.block, root)
            return params, cfg.to_dict(), vocab
    cfg_file = root / "config.json"
    if not cfg_file.exists():
        raise FileNotFoundError(f"config.init_from={init_from}: {cfg_file} not found (expected a "
                                "pretraining workdir or a folder written by gau_jax.convert)")
    model_cfg = json.loads(cfg_file.read_text())
    vocab = root / "vocab.txt"
    if (root / "checkpoints").is_dir():
        mgr = ocp.CheckpointManager(root.absolute() / "checkpoints",
                                    options=ocp.CheckpointManagerOptions(read_only=True),
                                    item_handlers={"state": ocp.PyTreeCheckpointHandler()})
        step = mgr.latest_step()
        if step is None:
            raise FileNotFoundError(f"config.init_from={init_from}: no checkpoint in "
                                    f"{root / 'checkpoints'}")
        meta = mgr.item_metadata(step)["state"]
        meta = getattr(meta, "tree", meta)
        state = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            restore_args=_numpy_restore_args(meta))))
        params = state["state"]["params"]
        mgr.close()
        logging.info("init_from: loaded step %d of %s", step, root)
    else:
        cands = [root / "params", root / "checkpoint", root]
        item = next((c for c in cands if _is_orbax_item(c)), None)
        if item is None:
            raise FileNotFoundError(f"config.init_from={init_from}: no Orbax checkpoint in any "
                                    f"of {[str(c) for c in cands]}")
        with ocp.PyTreeCheckpointer() as ckptr:
            meta = ckptr.metadata(item.absolute())
            meta = getattr(meta, "item_metadata", meta)
            meta = getattr(meta, "tree", meta)
            tree = ckptr.restore(item.absolute(), args=ocp.args.PyTreeRestore(
                restore_args=_numpy_restore_args(meta)))
        params = tree.get("params", tree)
    params = jax.tree_util.tree_map(np.asarray, params)
    return params, model_cfg, vocab if vocab.exists() else None


def merge_pretrained(params: PyTree, pretrained: PyTree, path: tuple[str, ...]) -> PyTree:
    """params with the subtree at `path` (e.g. ("encoder",)) replaced by `pretrained`, after
    checking every shape matches; other leaves (a fresh head) are kept."""
    node = params
    for key in path:
        node = node[key]
    problem = _shape_mismatch(pretrained, node)
    if problem:
        raise ValueError(f"config.init_from does not fit the model at {'/'.join(path)}: {problem}")
    restored = jax.tree_util.tree_map(lambda new, old: np.asarray(new, old.dtype), pretrained, node)
    return _set_subtree(params, path, restored)


def _set_subtree(tree: PyTree, path: tuple[str, ...], value: PyTree) -> PyTree:
    if not path:
        return value
    out = dict(tree)
    out[path[0]] = _set_subtree(tree[path[0]], path[1:], value)
    return out
