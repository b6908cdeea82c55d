"""CLUE's ChID (task chid; FewCLUE's is chid_fewclue): the parser of its layout, Su's feature
rows, the joint assignment of a row's blanks (against brute force) and the one-object file."""

from __future__ import annotations

import collections
import itertools
import json

import numpy as np
import pytest

from gau_jax.data import clue
from gau_jax.data.clue_parsers import parse_split, split_files
from gau_jax.data.readers import DataError
from gau_jax.data.task_features_chid import idiom_cloze_features
from gau_jax.data.tasks import CLUE_TASKS, get_task
from gau_jax.data.tokenizer import build_char_vocab
from gau_jax.tasks import TaskOptions, kind_of, submission
from gau_jax.tasks.idiom_cloze import assign
from tests.clue_fixtures import IDIOMS, write_clue, write_clue_chid


def _parse(root, split="dev", bad_rows="raise"):
    spec = CLUE_TASKS["chid"]
    files = split_files(spec, clue.find_task_dir("chid", root))
    stats = collections.Counter()
    return [ex for _, ex in parse_split(spec, files[split], split, stats, bad_rows)], stats


@pytest.fixture
def root(tmp_path):
    return write_clue_chid(tmp_path / "clue")


def test_parser_reads_passages_blanks_and_answers(root):
    rows, _ = _parse(root)
    assert [r["blanks"] for r in rows] == [
        ["#idiom000010#", "#idiom000011#", "#idiom000012#"], ["#idiom000013#", "#idiom000014#"]]
    assert [r["labels"] for r in rows] == [[4, 1, 2], [9, 0]]
    assert [r["idx"] for r in rows] == [0, 1] and rows[1]["candidates"] == IDIOMS[::-1]
    test, _ = _parse(root, "test")  # CLUE 1.1's test1.1.json, no answers
    assert test[0]["labels"] == [-1, -1]
    assert split_files(CLUE_TASKS["chid"], root / "chid")["test"][0].name == "test1.1.json"


def test_tfds_rows_equal_parsed_rows(root, tmp_path):
    src = clue.load_sources("chid", root, tmp_path / "tfds")
    assert {s: len(v) for s, v in src.items()} == {"train": 1, "dev": 2, "test": 1}
    row = src["dev"][1]
    assert [b.decode() for b in row["blanks"]] == ["#idiom000013#", "#idiom000014#"]
    assert list(row["labels"]) == [9, 0]


def test_fewclue_files_under_task_chid_are_named(tmp_path):
    fewclue = write_clue(tmp_path / "few")
    with pytest.raises(DataError, match="lacks .*train_answer.json.*FewCLUE's ChID.*use "
                                        "task=chid_fewclue"):
        _parse(fewclue, "train")
    for name in ("train", "dev"):  # with answers files beside them, the rows themselves tell
        (fewclue / f"chid/{name}_answer.json").write_text("{}")
    with pytest.raises(DataError, match="train.json:1: field 'content': this is FewCLUE's ChID"):
        _parse(fewclue, "train")


@pytest.mark.parametrize("answers, match", [
    ({"#idiom000010#": 4, "#idiom000011#": 1, "#idiom000012#": 2, "#idiom000013#": 9},
     "no answer for #idiom000014#"),
    ({"#idiom000010#": 10, "#idiom000011#": 1, "#idiom000012#": 2, "#idiom000013#": 9,
      "#idiom000014#": 0}, r"answer 10 out of range 0..9"),
])
def test_bad_answers_name_the_file_and_tag(root, answers, match):
    (root / "chid/dev_answer.json").write_text(json.dumps(answers))
    with pytest.raises(DataError, match=f"dev_answer.json.*{match}"):
        _parse(root)


