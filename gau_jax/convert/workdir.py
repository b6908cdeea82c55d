"""The encoder inside what the trainer writes: run workdirs and Orbax params folders.

A workdir (gau_jax.train) holds DIR/config.json (the encoder's model config), DIR/vocab.txt,
DIR/train_config.json (the run's whole config: kind, method, lora.alpha, …),
DIR/checkpoints/<step>/state (TrainState) and DIR/best/<step>/params ({"params": params} of the
best dev evaluation). The params read are DIR/best's step when it holds one (fine-tuning with
keep_best), else the latest finalized DIR/checkpoints step. Only the "params" subtree is
restored (Orbax partial restore: no optimizer state is read), as host numpy arrays, so no device
layout of the saving run is needed.

Where the encoder sits in a params tree (found by structure):
    "embeddings" at the top               pretraining: the tree is the encoder
    "encoder"                             full / adapter / bitfit; LST (the frozen trunk)
    "base"/"encoder" + "<path>/A", "/B"   LoRA: the trained kernels are W + (α/r)·A·B
                                          (peft.merge_lora), α = train_config.json lora.alpha
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from gau_jax.convert.common import ConvertError
from gau_jax.models.peft import merge_lora

PyTree = Any


def is_workdir(path: Path) -> bool:
    """A run's workdir: it has DIR/checkpoints or DIR/best."""
    return (path / "checkpoints").is_dir() or (path / "best").is_dir()


def _quiet(fn):
    """Run fn with absl logging at ERROR (Orbax warns about every item it does not restore)."""
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        return fn()
    finally:
        absl_logging.set_verbosity(verbosity)


def latest_step(folder: Path) -> int | None:
    """The newest finalized step of an Orbax CheckpointManager folder (None: none or no folder)."""
    if not folder.is_dir():
        return None
    mgr = ocp.CheckpointManager(folder.absolute(),
                                options=ocp.CheckpointManagerOptions(read_only=True))
    try:
        return mgr.latest_step()
    finally:
        mgr.close()


def restore_numpy(item: Path, key: str | None = None) -> PyTree:
    """An Orbax PyTree item as host numpy arrays; with `key`, only that top-level subtree."""

    def restore():
        with ocp.PyTreeCheckpointer() as ckptr:
            meta = ckptr.metadata(item.absolute())
            meta = getattr(meta, "item_metadata", meta)
            meta = getattr(meta, "tree", meta)
            if key is not None:
                if key not in meta:
                    raise ConvertError(f"{item}: no {key!r} in the checkpoint (it has "
                                       f"{sorted(meta)})")
                meta = {key: meta[key]}
            args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                                          meta)
            tree = ckptr.restore(item.absolute(), args=ocp.args.PyTreeRestore(
                item=meta, restore_args=args, partial_restore=key is not None))
        return tree if key is None else tree[key]

    return _quiet(restore)


def orbax_item(folder: Path) -> Path | None:
    """The Orbax item of a converted folder: DIR/params, DIR/checkpoint or DIR itself."""
    for cand in (folder / "params", folder / "checkpoint", folder):
        if cand.is_dir() and any((cand / f).exists() for f in
                                 ("_METADATA", "_CHECKPOINT_METADATA", "manifest.ocdbt")):
            return cand
    return None


def read_train_config(root: Path) -> dict:
    """DIR/train_config.json ({} when the run did not write one)."""
    path = root / "train_config.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConvertError(f"{path}: invalid JSON ({e})") from e


def read_workdir_params(root: Path, train_cfg: dict) -> tuple[PyTree, str]:
    """(the run's params tree as numpy, what was read) — DIR/best's step, else the latest
    DIR/checkpoints step."""
    kind = train_cfg.get("kind")
    what = f"method {train_cfg.get('method', '?')}" if kind == "finetune" else \
        "pretraining" if kind == "pretrain" else "no train_config.json"
    step = latest_step(root / "best")
    if step is not None:
        tree = restore_numpy(root / "best" / str(step) / "params", "params")
        return tree, f"best step {step} of {root} ({what})"
    step = latest_step(root / "checkpoints")
    if step is None:
        raise FileNotFoundError(f"{root}: a workdir without any finalized checkpoint (nothing in "
                                f"{root / 'best'} or {root / 'checkpoints'})")
    tree = restore_numpy(root / "checkpoints" / str(step) / "state", "params")
    return tree, f"checkpoint step {step} of {root} ({what})"


def encoder_params(tree: PyTree, source: str, train_cfg: dict, train_cfg_file: Path) -> PyTree:
    """The encoder params inside any params tree the project writes (module docstring)."""
    if "embeddings" in tree:
        return tree
    if "base" in tree and "encoder" in tree["base"]:
        if not any(k.endswith("/A") for k in tree):
            return tree["base"]["encoder"]
        alpha = (train_cfg.get("lora") or {}).get("alpha")
        if alpha is None:
            raise ConvertError(f"{source}: LoRA params, but {train_cfg_file} has no lora.alpha "
                               "to merge W + (alpha/rank)·A·B with"
                               + ("" if train_cfg_file.exists() else " (the file is missing)"))
        return merge_lora(tree, float(alpha))["encoder"]
    if "encoder" in tree and "embeddings" in tree["encoder"]:
        return tree["encoder"]
    raise ConvertError(f"{source}: no encoder in the params (top-level keys {sorted(tree)[:8]}); "
                       "expected 'embeddings' (pretraining), 'encoder' (fine-tuning) or "
                       "'base'/'encoder' (LoRA)")
