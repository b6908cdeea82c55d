"""Bad CMRC2018 / CLUENER / C3 / ChID rows: errors name file, line or id, and field; or a
counted skip with bad_rows="skip"."""

from __future__ import annotations

import collections
import json
import pathlib

import pytest

from gau_jax.data.clue import find_task_dir
from gau_jax.data.clue_parsers import parse_split, split_files
from gau_jax.data.readers import DataError
from gau_jax.data.tasks import CLUE_TASKS
from tests.clue_fixtures import write_clue


def _parse(task: str, root: pathlib.Path, bad_rows: str = "raise") -> tuple[list, dict]:
    spec, stats = CLUE_TASKS[task], collections.Counter()
    files = split_files(spec, find_task_dir(task, root))
    return [ex for _, ex in parse_split(spec, files["train"], "train", stats, bad_rows)], stats


def _jsonl(path: pathlib.Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")


def test_cmrc2018_answer_not_at_answer_start(tmp_path):
    root = write_clue(tmp_path)
    squad = {"data": [{"paragraphs": [{"context": "甲乙丙丁", "qas": [
        {"id": "Q1", "question": "问", "answers": [{"text": "乙丙", "answer_start": 1}]},
        {"id": "Q2", "question": "问", "answers": [{"text": "丙丁", "answer_start": 1},
                                                   {"text": "丙丁", "answer_start": -1}]}]}]}]}
    (root / "cmrc2018/train.json").write_text(json.dumps(squad, ensure_ascii=False),
                                              encoding="utf-8")
    with pytest.raises(DataError, match=r"cmrc2018/train.json: field 'data\[0\].paragraphs\[0\]"
                                        r"\.qas\[1\]\.answers\[0\]\.answer_start': question "
                                        r"'Q2': answer text '丙丁' is not at answer_start 1 "
                                        r"\(found '乙丙'\)"):
        _parse("cmrc2018", root)
    rows, stats = _parse("cmrc2018", root, "skip")
    assert stats["skipped"] == 1 and [r["id"] for r in rows] == ["Q1", "Q2"]
    assert rows[1]["answers"] == [{"text": "丙丁", "answer_start": -1}] * 2  # text kept
    squad["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["text"] = " "
    (root / "cmrc2018/train.json").write_text(json.dumps(squad), encoding="utf-8")
    with pytest.raises(DataError, match=r"qas\[0\]\.answers\[0\]\.text': question 'Q1': empty"):
        _parse("cmrc2018", root)


@pytest.mark.parametrize("label,match", [
    ({"name": {"乙丙": [[1, 5]]}}, r"is not \[start, end\] inside the text \(length 4\)"),
    ({"name": {"乙丙": [[-1, 1]]}}, r"is not \[start, end\] inside the text"),
    ({"name": {"乙丙": [[2, 3]]}}, r"it gives '丙丁' \(end is inclusive\)"),
])
def test_cluener_span_outside_text_or_wrong_text(tmp_path, label, match):
    root = write_clue(tmp_path)
    _jsonl(root / "cluener/train.json", [{"text": "甲乙", "label": {}},
                                         {"text": "甲乙丙丁", "label": label}])
    with pytest.raises(DataError, match=r"cluener/train.json:2: field 'label.name.乙丙': span .*"
                                        + match):
        _parse("cluener", root)
    rows, stats = _parse("cluener", root, "skip")
    assert stats["skipped"] == 1 and [r["text"] for r in rows] == ["甲乙"]


def test_c3_answer_not_a_choice(tmp_path):
    root = write_clue(tmp_path)
    docs = [[["文章"], [{"question": "问", "choice": ["甲", "乙"], "answer": "乙"},
                       {"question": "问", "choice": ["甲", "乙"], "answer": "丙"}], "7-1"]]
    (root / "c3/d-train.json").write_bytes(
        json.dumps(docs, ensure_ascii=False, indent=1).replace("\n", "\r\n").encode())
    with pytest.raises(DataError, match=r"c3/d-train.json: field '\[0\]\[1\]\[1\]\.answer': "
                                        r"document '7-1' question 1: answer '丙' is not one of "
                                        r"the choices \['甲', '乙'\]"):
        _parse("c3", root)
    rows, stats = _parse("c3", root, "skip")
    assert stats["skipped"] == 1 and "d-7-1-0" in {r["id"] for r in rows}
    assert "d-7-1-1" not in {r["id"] for r in rows}


@pytest.mark.parametrize("content,found", [("没有空", 0), ("#idiom#和#idiom#", 2)])
def test_chid_row_without_exactly_one_blank(tmp_path, content, found):
    root = write_clue(tmp_path)
    cands = ["甲乙丙丁"] * 7
    _jsonl(root / "chid/train.json", [{"id": 1, "candidates": cands, "content": "好#idiom#",
                                       "answer": 0},
                                      {"id": 2, "candidates": cands, "content": content,
                                       "answer": 0}])
    with pytest.raises(DataError, match=r"chid/train.json:2: field 'content': expected exactly "
                                        rf"one #idiom# blank, found {found}"):
        _parse("chid_fewclue", root)
    rows, stats = _parse("chid_fewclue", root, "skip")
    assert stats["skipped"] == 1 and [r["idx"] for r in rows] == [1]
