"""CLUE metrics against hand-computed values and outputs of the official tools.

Expected token lists under "nltk" were produced by nltk 3.10's NLTKWordTokenizer; the CMRC2018
numbers are worked out by hand from the official script's definitions (module docstring of
gau_jax/data/clue_metrics.py).
"""

from __future__ import annotations

import pytest

from gau_jax.data import clue_metrics as cm
from gau_jax.data.tasks import CLUENER_TYPES


@pytest.mark.parametrize("text, nltk", [
    ("good muffins cost $3.88 (roughly 3,36 euros)",
     ["good", "muffins", "cost", "$", "3.88", "(", "roughly", "3,36", "euros", ")"]),
    ("they'll save and invest more.", ["they", "'ll", "save", "and", "invest", "more", "."]),
    ("hi, my name can't hello,", ["hi", ",", "my", "name", "ca", "n't", "hello", ","]),
    ('"quoted" text...', ["``", "quoted", "''", "text", "..."]),
    ("u.s. army", ["u.s.", "army"]),
])
def test_words_match_nltk(text, nltk):
    assert cm.words(text) == nltk


def test_mixed_segmentation():
    assert cm.cmrc2018_segments("iPhone 5手机") == ["iphone", "5", "手", "机"]
    assert cm.cmrc2018_segments("《战国无双3》") == ["《", "战", "国", "无", "双", "3", "》"]
    assert cm.cmrc2018_segments("《战国无双3》", remove_punctuation=True) == [
        "战", "国", "无", "双", "3"]
    # a removed mark does not end its English run; a kept one does
    assert cm.cmrc2018_segments("a-b", remove_punctuation=True) == ["ab"]
    assert cm.cmrc2018_segments("a-b") == ["a", "-", "b"]
    # '……' is one two-character entry of the list: a single '…' is not punctuation
    assert cm.strip_punctuation("  好…。 ") == "好…"


def test_f1_partial_overlap_chinese():
    # [北 京 大 学] vs [北 京]: L = 2, P = 1, R = 1/2 -> F1 = 2/3
    assert cm.cmrc2018_f1("北京", ["北京大学"]) == pytest.approx(2 / 3)
    assert cm.cmrc2018_em("北京", ["北京大学"]) == 0.0


def test_f1_mixed_chinese_english():
    # gold [iphone 5 手 机], prediction [苹 果 iphone 5]: L = 2, P = R = 1/2 -> F1 = 1/2
    assert cm.cmrc2018_f1("苹果iPhone 5", ["iPhone 5手机"]) == pytest.approx(0.5)
    # contiguous runs only: [a b c] vs [a x c] share runs of length 1: P = R = 1/3
    assert cm.cmrc2018_f1("a x c", ["a b c"]) == pytest.approx(1 / 3)


def test_punctuation_and_case_ignored():
    assert cm.cmrc2018_em("战国无双3", ["《战国无双3》"]) == 1.0
    assert cm.cmrc2018_f1("战国无双3", ["《战国无双3》"]) == 1.0
    assert cm.cmrc2018_em(" CSOL ", ["csol"]) == 1.0


def test_empty_prediction():
    assert cm.cmrc2018_f1("", ["光荣"]) == 0.0
    assert cm.cmrc2018_em("", ["光荣"]) == 0.0


def test_best_over_several_answers():
    # 北京大学: L = 3, P = 1, R = 3/4 -> 6/7;  北大: L = 1, P = 1/3, R = 1/2 -> 2/5
    assert cm.cmrc2018_f1("北京大", ["北大", "北京大学"]) == pytest.approx(6 / 7)
    assert cm.cmrc2018_em("光荣", ["光荣公司", "光荣"]) == 1.0


