"""CLUE submission files: writer and reader against hand-written files, the scorer's checks."""

from __future__ import annotations

import pytest

from gau_jax.tasks import evaluation, submission
from gau_jax.tasks.submission import SubmissionError
from tests.clue_fixtures import write_clue


@pytest.fixture(scope="module")
def clue(tmp_path_factory):
    return write_clue(tmp_path_factory.mktemp("clue"))


def rows(clue, task, split="dev"):
    return submission.split_examples(task, clue, split)


# CLUE 1.1's names: bojone/CLUE-bert4keras src/<task>.py out_file=...; CLUEbenchmark/CLUE
# baselines/paddlenlp (classification/run_clue_classifier.py, mrc/run_c3.py, mrc/run_chid.py)
CLUE11_NAMES = {"afqmc": "afqmc_predict.json", "tnews": "tnews11_predict.json",
                "iflytek": "iflytek_predict.json", "cmnli": "cmnli_predict.json",
                "ocnli": "ocnli_50k_predict.json", "cluewsc2020": "cluewsc11_predict.json",
                "csl": "csl_predict.json", "cmrc2018": "cmrc2018_predict.json",
                "chid": "chid11_predict.json", "c3": "c311_predict.json",
                "cluener": "cluener_predict.json"}


def test_names():
    assert submission.submission_name("tnews") == "tnews11_predict.json"
    assert submission.submission_name("cmrc2018") == "cmrc2018_predict.json"
    assert {t: submission.submission_name(t) for t in CLUE11_NAMES} == CLUE11_NAMES
    with pytest.raises(KeyError):
        submission.submission_name("glue")


def test_classification_file_round_trip(tmp_path):
    preds = [{"id": 0, "label": "100"}, {"id": 1, "label": "116"}]
    path = submission.write_submission("tnews", preds, tmp_path / "tnews_predict.json")
    assert path.read_text(encoding="utf-8") == ('{"id": 0, "label": "100"}\n'
                                                '{"id": 1, "label": "116"}\n')
    assert submission.read_submission("tnews", path) == preds


def test_cluener_and_mc_files(tmp_path):
    preds = [{"id": 0, "label": {"game": {"CSOL": [[4, 7]]}}}]
    path = submission.write_submission("cluener", preds, tmp_path / "cluener_predict.json")
    assert path.read_text(encoding="utf-8") == (
        '{"id": 0, "label": {"game": {"CSOL": [[4, 7]]}}}\n')
    assert submission.read_submission("cluener", path) == preds
    c3 = submission.write_submission("c3", [{"id": "d-1-1-0", "label": 0}],
                                     tmp_path / "c311_predict.json")
    assert c3.read_text(encoding="utf-8") == '{"id": "d-1-1-0", "label": 0}\n'


def test_cmrc2018_file_round_trip(tmp_path):
    path = tmp_path / "cmrc2018_predict.json"
    submission.write_submission("cmrc2018", {"Q1": "光荣", "Q2": "游戏"}, path)
    assert path.read_text(encoding="utf-8") == '{\n  "Q1": "光荣",\n  "Q2": "游戏"\n}\n'
    assert submission.read_submission("cmrc2018", path) == {"Q1": "光荣", "Q2": "游戏"}
    path.write_text('{"Q1": "光荣", "Q1": "游戏"}', encoding="utf-8")
    with pytest.raises(SubmissionError, match="duplicate id 'Q1'"):
        submission.read_submission("cmrc2018", path)


def test_gold_objects_from_the_data(clue):
    assert submission.gold_objects("tnews", rows(clue, "tnews")) == [{"id": 0, "label": "100"}]
    assert submission.gold_objects("chid_fewclue", rows(clue, "chid_fewclue")) == [
        {"id": 25, "label": 6}, {"id": 26, "label": 0}]
    assert submission.gold_objects("cluener", rows(clue, "cluener")) == [
        {"id": 0, "label": {"game": {"CSOL": [[4, 7]]}}}]
    c3 = submission.gold_objects("c3", rows(clue, "c3"))
    assert c3[:2] == [{"id": "d-1-1-0", "label": 0}, {"id": "d-1-1-1", "label": 1}]
    assert submission.gold_objects("cmrc2018", rows(clue, "cmrc2018")) == {
        "Q1": ["光荣"], "Q2": ["游戏", "游戏"]}
    wsc = submission.gold_objects("cluewsc2020", rows(clue, "cluewsc2020"))
    assert wsc == [{"id": 1, "label": "true"}]


def test_gold_scores_perfect(clue, tmp_path):
    for task in ("tnews", "chid_fewclue", "c3", "cluener", "cmrc2018"):
        ex = rows(clue, task)
        gold = submission.gold_objects(task, ex)
        preds = ({k: v[0] for k, v in gold.items()} if task == "cmrc2018" else gold)
        path = submission.write_submission(task, preds, tmp_path / f"{task}.json")
        back = submission.read_submission(task, path)
        submission.check_predictions(task, back, ex, path)
        result = evaluation.score(task, back, gold)
        assert result[result["metric"]] == 100.0, (task, result)


