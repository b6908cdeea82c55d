"""Fuzzing the data readers with hypothesis (fixed seed, bounded example counts): JSON Lines and
whole-JSON readers, every CLUE row parser, the user jsonl task, the text corpora and vocab.txt
get mutated rows (missing keys, wrong types, labels outside the label set, duplicate ids, edge
integers) serialised to hostile bytes (BOM, CRLF / CR, invalid UTF-8, truncation, huge lines).

Each input must give either DataError whose message starts with the file's path (and, for
JSON Lines, names the line), or rows that are right: labels equal the file's own label names,
every example encodes with the TFDS features, and with bad_rows="skip" every non-blank line is
kept, dropped or counted as skipped (no row vanishes silently).
"""

from __future__ import annotations

import collections
import json
import pathlib
import shutil
import tempfile
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gau_jax.convert.common import count_vocab
from gau_jax.data import clue
from gau_jax.data.clue_parsers import parse_split
from gau_jax.data.corpus import read_tagged_corpus
from gau_jax.data.readers import DataError, iter_jsonl, load_json, read_jsonl_task, read_text_corpus
from gau_jax.data.tasks import CLUE_TASKS
from gau_jax.data.tokenizer import SPECIAL_TOKENS, ChineseTokenizer, read_vocab
from tests.clue_fixtures import write_clue
from tests.fuzz_helpers import (
    COUNTS,
    JSON,
    dumps,
    fuzz,
    has_duplicate_keys,
    hostile_bytes,
    mutated,
    nonblank,
    split_lines,
)

TMP = pathlib.Path(tempfile.mkdtemp(prefix="gau_fuzz_"))
CLUE = write_clue(TMP / "clue")
# CLUE's ChID ("chid": passages and *_answer.json) is read as a pair: tests/test_chid.py
JSONL_TASKS = sorted(t for t in CLUE_TASKS if t not in ("c3", "cmrc2018", "chid"))
ROWS = {t: [json.loads(line) for line in (CLUE / CLUE_TASKS[t].dir_name / "train.json")
            .read_text("utf-8").split("\n") if line]
        for t in JSONL_TASKS if (CLUE / CLUE_TASKS[t].dir_name / "train.json").is_file()}
DOCS = {"c3": json.loads((CLUE / "c3" / "d-train.json").read_text("utf-8")),
        "cmrc2018": json.loads((CLUE / "cmrc2018" / "train.json").read_text("utf-8"))}
FEATURES = {t: clue._features(CLUE_TASKS[t]) for t in CLUE_TASKS}


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    print("\nfuzzed inputs per reader:", dict(sorted(COUNTS.items())))
    COUNTS.clear()
    shutil.rmtree(TMP, ignore_errors=True)


def _write(name: str, data: bytes) -> pathlib.Path:
    path = TMP / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _names_file(e: DataError, path: pathlib.Path) -> None:
    assert str(e).startswith(str(path)), str(e)


@st.composite
def jsonl_file(draw, rows: list, hostile: bool = True) -> bytes:
    """JSON Lines bytes of `rows`; hostile: mutated rows (the first row repeated: a duplicate
    id), keys written twice, byte edits."""
    huge = {k: v for k, v in rows[0].items() if k not in ("id", "idx")} | {"pad": "y" * 200_000}
    extra = None if hostile else [b"", b" \t ", dumps(huge, True)]  # a huge line, no id
    mode = draw(st.sampled_from(["rows", "rows", "bytes", "both"])) if hostile else ""
    if mode in ("rows", "both"):
        rows = draw(mutated(rows + rows[:1] * (draw(st.integers(0, 3)) == 0)))  # dup id
    ascii_ = draw(st.booleans())
    lines = []
    for r in rows:
        repeat = None
        if hostile and isinstance(r, dict) and r and draw(st.integers(0, 9)) == 0:
            repeat = (draw(st.sampled_from(sorted(r))), draw(JSON))
        lines.append(dumps(r, ascii_, repeat))
    return draw(hostile_bytes(lines, edits=mode in ("bytes", "both"), extra=extra))


def _rows_of(data: bytes) -> dict[int, Any]:
    """{line: parsed row} of the non-blank lines, parsed by json itself."""
    return {i: json.loads(b.decode("utf-8")) for i, b in nonblank(data)}


def _no_duplicate_keys(data: bytes) -> None:
    for _, b in nonblank(data):
        assert not has_duplicate_keys(b), b[:200]


