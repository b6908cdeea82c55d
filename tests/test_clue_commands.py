"""experiments.evaluate / experiments.predict: scoring prediction files (no model), and for each
of the eleven CLUE tasks a tiny model trained a few steps on the synthetic CLUE folder, evaluated
and predicted into a submission file the scorer accepts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from experiments.evaluate import evaluate
from gau_jax.data import submission
from tests.clue_fixtures import write_clue


@pytest.fixture(scope="module")
def clue(tmp_path_factory):
    return write_clue(tmp_path_factory.mktemp("clue"))


def fake_workdir(path, task, data_dir):
    """What the scorer reads of a fine-tuning workdir: train_config.json."""
    path.mkdir(parents=True, exist_ok=True)
    cfg = {"kind": "finetune", "task": task, "data_dir": str(data_dir), "bad_rows": "raise"}
    (path / "train_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return path


def test_scores_a_prediction_file(clue, tmp_path):
    wd = fake_workdir(tmp_path / "wd", "cmrc2018", clue)
    preds = submission.write_submission("cmrc2018", {"Q1": "光荣", "Q2": "游"},
                                        tmp_path / "cmrc2018_predict.json")
    out = evaluate(wd, predictions=preds)
    # Q1 exact; Q2 "游" vs "游戏": EM 0, F1 2·1·½/(1+½) = 2/3
    assert (out["task"], out["metric"], out["rows"]) == ("cmrc2018", "em", 2)
    assert out["em"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    ner = fake_workdir(tmp_path / "ner", "cluener", clue)
    path = submission.write_submission(
        "cluener", [{"id": 0, "label": {"game": {"CSOL": [[4, 7]]}, "name": {"生生": [[0, 1]]}}}],
        tmp_path / "cluener_predict.json")
    out = evaluate(ner, predictions=path)
    assert (out["metric"], out["precision"], out["recall"]) == ("f1", 50.0, 100.0)


def test_command_rejects_a_bad_file_naming_the_id(clue, tmp_path):
    wd = fake_workdir(tmp_path / "wd", "chid", clue)
    bad = tmp_path / "chid_predict.json"
    bad.write_text('{"id": 25, "label": 6}\n{"id": 25, "label": 0}\n', encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "experiments.evaluate", "--workdir", str(wd),
                           "--predictions", str(bad)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert f"SubmissionError: {bad}: duplicate id 25" in proc.stderr
    good = tmp_path / "good.json"
    good.write_text('{"id": 25, "label": 6}\n{"id": 26, "label": 3}\n', encoding="utf-8")
    out_json = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-m", "experiments.evaluate", "--workdir", str(wd),
                           "--predictions", str(good), "--json", str(out_json)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out_json.read_text())
    assert (result["task"], result["metric"], result["accuracy"]) == ("chid", "accuracy", 50.0)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == result
