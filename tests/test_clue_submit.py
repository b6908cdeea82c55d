"""experiments.submit: the zip of CLUE 1.1 prediction files, read back by CLUE's rules only
(file names, JSON Lines of {"id", "label"}, C3 labels as int indices), and its refusals."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from experiments.submit import run_submit
from gau_jax.tasks import submission
from tests.clue_fixtures import write_clue
from tests.test_clue_commands import fake_workdir

C3_TEST = [[["男：你好"], [{"question": "几个人？", "choice": ["一", "二", "三"], "id": 0},
                         {"question": "在哪？", "choice": ["家", "店"], "id": 1}], "9-1"]]


@pytest.fixture
def clue(tmp_path):
    root = write_clue(tmp_path / "clue")
    (root / "tnews/test.json").write_text(
        json.dumps({"id": 3, "sentence": "新闻标题", "keywords": ""}, ensure_ascii=False) + "\n",
        encoding="utf-8")
    (root / "c3/test1.1.json").write_text(json.dumps(C3_TEST, ensure_ascii=False),
                                          encoding="utf-8")
    return root


def _run(tmp_path, task, lines, data_dir=None):
    """A workdir of `task` holding its predictions (lines of JSON) under the CLUE 1.1 name."""
    wd = fake_workdir(tmp_path / task, task, data_dir)
    if data_dir is None:  # a run whose config names no data folder
        (wd / "train_config.json").write_text(json.dumps({"stage": "finetune", "task": task}),
                                              encoding="utf-8")
    (wd / submission.submission_name(task)).write_text(
        "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    return wd


def _workdirs(tmp_path, clue):
    return [_run(tmp_path, "afqmc", [{"id": 7, "label": "1"}], clue),
            _run(tmp_path, "tnews", [{"id": 3, "label": "101"}], clue),
            _run(tmp_path, "c3", [{"id": "0", "label": 2}, {"id": "1", "label": 0}], clue)]


def test_zip_holds_the_files_as_clue_reads_them(clue, tmp_path):
    out = run_submit(_workdirs(tmp_path, clue), tmp_path / "clue_submission.zip",
                     require=("afqmc", "tnews", "c3"))
    with zipfile.ZipFile(out) as z:
        assert sorted(z.namelist()) == ["afqmc_predict.json", "c311_predict.json",
                                        "tnews11_predict.json"]
        files = {n: [json.loads(line) for line in z.read(n).decode("utf-8").splitlines()]
                 for n in z.namelist()}
    assert files["tnews11_predict.json"] == [{"id": 3, "label": "101"}]
    c3 = files["c311_predict.json"]  # the test file's question ids, the choice's index
    assert [r["id"] for r in c3] == ["0", "1"]
    assert all(type(r["label"]) is int for r in c3)


def test_refuses_a_missing_task_by_name(clue, tmp_path):
    with pytest.raises(ValueError, match=r"no test predictions for task\(s\) iflytek "
                                         r"\(iflytek_predict.json\)"):
        run_submit(_workdirs(tmp_path, clue), tmp_path / "z.zip",
                   require=("afqmc", "tnews", "c3", "iflytek"))
    assert not (tmp_path / "z.zip").exists()
    bare = fake_workdir(tmp_path / "bare", "csl", clue)
    with pytest.raises(ValueError, match=r"no test predictions \(csl_predict.json\); write them "
                                         r"with python -m experiments.predict"):
        run_submit([bare], tmp_path / "z.zip", require=())


def test_refuses_a_wrong_row_count_or_a_second_run(clue, tmp_path):
    wds = _workdirs(tmp_path, clue)
    _run(tmp_path, "tnews", [{"id": 3, "label": "101"}, {"id": 4, "label": "101"}], clue)
    with pytest.raises(ValueError, match=r"task tnews: .*tnews11_predict.json has 2 "
                                         r"predictions, the test split .* has 1 rows"):
        run_submit(wds, tmp_path / "z.zip", require=())
    again = _run(tmp_path / "b", "afqmc", [{"id": 7, "label": "0"}], clue)
    with pytest.raises(ValueError, match="task afqmc: predictions in two workdirs"):
        run_submit([wds[0], again], tmp_path / "z.zip", require=())
    nowhere = _run(tmp_path / "c", "afqmc", [{"id": 7, "label": "0"}])
    with pytest.raises(ValueError, match="task afqmc: no data_dir to count the test rows"):
        run_submit([nowhere], tmp_path / "z.zip", require=())
    assert run_submit([nowhere], tmp_path / "z.zip", data_dir=str(clue), require=()).is_file()


def test_command_refuses_a_missing_task(clue, tmp_path):
    wds = _workdirs(tmp_path, clue)
    proc = subprocess.run([sys.executable, "-m", "experiments.submit", *map(str, wds),
                           "--output", str(tmp_path / "z.zip")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert ("ValueError: no test predictions for task(s) iflytek, ocnli, cluewsc2020, csl, "
            "cmrc2018, chid (iflytek_predict.json, ocnli_50k_predict.json, "
            "cluewsc11_predict.json, csl_predict.json, cmrc2018_predict.json, "
            "chid11_predict.json)") in proc.stderr
