"""Row parsers for the 11 CLUE tasks in their distributed layout (see shared/data/MANIFEST.md).

`parse_split(spec, task_dir, split, stats)` yields (key, example) with the fields of the TFDS
features in clue.py. Labels are required on train/dev and optional on test (-1 when absent, with
the row's own id kept in `idx`). Traps handled: OCNLI/CMNLI `-` labels are dropped and counted in
`stats["dropped"]`; TNEWS `label_desc` / IFLYTEK `label_des` are ignored (label ids are the class
names); C3 and CMRC2018 are whole JSON documents (CRLF accepted); ChID is FewCLUE's variant (one
`#idiom#` blank, 7 candidates, int answer); CLUENER spans have inclusive ends (converted to
exclusive `end`, checked against the text); CLUEWSC2020 span offsets are checked against the text.
"""

from __future__ import annotations

import collections
import pathlib
from collections.abc import Iterator
from typing import Any

from gau_jax.data.readers import (
    DataError,
    encode_label,
    get_field,
    iter_jsonl,
    load_json,
    row_index,
)
from gau_jax.data.tasks import TaskSpec

Example = dict[str, Any]


def _label(row: dict, spec: TaskSpec, path: pathlib.Path, line: int, split: str) -> int:
    if "label" not in row or row["label"] is None:
        if split == "test":
            return -1
        raise DataError(path, "missing", line=line, field="label")
    return encode_label(row["label"], spec.label_names, path, line)


def _classification(spec: TaskSpec, path: pathlib.Path, split: str,
                    stats: collections.Counter) -> Iterator[tuple[str, Example]]:
    for line, row in iter_jsonl(path):
        if spec.name in ("ocnli", "cmnli") and row.get("label") == "-":
            stats["dropped"] += 1
            continue
        ex: Example = {"idx": row_index(row, line), "label": _label(row, spec, path, line, split)}
        if spec.name == "csl":
            kws = get_field(row, "keyword", path, line, list)
            if not all(isinstance(k, str) for k in kws):
                raise DataError(path, "expected a list of strings", line=line, field="keyword")
            ex.update(abst=get_field(row, "abst", path, line), keyword=kws)
        elif spec.name == "cluewsc2020":
            ex["text"] = text = get_field(row, "text", path, line)
            target = get_field(row, "target", path, line, dict)
            for k in ("1", "2"):
                i = get_field(target, f"span{k}_index", path, line, int)
                t = get_field(target, f"span{k}_text", path, line)
                if text[i:i + len(t)] != t:
                    raise DataError(path, f"span{k}_text {t!r} is not at index {i} of text "
                                          f"(found {text[i:i + len(t)]!r})", line=line,
                                    field=f"target.span{k}_index")
                ex[f"span{k}_index"], ex[f"span{k}_text"] = i, t
        else:
            for f in spec.text_fields:
                ex[f] = get_field(row, f, path, line)
            if spec.name == "tnews":
                kw = row.get("keywords", "")
                ex["keywords"] = kw if isinstance(kw, str) else ""
        yield f"{path.name}:{line}", ex


def _chid(spec: TaskSpec, path: pathlib.Path, split: str,
          stats: collections.Counter) -> Iterator[tuple[str, Example]]:
    for line, row in iter_jsonl(path):
        content = row.get("content")
        if isinstance(content, list) or (isinstance(content, str) and "#idiom0" in content):
            raise DataError(path, "this is CLUE's ChID format (list of passages, numbered "
                                  "#idiomNNNNNN# markers, answers in *_answer.json); expected "
                                  "FewCLUE's variant: one passage with one #idiom# blank, "
                                  "7 candidates, int answer", line=line, field="content")
        content = get_field(row, "content", path, line)
        if content.count("#idiom#") != 1:
            raise DataError(path, f"expected exactly one #idiom# blank, found "
                                  f"{content.count('#idiom#')}", line=line, field="content")
        cands = get_field(row, "candidates", path, line, list)
        if len(cands) != 7 or not all(isinstance(c, str) for c in cands):
            raise DataError(path, f"expected 7 candidate strings, got {len(cands)}", line=line,
                            field="candidates")
        if "answer" in row and row["answer"] is not None:
            answer = get_field(row, "answer", path, line, int)
            if not 0 <= answer < 7:
                raise DataError(path, f"answer {answer} out of range 0..6", line=line,
                                field="answer")
        elif split == "test":
            answer = -1
        else:
            raise DataError(path, "missing", line=line, field="answer")
        ex = {"idx": row_index(row, line), "content": content, "candidates": cands,
              "label": answer}
        yield f"{path.name}:{line}", ex


