"""experiments/clue_results.py: constant baselines by hand, and the smoke run (resumable)."""

from __future__ import annotations

import shutil

import pytest

from configs import clue_results as config_lib
from experiments import clue_results
from gau_jax.tasks import submission
from tests.clue_fixtures import write_clue


@pytest.fixture(scope="module")
def clue(tmp_path_factory):
    return write_clue(tmp_path_factory.mktemp("clue"))


def test_baselines_by_hand(clue):
    def rows(task):
        return submission.split_examples(task, clue, "dev")

    assert clue_results.baseline("tnews", rows("tnews")) == 100.0  # one dev row
    assert clue_results.baseline("chid_fewclue", rows("chid_fewclue")) == pytest.approx(100 / 7)
    c3 = 100 * (1 / 2 + 1 / 3 + 1 / 2) / 3  # dev questions with 2, 3 and 2 choices
    assert clue_results.baseline("c3", rows("c3")) == pytest.approx(c3)
    assert clue_results.baseline("cmrc2018", rows("cmrc2018")) == 0.0
    assert clue_results.baseline("cluener", rows("cluener")) == 0.0
    assert clue_results.parse_lr("full=1e-2,lst=3e-2", ["full", "lst"]) == {"full": 1e-2,
                                                                          "lst": 3e-2}
    with pytest.raises(ValueError, match="no rate for \\['lst'\\]"):
        clue_results.parse_lr("full=1e-2", ["full", "lst"])


@pytest.mark.slow
def test_smoke_run_writes_the_table_and_resumes(tmp_path):
    data = write_clue(tmp_path / "clue")
    shutil.rmtree(data / "cmnli")  # as in the real snapshot
    c = config_lib.get_config("smoke")
    c.data_dir = str(data)
    c.tasks = ("tnews", "cmnli")
    rows = clue_results.run(c, tmp_path)
    text = (tmp_path / "clue.md").read_text(encoding="utf-8")
    assert text.startswith("# CLUE, all eleven tasks") and "Command: `python -m" in text
    assert "| tnews | accuracy | 100.0 |" in text
    assert rows[0]["result"]["rows"] == 1 and rows[0]["steps"] == 2
    assert "| cmnli | accuracy | – | not run: no data |" in text
    again = clue_results.run(c, tmp_path)  # finished runs are read back, not trained again
    assert again[0] == rows[0]
