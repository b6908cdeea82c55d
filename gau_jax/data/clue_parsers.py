"""Row parsers for the 11 CLUE tasks in their distributed layout (docs/batches.md: what they yield).

`parse_split(spec, paths, split, stats, bad_rows)` yields (key, example) with the fields of the
TFDS features in clue.py. Labels are required on train/dev and optional on test (-1 when absent,
with the row's own id kept in `idx`; ids must be unique within a split). Traps handled: OCNLI/CMNLI
`-` labels are dropped and counted in `stats["dropped"]`; TNEWS `label_desc` / IFLYTEK
`label_des` are ignored (label ids are the class names); C3 and CMRC2018 are whole JSON documents
(CRLF accepted), a C3 question's id being its own `id` where it has one (the test files); CLUE's
ChID (format "chid": passages with #idiomNNNNNN# blanks, answers in *_answer.json) is read by
gau_jax/data/chid_parser.py, FewCLUE's ("chid_fewclue": one `#idiom#` blank, 7 candidates, int
answer) here;
CLUENER spans have inclusive ends (converted to exclusive `end`, checked against the text);
CLUEWSC2020 span offsets are checked against the text; a C3 answer must be one of its choices; a
CMRC2018 answer's text must be at its `answer_start` (or the start be -1). Every offset is checked
to lie inside its text. A bad row raises DataError naming file, line (C3 / CMRC2018: document and
question id) and field; with bad_rows="skip" it is skipped and counted in `stats["skipped"]`
instead (a malformed C3/CMRC2018 document still raises). A CMRC2018 answer not at its
`answer_start` is not skipped with its question: its position is dropped (`answer_start` -1, the
text stays a gold answer for EM/F1) and counted in `stats["skipped"]`.
"""

from __future__ import annotations

import collections
import pathlib
from collections.abc import Iterator
from typing import Any