def test_scores_count_unanswered_as_zero():
    answers = {"Q1": ["光荣"], "Q2": ["北京大学"], " Q3 ": ["游戏"]}
    preds = {"Q1": "光荣", "Q2": "北京", "other": "x"}
    out = cm.cmrc2018_scores(preds, answers)
    assert out["em"] == pytest.approx(100 / 3)
    assert out["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert (out["total"], out["unanswered"]) == (3, 1)
    assert cm.cmrc2018_scores({"Q3": "游戏"}, {" Q3 ": ["游戏"]})["em"] == 100.0  # ids stripped


def test_entity_f1_boundary_off_by_one():
    gold = [cm.entity_set({"name": {"叶老桂": [[9, 11]]}, "company": {"浙商银行": [[0, 3]]}})]
    pred = [cm.entity_set({"name": {"叶老": [[9, 10]]}, "company": {"浙商银行": [[0, 3]]}})]
    out = cm.entity_f1(pred, gold)  # TP 1 of 2 predicted, 2 gold
    assert (out["f1"], out["precision"], out["recall"]) == pytest.approx((50.0, 50.0, 50.0))


def test_entity_f1_type_must_match_and_micro_average():
    gold = [{("game", 4, 7)}, {("name", 0, 1), ("book", 3, 5)}, set()]
    pred = [{("movie", 4, 7)}, {("name", 0, 1)}, {("scene", 0, 0)}]
    out = cm.entity_f1(pred, gold)  # TP 1; 3 predicted, 3 gold
    assert out["f1"] == pytest.approx(100 / 3)
    assert cm.entity_f1([set()], [set()])["f1"] == 100.0
    assert cm.entity_f1([set()], [{("name", 0, 1)}])["f1"] == 0.0


def test_accuracy_and_score():
    assert cm.accuracy(["1", "0", "1", "1"], ["1", "1", "1", "0"]) == 50.0
    with pytest.raises(ValueError, match="3 predictions for 2"):
        cm.accuracy(["1"] * 3, ["1"] * 2)
    gold = [{"id": 0, "label": "100"}, {"id": 1, "label": "101"}]
    pred = [{"id": 1, "label": "101"}, {"id": 0, "label": "102"}]
    from gau_jax.data.tasks import get_task
    from gau_jax.tasks.evaluation import main_metric, score

    assert score("tnews", pred, gold) == {"task": "tnews", "metric": "accuracy",
                                          "accuracy": 50.0, "count": 2}
    ner = score("cluener", [{"id": 0, "label": {"game": {"CSOL": [[4, 7]]}}}],
                [{"id": 0, "label": {"game": {"CSOL": [[4, 7]]}}}])
    assert (ner["metric"], ner["f1"]) == ("f1", 100.0)
    span = score("cmrc2018", {"Q1": "光荣"}, {"Q1": ["光荣"]})
    assert (span["metric"], span["em"], span["f1"]) == ("em", 100.0, 100.0)
    assert [main_metric(get_task(t)) for t in ("c3", "chid", "cmrc2018", "cluener", "afqmc")] == [
        "accuracy", "accuracy", "em", "f1", "accuracy"]


@pytest.mark.shared_data
def test_cmrc2018_dev_matches_the_official_script(shared_data):
    # Reference: cmrc2018_evaluate.py v5 (CLUE's copy) on the real dev set with every question
    # answered by the first 6 characters of its context, nltk 3.10's NLTKWordTokenizer standing
    # in for nltk.word_tokenize (no Punkt data offline): F1 7.098056072846257,
    # EM 0.12426219322771047, 3219 questions.
    from gau_jax.tasks import submission

    rows = submission.split_examples("cmrc2018", shared_data / "clue", "dev", bad_rows="skip")
    preds = {r["id"]: r["context"][:6] for r in rows}
    out = cm.cmrc2018_scores(preds, submission.gold_objects("cmrc2018", rows))
    assert out["total"] == 3219
    assert out["f1"] == pytest.approx(7.098056072846257, abs=1e-9)
    assert out["em"] == pytest.approx(0.12426219322771047, abs=1e-9)


# --- CLUENER's leaderboard score -------------------------------------------------------------
# Transcribed from CLUEbenchmark/CLUENER2020 score.py (commit 2e8fccd1b8cde6b471fe440b9d766e920fb
# 418ab), `get_f1_score_label` and `get_f1_score`, as a reference: the loop is the script's, only
# the file reading is replaced by rows already loaded and the prints are dropped.
def _score_py_label(pre_lines, gold_lines, label="organization"):
    TP = 0
    FP = 0
    FN = 0
    for pre, gold in zip(pre_lines, gold_lines):  # noqa: B905 (as transcribed)
        pre = pre["label"].get(label, {}).keys()
        gold = gold["label"].get(label, {}).keys()
        for i in pre:
            if i in gold:
                TP += 1
            else:
                FP += 1
        for i in gold:
            if i not in pre:
                FN += 1
    p = TP / (TP + FP)
    r = TP / (TP + FN)
    f = 2 * p * r / (p + r)
    return f


def _score_py(pre_lines, gold_lines):
    labels = ['address', 'book', 'company', 'game', 'government', 'movie', 'name',
              'organization', 'position', 'scene']
    sum = 0
    for label in labels:
        f = _score_py_label(pre_lines, gold_lines, label=label)
        sum += f
    return sum / len(labels)


def _lb(pred, gold, types=CLUENER_TYPES):
    return cm.leaderboard_f1(pred, gold, types)["f1_leaderboard"]


def test_leaderboard_f1_by_hand_texts_not_positions():
    """Right text at the wrong position counts for the leaderboard, not for the span F1; a
    mention repeated in the gold is one text; each type weighs the same (macro)."""
    gold = [{"address": {"北京": [[0, 1]]}, "organization": {"北京大学": [[3, 6]]}},
            {"name": {"张三": [[0, 1], [5, 6]]}},
            {"company": {"浙商银行": [[0, 3]]}},
            {"company": {"蚂蚁金服": [[0, 3]]}}]
    pred = [{"address": {"北京": [[3, 4]]}, "organization": {"北京大学": [[3, 6]]}},
            {"name": {"张三": [[0, 1]]}},
            {"company": {"浙商": [[0, 1]]}},
            {"company": {"蚂蚁金服": [[0, 3]]}}]
    types = ("address", "name", "organization", "company")
    # address, name, organization: 100; company: TP 1, FP 1, FN 1 -> 50
    assert _lb(pred, gold, types) == pytest.approx((100 + 100 + 100 + 50) / 4)
    # span: 6 gold, 5 predicted, 3 exact (北京大学, 张三 [0, 1], 蚂蚁金服)
    span = cm.entity_f1([cm.entity_set(p) for p in pred], [cm.entity_set(g) for g in gold])
    assert span["f1"] == pytest.approx(200 * 3 / 11)
    every = {t: {f"{t}名": [[0, len(t)]]} for t in CLUENER_TYPES}  # score.py needs a TP a type
    pred, gold = pred + [every], gold + [every]
    assert _lb(pred, gold) == pytest.approx(
        100 * _score_py([{"label": r} for r in pred], [{"label": r} for r in gold]))


def test_leaderboard_f1_equals_score_py_on_random_rows():
    import random

    rng = random.Random(0)
    types, texts = CLUENER_TYPES, ["甲", "乙", "丙", "丁", "戊"]

    def row():
        return {t: {x: [[0, 0]] * rng.randint(1, 2) for x in rng.sample(texts, rng.randint(1, 3))}
                for t in rng.sample(types, rng.randint(0, 4))}

    every = {t: {"甲": [[0, 0]]} for t in types}  # score.py divides by zero without a TP a type
    for _ in range(200):
        n = rng.randint(1, 8)
        gold, pred = [row() for _ in range(n)] + [every], [row() for _ in range(n)] + [every]
        ref = _score_py([{"label": p} for p in pred], [{"label": g} for g in gold])
        assert _lb(pred, gold) == pytest.approx(100 * ref, abs=1e-9)


def test_leaderboard_f1_where_score_py_divides_by_zero():
    gold = [{"name": {"张三": [[0, 1]]}}]
    with pytest.raises(ZeroDivisionError):  # no prediction of a type
        _score_py([{"label": {}}], [{"label": gold[0]}])
    assert _lb([{}], gold, ("name",)) == 0.0            # P undefined -> 0
    assert _lb([{"game": {"张三": [[0, 1]]}}], gold, ("name", "game")) == 0.0
    assert _lb([{}], [{}], ("name",)) == 100.0          # nothing to find, nothing wrong
    with pytest.raises(ValueError, match="2 predicted rows for 1"):
        _lb([{}, {}], [{}])


def test_cluener_score_reports_both_f1():
    from gau_jax.tasks.evaluation import score

    gold = [{"id": 0, "label": {"game": {"CSOL": [[4, 7]]}}}]
    out = score("cluener", [{"id": 0, "label": {"game": {"CSOL": [[0, 3]]}}}], gold)
    assert (out["metric"], out["f1"]) == ("f1", 0.0)     # exact spans: the position is wrong
    assert out["f1_leaderboard"] == 100.0                # texts: right; 9 types with nothing
    assert out["f1_types"]["game"] == 100.0
