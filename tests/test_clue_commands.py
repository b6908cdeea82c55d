"""experiments.evaluate / experiments.predict: scoring prediction files (no model), and for each
of the eleven CLUE tasks a tiny model trained a few steps on the synthetic CLUE folder, evaluated
and predicted into a submission file the scorer accepts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from experiments.evaluate import evaluate
from gau_jax.data.tasks import get_task
from gau_jax.tasks import submission
from tests.clue_fixtures import write_clue


@pytest.fixture(scope="module")
def clue(tmp_path_factory):
    return write_clue(tmp_path_factory.mktemp("clue"))


def fake_workdir(path, task, data_dir):
    """What the scorer reads of a fine-tuning workdir: train_config.json."""
    path.mkdir(parents=True, exist_ok=True)
    cfg = {"stage": "finetune", "task": task, "data_dir": str(data_dir), "bad_rows": "raise"}
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
    wd = fake_workdir(tmp_path / "wd", "chid_fewclue", clue)
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
    assert (result["task"], result["metric"], result["accuracy"]) == (
        "chid_fewclue", "accuracy", 50.0)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == result


RUN_MAIN_BODY = """
import logging as pylog, sys
import orbax.checkpoint as ocp
from absl import logging
from experiments.predict import run_main

FOLDER = sys.argv[1]

def body():
    mgr = ocp.CheckpointManager(FOLDER, options=ocp.CheckpointManagerOptions(create=True))
    mgr.close()                     # Orbax logs "Closing _NonBlockingMetadataStore(...)" at INFO
    logging.info("absl info line")
    logging.warning("absl warning line")
    pylog.getLogger("orbax.checkpoint").info("python info line")
    pylog.getLogger("gau_jax.workdir").warning("python warning line")
    print("the result")

sys.argv = sys.argv[:1]
run_main(body)
"""


def test_commands_show_results_and_warnings_not_orbax_info(tmp_path):
    """experiments.predict / evaluate (run_main): INFO lines of Orbax, JAX or absl are not shown
    among the results; warnings of either logging system are."""
    proc = subprocess.run([sys.executable, "-c", RUN_MAIN_BODY, str(tmp_path / "ckpt")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "the result\n"
    assert "absl warning line" in proc.stderr and "python warning line" in proc.stderr
    for hidden in ("_NonBlockingMetadataStore", "CheckpointManager", "info line"):
        assert hidden not in proc.stderr, proc.stderr
    assert not [line for line in proc.stderr.splitlines() if line.startswith("I")], proc.stderr


# ------------------------------------------------------------------ end to end, eleven tasks
TASKS = ("afqmc", "tnews", "iflytek", "cmnli", "ocnli", "cluewsc2020", "csl", "cmrc2018", "c3",
         "chid_fewclue", "cluener")
LST_TASKS = {"afqmc", "cmrc2018", "c3", "cluener"}  # every kind once with LST, else full
# batch 8: divisible by the 8 host devices the Makefile forces (XLA_FLAGS)
TINY = {"total_steps": 2, "batch_size": 8, "grad_accum_steps": 1, "max_length": 32,
        "stride": 8, "max_question_length": 8, "model.num_layers": 1, "model.hidden_size": 16,
        "model.intermediate_size": 32, "model.key_size": 8, "model.vocab_size": 64,
        "pad_multiple": 16, "progress_bar": False, "tensorboard": False, "data_threads": 1,
        "eval_every_steps": 2, "checkpoint_every_steps": 2, "async_checkpoints": False,
        "log_every_steps": 1}


@pytest.fixture(scope="module")
def trained(clue, tmp_path_factory):
    """task -> workdir of a tiny model trained 2 steps on the synthetic folder (made once)."""
    from configs import finetune
    from gau_jax.train.loop import train

    done: dict = {}

    def get(task):
        if task not in done:
            method = "lst" if task in LST_TASKS else "full"
            c = finetune.get_config(f"task={task},model=gau_alpha_tiny,method={method}")
            c.update_from_flattened_dict({**TINY, "data_dir": str(clue)})
            done[task] = tmp_path_factory.mktemp(f"{task}_{method}")
            train(c, done[task])
        return done[task]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_train_evaluate_predict_every_task(task, trained, clue, tmp_path):
    from experiments.predict import run_predict

    wd = trained(task)
    out = evaluate(wd)  # DIR/best of the run, on the synthetic dev split
    assert out["task"] == task and out["rows"] == len(submission.split_examples(task, clue))
    metric = out["metric"]
    assert metric == {"cmrc2018": "em", "cluener": "f1"}.get(task, "accuracy")
    assert 0.0 <= out[metric] <= 100.0
    path = run_predict(wd, output=str(tmp_path))
    assert path.name == submission.submission_name(task)
    # the written file is accepted by the scorer and scores what the model scored
    again = evaluate(wd, predictions=path)
    assert again[metric] == pytest.approx(out[metric])
    test_file = clue / task / "test.json"
    if test_file.exists():  # an unlabelled file: ids of its own
        p = run_predict(wd, input_file=str(test_file), output=str(tmp_path / "test.json"))
        assert [r["id"] for r in submission.read_submission(task, p)] == [7]


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("task", TASKS)
def test_one_evaluation_on_real_dev(task, trained, shared_data):
    real = shared_data / "clue"
    folder = real / get_task(task).dir_name
    if not folder.is_dir():
        pytest.skip(f"{folder}: not in the snapshot (it has no CMNLI)")
    out = evaluate(trained(task), data_dir=str(real), max_rows=6)
    assert out["rows"] == 6 and out["task"] == task
    assert 0.0 <= out[out["metric"]] <= 100.0
