"""Decision thresholds tested close to the threshold, and CLUE metrics through their public entry.

Two kinds of bug the suite let through:
  - a moved threshold (score > 0 becoming ≥ 0, or > −0.01) where every test's scores are ±5, so
    both sides agree: here scores sit 1e-3 from the threshold, and exactly on it;
  - a metric tested only on hand-built (type, start, end) sets, so a bug in the function that
    builds the sets from prediction objects (what it keys on) is never exercised: here the
    metrics come from `evaluation.score` on prediction and gold objects, and the NER objects
    from the task kind's `decode` on logits, against counts made by hand.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from gau_jax.data.task_features_ner_mc import ner_features
from gau_jax.data.tasks import CLUE_TASKS, CLUENER_TYPES
from gau_jax.data.tokenizer import SPECIAL_TOKENS, ChineseTokenizer
from gau_jax.models.global_pointer import NEG_INF, decode_spans, span_mask
from gau_jax.tasks import TaskOptions, evaluation, kind_of, submission
from gau_jax.tasks.losses import global_pointer_sums_fn

EPS = 1e-3
CHARS = "甲乙丙丁戊己庚辛子丑寅卯辰巳午未申"


def _tok() -> ChineseTokenizer:
    return ChineseTokenizer({t: i for i, t in enumerate([*SPECIAL_TOKENS, *CHARS])})


# ------------------------------------------------------------------ thresholds, both sides
@pytest.mark.parametrize("threshold", [0.0, 0.5, -2.0])
def test_decode_spans_just_above_on_and_below_the_threshold(threshold):
    """A score EPS above the threshold is a span; one on it or EPS below is not (s > t)."""
    scores = np.full((2, 4, 4), threshold - EPS, np.float32)
    scores[0, 1, 2] = threshold + EPS
    scores[1, 0, 3] = threshold  # on the threshold: not a span
    scores[1, 2, 2] = threshold + 2 * EPS
    got = decode_spans(scores, threshold) if threshold else decode_spans(scores)
    assert [(t, i, j) for t, i, j, _ in got] == [(1, 2, 2), (0, 1, 2)]  # highest score first
    assert [s for *_, s in got] == pytest.approx([threshold + 2 * EPS, threshold + EPS])


class _FixedLogits:
    """Stands in for a GlobalPointer model: apply() returns the given scores [b, T, n, n]."""

    def __init__(self, logits):
        self.logits = jnp.asarray(logits)

    def apply(self, variables, *args, **kwargs):
        return self.logits


def test_global_pointer_exact_match_counts_scores_just_above_zero():
    """The step's "correct" (rows whose {s > 0} equals the gold set) on scores ±EPS and 0."""
    b, T, n = 4, 2, 3
    logits = np.full((b, T, n, n), -EPS, np.float32)
    labels = np.zeros((b, T, n, n), np.float32)
    labels[:, 1, 0, 2] = 1
    logits[:, 1, 0, 2] = EPS
    logits[1, 0, 1, 1] = EPS  # row 1: a non-gold span just above 0 -> not exact
    logits[2, 1, 0, 2] = 0.0  # row 2: the gold span on 0 -> missed -> not exact
    logits[3, 0, 2, 2] = 0.0  # row 3: a non-gold span on 0 -> not predicted -> exact
    ids = np.ones((b, n), np.int32)
    batch = {"input_ids": ids, "attention_mask": ids, "segment_ids": 0 * ids,
             "span_labels": labels, "weights": np.array([1.0, 1.0, 1.0, 2.0], np.float32)}
    sums = global_pointer_sums_fn(_FixedLogits(logits))({}, batch, None, None, False)
    assert float(sums["correct"]) == 1.0 + 2.0  # rows 0 and 3 (weight 2)
    assert float(sums["weight"]) == 5.0


def test_keep_best_replaces_only_on_a_strictly_higher_task_metric():
    """The trainer's best-dev rule on its task's metric (RunSetup.best_metric, here "em"): a score
    EPS higher replaces the best checkpoint, an equal or EPS lower one does not, and the other
    metrics (a higher "f1") are not what is compared."""
    from types import SimpleNamespace

    from gau_jax.train.loop import Trainer

    saved = []
    t = SimpleNamespace(config={"keep_best": True}, best=None,
                        setup=SimpleNamespace(best_metric="em"),
                        ckpt=SimpleNamespace(save_best=lambda step, p, meta: saved.append(step)),
                        host_state=lambda: SimpleNamespace(params={}))
    for step, em, f1 in [(1, 50.0, 60.0), (2, 50.0 + EPS, 10.0), (3, 50.0 + EPS, 90.0),
                         (4, 50.0, 99.0), (5, 50.0 + 2 * EPS, 0.0)]:
        Trainer._maybe_keep_best(t, step, {"em": em, "f1": f1})
    assert saved == [1, 2, 5]
    assert t.best == {"step": 5, "em": 50.0 + 2 * EPS, "f1": 0.0}


# ------------------------------------------------------------------ NER: logits -> F1
NER_ROWS = [  # parsed CLUENER rows: entity `end` exclusive (the parser's form)
    {"idx": 10, "text": "甲乙丙丁戊己", "entities": [
        {"type": "name", "start": 0, "end": 2, "text": "甲乙"},
        {"type": "company", "start": 3, "end": 6, "text": "丁戊己"}]},
    {"idx": 11, "text": "子丑寅卯辰", "entities": [
        {"type": "game", "start": 1, "end": 3, "text": "丑寅"},
        {"type": "game", "start": 4, "end": 5, "text": "辰"}]},
    {"idx": 12, "text": "午未申", "entities": []},
]


