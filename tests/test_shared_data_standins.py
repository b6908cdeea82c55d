"""Fast synthetic stand-ins for what only the real-CLUE tests (marker shared_data) checked.

Each test names the real-data test it stands in for; the real one stays (it also checks the
snapshot itself). Without ../shared/data, and in `make test-fast`, these still catch: a missing
task folder's error, `evaluate`'s data_dir / max_rows, CMRC2018 scores of prediction objects
built from a split (several answers, English runs, punctuation), the BERT vocabulary layout
(specials at 0 and 100..103), gold boundaries inside a WordPiece (CMRC2018 and CLUENER), and
lst_clue's majority class, corpus and dev curve.
"""

from __future__ import annotations

import json
import shutil

import pytest

from gau_jax.data import clue
from gau_jax.data import clue_metrics as cm
from gau_jax.data.readers import DataError
from gau_jax.data.task_features import span_features, span_text
from gau_jax.data.task_features_ner_mc import ner_entities, ner_features
from gau_jax.data.tokenizer import SPECIAL_TOKENS, ChineseTokenizer, load_tokenizer
from gau_jax.tasks import submission
from tests.clue_fixtures import write_clue


@pytest.fixture(scope="module")
def clue_dir(tmp_path_factory):
    return write_clue(tmp_path_factory.mktemp("clue"))


def test_missing_task_folder_is_an_error_naming_where_it_looked(clue_dir, tmp_path):
    """Stands in for test_clue.py::test_real_snapshot_has_no_cmnli."""
    root = tmp_path / "clue"
    shutil.copytree(clue_dir, root)
    shutil.rmtree(root / "cmnli")
    with pytest.raises(DataError, match=r"no CLUE 'cmnli' data: looked for"):
        clue.prepare("cmnli", root, tmp_path / "out")


