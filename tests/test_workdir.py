"""gau_jax/workdir.py: the layout names the checkpointer writes under are the ones the readers
read, and `read_params`'s rule — DIR/best, else the latest checkpoint with a warning, else an
error naming the folders."""

import json
import logging

import numpy as np
import pytest

from gau_jax import workdir as layout
from gau_jax.convert.common import ConvertError
from gau_jax.train.checkpoint import Checkpointer


def _write(root, checkpoints=(), best=None):
    """DIR/checkpoints/<s>/state {"params": {"w": [s, s]}} for s in `checkpoints`; DIR/best/<b>
    {"params": {"w": [10 b, 10 b]}} when best=b — written by the trainer's Checkpointer."""
    ckpt = Checkpointer(root, max_to_keep=5, async_save=False)
    try:
        for s in checkpoints:
            ckpt.save(s, {"params": {"w": np.full(2, s, np.float32)}, "step": np.int32(s)})
        if best is not None:
            ckpt.save_best(best, {"w": np.full(2, 10 * best, np.float32)}, {"step": best})
        ckpt.wait()
    finally:
        ckpt.close()


def _ours(caplog) -> list:
    """This module's log records (Orbax logs through absl, and is quiet here anyway)."""
    return [r for r in caplog.records if r.name == "gau_jax.workdir"]


def test_the_checkpointer_writes_the_layout_the_readers_name(tmp_path):
    _write(tmp_path, checkpoints=(1, 3), best=2)
    assert layout.is_workdir(tmp_path)
    assert layout.latest_step(tmp_path / layout.CHECKPOINTS) == 3
    assert layout.latest_step(tmp_path / layout.BEST) == 2
    items = lambda step_dir: sorted(p.name for p in step_dir.iterdir() if p.is_dir())
    assert items(tmp_path / layout.CHECKPOINTS / "3") == sorted(layout.STATE_ITEMS)
    assert items(tmp_path / layout.BEST / "2") == sorted(layout.BEST_ITEMS)
    assert layout.latest_step(tmp_path / "nothing") is None and not layout.is_workdir(
        tmp_path / "nothing")


def test_read_params_best_then_latest_with_a_warning(tmp_path, caplog):
    _write(tmp_path, checkpoints=(1, 3), best=2)
    with caplog.at_level(logging.WARNING, logger="gau_jax.workdir"):
        tree, step, source = layout.read_params(tmp_path)
    assert (step, source) == (2, f"best step 2 of {tmp_path}")
    np.testing.assert_array_equal(tree["w"], [20.0, 20.0])
    assert not _ours(caplog)  # best present: nothing to warn about

    tree, step, source = layout.read_params(tmp_path, "latest")
    assert (step, source) == (3, f"checkpoint step 3 of {tmp_path}")
    np.testing.assert_array_equal(tree["w"], [3.0, 3.0])
    assert isinstance(tree["w"], np.ndarray) and set(tree) == {"w"}  # params only

    no_best = tmp_path / "no_best"
    _write(no_best, checkpoints=(1, 3))
    with caplog.at_level(logging.WARNING, logger="gau_jax.workdir"):
        tree, step, source = layout.read_params(no_best)
    assert (step, source) == (3, f"checkpoint step 3 of {no_best}")
    assert [r.getMessage() for r in _ours(caplog)] == [
        f"{no_best} has no best checkpoint (keep_best off?): using the latest"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gau_jax.workdir"):
        assert layout.read_params(no_best, warn=False)[1] == 3
    assert not _ours(caplog)


def test_read_params_without_a_checkpoint_names_the_folders(tmp_path):
    (tmp_path / layout.CHECKPOINTS).mkdir()
    with pytest.raises(FileNotFoundError, match=f"no finalized checkpoint in "
                       f"{tmp_path / layout.CHECKPOINTS} or {tmp_path / layout.BEST}"):
        layout.read_params(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"in {tmp_path / layout.CHECKPOINTS}$"):
        layout.read_params(tmp_path, "latest")
    with pytest.raises(ValueError, match=r"checkpoint='newest': choose one of \('best'"):
        layout.read_params(tmp_path, "newest")


def test_read_workdir_params_warns_only_for_fine_tuning(tmp_path, caplog):
    _write(tmp_path, checkpoints=(4,))
    with caplog.at_level(logging.WARNING, logger="gau_jax.workdir"):
        _, source = layout.read_workdir_params(tmp_path, {"kind": "pretrain"})
    assert source == f"checkpoint step 4 of {tmp_path} (pretraining)" and not _ours(caplog)
    with caplog.at_level(logging.WARNING, logger="gau_jax.workdir"):
        _, source = layout.read_workdir_params(tmp_path, {"kind": "finetune", "method": "lora"})
    assert source == f"checkpoint step 4 of {tmp_path} (method lora)"
    assert len(_ours(caplog)) == 1


def test_read_train_config(tmp_path):
    assert layout.read_train_config(tmp_path) == {}
    (tmp_path / layout.TRAIN_CONFIG).write_text(json.dumps({"kind": "finetune"}))
    assert layout.read_train_config(tmp_path) == {"kind": "finetune"}
    (tmp_path / layout.TRAIN_CONFIG).write_text("{")
    with pytest.raises(ConvertError, match="train_config.json: invalid JSON"):
        layout.read_train_config(tmp_path)
