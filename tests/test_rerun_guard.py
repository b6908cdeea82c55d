"""Rerunning a workdir: the same config resumes; a changed run-defining field (data_dir,
learning_rate, method, seed, model) is refused with a ValueError naming every changed field,
and the workdir is left as it was; a run that fails before its first checkpoint leaves no
empty workdir behind (but never deletes a folder the user made).
"""

from __future__ import annotations

import shutil

import jax
import numpy as np
import pytest

from configs import finetune
from gau_jax.train.loop import Trainer, train
from tests import fault_helpers as fh


def _config(task, method="full", **kw):
    c = finetune.get_config(f"task=jsonl,model=gau_alpha_tiny,method={method}")
    c.model.update(num_layers=1, hidden_size=32, intermediate_size=64, key_size=16,
                   vocab_size=64)
    c.update(data_dir=str(task), total_steps=4, batch_size=8, max_length=16, pad_multiple=16,
             checkpoint_every_steps=2, eval_every_steps=4, progress_bar=False,
             tensorboard=False, async_checkpoints=False, data_threads=1, optimizer="adamw",
             learning_rate=1e-3)  # pinned: each method has its own default rate
    c.update(kw)
    return c


def _leaves(state):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(state))]


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """A fine-tuning workdir stopped at step 2, a copy of its task folder, and its state."""
    root = tmp_path_factory.mktemp("rerun")
    task = fh.write_task(root / "task")
    shutil.copytree(task, root / "task_copy")
    trainer = Trainer(_config(task), root / "run")
    trainer.run(stop_at=2)
    state = _leaves(trainer.host_state())
    trainer.close()
    return root, task, state


def _snapshot(workdir):
    return sorted((str(p.relative_to(workdir)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in workdir.rglob("*") if p.is_file())


@pytest.mark.parametrize("change,fields", [
    ("data_dir", ["data_dir"]),
    ("learning_rate", ["learning_rate"]),
    ("method", ["method"]),
    ("seed_and_lr", ["seed", "learning_rate"]),
    ("model", ["model.hidden_size"]),
])
def test_changed_config_is_refused(started, change, fields):
    root, task, _ = started
    kw = {"data_dir": {"data_dir": str(root / "task_copy")},
          "learning_rate": {"learning_rate": 5e-3},
          "seed_and_lr": {"seed": 7, "learning_rate": 5e-3}}.get(change, {})
    config = _config(task, method="bitfit" if change == "method" else "full", **kw)
    if change == "model":
        config.model.hidden_size = 48
    before = _snapshot(root / "run")
    with pytest.raises(ValueError) as err:
        Trainer(config, root / "run")
    msg = str(err.value)
    for field in fields:
        assert field in msg, msg
    assert str(root / "run") in msg, msg
    unchanged = [f for f in ("data_dir", "learning_rate", "method", "seed", "total_steps")
                 if f not in fields and not any(f in g for g in fields)]
    named = msg.split("changed", 1)[-1]  # the list of changed fields, if the message has one
    for field in unchanged:
        assert f" {field}" not in named and f"{field}," not in named, (field, msg)
    assert _snapshot(root / "run") == before  # nothing in the workdir was touched


def test_same_config_resumes_and_resumable_fields_may_change(started):
    root, task, state = started
    work = root / "resume"
    shutil.copytree(root / "run", work)
    trainer = Trainer(_config(task, total_steps=6, log_every_steps=3), work)
    try:
        assert trainer.step() == 2
        for a, b in zip(_leaves(trainer.host_state()), state, strict=True):
            np.testing.assert_array_equal(a, b)
        assert trainer.run()["step"] == 6
    finally:
        trainer.close()


def test_error_before_first_checkpoint_leaves_no_workdir(tmp_path):
    task = fh.write_task(tmp_path / "task")
    (task / "dev.json").unlink()  # the run fails while building its inputs
    work = tmp_path / "new" / "run"
    with pytest.raises(ValueError, match="dev"):
        train(_config(task), work)
    assert not work.exists()
    with pytest.raises(ValueError, match="method"):  # fails in validation
        train(_config(task, method="nonsense"), work)
    assert not work.exists()


def test_error_never_deletes_a_folder_the_user_made(tmp_path):
    task = fh.write_task(tmp_path / "task")
    (task / "dev.json").unlink()
    work = tmp_path / "mine"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError):
        train(_config(task), work)
    assert (work / "notes.txt").read_text() == "keep me"
