"""CLUE TFDS builders: synthetic folders in CLUE's layout, error messages, real snapshot counts."""

from __future__ import annotations

import collections
import json
import pathlib

import pytest

from gau_jax.data import clue
from gau_jax.data.clue_parsers import parse_split, split_files
from gau_jax.data.readers import DataError
from gau_jax.data.tasks import CLUE_TASKS, get_task
from tests.clue_fixtures import EXPECTED, REAL_COUNTS, write_clue


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict[str, dict]:
    root = write_clue(tmp_path_factory.mktemp("clue"))
    out = tmp_path_factory.mktemp("tfds")
    # write_clue's chid folder holds FewCLUE's ChID: CLUE's (task chid) is tests/test_chid.py's
    return {t: clue.load_sources(t, root, out) for t in CLUE_TASKS if t != "chid"} | {
        "_root": root, "_out": out}


def _rows(src) -> list[dict]:
    return sorted((src[i] for i in range(len(src))), key=lambda r: repr(sorted(r.items())))


def _s(v) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else v


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_builder_counts(prepared, task):
    counts = {split: len(src) for split, src in prepared[task].items()}
    assert counts == EXPECTED[task]


def test_classification_labels_and_fields(prepared):
    afqmc = prepared["afqmc"]
    assert sorted(r["label"] for r in _rows(afqmc["train"])) == [0, 1, 1]
    test = afqmc["test"][0]
    assert test["label"] == -1 and test["idx"] == 7  # test rows keep their ids
    tnews = get_task("tnews")
    labels = sorted(tnews.label_names[r["label"]] for r in _rows(prepared["tnews"]["train"]))
    assert labels == ["108", "116"]
    kw = {_s(r["keywords"]) for r in _rows(prepared["tnews"]["train"])}
    assert kw == {"", "游戏,上线"}
    ifly_names = get_task("iflytek").label_names
    ifly = [ifly_names[r["label"]] for r in _rows(prepared["iflytek"]["train"])]
    assert sorted(ifly) == ["0", "118"]
    names = get_task("ocnli").label_names
    got = sorted(names[r["label"]] for r in _rows(prepared["ocnli"]["train"]))
    assert got == ["contradiction", "entailment", "neutral"]


def test_ocnli_dash_rows_dropped_and_counted(prepared):
    builder = clue.prepare("ocnli", prepared["_root"], prepared["_out"])
    assert clue.dropped_counts(builder) == {"train": 1, "dev": 2}


def test_structured_tasks(prepared):
    wsc = prepared["cluewsc2020"]["train"][0]
    assert (wsc["span1_index"], _s(wsc["span1_text"]), wsc["span2_index"]) == (3, "小红", 6)
    assert get_task("cluewsc2020").texts(wsc)[0] == "小明对_小红_说[他]明天要去北京。"
    csl = prepared["csl"]["train"][0]
    assert [_s(k) for k in csl["keyword"]] == ["网络", "查询"]
    assert get_task("csl").texts(csl) == ("网络；查询", "摘要文本")
    chid = {r["idx"]: r for r in _rows(prepared["chid_fewclue"]["dev"])}
    assert chid[25]["label"] == 6 and len(chid[25]["candidates"]) == 7
    ner = {_s(r["text"]): r for r in _rows(prepared["cluener"]["train"])}
    ents = ner["浙商银行企业信贷部叶老桂博士"]["entities"]
    types = get_task("cluener").label_names
    spans = sorted((types[t], int(s), int(e), _s(x)) for t, s, e, x in
                   zip(ents["type"], ents["start"], ents["end"], ents["text"], strict=True))
    assert spans == [("company", 0, 4, "浙商银行"), ("name", 9, 12, "叶老桂")]  # end exclusive
    assert len(ner["没有实体"]["entities"]["start"]) == 0
    c3 = _rows(prepared["c3"]["train"])
    assert sorted(r["label"] for r in c3) == [0, 0, 0, 1, 1, 1]
    assert {_s(r["answer"]) for r in c3} == {"打招呼", "二"}
    cm = {_s(r["id"]): r for r in _rows(prepared["cmrc2018"]["dev"])}
    assert [_s(t) for t in cm["Q2"]["answers"]["text"]] == ["游戏", "游戏"]
    assert list(cm["Q2"]["answers"]["answer_start"]) == [14, -1]


def _parse(task: str, root: pathlib.Path, split: str = "train") -> list:
    spec = CLUE_TASKS[task]
    files = split_files(spec, clue.find_task_dir(task, root))
    return list(parse_split(spec, files[split], split, collections.Counter()))