def test_repeated_tag_and_candidate_count_are_refused(root):
    rows = [{"candidates": IDIOMS, "content": ["#idiom000010#"]},
            {"candidates": IDIOMS, "content": ["#idiom000010#"]},
            {"candidates": IDIOMS[:7], "content": ["#idiom000011#"]}]
    (root / "chid/dev.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"dev.json:2: field 'content': duplicate id"):
        _parse(root)
    kept, stats = _parse(root, bad_rows="skip")
    assert [r["blanks"] for r in kept] == [["#idiom000010#"]] and stats["skipped"] == 2


def test_su_layout_one_row_per_blank(root):
    rows, _ = _parse(root)
    tok = build_char_vocab([p.read_text(encoding="utf-8") for p in root.rglob("*.json")], 160)
    assert "[unused1]" in tok.vocab
    f = idiom_cloze_features(rows, tok, get_task("chid"), max_len=64)
    assert len(f) == 5 and [m["id"] for m in f.meta][:2] == ["#idiom000010#", "#idiom000011#"]
    assert [m["blank"] for m in f.meta] == [0, 1, 2, 0, 1]
    # [CLS] 百尺竿头 [SEP] [MASK]x4 ，去 [unused1] ？还是迎难而上。 [SEP]   (blank 11: the other
    # blank of its passage, 10, is 4 [MASK]; the blank itself [unused1])
    seq = tok.convert_ids_to_tokens(f.rows[1]["input_ids"][0].tolist())
    assert seq == ["[CLS]", *"百尺竿头", "[SEP]", *["[MASK]"] * 4, *"，去", "[unused1]",
                   *"？还是迎难而上。", "[SEP]"]
    assert len(f.rows[1]["input_ids"]) == 10 and not f.rows[1]["segment_ids"][3].any()
    # side-by-side blanks: 城市 [unused1] [MASK]x4 的变化 / 城市 [MASK]x4 [unused1] 的变化
    seq = tok.convert_ids_to_tokens(f.rows[4]["input_ids"][0].tolist())
    assert seq[6:] == [*"城市", *["[MASK]"] * 4, "[unused1]", *"的变化", "[SEP]"]


def test_long_passage_cut_from_the_far_end_of_the_longer_side(root):
    left, right = "甲" * 40, "乙" * 10
    row = {"idx": 0, "content": [f"{left}#idiom000001#{right}"], "candidates": IDIOMS,
           "blanks": ["#idiom000001#"], "labels": [0]}
    tok = build_char_vocab([left + right + "".join(IDIOMS)], 60)
    f = idiom_cloze_features([row], tok, get_task("chid"), max_len=32)
    seq = tok.convert_ids_to_tokens(f.rows[0]["input_ids"][0].tolist())
    assert len(seq) == 32 and f.stats["contexts_truncated"] == 1
    # room 32 - 6 - 2 = 24 passage tokens: the longer left side loses its head, 40 → 14
    assert seq[6:] == [*"甲" * 14, "[unused1]", *"乙" * 10, "[SEP]"]


@pytest.mark.parametrize("k, c, seed", [(k, c, s) for k, c in ((1, 3), (2, 2), (3, 5), (4, 4),
                                                                (5, 7)) for s in range(4)])
def test_assignment_equals_brute_force(k, c, seed):
    scores = np.random.default_rng(seed).normal(size=(k, c))
    best = max(itertools.permutations(range(c), k),
               key=lambda p: sum(scores[b, p[b]] for b in range(k)))
    got = assign(scores)
    assert len(set(got)) == k
    assert sum(scores[b, got[b]] for b in range(k)) == pytest.approx(
        sum(scores[b, best[b]] for b in range(k)))


def test_joint_assignment_beats_per_blank_argmax_in_decode(root):
    """Two blanks preferring the same candidate: the joint assignment gives them distinct ones."""
    spec, kind = get_task("chid"), kind_of(get_task("chid"))
    rows, _ = _parse(root)
    rows = rows[1:]  # the row with blanks 13 and 14 (answers 9 and 0)
    tok = build_char_vocab(["城市的变化" + "".join(IDIOMS)], 80)
    opts = TaskOptions(max_length=64, data_threads=1)
    f = kind.features(spec, rows, tok, opts)
    batches = list(kind.batches(spec, rows, tok, f, opts, train=False, batch_size=2,
                                shard=(0, 1)))
    logits = np.zeros((2, 10), np.float32)
    logits[0, 9], logits[0, 0] = 5.0, 4.0  # blank 13: 9 first, 0 second
    logits[1, 9], logits[1, 0] = 5.5, 1.0  # blank 14: 9 first too
    # 13→9, 14→0: 5 + 1 = 6; 13→0, 14→9: 4 + 5.5 = 9.5: the joint optimum moves 13 to 0
    decoded = kind.decode(spec, rows, [(batches[0], logits)], f, (), opts)
    assert decoded.objects == {"#idiom000013#": 0, "#idiom000014#": 9}
    assert decoded.seen == {0}


def test_submission_is_one_object_of_ints(root, tmp_path):
    rows, _ = _parse(root)
    preds = {"#idiom000010#": 4, "#idiom000011#": 1, "#idiom000012#": 2, "#idiom000013#": 9,
             "#idiom000014#": 0}
    path = submission.write_submission("chid", preds, tmp_path / "chid11_predict.json")
    obj = json.loads(path.read_text(encoding="utf-8"))  # what CLUE reads: {tag: int}
    assert obj == preds and all(type(v) is int for v in obj.values())
    submission.check_predictions("chid", obj, rows, path)
    for bad, match in (({**preds, "#idiom000014#": 10}, "label 10 is not a candidate index"),
                       ({k: v for k, v in preds.items() if k != "#idiom000012#"},
                        "1 id.s. without a prediction, first '#idiom000012#'"),
                       ({**preds, "#idiom000099#": 0}, "'#idiom000099#' is not in the split")):
        with pytest.raises(submission.SubmissionError, match=match):
            submission.check_predictions("chid", bad, rows, path)
    gold = submission.gold_objects("chid", rows)
    assert gold == preds
    assert kind_of(get_task("chid")).baseline(get_task("chid"), rows) == pytest.approx(10.0)