from gau_jax.data.chid_parser import chid_examples, variant_hint
from gau_jax.data.readers import (
    DataError,
    OnBad,
    UniqueIds,
    bad_row_counter,
    encode_label,
    get_field,
    get_strings,
    iter_jsonl,
    load_json,
    own_id,
    report,
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


def _classification(spec: TaskSpec, path: pathlib.Path, line: int, row: dict,
                    split: str) -> Example | None:
    if spec.no_label and row.get("label") == spec.no_label:
        return None
    ex: Example = {"idx": row_index(row, line, path=path),
                   "label": _label(row, spec, path, line, split)}
    if spec.format == "csl":
        ex.update(abst=get_field(row, "abst", path, line),
                  keyword=get_strings(row, "keyword", path, line))
    elif spec.format == "cluewsc2020":
        ex["text"] = text = get_field(row, "text", path, line)
        target = get_field(row, "target", path, line, dict)
        for k in ("1", "2"):
            i = get_field(target, f"span{k}_index", path, line, int, where="target")
            t = get_field(target, f"span{k}_text", path, line, where="target")
            if not t or i < 0 or text[i:i + len(t)] != t:
                raise DataError(path, f"span{k}_text {t!r} is not at index {i} of text "
                                      f"(found {text[max(i, 0):max(i, 0) + len(t)]!r})",
                                line=line, field=f"target.span{k}_index")
            ex[f"span{k}_index"], ex[f"span{k}_text"] = i, t
    else:
        for f in spec.text_fields:
            ex[f] = get_field(row, f, path, line)
        if spec.format == "tnews":
            kw = row.get("keywords", "")
            ex["keywords"] = kw if isinstance(kw, str) else ""
    return ex


def _chid(spec: TaskSpec, path: pathlib.Path, line: int, row: dict, split: str) -> Example:
    content = row.get("content")
    if isinstance(content, list) or (isinstance(content, str) and "#idiom0" in content):
        raise DataError(path, "this is CLUE's ChID format (list of passages, numbered "
                              "#idiomNNNNNN# markers, answers in *_answer.json): use task=chid; "
                              "task=chid_fewclue expects FewCLUE's variant: one passage with "
                              "one #idiom# blank, 7 candidates, int answer", line=line,
                        field="content")
    content = get_field(row, "content", path, line)
    if content.count("#idiom#") != 1:
        raise DataError(path, f"expected exactly one #idiom# blank, found "
                              f"{content.count('#idiom#')}", line=line, field="content")
    cands = get_strings(row, "candidates", path, line)
    if len(cands) != 7:
        raise DataError(path, f"expected 7 candidate strings, got {len(cands)}", line=line,
                        field="candidates")
    if row.get("answer") is not None:
        answer = get_field(row, "answer", path, line, int)
        if not 0 <= answer < 7:
            raise DataError(path, f"answer {answer} out of range 0..6", line=line,
                            field="answer")
    elif split == "test":
        answer = -1
    else:
        raise DataError(path, "missing", line=line, field="answer")
    return {"idx": row_index(row, line, path=path), "content": content, "candidates": cands,
            "label": answer}


def _cluener(spec: TaskSpec, path: pathlib.Path, line: int, row: dict, split: str) -> Example:
    text = get_field(row, "text", path, line)
    entities = []
    if row.get("label") is not None or split != "test":
        label = get_field(row, "label", path, line, dict)
        for etype, mentions in label.items():
            encode_label(etype, spec.label_names, path, line, field=f"label.{etype}")
            if not isinstance(mentions, dict):
                raise DataError(path, "expected {entity: [[start, end], ...]}", line=line,
                                field=f"label.{etype}")
            for name, spans in mentions.items():
                for span in spans if isinstance(spans, list) and spans else [None]:
                    ok = (isinstance(span, list) and len(span) == 2 and name
                          and all(isinstance(v, int) and not isinstance(v, bool) for v in span)
                          and 0 <= span[0] <= span[1] < len(text))
                    if not ok or text[span[0]:span[1] + 1] != name:
                        found = (f"gives {text[span[0]:span[1] + 1]!r}" if ok else
                                 f"is not [start, end] inside the text (length {len(text)})")
                        raise DataError(path, f"span {span!r} does not give {name!r}: it "
                                              f"{found} (end is inclusive)", line=line,
                                        field=f"label.{etype}.{name}")
                    entities.append({"type": etype, "start": span[0],
                                     "end": span[1] + 1, "text": name})
    entities.sort(key=lambda e: (e["start"], e["end"], e["type"]))
    return {"idx": row_index(row, line, path=path), "text": text, "entities": entities}


def _jsonl_examples(spec: TaskSpec, path: pathlib.Path, split: str, stats: collections.Counter,
                    on_bad: OnBad) -> Iterator[tuple[str, Example]]:
    row_fn, ids = _ROWS.get(spec.format, _classification), UniqueIds()
    for line, row in iter_jsonl(path, on_bad):
        try:
            ex = row_fn(spec, path, line, row, split)
            if ex is None:
                stats["dropped"] += 1
                continue
            ids.check(own_id(row, path, line), path, line)
        except DataError as e:
            report(on_bad, e)
            continue
        yield f"{path.name}:{line}", ex


def _c3_question_id(qa: dict, made_up: str, path: pathlib.Path, fld: str) -> str:
    """A C3 question's own `id` (int or string in the file) as a string, else `made_up`."""
    if "id" not in qa:
        return made_up
    return str(get_field(qa, "id", path, None, (str, int), where=fld))


def _c3(spec: TaskSpec, path: pathlib.Path, split: str, stats: collections.Counter,
        on_bad: OnBad) -> Iterator[tuple[str, Example]]:
    docs, ids = load_json(path), UniqueIds()
    # A question's id is its own `id` where it has one (CLUE's test files test1.0.json /
    # test1.1.json; CLUE reads predictions by it: bojone/CLUE-bert4keras src/c3.py writes
    # str(qa['id'])), as a string. Train / dev questions have none, and document ids repeat
    # across the d- (dialogue) and m- (mixed genre) files: their id is "<file prefix>-<document
    # id>-<question index>", e.g. "d-47-275-0", unique in a split.
    prefix = path.name.split("-", 1)[0] if "-" in path.name else path.stem
    if not isinstance(docs, list):
        raise DataError(path, "expected a JSON array of [context, questions, id] documents")
    for d, doc in enumerate(docs):
        if not (isinstance(doc, list) and len(doc) == 3 and isinstance(doc[0], list)
                and isinstance(doc[1], list) and isinstance(doc[2], str | int)
                and not isinstance(doc[2], bool)):
            report(on_bad, DataError(path, "expected [[sentences], [questions], id]",
                                     field=f"[{d}]"))
            continue
        if not all(isinstance(s, str) for s in doc[0]):
            report(on_bad, DataError(path, "expected a list of strings", field=f"[{d}][0]"))
            continue
        for q, qa in enumerate(doc[1]):
            fld = f"[{d}][1][{q}]"
            try:
                question = get_field(qa, "question", path, None, where=fld)
                choice = get_strings(qa, "choice", path, None, where=fld)
                if qa.get("answer") is not None or split != "test":
                    answer = get_field(qa, "answer", path, None, where=fld)
                    if answer not in choice:
                        raise DataError(path, f"document {doc[2]!r} question {q}: answer "
                                              f"{answer!r} is not one of the choices "
                                              f"{choice!r}", field=f"{fld}.answer")
                    label = choice.index(answer)
                else:
                    answer, label = "", -1
                qid = _c3_question_id(qa, f"{prefix}-{doc[2]}-{q}", path, fld)
                ids.check(qid, path, None, field=f"{fld}.id" if "id" in qa else f"[{d}][2]")
            except DataError as e:
                report(on_bad, e)
                continue
            yield f"{path.name}:{d}:{q}", {"id": qid, "context": doc[0],
                                           "question": question, "choice": choice,
                                           "answer": answer, "label": label}


def _cmrc2018_qa(qa: Any, context: str, path: pathlib.Path, split: str, fld: str,
                 on_bad: OnBad) -> Example:
    question = get_field(qa, "question", path, None, where=fld)
    qid = get_field(qa, "id", path, None, (str, int), where=fld)
    answers = qa.get("answers", [])
    if not isinstance(answers, list):
        raise DataError(path, "expected a list", field=f"{fld}.answers")
    if split != "test" and not answers:
        raise DataError(path, "no answers", field=f"{fld}.answers")
    out = []
    for k, x in enumerate(answers):
        where = f"{fld}.answers[{k}]"
        text = get_field(x, "text", path, None, where=where)
        if not text.strip():
            raise DataError(path, f"question {qid!r}: empty answer text", field=f"{where}.text")
        start = x.get("answer_start", -1)
        if not isinstance(start, int) or isinstance(start, bool) or not (
                start == -1 or 0 <= start <= len(context)):
            raise DataError(path, f"question {qid!r}: answer_start {start!r} is not -1 or an "
                                  f"offset into the context (length {len(context)})",
                            field=f"{where}.answer_start")
        if start >= 0 and context[start:start + len(text)] != text:
            # raise, or (bad_rows="skip") count it and keep the text as a gold reference
            # without a position: EM/F1 read answer texts, training needs positions.
            report(on_bad, DataError(
                path, f"question {qid!r}: answer text {text!r} is not at answer_start {start} "
                      f"(found {context[start:start + len(text)]!r}); bad_rows='skip' keeps "
                      "the text as a reference answer without a position",
                field=f"{where}.answer_start"))
            start = -1
        out.append({"text": text, "answer_start": start})
    return {"id": str(qid), "context": context, "question": question, "answers": out}


def _cmrc2018(spec: TaskSpec, path: pathlib.Path, split: str, stats: collections.Counter,
              on_bad: OnBad) -> Iterator[tuple[str, Example]]:
    doc, ids = load_json(path), UniqueIds()
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise DataError(path, "expected SQuAD-style JSON with a 'data' list", field="data")
    for a, article in enumerate(data):
        try:
            paragraphs = get_field(article, "paragraphs", path, None, list, where=f"data[{a}]")
        except DataError as e:
            report(on_bad, e)
            continue
        for p, para in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{p}]"
            try:
                context = get_field(para, "context", path, None, where=where)
                qas = get_field(para, "qas", path, None, list, where=where)
            except DataError as e:
                report(on_bad, e)
                continue
            for q, qa in enumerate(qas):
                try:
                    ex = _cmrc2018_qa(qa, context, path, split, f"{where}.qas[{q}]", on_bad)
                    ids.check(ex["id"], path, None, field=f"{where}.qas[{q}].id")
                except DataError as e:
                    report(on_bad, e)
                    continue
                yield ex["id"], ex