@pytest.mark.parametrize("task, preds, message", [
    ("tnews", [], "1 id\\(s\\) without a prediction, first 0"),
    ("tnews", [{"id": 0, "label": "100"}, {"id": 0, "label": "100"}], "duplicate id 0"),
    ("tnews", [{"id": 5, "label": "100"}], "id 5 is not in the split"),
    ("tnews", [{"id": 0, "label": "105"}], "id 0: label '105' is not one of"),
    ("chid_fewclue", [{"id": 25, "label": 7}, {"id": 26, "label": 0}],
     "id 25: label 7 is not a cand"),
    ("chid_fewclue", [{"id": 25, "label": "6"}, {"id": 26, "label": 0}], "id 25: label '6'"),
    ("cluener", [{"id": 0, "label": {"games": {"CSOL": [[4, 7]]}}}], "type 'games'"),
    ("cluener", [{"id": 0, "label": {"game": {"CSOL": [[4, 8]]}}}], "does not give 'CSOL'"),
    ("cmrc2018", {"Q1": "光荣"}, "without a prediction, first 'Q2'"),
])
def test_check_rejects_naming_the_id(clue, task, preds, message):
    with pytest.raises(SubmissionError, match=f"^{task}_predict.json: .*{message}"):
        submission.check_predictions(task, preds, rows(clue, task), f"{task}_predict.json")


def test_c3_label_must_be_a_choice(clue):
    ex = rows(clue, "c3")
    preds = [{"id": submission.example_id("c3", e), "label": "甲"} for e in ex]
    with pytest.raises(SubmissionError, match="id 'd-1-1-0': label '甲' is not a candidate"):
        submission.check_predictions("c3", preds, ex)
    preds = [{"id": submission.example_id("c3", e), "label": 2} for e in ex]
    with pytest.raises(SubmissionError, match="id 'd-1-1-0': label 2 is not a candidate "
                                              "index 0..1"):
        submission.check_predictions("c3", preds, ex)


def test_read_rejects_malformed_lines(tmp_path):
    path = tmp_path / "afqmc_predict.json"
    path.write_text('{"id": 0, "label": "1"}\n{"idx": 1, "label": "0"}\n', encoding="utf-8")
    with pytest.raises(SubmissionError, match=":2: expected"):
        submission.read_submission("afqmc", path)


def test_input_file_without_labels(clue):
    ex = submission.split_examples("afqmc", input_file=clue / "afqmc/test.json")
    assert [submission.example_id("afqmc", e) for e in ex] == [7]
    assert submission.gold_objects("afqmc", ex) == [{"id": 7, "label": None}]


def test_c3_ids_are_unique_across_the_d_and_m_files(tmp_path):
    """The d- and m- files reuse document ids (the fixture: "1-1" in both train files); a
    question's id names its file, so a whole split's submission has no duplicate id."""
    write_clue(tmp_path)
    rows = submission.split_examples("c3", tmp_path, "train")
    ids = [submission.example_id("c3", r) for r in rows]
    assert len(ids) == len(set(ids)) == 6
    assert {"d-1-1-0", "m-1-1-0", "m-1-2-0"} <= set(ids)


def _c3_test_doc(doc_id: str, qids: list) -> list:
    return [["男：你好"], [{"question": f"问{q}", "choice": ["甲", "乙", "丙"], "id": q}
                         for q in qids], doc_id]


def test_c3_test_ids_are_the_files_own(tmp_path):
    """CLUE's C3 test files (test1.1.json, one file for both genres) give every question an
    `id`; the predictions carry it (as Su's src/c3.py writes it, a string) and an index label."""
    import json

    write_clue(tmp_path)
    (tmp_path / "c3/test1.1.json").write_text(json.dumps(
        [_c3_test_doc("1-1", [0, 1]), _c3_test_doc("1-1", [7])], ensure_ascii=False),
        encoding="utf-8")
    ex = submission.split_examples("c3", tmp_path, "test")
    assert [submission.example_id("c3", e) for e in ex] == ["0", "1", "7"]
    assert submission.gold_objects("c3", ex)[0] == {"id": "0", "label": None}
    preds = [{"id": "0", "label": 2}, {"id": "1", "label": 0}, {"id": "7", "label": 1}]
    path = submission.write_submission("c3", preds, tmp_path / "c311_predict.json")
    submission.check_predictions("c3", submission.read_submission("c3", path), ex, path)


def test_older_file_names_still_read(tmp_path):
    """C3's d-/m-test.json and OCNLI's train.json are read when CLUE 1.1's names are absent;
    OCNLI's release name train.50k.json wins when both are there."""
    import json

    write_clue(tmp_path)
    for prefix in ("d", "m"):
        (tmp_path / f"c3/{prefix}-test.json").write_text(json.dumps(
            [_c3_test_doc("1-1", [f"{prefix}1"])]), encoding="utf-8")
    ex = submission.split_examples("c3", tmp_path, "test")
    assert [submission.example_id("c3", e) for e in ex] == ["d1", "m1"]
    n_train = len(submission.split_examples("ocnli", tmp_path, "train"))
    row = {"sentence1": "甲", "sentence2": "乙", "label": "neutral", "id": 99}
    (tmp_path / "ocnli/train.50k.json").write_text(json.dumps(row, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
    fifty = submission.split_examples("ocnli", tmp_path, "train")
    assert n_train == 3 and [submission.example_id("ocnli", e) for e in fifty] == [99]
    (tmp_path / "ocnli/train.json").unlink()
    assert len(submission.split_examples("ocnli", tmp_path, "train")) == 1