def _ner_logits(features, n):
    """Every real span scores −EPS; the spans below are set by hand (token = char + 1)."""
    T = len(CLUENER_TYPES)
    out = np.zeros((len(NER_ROWS), T, n, n), np.float32)
    for r, row in enumerate(features.rows):
        mask = np.zeros((1, n), np.int32)
        mask[0, :len(row["input_ids"])] = 1
        out[r] = np.where(np.asarray(span_mask(mask))[0], -EPS, NEG_INF)
    k = CLUENER_TYPES.index
    out[0, k("name"), 1, 2] = EPS            # 甲乙: right
    out[0, k("company"), 4, 6] = 0.0         # 丁戊己 on the threshold: missed
    out[0, k("company"), 4, 5] = EPS         # 丁戊: wrong end
    out[1, k("game"), 2, 3] = 2 * EPS        # 丑寅: right
    out[1, k("movie"), 5, 5] = EPS           # 辰 with the wrong type (gold game 辰 at −EPS)
    out[2, k("address"), 1, 3] = EPS         # 午未申: no gold entity
    return out


def test_ner_predictions_from_logits_scored_by_the_public_metric():
    """the task kind's decode + evaluation.score on scores EPS around 0: objects and F1 by hand.
    TP 2 (甲乙, 丑寅) of 5 predicted and 4 gold: P 40, R 50, F1 200·2/9."""
    spec = CLUE_TASKS["cluener"]
    features = ner_features(NER_ROWS, _tok(), max_len=16)
    n = 8
    logits = _ner_logits(features, n)
    batch = {"row_ids": np.array([0, 1, 2, -1])}  # a filler row at the end
    outputs = [(batch, np.concatenate([logits, np.full_like(logits[:1], 5.0)]))]
    d = kind_of(spec).decode(spec, NER_ROWS, outputs, features, (), TaskOptions())
    objects, raw, seen = d.objects, d.raw, d.seen
    assert seen == {0, 1, 2} and len(raw) == 3
    assert objects == [
        {"id": 10, "label": {"name": {"甲乙": [[0, 1]]}, "company": {"丁戊": [[3, 4]]}}},
        {"id": 11, "label": {"game": {"丑寅": [[1, 2]]}, "movie": {"辰": [[4, 4]]}}},
        {"id": 12, "label": {"address": {"午未申": [[0, 2]]}}}]
    gold = submission.gold_objects("cluener", NER_ROWS)
    out = evaluation.score("cluener", objects, gold)
    assert (out["precision"], out["recall"]) == pytest.approx((40.0, 50.0))
    assert out["f1"] == pytest.approx(200 * 2 / 9)


# ------------------------------------------------------------------ score() on objects
def test_entity_score_keys_on_type_and_offsets_by_example_id():
    """cluener through evaluation.score: an entity matches on (type, start, end) of the row
    with the same id — the text key does not matter, the type does, every mention counts, a
    row without a prediction misses its gold, predictions for unknown ids are ignored.
    By hand: TP 3 of 5 predicted (ids 9 and 3 are not gold rows: ignored) and 5 gold."""
    gold = [{"id": 0, "label": {"name": {"叶老桂": [[9, 11]]}, "company": {"浙商银行": [[0, 3]]}}},
            {"id": 1, "label": {"game": {"CSOL": [[4, 7], [10, 13]]}}},
            {"id": 2, "label": {"book": {"书": [[1, 1]]}}}]
    pred = [{"id": 1, "label": {"game": {"CSOL": [[10, 13]]}}},          # 1 of its 2 mentions
            {"id": 0, "label": {"name": {"叶老": [[9, 11]]},              # text key differs
                                "company": {"浙商银行": [[0, 3]]},
                                "organization": {"浙商": [[0, 1]]}}},
            {"id": 9, "label": {"book": {"书": [[1, 1]]}}}]               # no such row
    pred[0]["label"]["game"]["CSOL"].append([4, 6])                      # wrong end
    pred.append({"id": 3, "label": {}})
    out = evaluation.score("cluener", pred[:2], gold)
    assert out["precision"] == pytest.approx(100 * 3 / 5)  # ids 9 and 3 not passed yet
    assert out["recall"] == pytest.approx(100 * 3 / 5)
    typed = [{"id": 0, "label": {"company": {"叶老桂": [[9, 11]]}}}]  # right span, wrong type
    assert evaluation.score("cluener", typed, gold[:1])["f1"] == 0.0
    both = evaluation.score("cluener", pred, gold)
    assert both["precision"] == pytest.approx(100 * 3 / 5)  # id 9's prediction ignored
    assert both["f1"] == pytest.approx(200 * 3 / (5 + 5))


def test_accuracy_score_matches_predictions_to_gold_by_id():
    """Classification / C3 accuracy through score: predictions in another order, one missing
    (counts as wrong), one for an unknown id (ignored); C3 compares choice indices."""
    gold = [{"id": 3, "label": "1"}, {"id": 5, "label": "0"}, {"id": 8, "label": "1"}]
    pred = [{"id": 8, "label": "1"}, {"id": 99, "label": "0"}, {"id": 3, "label": "1"}]
    out = evaluation.score("afqmc", pred, gold)
    assert (out["accuracy"], out["count"]) == (pytest.approx(200 / 3), 3)
    c3_gold = [{"id": "q1", "label": 0}, {"id": "q2", "label": 2}]
    c3_pred = [{"id": "q2", "label": 2}, {"id": "q1", "label": 2}]
    assert evaluation.score("c3", c3_pred, c3_gold)["accuracy"] == 50.0
