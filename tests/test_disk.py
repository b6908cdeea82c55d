"""Disk faults: a checkpoint write that fails raises CheckpointWriteError naming the path and
leaves the previous checkpoint restorable; the feature cache refuses to start when the disk
cannot hold its estimated size.

Tests run as root here, where chmod does not stop writes. Two ways to make a write fail:
a patched os.rename that fails finalising any Orbax temporary directory with ENOSPC (everywhere),
and a real tmpfs mounted on DIR/checkpoints, remounted read-only or filled up (where
`mount -t tmpfs` works; skipped elsewhere).
"""

from __future__ import annotations

import collections
import errno
import os
import re
import subprocess

import jax
import numpy as np
import pytest

from gau_jax.train import checkpoint as ckpt_lib
from gau_jax.train.loop import Trainer
from tests.fault_helpers import TMP_MARK, cache_setup
from tests.train_helpers import synthetic_inputs, tiny_pretrain_config

CheckpointWriteError = getattr(ckpt_lib, "CheckpointWriteError", OSError)


def _config(async_save: bool = False):
    return tiny_pretrain_config(total_steps=4, checkpoint_every_steps=2, keep_checkpoints=5,
                                batch_size=8, eval_every_steps=4, eval_batches=1,
                                async_checkpoints=async_save)


def _leaves(state):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(state))]


def _sh(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) → a tmpfs of that size at tmp_path/run/checkpoints; unmounted at the end."""
    mounted = []

    def mount(size: str):
        point = tmp_path / "run" / "checkpoints"
        point.mkdir(parents=True)
        out = _sh("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point))
        if out.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        _sh("mount", "-o", "remount,rw", str(point))
        _sh("umount", "-l", str(point))


def _fill(folder) -> None:
    """Writes files into `folder` until its file system is full (down to the last byte)."""
    for name, chunk in (("filler", b"\0" * 65536), ("filler2", b"\0")):
        with open(folder / name, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e


def _patched_rename(monkeypatch):
    real = os.rename

    def rename(src, dst, *a, **kw):
        if TMP_MARK in os.fspath(src):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(src))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "rename", rename)
    return lambda: monkeypatch.setattr(os, "rename", real)


@pytest.mark.parametrize("fault", ["patched_enospc_sync", "patched_enospc_async",
                                   "readonly_tmpfs", "full_tmpfs"])
@pytest.mark.slow
def test_failed_checkpoint_write(tmp_path, monkeypatch, tmpfs, fault):
    workdir = tmp_path / "run"
    point = tmpfs("4m") if "tmpfs" in fault else None
    config = _config(async_save=fault.endswith("async"))
    trainer = Trainer(config, workdir, inputs=synthetic_inputs(config))
    trainer.run(stop_at=2)
    at2 = _leaves(trainer.host_state())
    if fault.startswith("patched"):
        undo = _patched_rename(monkeypatch)
    elif fault == "readonly_tmpfs":
        assert _sh("mount", "-o", "remount,ro", str(point)).returncode == 0
        undo = lambda: _sh("mount", "-o", "remount,rw", str(point))
    else:
        _fill(point)
        undo = lambda: [(point / n).unlink() for n in ("filler", "filler2")]
    try:
        with pytest.raises(CheckpointWriteError) as err:
            trainer.run()
    finally:
        undo()
        try:
            trainer.close()
        except Exception:  # noqa: BLE001  (a manager whose write failed may fail to close)
            pass
    msg = str(err.value)
    want = workdir.absolute() / "checkpoints"
    assert str(want) in msg, msg
    if not fault.endswith("async"):  # a synchronous write knows its step
        assert str(want / "4") in msg, msg
    # the previous checkpoint restores, and training on reaches step 4
    resumed = Trainer(config, workdir, inputs=synthetic_inputs(config))
    try:
        assert resumed.step() == 2
        for a, b in zip(_leaves(resumed.host_state()), at2, strict=True):
            np.testing.assert_array_equal(a, b)
        assert resumed.run()["step"] == 4
    finally:
        resumed.close()


# ------------------------------------------------------------------ feature cache space check
Usage = collections.namedtuple("Usage", "total used free")


def _build(path, monkeypatch, free: int):
    import shutil

    from gau_jax.train.feature_cache import build_cache, estimate_bytes
    trunk, idx, params, batches = cache_setup()
    tokens = sum(int(b["attention_mask"][b["weights"] > 0].sum()) for b in batches)
    size = estimate_bytes(tokens, len(idx), trunk.hidden_size, "float32")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10 * size, 9 * size, free(size)))
    meta = build_cache(path, trunk, idx, params, {"train": batches}, "float32", 1.0, "fp")
    return meta, size


@pytest.mark.slow
def test_feature_cache_refuses_a_disk_too_small(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    with pytest.raises(ValueError) as err:
        _build(path, monkeypatch, lambda size: size // 2)
    msg = str(err.value)
    assert str(path) in msg, msg
    assert re.search(r"free|space|disk", msg, re.I), msg
    assert len(re.findall(r"\d+(?:\.\d+)?", msg.replace(str(path), ""))) >= 2, msg  # sizes
    assert not list(path.glob("*.bin")) if path.exists() else True


@pytest.mark.slow
def test_feature_cache_builds_when_the_disk_has_room(tmp_path, monkeypatch):
    meta, size = _build(tmp_path / "cache", monkeypatch, lambda size: 10 * size)
    assert meta["bytes"] == size
    assert (tmp_path / "cache" / "train.bin").stat().st_size == size
