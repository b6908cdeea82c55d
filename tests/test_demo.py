"""`make demo` at a reduced step count: both stages run and the table is printed."""

import json

import pytest

from experiments import demo


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    rows = demo.run_demo(tmp_path, pretrain_steps=3, finetune_steps=3, progress=False)
    assert [r["steps"] for r in rows] == [3, 3]
    assert 0.0 <= rows[1]["dev_accuracy"] <= 1.0
    table = demo.format_table(rows)
    assert "finetune (sentiment)" in table and "%" in table
    summary = json.loads((tmp_path / "finetune" / "summary.json").read_text())
    assert summary["dev"]["count"] > 1000  # the whole sentiment dev split was evaluated
    assert (tmp_path / "finetune" / "best").is_dir()