# ------------------------------------------------------------------ generic readers
@fuzz(120)
@given(data=st.one_of(st.binary(max_size=300), jsonl_file([{"a": 1}, {"b": [1, "x"]}])))
def test_iter_jsonl(data):
    COUNTS["iter_jsonl"] += 1
    path = _write("any.jsonl", data)
    try:
        rows = list(iter_jsonl(path))
    except DataError as e:
        _names_file(e, path)
        return
    assert dict(rows) == _rows_of(data)
    _no_duplicate_keys(data)


@fuzz(40)
@given(data=jsonl_file([{"a": 1, "b": "花呗"}, {"b": [1, "x"]}, {}], hostile=False))
def test_iter_jsonl_accepts_any_line_end_and_bom(data):
    COUNTS["iter_jsonl (valid)"] += 1
    rows = [r for _, r in iter_jsonl(_write("valid.jsonl", data))]
    assert [r for r in rows if "pad" not in r] == [{"a": 1, "b": "花呗"}, {"b": [1, "x"]}, {}]
    assert len(rows) == 3 + (b'"pad"' in data)


@fuzz(60)
@given(data=st.one_of(st.binary(max_size=300),
                      st.builds(lambda v, a: dumps(v, a), JSON, st.booleans()),
                      st.just(b"[" * 5000), st.just(b"1" * 5000)))
def test_load_json(data):
    COUNTS["load_json"] += 1
    path = _write("doc.json", data)
    try:
        value = load_json(path)
    except DataError as e:
        _names_file(e, path)
        return
    assert value == json.loads(data.decode("utf-8-sig")) and not has_duplicate_keys(data)


# ------------------------------------------------------------------ CLUE parsers
def _check_examples(task: str, examples: list, data: bytes) -> None:
    spec, lines = CLUE_TASKS[task], dict(nonblank(data))
    own_ids = []
    for key, ex in examples:
        FEATURES[task].serialize_example(ex)  # what TFDS does while preparing: must not fail
        line = lines[int(key.rsplit(":", 1)[1])]
        assert not has_duplicate_keys(line), line[:200]
        row = json.loads(line.decode("utf-8"))
        if any(type(row.get(f)) is int for f in ("id", "idx")):
            own_ids.append(ex["idx"])
        if spec.kind == "classification":
            v = row["label"]
            assert spec.label_names[ex["label"]] == (str(v).lower() if isinstance(v, bool)
                                                     else str(v).strip())
        if task == "cluewsc2020":
            for k in ("1", "2"):
                i, t = row["target"][f"span{k}_index"], row["target"][f"span{k}_text"]
                assert type(i) is int and 0 <= i and t and row["text"][i:i + len(t)] == t
        elif task == "chid_fewclue":
            assert type(row["answer"]) is int and ex["label"] == row["answer"]
            assert ex["candidates"] == row["candidates"]
        elif task == "cluener":  # every entity is the text at its span
            for e in ex["entities"]:
                assert 0 <= e["start"] < e["end"] <= len(ex["text"])
                assert ex["text"][e["start"]:e["end"]] == e["text"]
    assert len(own_ids) == len(set(own_ids)), own_ids


@pytest.mark.parametrize("task", JSONL_TASKS)
@fuzz(30)
@given(data=st.data())
def test_clue_jsonl_parsers(task, data):
    COUNTS[f"clue/{task}"] += 1
    raw = data.draw(jsonl_file(ROWS[task]))
    skip = data.draw(st.booleans())
    path = _write(f"{task}/train.json", raw)
    stats = collections.Counter()
    try:
        examples = list(parse_split(CLUE_TASKS[task], [path], "train", stats,
                                    "skip" if skip else "raise"))
    except DataError as e:
        _names_file(e, path)
        assert not skip or "no valid" in str(e) or "empty" in str(e), str(e)
        return
    _check_examples(task, examples, raw)
    if skip:
        assert len(examples) + stats["skipped"] + stats["dropped"] == len(nonblank(raw))


@pytest.mark.parametrize("task", JSONL_TASKS)
@fuzz(8)
@given(data=st.data())
def test_clue_jsonl_parsers_accept_valid_files(task, data):
    COUNTS[f"clue/{task} (valid)"] += 1
    raw = data.draw(jsonl_file(ROWS[task], hostile=False))
    stats = collections.Counter()
    examples = list(parse_split(CLUE_TASKS[task], [_write(f"{task}/ok.json", raw)], "train",
                                stats))
    assert len(examples) + stats["dropped"] == len(ROWS[task]) + (b'"pad"' in raw)
    _check_examples(task, examples, raw)