def _rewrite(path: pathlib.Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@pytest.mark.parametrize("content,match", [
    (['{"sentence1": "a", "sentence2": "b", "label": "1"}', '{"sentence1": "a", '],
     r"train.json:2: malformed JSON"),
    (['{"sentence1": "a", "label": "1"}'], r"train.json:1: field 'sentence2': missing"),
    (['{"sentence1": "a", "sentence2": "b", "label": "1"}', '{"sentence1": "a", "sentence2": '
      '"b", "label": "2"}'], r"train.json:2: field 'label': unknown label '2'"),
    (['{"sentence1": "a", "sentence2": "b"}'], r"train.json:1: field 'label': missing"),
    ([], r"train.json: file is empty"),
])
def test_bad_rows_name_file_line_field(tmp_path, content, match):
    root = write_clue(tmp_path)
    _rewrite(root / "afqmc/train.json", content)
    with pytest.raises(DataError, match=match):
        _parse("afqmc", root)


def test_bad_rows_other_tasks(tmp_path):
    root = write_clue(tmp_path)
    bad_end = {"text": "abc", "label": {"name": {"ab": [[0, 0]]}}}
    _rewrite(root / "cluener/train.json", [json.dumps(bad_end)])
    with pytest.raises(DataError, match=r"train.json:1: field 'label.name.ab'.*inclusive"):
        _parse("cluener", root)
    bad_type = {"text": "abc", "label": {"person": {"ab": [[0, 1]]}}}
    _rewrite(root / "cluener/train.json", [json.dumps(bad_type)])
    with pytest.raises(DataError, match=r"field 'label.person': unknown label 'person'"):
        _parse("cluener", root)
    _rewrite(root / "chid/train.json", [json.dumps({"content": ["#idiom000378#"], "candidates": [],
                                                    "answer": 0})])
    with pytest.raises(DataError, match=r"train.json:1: field 'content': this is CLUE's ChID"):
        _parse("chid_fewclue", root)
    _rewrite(root / "cluewsc2020/train.json", [json.dumps(
        {"target": {"span1_index": 0, "span1_text": "小红", "span2_index": 6, "span2_text": "他"},
         "idx": 0, "label": "true", "text": "小明对小红说他"})])
    with pytest.raises(DataError, match=r"field 'target.span1_index'"):
        _parse("cluewsc2020", root)
    (root / "c3/d-train.json").write_text('[[["a"], [{"question": "q", "choice": ["x"], '
                                           '"answer": "y"}], "1"]]', encoding="utf-8")
    with pytest.raises(DataError, match=r"d-train.json: field '\[0\]\[1\]\[0\].answer'"):
        _parse("c3", root)
    (root / "cmrc2018/train.json").write_text('{"data": [\r\n{"paragraphs": [', encoding="utf-8")
    with pytest.raises(DataError, match=r"cmrc2018/train.json:2: malformed JSON"):
        _parse("cmrc2018", root)
    _rewrite(root / "ocnli/dev.json", [json.dumps({"sentence1": "a", "sentence2": "b",
                                                   "label": "maybe"})])
    with pytest.raises(DataError, match=r"dev.json:1: field 'label': unknown label 'maybe'"):
        _parse("ocnli", root, "dev")


def test_missing_folder_says_where_and_layout(tmp_path):
    with pytest.raises(DataError, match=r"looked for .*nowhere/tnews/train.json.*expected layout "
                                        r"<clue_dir>/tnews/\{dev.json"):
        clue.prepare("tnews", tmp_path / "nowhere", tmp_path / "out")
    root = write_clue(tmp_path / "clue")
    (root / "c3/m-dev.json").unlink()
    with pytest.raises(DataError, match=r"lacks .*c3/m-dev.json; expected layout"):
        clue.prepare("c3", root, tmp_path / "out")


def test_task_folder_itself_and_reprepare_on_change(tmp_path):
    root = write_clue(tmp_path / "clue")
    out = tmp_path / "out"
    b = clue.prepare("csl", root / "csl", out)  # the task folder itself works too
    assert b.info.splits["train"].num_examples == 1
    _rewrite(root / "csl/train.json", [json.dumps({"id": i, "abst": "x", "keyword": [],
                                                   "label": "0"}) for i in range(3)])
    b = clue.prepare("csl", root / "csl", out)  # source changed -> prepared again
    assert b.info.splits["train"].num_examples == 3


@pytest.mark.shared_data
@pytest.mark.parametrize("task", sorted(REAL_COUNTS))
@pytest.mark.slow
def test_real_snapshot_counts(shared_data, tmp_path, task):
    # CMRC2018: 5 train / 7 dev answers are not at their answer_start (the data notes count 5 and 3
    # first answers; dev adds 4 further references): "skip" drops only their positions.
    bad_rows = "skip" if task == "cmrc2018" else "raise"
    builder = clue.prepare(task, shared_data / "clue", tmp_path, bad_rows=bad_rows)
    expected = REAL_COUNTS[task]
    assert {s: builder.info.splits[s].num_examples for s in expected} == expected
    if task == "ocnli":
        assert clue.dropped_counts(builder) == {"train": 15, "dev": 50}
    if task == "cmrc2018":
        assert clue.skipped_counts(builder) == {"train": 5, "dev": 7}


@pytest.mark.shared_data
def test_real_snapshot_has_no_cmnli(shared_data, tmp_path):
    with pytest.raises(DataError, match=r"no CLUE 'cmnli' data: looked for"):
        clue.prepare("cmnli", shared_data / "clue", tmp_path)


def test_pipeline_over_tfds_source_and_inspect_cli(prepared, capsys, tmp_path):
    from gau_jax.data import inspect as inspect_cli
    from gau_jax.data.pipeline import classification_dataset
    from gau_jax.data.tokenizer import build_char_vocab

    vocab = tmp_path / "vocab.txt"
    corpus = ["花呗怎么还如何还款借呗", "上课时学生手机响个不停新游戏上线一个故事"]
    tok = build_char_vocab(corpus, 64, vocab)
    ds = classification_dataset(prepared["tnews"]["train"], tok, get_task("tnews"), batch_size=4,
                                max_len=32, train=False, shard_index=0, shard_count=1)
    (batch,) = list(ds)
    assert batch["weights"].tolist() == [1, 1, 0, 0]
    assert sorted(batch["labels"][:2].tolist()) == [7, 14]  # '108', '116'
    assert inspect_cli.main(["--task", "tnews", "--data_dir", str(prepared["_root"]),
                             "--tfds_dir", str(prepared["_out"]), "--vocab", str(vocab)]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "2 examples" in out and "decoded:" in out
    assert inspect_cli.main(["--task", "tnews", "--data_dir", str(tmp_path / "none")]) == 2
    assert "expected layout" in capsys.readouterr().err