_ROWS = {"chid_fewclue": _chid, "cluener": _cluener}
_DOCS = {"c3": _c3, "cmrc2018": _cmrc2018, "chid": chid_examples}
_MISSING_HINTS = {"chid": variant_hint}  # format → why a folder may be another variant


def split_files(spec: TaskSpec, task_dir: pathlib.Path) -> dict[str, list[pathlib.Path]]:
    """Splits present in `task_dir`: train and dev must exist, test is optional. A split reads
    `spec.files[split]` (CLUE 1.1's names), else `spec.older_files[split]` when all of those
    are there (an older release's names)."""
    found: dict[str, list[pathlib.Path]] = {}
    for split, names in spec.files.items():
        for candidate in (names, spec.older_files.get(split)):
            paths = [task_dir / n for n in candidate or ()]
            if paths and all(p.is_file() for p in paths):
                found[split] = paths
                break
        else:
            if split != "test":
                missing = [str(task_dir / n) for n in names if not (task_dir / n).is_file()]
                older = spec.older_files.get(split)
                also = f" (or {', '.join(older)})" if older else ""
                hint = _MISSING_HINTS.get(spec.format, lambda d: "")(task_dir)
                raise DataError(task_dir, f"CLUE task folder lacks {', '.join(missing)}{also}; "
                                          f"expected layout: {layout_hint(spec)}{hint}")
    return found


def layout_hint(spec: TaskSpec) -> str:
    names = sorted({n for files in (*spec.files.values(), *spec.older_files.values())
                    for n in files})
    return f"<clue_dir>/{spec.dir_name}/{{{', '.join(names)}}} (test files optional)"


def parse_split(spec: TaskSpec, paths: list[pathlib.Path], split: str,
                stats: collections.Counter,
                bad_rows: str = "raise") -> Iterator[tuple[str, Example]]:
    """(key, example) of one split's files; a bad row raises, or with bad_rows="skip" is
    counted in stats["skipped"] (a split left without rows still raises)."""
    on_bad = bad_row_counter(bad_rows, stats)
    parser = _DOCS.get(spec.format, _jsonl_examples)
    n = 0
    for path in paths:
        for key, ex in parser(spec, path, split, stats, on_bad):
            n += 1
            yield key, ex
    if n == 0 and stats["skipped"]:
        raise DataError(paths[0], f"no valid rows in the {split} split "
                                  f"({stats['skipped']} bad rows skipped)")
