"""Bugs a new user hit, one test each: invalid UTF-8 and truncated documents name file, line and
byte offset; two data folders of one task (or a changed source) never share or delete prepared
files; the inspect CLI refuses a split that does not exist and an index out of range; bad rows
can be skipped and counted; the checkpoint readers name the file or tensor at fault."""

from __future__ import annotations

import collections
import json
import pathlib
import re

import numpy as np
import pytest

from gau_jax.convert import hf
from gau_jax.convert.common import ConvertError, count_vocab, read_json
from gau_jax.convert.tf_checkpoint import read_tf_checkpoint
from gau_jax.data import clue
from gau_jax.data import inspect as inspect_cli
from gau_jax.data.clue_parsers import parse_split, split_files
from gau_jax.data.corpus import read_tagged_corpus
from gau_jax.data.readers import DataError, read_jsonl_task, read_text_corpus
from gau_jax.data.tasks import CLUE_TASKS, as_text
from gau_jax.data.tokenizer import read_vocab
from tests.clue_fixtures import write_clue

DATA = pathlib.Path(__file__).with_name("data")


def _parse(task: str, root: pathlib.Path, split: str = "train", bad_rows: str = "raise"):
    spec, stats = CLUE_TASKS[task], collections.Counter()
    files = split_files(spec, clue.find_task_dir(task, root))
    return list(parse_split(spec, files[split], split, stats, bad_rows)), stats