@pytest.mark.parametrize("task", ["c3", "cmrc2018"])
@fuzz(40)
@given(data=st.data())
def test_clue_document_parsers(task, data):
    COUNTS[f"clue/{task}"] += 1
    doc = data.draw(mutated(DOCS[task], max_edits=3))
    raw = data.draw(hostile_bytes([dumps(doc, data.draw(st.booleans()))],
                                  edits=data.draw(st.integers(0, 3)) == 0))
    path = _write(f"{task}/train.json", raw)
    try:
        examples = list(parse_split(CLUE_TASKS[task], [path], "train", collections.Counter(),
                                    data.draw(st.sampled_from(["raise", "skip"]))))
    except DataError as e:
        _names_file(e, path)
        return
    if examples:
        assert not has_duplicate_keys(raw)
    for _, ex in examples:
        FEATURES[task].serialize_example(ex)
        if task == "c3":
            assert ex["choice"][ex["label"]] == ex["answer"]
            assert ex["context"] in [d[0] for d in doc if isinstance(d, list) and d]
        else:
            assert all(-1 <= a["answer_start"] <= len(ex["context"]) for a in ex["answers"])
    ids = [ex["id"] for _, ex in examples]
    assert len(ids) == len(set(ids))


@fuzz(60)
@given(data=st.data())
def test_jsonl_task(data):
    COUNTS["read_jsonl_task"] += 1
    rows = [{"sentence": "好", "label": 1}, {"sentence": "坏", "sentence2": "x", "label": "0"},
            {"id": 4, "sentence": "中", "label": "2"}]
    folder = TMP / "task"
    paths = [_write(f"task/{s}.json", data.draw(jsonl_file(rows))) for s in ("train", "dev")]
    skip = data.draw(st.booleans())
    try:
        spec, splits = read_jsonl_task(folder, bad_rows="skip" if skip else "raise")
    except DataError as e:
        assert any(str(e).startswith(str(p)) for p in paths + [folder]), str(e)
        return
    for path, split in zip(paths, ("train", "dev"), strict=True):
        assert len(splits[split]) <= len(nonblank(path.read_bytes()))
        for r in splits[split]:
            assert isinstance(r["sentence"], str) and isinstance(r["sentence2"], str)
            assert 0 <= r["label"] < spec.num_classes
    if not skip:  # every label maps back to the row's own label text
        lines = dict(nonblank(paths[1].read_bytes()))
        got = [spec.label_names[r["label"]] for r in splits["dev"]]
        want = [str(json.loads(lines[i].decode())["label"]).strip() for i in sorted(lines)]
        assert got == want


# ------------------------------------------------------------------ corpora and vocab.txt
@fuzz(60)
@given(data=st.one_of(st.binary(max_size=200), st.builds(
    lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"),
    st.lists(st.text(max_size=10), max_size=6))))
def test_text_corpora(data):
    COUNTS["read_text_corpus"] += 1
    path = _write("corpus.txt", data)
    try:
        docs = read_text_corpus(path)
        assert docs == [b.decode().strip() for _, b in nonblank(data)]
    except DataError as e:
        _names_file(e, path)
    COUNTS["read_tagged_corpus"] += 1
    try:
        docs = read_tagged_corpus(path)
        assert len(docs) == len(nonblank(data))
    except DataError as e:
        _names_file(e, path)


@fuzz(60)
@given(data=st.data())
def test_vocab(data):
    COUNTS["read_vocab"] += 1
    tokens = data.draw(mutated(list(SPECIAL_TOKENS) + ["今", "天", "##a"], max_edits=3))
    lines = [t if isinstance(t, str) else json.dumps(t) for t in tokens]
    raw = data.draw(hostile_bytes([t.encode("utf-8", "surrogatepass") for t in lines]))
    path = _write("vocab.txt", raw)
    try:
        vocab = read_vocab(path)
    except DataError as e:
        _names_file(e, path)
        return
    want = [b.decode() for b in split_lines(raw)]
    assert list(vocab) == want and list(vocab.values()) == list(range(len(want)))
    assert count_vocab(path) == len(vocab)
    tok = ChineseTokenizer(vocab)
    enc = tok.encode("今天")
    assert enc.input_ids[0] == vocab["[CLS]"] and enc.input_ids[-1] == vocab["[SEP]"]
