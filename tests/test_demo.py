"""`make demo` at a reduced step count: both stages run and the table is printed."""

import json

import numpy as np
import pytest

from experiments import demo
from gau_jax.data.sources import load_task


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    rows = demo.run_demo(tmp_path, pretrain_steps=3, finetune_steps=40, progress=False)
    assert [r["steps"] for r in rows] == [3, 40]
    spec, splits = load_task("sentiment")
    labels = [int(r[spec.label_field]) for r in splits["dev"]]
    majority = max(np.bincount(labels)) / len(labels)  # 53% of dev
    # 40 steps already beat the majority class (66% here); a broken pipeline would not
    assert rows[1]["dev_accuracy"] > majority + 0.05, (rows[1], majority)
    table = demo.format_table(rows)
    assert "finetune (sentiment)" in table and "%" in table
    summary = json.loads((tmp_path / "finetune" / "summary.json").read_text())
    assert summary["dev"]["count"] > 1000  # the whole sentiment dev split was evaluated
    assert (tmp_path / "finetune" / "best").is_dir()
