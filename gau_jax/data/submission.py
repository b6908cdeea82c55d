"""CLUE submission files: `<task>_predict.json`, written, read back and checked against a split.

    classification, C3, ChID, CLUENER: JSON Lines, one {"id": .., "label": ..} per example
        label as the data writes its gold: a label string ("100", "entailment", "true"), ChID
        the int index of the candidate, C3 the text of the chosen choice, CLUENER the entity
        dictionary {type: {entity text: [[start, end], ...]}} (end inclusive)
    CMRC2018: one JSON object {question_id: answer_text}

Ids are the data's own: a row's `id` / `idx`, else its 0-based line number (classification,
ChID, CLUENER); "<document id>-<question index>" (C3); the question id (CMRC2018).
`check_predictions` rejects a prediction file with a missing, duplicate or unknown id, or a
label outside the task's set (for C3 the question's choices; for CLUENER a known type and a
span that gives its entity text), naming the file and the id.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gau_jax.data.readers import DataError, iter_jsonl
from gau_jax.data.task_features import example_id as _row_id
from gau_jax.data.task_features import records, texts_of
from gau_jax.data.tasks import CLUENER_TYPES, as_text, get_task

Predictions = list[dict[str, Any]] | dict[str, str]


class SubmissionError(ValueError):
    """A prediction file (or object) that does not fit its split; names file and id."""


def submission_name(task: str) -> str:
    """'tnews' -> 'tnews_predict.json' (CLUE's file name for the task)."""
    get_task(task)
    return f"{task}_predict.json"


def example_id(task: str, example: Mapping) -> Any:
    """The id a prediction of `example` (a parsed or TFDS row) carries (module docstring)."""
    get_task(task)
    return _row_id(example)


def _entities(example: Mapping) -> dict[str, dict[str, list[list[int]]]]:
    """{type: {text: [[start, end]]}} (end inclusive) of a parsed row's `entities`."""
    out: dict[str, dict[str, list[list[int]]]] = {}
    for e in records(example.get("entities", [])):
        etype = e["type"] if isinstance(e["type"], str) else CLUENER_TYPES[int(e["type"])]
        spans = out.setdefault(etype, {}).setdefault(as_text(e["text"]), [])
        spans.append([int(e["start"]), int(e["end"]) - 1])  # parsed `end` is exclusive
    return out


def label_string(task: str, example: Mapping) -> Any:
    """The gold label of a parsed row as the data writes it (None when unlabelled); CMRC2018:
    the list of answer texts."""
    spec = get_task(task)
    if spec.kind == "span":
        return [as_text(a["text"]) for a in records(example["answers"])]
    if spec.kind == "ner":
        return _entities(example)
    label = int(example["label"])
    if label < 0:
        return None
    if task == "chid":
        return label
    if task == "c3":
        return texts_of(example["choice"])[label]
    return spec.label_names[label]


def gold_objects(task: str, examples: Iterable[Mapping]) -> Predictions:
    """The gold of parsed rows in prediction-object form (CMRC2018: {qid: [answer texts]})."""
    if get_task(task).kind == "span":
        return {example_id(task, ex): label_string(task, ex) for ex in examples}
    return [{"id": example_id(task, ex), "label": label_string(task, ex)} for ex in examples]


def split_examples(task: str, data_dir: str | os.PathLike | None = None, split: str = "dev",
                   input_file: str | os.PathLike | None = None, bad_rows: str = "raise",
                   max_rows: int = 0) -> list[dict[str, Any]]:
    """Parsed rows of a split of the CLUE folder `data_dir` (DIR/<task>/ or the task folder),
    or of `input_file` in the task's own format (labels optional), straight from the files
    (gau_jax/data/clue_parsers.py, no TFDS preparation); the first `max_rows` if > 0."""
    from gau_jax.data.clue import find_task_dir
    from gau_jax.data.clue_parsers import parse_split, split_files

    spec = get_task(task)
    if input_file is not None:
        paths, split = [pathlib.Path(input_file)], "test"  # a file with or without labels
    else:
        if data_dir is None:
            raise ValueError(f"task {task!r}: give data_dir (the CLUE folder) or input_file")
        files = split_files(spec, find_task_dir(task, data_dir))
        if split not in files:
            raise DataError(data_dir, f"task {task!r} has no {split} split (files: "
                                      f"{', '.join(spec.files[split])})")
        paths = files[split]
    stats: collections.Counter = collections.Counter()
    rows = []
    for _, ex in parse_split(spec, paths, split, stats, bad_rows):
        rows.append(ex)
        if max_rows and len(rows) >= max_rows:
            break
    return rows


# ------------------------------------------------------------------ files
def write_submission(task: str, predictions: Predictions, path: str | os.PathLike) -> pathlib.Path:
    """Writes `predictions` as the task's submission file (whole or not at all)."""
    path = pathlib.Path(path)
    if get_task(task).kind == "span":
        if not isinstance(predictions, Mapping):
            raise SubmissionError(f"{path}: CMRC2018 predictions must be {{question_id: text}}")
        text = json.dumps({str(k): str(v) for k, v in predictions.items()}, ensure_ascii=False,
                          indent=2) + "\n"
    else:
        text = "".join(json.dumps({"id": p["id"], "label": p["label"]}, ensure_ascii=False)
                       + "\n" for p in predictions)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _unique_keys(path: pathlib.Path):
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        seen = collections.Counter(k for k, _ in pairs)
        dup = [k for k, n in seen.items() if n > 1]
        if dup:
            raise SubmissionError(f"{path}: duplicate id {dup[0]!r} in the prediction object")
        return dict(pairs)

    return hook


def read_submission(task: str, path: str | os.PathLike) -> Predictions:
    """A submission file back as prediction objects; malformed lines name file and line."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path}: no such prediction file")
    if get_task(task).kind == "span":
        try:
            obj = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys(path))
        except json.JSONDecodeError as e:
            raise SubmissionError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None
        if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
            raise SubmissionError(f"{path}: expected one JSON object {{question_id: answer_text}}")
        return obj
    out = []
    try:
        for line, row in iter_jsonl(path):
            if not isinstance(row, dict) or set(row) != {"id", "label"}:
                raise SubmissionError(f"{path}:{line}: expected {{\"id\": .., \"label\": ..}}, "
                                      f"got {json.dumps(row, ensure_ascii=False)[:80]}")
            out.append(row)
    except DataError as e:
        raise SubmissionError(str(e)) from None
    return out


# ------------------------------------------------------------------ checks
def _label_problem(task: str, label: Any, example: Mapping) -> str | None:
    """Why `label` is not a valid prediction for `example` (None when it is)."""
    spec = get_task(task)
    if task == "chid":
        n = len(texts_of(example["candidates"]))
        ok = isinstance(label, int) and not isinstance(label, bool) and 0 <= label < n
        return None if ok else f"label {label!r} is not a candidate index 0..{n - 1}"
    if task == "c3":
        choices = texts_of(example["choice"])
        return None if label in choices else f"label {label!r} is not one of {choices}"
    if spec.kind == "ner":
        return _entity_problem(label, as_text(example["text"]))
    if label not in spec.label_names:
        shown = ", ".join(spec.label_names[:8]) + (", ..." if spec.num_classes > 8 else "")
        return f"label {label!r} is not one of the task's labels ({shown})"
    return None


def _entity_problem(label: Any, text: str) -> str | None:
    if not isinstance(label, dict):
        return f"label {str(label)[:60]!r} is not an entity dictionary {{type: {{text: spans}}}}"
    for etype, mentions in label.items():
        if etype not in CLUENER_TYPES:
            return f"entity type {etype!r} is not one of {', '.join(CLUENER_TYPES)}"
        if not isinstance(mentions, dict):
            return f"label[{etype!r}] is not {{entity text: [[start, end], ...]}}"
        for name, spans in mentions.items():
            for span in spans if isinstance(spans, list) else [spans]:
                ok = (isinstance(span, list) and len(span) == 2
                      and all(isinstance(v, int) and not isinstance(v, bool) for v in span)
                      and 0 <= span[0] <= span[1] < len(text))
                if not ok or text[span[0]:span[1] + 1] != name:
                    return (f"{etype} span {span!r} does not give {name!r} in the text "
                            "(end inclusive)")
    return None


def check_predictions(task: str, predictions: Predictions, examples: Sequence[Mapping],
                      path: str | os.PathLike = "<predictions>") -> None:
    """SubmissionError naming `path` and the id when predictions and the split's rows
    (`examples`, parsed; labels not needed) do not match one to one, or a label is invalid."""
    by_id = {example_id(task, ex): ex for ex in examples}
    if get_task(task).kind == "span":
        if not isinstance(predictions, Mapping):
            raise SubmissionError(f"{path}: expected {{question_id: answer_text}}")
        ids = [str(k) for k in predictions]
        bad_label = [k for k, v in predictions.items() if not isinstance(v, str)]
        if bad_label:
            raise SubmissionError(f"{path}: id {bad_label[0]!r}: answer is not a string")
    else:
        ids = [p.get("id") if isinstance(p, Mapping) else None for p in predictions]
    seen: set = set()
    for i in ids:
        if i in seen:
            raise SubmissionError(f"{path}: duplicate id {i!r}")
        if i not in by_id:
            raise SubmissionError(f"{path}: id {i!r} is not in the split "
                                  f"({len(by_id)} rows; ids such as {next(iter(by_id), None)!r})")
        seen.add(i)
    missing = [i for i in by_id if i not in seen]
    if missing:
        raise SubmissionError(f"{path}: {len(missing)} id(s) without a prediction, first "
                              f"{missing[0]!r}")
    if get_task(task).kind != "span":
        for p in predictions:
            why = _label_problem(task, p.get("label"), by_id[p["id"]])
            if why:
                raise SubmissionError(f"{path}: id {p['id']!r}: {why}")