def test_evaluate_reads_the_data_dir_given_and_only_max_rows(clue_dir, tmp_path):
    """Stands in for test_clue_commands.py::test_one_evaluation_on_real_dev: data_dir replaces
    the workdir's, max_rows keeps the first rows (a prediction file, no model)."""
    from experiments.evaluate import evaluate

    wd = tmp_path / "wd"
    wd.mkdir()
    cfg = {"kind": "finetune", "task": "chid_fewclue", "data_dir": str(tmp_path / "gone"),
           "bad_rows": "raise"}
    (wd / "train_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    preds = tmp_path / "chid_predict.json"
    preds.write_text('{"id": 25, "label": 6}\n', encoding="utf-8")  # dev row 25 only, right
    out = evaluate(wd, predictions=preds, data_dir=str(clue_dir), max_rows=1)
    assert (out["task"], out["rows"], out["accuracy"]) == ("chid_fewclue", 1, 100.0)


CMRC_DEV = {"version": "v1.0", "data": [{"id": "D", "title": "t", "paragraphs": [
    {"id": "P1", "context": "《战国无双3》是由光荣开发的游戏。", "qas": [
        {"id": "Q1", "question": "谁？", "answers": [{"text": "光荣", "answer_start": 9}]},
        {"id": "Q2", "question": "什么？", "answers": [
            {"text": "战国无双3", "answer_start": 1},
            {"text": "《战国无双3》", "answer_start": 0}]}]},
    {"id": "P2", "context": "iPhone 5手机发布了", "qas": [
        {"id": "Q3", "question": "什么？", "answers": [
            {"text": "iPhone 5手机", "answer_start": 0}, {"text": "iPhone", "answer_start": 0}]},
        {"id": "Q4", "question": "哪个？", "answers": [{"text": "iPhone 5", "answer_start": 0}]}]},
    {"id": "P3", "context": "北京大学位于海淀区", "qas": [
        {"id": "Q5", "question": "哪里？", "answers": [
            {"text": "北京大学", "answer_start": 0}, {"text": "北大", "answer_start": -1}]}]}]}]}


def test_cmrc2018_scores_of_a_split_by_hand(tmp_path):
    """Stands in for test_clue_metrics.py::test_cmrc2018_dev_matches_the_official_script: every
    question answered by its context's first 6 characters, scored from split_examples /
    gold_objects. By the official definitions: Q1 "《战国无双3" vs 光荣 EM 0 F1 0; Q2 EM 1 (the
    《》 removed); Q3 "iPhone" EM 1 (case); Q4 [iphone] vs [iphone, 5] F1 2/3; Q5 "北京大学位于"
    vs 北京大学 P 4/6 R 1 F1 0.8 (北大: 0.25). EM 40, F1 100·(1 + 1 + 2/3 + 0.8)/5."""
    for split in ("train", "dev"):
        path = tmp_path / "cmrc2018" / f"{split}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(CMRC_DEV, ensure_ascii=False), encoding="utf-8")
    rows = submission.split_examples("cmrc2018", tmp_path, "dev", bad_rows="skip")
    preds = {r["id"]: r["context"][:6] for r in rows}
    out = cm.cmrc2018_scores(preds, submission.gold_objects("cmrc2018", rows))
    assert (out["total"], out["unanswered"]) == (5, 0)
    assert out["em"] == pytest.approx(40.0)
    assert out["f1"] == pytest.approx(100 * (1 + 1 + 2 / 3 + 0.8) / 5)


def test_bert_layout_vocab_puts_specials_at_their_lines(tmp_path):
    """Stands in for test_tokenizer.py::test_bert_vocab: [PAD] 0, [unused1..99], then [UNK]
    100, [CLS] 101, [SEP] 102, [MASK] 103 (ids are line numbers, not 0..4); text round trips."""
    text = "今天天气不错，我们去北京天安门看升旗。"
    lines = ["[PAD]", *[f"[unused{i}]" for i in range(1, 100)], "[UNK]", "[CLS]", "[SEP]",
             "[MASK]", *sorted(set(text))]
    (tmp_path / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    t = load_tokenizer(tmp_path / "vocab.txt")
    assert t.vocab_size == len(lines)
    assert (t.pad_id, t.unk_id, t.cls_id, t.sep_id, t.mask_id) == (0, 100, 101, 102, 103)
    assert t.decode(t.encode(text).input_ids) == text
    assert t.encode(text).input_ids[0] == 101 and t.encode(text).input_ids[-1] == 102


def _wordpiece_tok() -> ChineseTokenizer:
    units = ["34", "个", "有", "队", "vsac", "米", "兰", "赢", "问"]
    return ChineseTokenizer({t: i for i, t in enumerate([*SPECIAL_TOKENS, *units])})


def test_gold_boundary_inside_a_wordpiece_decodes_the_covering_tokens():
    """Stands in for test_task_features_real.py (CMRC_INEXACT, NER_INEXACT): an answer "4个"
    starting inside the token "34" decodes to "34个"; an entity "ac米兰" starting inside
    "vsac" to "vsac米兰"; both are counted as inexact."""
    tok = _wordpiece_tok()
    cmrc = [{"id": "q", "context": "有34个队", "question": "问",
             "answers": [{"text": "4个", "answer_start": 2}]}]
    f = span_features(cmrc, tok, max_len=16, stride=4)
    assert f.stats["answers_inexact"] == 1
    ((_, i, j),) = f.rows[0]["spans"].tolist()
    assert span_text(f.meta[0], i, j) == "34个"
    ner = [{"idx": 0, "text": "vsac米兰赢", "entities": [
        {"type": "organization", "start": 2, "end": 6, "text": "ac米兰"}]}]
    g = ner_features(ner, tok, max_len=16)
    assert g.stats["entities_inexact"] == 1
    assert ner_entities(g.meta[0], g.rows[0]["spans"].tolist()) == {
        "organization": {"vsac米兰": [[0, 5]]}}


def test_lst_clue_majority_corpus_and_dev_curve(clue_dir, tmp_path):
    """Stands in for test_lst_clue.py::test_lst_clue_smoke's checks of the data side: the
    majority class of the first dev rows, the corpus (People's Daily, then both sentences of
    every train row), and the dev curve from metrics.jsonl (a step logged twice: the last)."""
    from experiments import lst_clue
    from gau_jax.data.corpus import people_daily_texts

    root = tmp_path / "clue"
    shutil.copytree(clue_dir, root)
    (root / "afqmc/dev.json").write_text("".join(
        json.dumps({"sentence1": f"句{i}", "sentence2": "花呗", "label": lab}) + "\n"
        for i, lab in enumerate("0110")), encoding="utf-8")
    assert lst_clue.majority_rate("afqmc", str(root)) == pytest.approx(0.5)
    assert lst_clue.majority_rate("afqmc", str(root), rows=3) == pytest.approx(2 / 3)
    n = lst_clue.write_corpus(lst_clue.corpus_texts(str(root), ("afqmc",)), tmp_path / "corpus.txt")
    lines = (tmp_path / "corpus.txt").read_text(encoding="utf-8").splitlines()
    assert n == len(lines) == len(people_daily_texts()) + 6
    assert sorted(lines[-6:]) == sorted(["花呗怎么还", "花呗如何还款"] * 3)
    wd = tmp_path / "run"
    wd.mkdir()
    rows = [{"split": "dev", "step": 2, "accuracy": 0.5}, {"split": "train", "step": 2},
            {"split": "dev", "step": 4, "accuracy": 0.6}, {"split": "dev", "step": 2,
                                                          "accuracy": 0.7}]
    (wd / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [(e["step"], e["accuracy"]) for e in lst_clue.dev_curve(wd)] == [(2, 0.7), (4, 0.6)]
