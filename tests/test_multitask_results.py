"""experiments/multitask.py: the smoke run writes its table (both arms, the stage's own heads,
the baselines) and a rerun reads every finished run back instead of training it again."""

from __future__ import annotations

import pytest

from configs import multitask_results as config_lib
from experiments import multitask
from tests.clue_fixtures import write_clue


@pytest.mark.slow
def test_smoke_run_writes_the_table_and_resumes(tmp_path):
    c = config_lib.get_config("smoke")
    c.data_dir = str(write_clue(tmp_path / "clue"))
    c.corpus_tasks = ("tnews",)
    rows = multitask.run(c, tmp_path)
    text = (tmp_path / "multitask.md").read_text(encoding="utf-8")
    assert text.startswith("# Multi-task stage vs direct fine-tuning")
    assert "| task | kind | metric | baseline | direct | stage only | stage + ft |" in text
    assert "| tnews | classification | accuracy | 100.0 |" in text  # one dev row: majority 100
    assert "| cluener | entities | f1 | 0.0 |" in text
    arms = [r["arm"] for r in rows]
    assert arms == ["direct", "direct", "stage", "stage+ft", "stage+ft"]
    stage = rows[2]
    assert set(stage["results"]) == {"tnews", "cluener"}
    again = multitask.run(c, tmp_path)  # finished runs are read back, not trained again
    assert again == rows
