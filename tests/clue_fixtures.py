"""Writes a small synthetic CLUE folder in the exact distributed layout (JSON Lines; C3 and
CMRC2018 as whole pretty-printed JSON with CRLF). EXPECTED gives rows per split and labels."""

from __future__ import annotations

import json
import pathlib


def _jsonl(path: pathlib.Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")


def _crlf_json(path: pathlib.Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, ensure_ascii=False, indent=1).replace("\n", "\r\n")
    path.write_bytes(text.encode("utf-8"))


def _nli(labels: list[str]) -> list[dict]:
    return [{"level": "easy", "sentence1": f"前提{i}", "sentence2": f"假设{i}", "label": lab,
             "label0": None, "genre": "gov", "prem_id": f"gov_{i}", "id": 100 + i}
            for i, lab in enumerate(labels)]


WSC_TEXT = "小明对小红说他明天要去北京。"


def write_clue(root: pathlib.Path) -> pathlib.Path:
    _jsonl(root / "afqmc/train.json", [{"sentence1": "花呗怎么还", "sentence2": "花呗如何还款",
                                        "label": lab} for lab in ("1", "0", "1")])
    _jsonl(root / "afqmc/dev.json", [{"sentence1": "借呗", "sentence2": "花呗", "label": "0"}])
    _jsonl(root / "afqmc/test.json", [{"id": 7, "sentence1": "借呗", "sentence2": "花呗"}])
    _jsonl(root / "tnews/train.json", [
        {"label": "108", "label_desc": "news_edu", "sentence": "上课时学生手机响个不停",
         "keywords": ""},
        {"label": "116", "label_desc": "news_game", "sentence": "新游戏上线",
         "keywords": "游戏,上线"}])
    _jsonl(root / "tnews/dev.json", [{"label": "100", "label_desc": "news_story",
                                      "sentence": "一个故事", "keywords": ""}])
    _jsonl(root / "tnews/labels.json", [{"label": "100", "label_desc": "news_story"}])
    _jsonl(root / "iflytek/train.json", [
        {"label": "118", "label_des": "其他", "sentence": "应用"},
        {"label": "0", "label_des": "打车", "sentence": "打车软件"}])
    _jsonl(root / "iflytek/dev.json", [
        {"label": "10", "label_des": "社区服务", "sentence": "服务"}])
    for task in ("ocnli", "cmnli"):
        _jsonl(root / f"{task}/train.json", _nli(["neutral", "-", "entailment", "contradiction"]))
        _jsonl(root / f"{task}/dev.json", _nli(["-", "-", "entailment"]))
    _jsonl(root / "cluewsc2020/train.json", [
        {"target": {"span2_index": 6, "span1_index": 3, "span1_text": "小红", "span2_text": "他"},
         "idx": 0, "label": "false", "text": WSC_TEXT}])
    _jsonl(root / "cluewsc2020/dev.json", [
        {"target": {"span2_index": 6, "span1_index": 0, "span1_text": "小明", "span2_text": "他"},
         "idx": 1, "label": "true", "text": WSC_TEXT}])
    _jsonl(root / "csl/train.json", [{"id": 0, "abst": "摘要文本", "keyword": ["网络", "查询"],
                                      "label": "1"}])
    _jsonl(root / "csl/dev.json", [
        {"id": 1, "abst": "另一摘要", "keyword": ["数据"], "label": "0"}])
    cands = ["造谣生事", "谨小慎微", "难言之隐", "急功近利", "欢天喜地", "自成一格", "万人空巷"]
    _jsonl(root / "chid/train.json", [{"id": 24, "candidates": cands,
                                       "content": "无数个#idiom#累积而来", "answer": 1}])
    _jsonl(root / "chid/dev.json", [{"id": 25, "candidates": cands, "content": "#idiom#。",
                                     "answer": 6}, {"id": 26, "candidates": cands,
                                                    "content": "他#idiom#", "answer": 0}])
    _jsonl(root / "cluener/train.json", [
        {"text": "浙商银行企业信贷部叶老桂博士", "label": {"name": {"叶老桂": [[9, 11]]},
                                                "company": {"浙商银行": [[0, 3]]}}},
        {"text": "没有实体", "label": {}}])
    _jsonl(root / "cluener/dev.json", [{"text": "生生不息CSOL生化狂潮",
                                        "label": {"game": {"CSOL": [[4, 7]]}}}])
    doc = [["男：你好", "女：你好"], [{"question": "他们在做什么？", "choice": ["打招呼", "吃饭"],
                                   "answer": "打招呼"},
                                  {"question": "几个人？", "choice": ["一", "二", "三"],
                                   "answer": "二"}],
           "1-1"]
    _crlf_json(root / "c3/d-train.json", [doc])
    _crlf_json(root / "c3/m-train.json", [doc, doc[:2] + ["1-2"]])  # ids unique per file
    _crlf_json(root / "c3/d-dev.json", [doc])
    _crlf_json(root / "c3/m-dev.json", [[["文章"], [{"question": "问", "choice": ["甲", "乙"],
                                                     "answer": "乙"}], "m-1"]])
    ctx = "《战国无双3》是由光荣开发的游戏。"
    squad = {"version": "v1.0", "data": [{"id": "A", "title": "t", "paragraphs": [
        {"id": "P", "context": ctx, "qas": [
            {"id": "Q1", "question": "谁开发的？",
             "answers": [{"text": "光荣", "answer_start": 9}]},
            {"id": "Q2", "question": "是什么？",
             "answers": [{"text": "游戏", "answer_start": 14},
                         {"text": "游戏", "answer_start": -1}]}]}]}]}
    _crlf_json(root / "cmrc2018/train.json", squad)
    _crlf_json(root / "cmrc2018/dev.json", squad)
    return root


IDIOMS = ["百尺竿头", "随波逐流", "方兴未艾", "身体力行", "一日千里", "三十而立", "逆水行舟",
          "日新月异", "百花齐放", "沧海一粟"]


def write_clue_chid(root: pathlib.Path) -> pathlib.Path:
    """CLUE's ChID (not FewCLUE's) in `root/chid/`: passages with numbered blanks sharing 10
    candidates, answers in <split>_answer.json, test1.1.json without answers. dev: 2 rows, 5
    blanks (one passage opens with a blank, two blanks stand side by side)."""
    train = [{"candidates": IDIOMS, "content": ["他们希望能#idiom000001#再进一步。",
                                                "发展可谓#idiom000002#，变化#idiom000003#。"]}]
    dev = [{"candidates": IDIOMS, "content": ["#idiom000010#，去#idiom000011#？还是迎难而上。",
                                              "虚拟货币的发展可谓#idiom000012#。"]},
           {"candidates": IDIOMS[::-1], "content": ["城市#idiom000013##idiom000014#的变化"]}]
    _jsonl(root / "chid/train.json", train)
    _jsonl(root / "chid/dev.json", dev)
    _jsonl(root / "chid/test1.1.json", [{"candidates": IDIOMS,
                                         "content": ["测试#idiom000020#文本#idiom000021#"]}])
    for name, answers in (("train", {"#idiom000001#": 0, "#idiom000002#": 2,
                                     "#idiom000003#": 7}),
                          ("dev", {"#idiom000010#": 4, "#idiom000011#": 1,
                                   "#idiom000012#": 2, "#idiom000013#": 9,
                                   "#idiom000014#": 0})):
        (root / f"chid/{name}_answer.json").write_text(json.dumps(answers, indent=1),
                                                        encoding="utf-8")
    return root


# task -> {split: rows}; plus the label names expected for some rows
EXPECTED = {
    "afqmc": {"train": 3, "dev": 1, "test": 1},
    "tnews": {"train": 2, "dev": 1},
    "iflytek": {"train": 2, "dev": 1},
    "ocnli": {"train": 3, "dev": 1},
    "cmnli": {"train": 3, "dev": 1},
    "cluewsc2020": {"train": 1, "dev": 1},
    "csl": {"train": 1, "dev": 1},
    "chid_fewclue": {"train": 1, "dev": 2},
    "cluener": {"train": 2, "dev": 1},
    "c3": {"train": 6, "dev": 3},
    "cmrc2018": {"train": 2, "dev": 2},
}

# The data folder's counts (after dropping OCNLI '-' rows; C3/CMRC2018 per question)
REAL_COUNTS = {
    "afqmc": {"train": 10000, "dev": 2000},
    "tnews": {"train": 53360, "dev": 10000},
    "iflytek": {"train": 3024, "dev": 1373},
    "ocnli": {"train": 9985, "dev": 2950},
    "cluewsc2020": {"train": 160, "dev": 159},
    "csl": {"train": 160, "dev": 160},
    "chid_fewclue": {"train": 202, "dev": 202},
    "cluener": {"train": 10748, "dev": 1343},
    "c3": {"train": 5856 + 6013, "dev": 1825 + 1991},
    "cmrc2018": {"train": 1002, "dev": 3219},
}