def _jsonl(rows: list[dict]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


# ------------------------------------------------------------------ invalid UTF-8 / truncation
def test_invalid_utf8_in_jsonl_names_file_line_and_byte(tmp_path):
    root = write_clue(tmp_path)
    first = _jsonl([{"sentence1": "花呗", "sentence2": "借呗", "label": "1"}])
    second = b'{"sentence1": "\xe8\x8a", "sentence2": "b", "label": "0"}\n'  # cut character
    (root / "afqmc/train.json").write_bytes(first + second)
    offset = len(first) + second.index(b"\xe8")
    with pytest.raises(DataError, match=rf"afqmc/train.json:2: invalid UTF-8 .*byte offset "
                                        rf"{offset}\b"):
        _parse("afqmc", root)
    row = _jsonl([{"sentence": "好", "label": "1"}])
    (tmp_path / "train.json").write_bytes(row + b"\r\n" + second)
    (tmp_path / "dev.json").write_bytes(row)
    with pytest.raises(DataError, match=r"train.json:3: invalid UTF-8"):  # CRLF counted once
        read_jsonl_task(tmp_path)


def test_truncated_whole_json_documents(tmp_path):
    root = write_clue(tmp_path)
    for task, name in (("cmrc2018", "train.json"), ("c3", "d-train.json")):
        path = root / task / name
        data = path.read_bytes()
        cut = data.index("是".encode() if task == "cmrc2018" else "你".encode()) + 1
        path.write_bytes(data[:cut])  # ends inside a 3-byte character
        line = data[:cut].count(b"\n") + 1
        with pytest.raises(DataError, match=rf"{task}/{name}:{line}: invalid UTF-8 .*byte "
                                            rf"offset {cut - 1}\b"):
            _parse(task, root)
        path.write_bytes(data[:cut - 1])  # ends at a character boundary, mid-document
        with pytest.raises(DataError, match=rf"{task}/{name}:{line}: malformed JSON"):
            _parse(task, root)


def test_corpus_vocab_and_config_readers_name_the_byte(tmp_path):
    bad = "第一篇\n".encode() + b"\xff\xfe\n"
    (tmp_path / "a.txt").write_bytes(bad)
    with pytest.raises(DataError, match=r"a.txt:2: invalid UTF-8 \(bytes b'\\xff' at byte "
                                        r"offset 10\)"):
        read_text_corpus(tmp_path / "a.txt")
    (tmp_path / "a.txt").write_bytes("迈向/v  充满/v\n".encode() + b"\xff\n")
    with pytest.raises(DataError, match=r"a.txt:2: invalid UTF-8"):
        read_tagged_corpus(tmp_path / "a.txt")
    vocab = tmp_path / "vocab.txt"
    vocab.write_bytes(b"\xef\xbb\xbf[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\n")
    assert read_vocab(vocab) == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    assert count_vocab(vocab) == 5  # BOM and CRLF accepted by both readers
    vocab.write_bytes(b"[PAD]\n[UNK]\n\x80\n")
    with pytest.raises(DataError, match=r"vocab.txt:3: invalid UTF-8 .*byte offset 12\b"):
        read_vocab(vocab)
    with pytest.raises(ConvertError, match=r"vocab.txt:3: invalid UTF-8"):
        count_vocab(vocab)
    config = b'{"a": 1,\n "b": "\xc3"}'
    (tmp_path / "config.json").write_bytes(config)
    at = config.index(b"\xc3")
    with pytest.raises(ConvertError, match=rf"config.json:2: invalid UTF-8 .*byte offset {at}\b"):
        read_json(tmp_path / "config.json")
    (tmp_path / "config.json").write_text('{"a": 1, "a": 2}')
    with pytest.raises(ConvertError, match=r"config.json:1: malformed JSON \(duplicate key 'a'"):
        read_json(tmp_path / "config.json")


# ------------------------------------------------------------------ hostile rows
@pytest.mark.parametrize("row,match", [
    ({"sentence1": "a", "sentence2": "b", "label": "1", "id": 10**20}, r"field 'id': id .*64"),
    ({"sentence1": "a", "sentence2": "b", "label": 1.0}, r"field 'label': unknown label 1.0"),
    ({"sentence1": "a", "sentence2": "b", "label": True}, r"field 'label': unknown label True"),
    ({"sentence1": "a", "sentence2": ["b"], "label": "1"}, r"'sentence2': expected str, got"),
    ({"sentence1": "\ud800", "sentence2": "b", "label": "1"}, r":1: malformed JSON \(a "
                                                                r"\\uD800-\\uDFFF escape"),
])
def test_hostile_classification_rows(tmp_path, row, match):
    root = write_clue(tmp_path)
    (root / "afqmc/train.json").write_text(json.dumps(row) + "\n")  # ensure_ascii: \ud800 escape
    with pytest.raises(DataError, match=match):
        _parse("afqmc", root)


def test_offsets_outside_the_text_and_duplicate_ids(tmp_path):
    root = write_clue(tmp_path)
    wsc = {"target": {"span1_index": -2, "span1_text": "北", "span2_index": 0,
                      "span2_text": "小"}, "idx": 0, "label": "true", "text": "小明去北京"}
    (root / "cluewsc2020/train.json").write_text(json.dumps(wsc) + "\n")  # text[-2:-1] == "北"
    with pytest.raises(DataError, match=r"train.json:1: field 'target.span1_index'"):
        _parse("cluewsc2020", root)
    (root / "chid/train.json").write_text(json.dumps(
        {"id": 1, "candidates": list("abcdefg"), "content": "#idiom#", "answer": True}) + "\n")
    with pytest.raises(DataError, match=r"train.json:1: field 'answer': expected int, got bool"):
        _parse("chid_fewclue", root)  # never read as answer 1
    ner = {"text": "abc", "label": {"name": {"b": [[-2, -2]]}}}  # text[-2:-1] == "b"
    (root / "cluener/train.json").write_text(json.dumps(ner) + "\n")
    with pytest.raises(DataError, match=r"train.json:1: field 'label.name.b'"):
        _parse("cluener", root)
    rows = [{"id": 3, "abst": "x", "keyword": [], "label": "0"}] * 2
    (root / "csl/train.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"train.json:2: field 'id': duplicate id 3 \(first on "
                                        r"line 1\)"):
        _parse("csl", root)
    doc = json.loads((root / "cmrc2018/train.json").read_text(encoding="utf-8"))
    qas = doc["data"][0]["paragraphs"][0]["qas"]
    qas[1]["id"] = qas[0]["id"]
    (root / "cmrc2018/train.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(DataError, match=r"field 'data\[0\].paragraphs\[0\].qas\[1\].id': "
                                        r"duplicate id 'Q1'"):
        _parse("cmrc2018", root)
    qas[1]["id"], qas[1]["answers"][0]["answer_start"] = "Q2", 10**10
    (root / "cmrc2018/train.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(DataError, match=r"qas\[1\].answers\[0\].answer_start'"):
        _parse("cmrc2018", root)


def test_bad_rows_skip_counts_and_keeps_the_good_ones(tmp_path):
    root = write_clue(tmp_path / "clue")
    good = [{"sentence1": "甲", "sentence2": "乙", "label": lab} for lab in ("0", "1", "1")]
    lines = _jsonl(good[:1]) + b'{"sentence1": "a", \n' + _jsonl(good[1:2]) + b"\xff\n" \
        + _jsonl([{"sentence1": "a", "sentence2": "b", "label": "7"}]) + _jsonl(good[2:])
    (root / "afqmc/train.json").write_bytes(lines)
    with pytest.raises(DataError, match=r"train.json:2: malformed JSON"):
        _parse("afqmc", root)
    examples, stats = _parse("afqmc", root, bad_rows="skip")
    assert [k for k, _ in examples] == ["train.json:1", "train.json:3", "train.json:6"]
    assert [ex["label"] for _, ex in examples] == [0, 1, 1] and stats["skipped"] == 3
    builder = clue.prepare("afqmc", root, tmp_path / "tfds", bad_rows="skip")
    assert clue.skipped_counts(builder) == {"train": 3, "dev": 0, "test": 0}
    assert builder.info.splits["train"].num_examples == 3
    (root / "afqmc/dev.json").write_bytes(b"[1]\n{}\n")
    with pytest.raises(DataError, match=r"dev.json: no valid rows in the dev split \(2 bad"):
        _parse("afqmc", root, "dev", bad_rows="skip")
    (tmp_path / "train.json").write_bytes(_jsonl([{"sentence": "好", "label": "a"},
                                                  {"sentence": 3, "label": "b"}]))
    (tmp_path / "dev.json").write_bytes(_jsonl([{"sentence": "好", "label": "c"},
                                                {"sentence": "坏", "label": "a"}]))
    stats = collections.Counter()
    spec, splits = read_jsonl_task(tmp_path, bad_rows="skip", stats=stats)
    assert spec.label_names == ("a",) and stats["skipped"] == 2
    assert [r["sentence"] for r in splits["dev"]] == ["坏"]


# ------------------------------------------------------------------ prepared TFDS copies
def _dev_sentences(builder) -> list[str]:
    src = builder.as_data_source(split="dev")
    return sorted(as_text(src[i]["sentence"]) for i in range(len(src)))


def test_two_data_folders_of_one_task_never_share_prepared_files(tmp_path):
    out = tmp_path / "tfds"
    a, b = write_clue(tmp_path / "a"), write_clue(tmp_path / "b")
    (b / "tnews/dev.json").write_text(json.dumps({"label": "101", "sentence": "另一个"}) + "\n",
                                      encoding="utf-8")
    builder_a = clue.prepare("tnews", a, out)
    files_a = sorted(p for p in pathlib.Path(builder_a.data_dir).rglob("*") if p.is_file())
    source_a = builder_a.as_data_source(split="dev")  # a run reading folder a
    builder_b = clue.prepare("tnews", b, out)  # used to delete a's files
    assert builder_a.data_dir != builder_b.data_dir
    assert all(p.is_file() for p in files_a)
    assert as_text(source_a[0]["sentence"]) == "一个故事"  # a's run still reads a's data
    assert _dev_sentences(builder_b) == ["另一个"]
    assert re.fullmatch(r"tnews-[0-9a-f]{16}", pathlib.Path(builder_b.data_dir).parents[2].name)
    # a changed source and force=True give new copies beside the old ones, deleting nothing
    (a / "tnews/dev.json").write_text(json.dumps({"label": "101", "sentence": "改了"}) + "\n",
                                      encoding="utf-8")
    builder_a2 = clue.prepare("tnews", a, out)
    forced = clue.prepare("tnews", a, out, force=True)
    assert len({builder_a.data_dir, builder_a2.data_dir, forced.data_dir}) == 3
    assert pathlib.Path(forced.data_dir).parents[2].name.endswith(".1")
    assert all(p.is_file() for p in files_a) and as_text(source_a[0]["sentence"]) == "一个故事"
    assert _dev_sentences(builder_a2) == _dev_sentences(forced) == ["改了"]
    assert clue.prepare("tnews", a, out).data_dir == forced.data_dir  # the newest copy is used


# ------------------------------------------------------------------ inspect CLI
def test_inspect_refuses_missing_split_and_out_of_range_index(tmp_path, capsys):
    root = write_clue(tmp_path / "clue")
    args = ["--task", "tnews", "--data_dir", str(root), "--tfds_dir", str(tmp_path / "tfds")]
    assert inspect_cli.main(args + ["--split", "test"]) == 2
    err = capsys.readouterr().err
    assert "--split test: no such split; this task has train, dev" in err
    assert inspect_cli.main(args + ["--split", "dev", "--index", "1"]) == 2
    assert "--index 1: out of range: split 'dev' has 1 examples (0..0)" in capsys.readouterr().err
    assert inspect_cli.main(args + ["--split", "dev", "--index", "0"]) == 0
    out = capsys.readouterr().out
    assert "example dev[0]:" in out and "一个故事" in out


# ------------------------------------------------------------------ checkpoint readers
def test_checkpoint_readers_name_file_or_tensor(tmp_path):
    for name in ("tiny.ckpt.index", "tiny.ckpt.data-00000-of-00001"):
        (tmp_path / name).write_bytes((DATA / "tf_bundle" / name).read_bytes())
    shard = tmp_path / "tiny.ckpt.data-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:-4])
    with pytest.raises(ConvertError, match=r"tensor 'layer_0/gamma' .*truncated"):
        read_tf_checkpoint(tmp_path)
    index = tmp_path / "tiny.ckpt.index"
    data = index.read_bytes()
    index.write_bytes(data[:20] + b"\xff" * 8 + data[28:])  # the index's handles corrupted
    with pytest.raises(ConvertError, match=r"tiny.ckpt.index"):
        read_tf_checkpoint(tmp_path)
    from safetensors.numpy import save_file

    (tmp_path / "hf").mkdir()
    save_file({"w": np.ones((2, 3), np.float32)}, tmp_path / "hf" / "model.safetensors")
    st = tmp_path / "hf" / "model.safetensors"
    st.write_bytes(st.read_bytes()[:-5])
    with pytest.raises(ConvertError, match=r"model.safetensors: cannot read"):
        hf.read_tensors(tmp_path / "hf")
    st.unlink()
    (tmp_path / "hf" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "../x.safetensors"}}))
    with pytest.raises(ConvertError, match=r"index.json: expected a 'weight_map'"):
        hf.read_tensors(tmp_path / "hf")
    with pytest.raises(ConvertError, match=r"config.json: field 'num_attention_heads' must be an "
                                           r"integer in \[1, 16777216\], got 0"):
        hf.config_from_hf({"model_type": "roformer", "vocab_size": 8, "hidden_size": 4,
                           "num_hidden_layers": 1, "intermediate_size": 8,
                           "norm_type": "rms_norm", "hidden_act": "relu",
                           "num_attention_heads": 0}, "config.json")