def _cluener(spec: TaskSpec, path: pathlib.Path, split: str,
             stats: collections.Counter) -> Iterator[tuple[str, Example]]:
    for line, row in iter_jsonl(path):
        text = get_field(row, "text", path, line)
        entities = []
        if "label" in row or split != "test":
            label = get_field(row, "label", path, line, dict)
            for etype, mentions in label.items():
                encode_label(etype, spec.label_names, path, line, field=f"label.{etype}")
                if not isinstance(mentions, dict):
                    raise DataError(path, "expected {entity: [[start, end], ...]}", line=line,
                                    field=f"label.{etype}")
                for name, spans in mentions.items():
                    for span in spans if isinstance(spans, list) else [None]:
                        ok = (isinstance(span, list) and len(span) == 2
                              and all(isinstance(v, int) for v in span))
                        if not ok or text[span[0]:span[1] + 1] != name:
                            raise DataError(path, f"span {span!r} does not give {name!r} "
                                                  "(end is inclusive)", line=line,
                                            field=f"label.{etype}.{name}")
                        entities.append({"type": etype, "start": span[0],
                                         "end": span[1] + 1, "text": name})
        entities.sort(key=lambda e: (e["start"], e["end"], e["type"]))
        yield f"{path.name}:{line}", {"idx": row_index(row, line), "text": text,
                                      "entities": entities}


def _c3(spec: TaskSpec, path: pathlib.Path, split: str,
        stats: collections.Counter) -> Iterator[tuple[str, Example]]:
    docs = load_json(path)
    if not isinstance(docs, list):
        raise DataError(path, "expected a JSON array of [context, questions, id] documents")
    for d, doc in enumerate(docs):
        where = f"document {d}"
        if not (isinstance(doc, list) and len(doc) == 3 and isinstance(doc[0], list)
                and isinstance(doc[1], list)):
            raise DataError(path, f"{where}: expected [[sentences], [questions], id]")
        context = [str(s) for s in doc[0]]
        for q, qa in enumerate(doc[1]):
            fld = f"[{d}][1][{q}]"
            if not isinstance(qa, dict):
                raise DataError(path, f"{where}: question is not an object", field=fld)
            question = get_field(qa, "question", path, None)
            choice = get_field(qa, "choice", path, None, list)
            if "answer" in qa or split != "test":
                answer = get_field(qa, "answer", path, None)
                if answer not in choice:
                    raise DataError(path, f"{where}: answer {answer!r} is not one of the "
                                          f"choices {choice!r}", field=f"{fld}.answer")
                label = choice.index(answer)
            else:
                answer, label = "", -1
            key = f"{path.name}:{d}:{q}"
            yield key, {"id": f"{doc[2]}-{q}", "context": context, "question": question,
                        "choice": [str(c) for c in choice], "answer": answer, "label": label}


def _cmrc2018(spec: TaskSpec, path: pathlib.Path, split: str,
              stats: collections.Counter) -> Iterator[tuple[str, Example]]:
    doc = load_json(path)
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise DataError(path, "expected SQuAD-style JSON with a 'data' list", field="data")
    for a, article in enumerate(data):
        for p, para in enumerate(article.get("paragraphs", [])):
            context = get_field(para, "context", path, None)
            for q, qa in enumerate(para.get("qas", [])):
                fld = f"data[{a}].paragraphs[{p}].qas[{q}]"
                if not isinstance(qa, dict) or "question" not in qa or "id" not in qa:
                    raise DataError(path, "question without 'question'/'id'", field=fld)
                answers = qa.get("answers", [])
                if split != "test" and not answers:
                    raise DataError(path, "no answers", field=f"{fld}.answers")
                if any(not isinstance(x, dict) or "text" not in x for x in answers):
                    raise DataError(path, "answer without 'text'", field=f"{fld}.answers")
                yield str(qa["id"]), {
                    "id": str(qa["id"]), "context": context, "question": str(qa["question"]),
                    "answers": [{"text": str(x["text"]),
                                 "answer_start": int(x.get("answer_start", -1))}
                                for x in answers],
                }


_PARSERS = {"chid": _chid, "cluener": _cluener, "c3": _c3, "cmrc2018": _cmrc2018}


def split_files(spec: TaskSpec, task_dir: pathlib.Path) -> dict[str, list[pathlib.Path]]:
    """Splits present in `task_dir`: train and dev must exist, test is optional."""
    found: dict[str, list[pathlib.Path]] = {}
    for split, names in spec.files.items():
        paths = [task_dir / n for n in names]
        if all(p.is_file() for p in paths):
            found[split] = paths
        elif split != "test":
            missing = [str(p) for p in paths if not p.is_file()]
            raise DataError(task_dir, f"CLUE task folder lacks {', '.join(missing)}; expected "
                                      f"layout: {layout_hint(spec)}")
    return found


def layout_hint(spec: TaskSpec) -> str:
    names = sorted({n for files in spec.files.values() for n in files})
    return f"<clue_dir>/{spec.name}/{{{', '.join(names)}}} (test files optional)"


def parse_split(spec: TaskSpec, paths: list[pathlib.Path],
                split: str, stats: collections.Counter) -> Iterator[tuple[str, Example]]:
    parser = _PARSERS.get(spec.name, _classification)
    for path in paths:
        yield from parser(spec, path, split, stats)
