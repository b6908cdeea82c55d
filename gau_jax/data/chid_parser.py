"""CLUE's ChID in its distributed layout (CLUEbenchmark/CLUE README.md, section ChID; the files
of chid_public.zip as CLUEbenchmark/CLUE baselines/models_pytorch/mrc_pytorch/run_mrc_chid.sh and
bojone/CLUE-bert4keras src/chid.py read them).

    <split>.json         JSON Lines, one row per group of passages sharing 10 candidates:
                         {"candidates": [10 idioms], "content": [passage, ...]}, each passage
                         holding one or more blanks `#idiomNNNNNN#` (6 digits)
    <split>_answer.json  one JSON object {"#idiomNNNNNN#": candidate index} (train, dev)
    test1.1.json         the rows without answers (CLUE 1.1's test; `test.json` in 1.0)

A parsed example is one row: {"idx": the row's 0-based line (its own `id` where it has one),
"content": [passages], "candidates": [idioms], "blanks": [tags in reading order], "labels":
[candidate index per blank, -1 without answers]}. Checks, each a DataError naming file, line and
field: `content` a list of strings with at least one blank, 10 candidate strings, no more blanks
than candidates (the passage's blanks take distinct idioms), a tag unique in the split, an
answer for every tag (train / dev) in 0..9. FewCLUE's variant (one passage, one `#idiom#`, 7
candidates, the answer in the row: task `chid_fewclue`) is recognised and named in the error.
"""

from __future__ import annotations

import collections
import pathlib
import re
from collections.abc import Iterator
from typing import Any

from gau_jax.data.readers import (
    DataError,
    OnBad,
    UniqueIds,
    get_strings,
    iter_jsonl,
    load_json,
    report,
    row_index,
)
from gau_jax.data.tasks import TaskSpec

BLANK_TAG = re.compile(r"#idiom\d{6}#")


def answers_path(path: pathlib.Path) -> pathlib.Path:
    """`train.json` → `train_answer.json` (the answers file beside a passages file)."""
    return path.with_name(f"{path.stem}_answer.json")


def is_answers_file(path: pathlib.Path) -> bool:
    return path.name.endswith("_answer.json")


def _answers(path: pathlib.Path, split: str) -> dict[str, int] | None:
    """{tag: index} of the split's answers file; None for a test file without one."""
    a_path = answers_path(path)
    if not a_path.is_file():
        if split == "test":
            return None
        raise DataError(a_path, f"missing: CLUE's ChID keeps the {split} answers beside "
                                f"{path.name}")
    obj = load_json(a_path)
    if not isinstance(obj, dict):
        raise DataError(a_path, "expected one JSON object {\"#idiomNNNNNN#\": index}")
    for tag, v in obj.items():
        if not BLANK_TAG.fullmatch(tag) or not isinstance(v, int) or isinstance(v, bool):
            raise DataError(a_path, f"expected \"#idiomNNNNNN#\": int, got {tag!r}: {v!r}",
                            field=tag)
    return obj


FEWCLUE = ("this is FewCLUE's ChID (one passage with one #idiom# blank, 7 candidates, the "
           "answer in the row): use task=chid_fewclue; task=chid reads CLUE's (passages with "
           "#idiomNNNNNN# blanks, answers in *_answer.json)")


def _fewclue_hint(row: Any, path: pathlib.Path, line: int) -> None:
    if isinstance(row, dict) and isinstance(row.get("content"), str):
        raise DataError(path, FEWCLUE, line=line, field="content")


def variant_hint(task_dir: pathlib.Path) -> str:
    """Why a folder lacking the answers files may be FewCLUE's (its train.json's first row),
    else ""."""
    try:
        _, row = next(iter_jsonl(task_dir / "train.json"))
        _fewclue_hint(row, task_dir / "train.json", 1)
    except (DataError, StopIteration, OSError) as e:
        return f" ({e})" if FEWCLUE in str(e) else ""
    return ""


def _row(spec: TaskSpec, path: pathlib.Path, line: int, row: Any,
         answers: dict[str, int] | None, tags: UniqueIds) -> dict[str, Any]:
    _fewclue_hint(row, path, line)
    content = get_strings(row, "content", path, line)
    cands = get_strings(row, "candidates", path, line)
    if len(cands) != spec.num_choices:
        raise DataError(path, f"expected {spec.num_choices} candidate strings, got "
                              f"{len(cands)}", line=line, field="candidates")
    blanks = [t for passage in content for t in BLANK_TAG.findall(passage)]
    if not blanks or len(blanks) > len(cands):
        raise DataError(path, f"expected 1 to {len(cands)} #idiomNNNNNN# blanks, found "
                              f"{len(blanks)}", line=line, field="content")
    for t in blanks:
        tags.check(t, path, line, field="content")
    labels = []
    for t in blanks:
        if answers is None:
            labels.append(-1)
            continue
        if t not in answers:
            raise DataError(answers_path(path), f"no answer for {t} (line {line} of "
                                                f"{path.name})", field=t)
        if not 0 <= answers[t] < len(cands):
            raise DataError(answers_path(path), f"answer {answers[t]} out of range 0.."
                                                f"{len(cands) - 1}", field=t)
        labels.append(answers[t])
    return {"idx": row_index(row, line, path=path), "content": content, "candidates": cands,
            "blanks": blanks, "labels": labels}


def chid_examples(spec: TaskSpec, path: pathlib.Path, split: str, stats: collections.Counter,
                  on_bad: OnBad) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, example) of one passages file (module docstring); an answers file among the
    split's paths yields nothing (it is read with its passages file)."""
    if is_answers_file(path):
        return
    answers, tags, ids = _answers(path, split), UniqueIds(), UniqueIds()
    for line, row in iter_jsonl(path, on_bad):
        try:
            ex = _row(spec, path, line, row, answers, tags)
            ids.check(ex["idx"], path, line)
        except DataError as e:
            report(on_bad, e)
            continue
        yield f"{path.name}:{line}", ex
