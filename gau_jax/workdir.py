"""A run's workdir: the names of what the trainer writes there, and the readers of it.

Layout (written by gau_jax/train: checkpoint.py the Orbax folders, inputs.py the model files,
metrics.py the metrics and summary):
    DIR/checkpoints/<step>/{state, data, meta}   TrainState; every process's data-iterator
                                                 state; run metadata (JSON)
    DIR/best/<step>/{params, meta}               {"params": params} of the best dev evaluation
    DIR/checkpoints_corrupt/<step>-<time>/       steps found incomplete or damaged (moved aside)
    DIR/train_config.json                        the run's resolved config (kind, method, …)
    DIR/config.json, DIR/vocab.txt               encoder model config and vocabulary
    DIR/labels.json                              fine-tuning: the label names
    DIR/metrics.jsonl, DIR/summary.json          metrics while training; the end summary

Readers take only the "params" subtree (Orbax partial restore: no optimizer state is read), as
host numpy arrays, so no device layout of the saving run is needed. `read_params` is the one
rule for which params a workdir means: DIR/best's step (fine-tuning with keep_best), else — with
a warning — the latest finalized DIR/checkpoints step; checkpoint="latest" reads the latter.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from gau_jax.convert.common import ConvertError

PyTree = Any
T = TypeVar("T")

CHECKPOINTS = "checkpoints"                # resume checkpoints: CheckpointManager folder
BEST = "best"                              # best-dev params: CheckpointManager folder
CORRUPT = "checkpoints_corrupt"            # damaged steps, moved aside
STATE_ITEMS = ("state", "data", "meta")    # items of a DIR/checkpoints step
BEST_ITEMS = ("params", "meta")            # items of a DIR/best step
TRAIN_CONFIG = "train_config.json"
MODEL_CONFIG = "config.json"
VOCAB = "vocab.txt"
LABELS = "labels.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHOICES = ("best", "latest")               # read_params(checkpoint=...)

_log = logging.getLogger(__name__)


def is_workdir(path: Path) -> bool:
    """A run's workdir: it has DIR/checkpoints or DIR/best."""
    return (path / CHECKPOINTS).is_dir() or (path / BEST).is_dir()


def _quiet(fn: Callable[[], T]) -> T:
    """Run fn with absl logging at ERROR (Orbax warns about every item it does not restore and
    every read-only manager)."""
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

    def latest():  # quiet: Orbax warns that a read-only manager neither saves nor creates
        mgr = ocp.CheckpointManager(folder.absolute(),
                                    options=ocp.CheckpointManagerOptions(read_only=True))
        try:
            return mgr.latest_step()
        finally:
            mgr.close()

    return _quiet(latest)


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
    path = root / TRAIN_CONFIG
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConvertError(f"{path}: invalid JSON ({e})") from e


def read_params(root: str | os.PathLike, checkpoint: str = "best", *,
                warn: bool = True) -> tuple[PyTree, int, str]:
    """(the run's whole params tree as numpy, its step, what was read: "best step N of DIR" or
    "checkpoint step N of DIR").

    checkpoint="best": DIR/best's step, else the latest finalized DIR/checkpoints step (a
    warning says so unless warn=False); "latest": that step directly. FileNotFoundError naming
    the folders when there is none."""
    if checkpoint not in CHOICES:
        raise ValueError(f"checkpoint={checkpoint!r}: choose one of {CHOICES}")
    root = Path(root)
    if checkpoint == "best":
        step = latest_step(root / BEST)
        if step is not None:
            tree = restore_numpy(root / BEST / str(step) / "params", "params")
            return tree, step, f"best step {step} of {root}"
        if warn:
            _log.warning("%s has no best checkpoint (keep_best off?): using the latest", root)
    step = latest_step(root / CHECKPOINTS)
    if step is None:
        raise FileNotFoundError(f"{root}: no finalized checkpoint in {root / CHECKPOINTS}"
                                + (f" or {root / BEST}" if checkpoint == "best" else ""))
    tree = restore_numpy(root / CHECKPOINTS / str(step) / "state", "params")
    return tree, step, f"checkpoint step {step} of {root}"


def stage_of(train_cfg: dict) -> str | None:
    """A run config's stage: "pretrain" | "finetune" | "multitask" (workdirs written before the
    field was named `stage` call it `kind`)."""
    return train_cfg.get("stage", train_cfg.get("kind"))


def read_workdir_params(root: Path, train_cfg: dict) -> tuple[PyTree, str]:
    """(the run's params tree as numpy, what was read, with the run's kind / method) of
    read_params(root, "best"); only a fine-tuning run warns when it kept no best step."""
    stage = stage_of(train_cfg)
    what = f"method {train_cfg.get('method', '?')}" if stage in ("finetune", "multitask") else \
        "pretraining" if stage == "pretrain" else "no train_config.json"
    tree, _, source = read_params(root, "best", warn=stage in ("finetune", "multitask"))
    return tree, f"{source} ({what})"
