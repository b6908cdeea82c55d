"""Strict file readers: JSON Lines, whole-JSON documents and plain-text corpora.

Every problem raises `DataError` naming the file, the 1-based line number and the field, so a
bad row never turns silently into a default (no label ever becomes 0 by accident).
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterator
from typing import Any


class DataError(ValueError):
    """Bad input data; the message names file, line and field."""

    def __init__(self, path: str | os.PathLike, message: str, line: int | None = None,
                 field: str | None = None):
        where = f"{path}" + (f":{line}" if line is not None else "")
        what = f" field {field!r}:" if field is not None else ""
        super().__init__(f"{where}:{what} {message}")
        self.path, self.line, self.field = str(path), line, field


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; raises on bad JSON or an empty file."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    n = 0
    with open(path, encoding="utf-8-sig", newline=None) as f:
        # Iterating a text file splits on \n only (universal newlines), never on U+2028.
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, f"malformed JSON ({e.msg} at column {e.colno})",
                                line=lineno) from None
            if not isinstance(row, dict):
                raise DataError(path, f"expected a JSON object, got {type(row).__name__}",
                                line=lineno)
            n += 1
            yield lineno, row
    if n == 0:
        raise DataError(path, "file is empty (no JSON records)")


def load_json(path: str | os.PathLike) -> Any:
    """A whole JSON document (C3, CMRC2018); CRLF and a BOM are accepted."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise DataError(path, "file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON ({e.msg} at column {e.colno})",
                        line=e.lineno) from None


def get_field(row: dict, field: str, path: str | os.PathLike, line: int | None,
              types: type | tuple[type, ...] = str) -> Any:
    """row[field] checked for presence and type."""
    if field not in row or row[field] is None:
        raise DataError(path, "missing", line=line, field=field)
    value = row[field]
    if not isinstance(value, types) or isinstance(value, bool) and bool not in _tuple(types):
        names = "/".join(t.__name__ for t in _tuple(types))
        raise DataError(path, f"expected {names}, got {type(value).__name__} {value!r:.60}",
                        line=line, field=field)
    return value


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def encode_label(value: Any, names: tuple[str, ...], path: str | os.PathLike,
                 line: int | None, field: str = "label") -> int:
    """Index of str(value) in `names`; unknown values raise (never a silent 0)."""
    key = str(value).strip() if not isinstance(value, bool) else str(value).lower()
    try:
        return names.index(key)
    except ValueError:
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise DataError(path, f"unknown label {value!r} (expected one of {shown})",
                        line=line, field=field) from None


def row_index(row: dict, line: int, fields: tuple[str, ...] = ("id", "idx")) -> int:
    """The row's own integer id (kept for submission files), else its 0-based line."""
    for f in fields:
        v = row.get(f)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            return int(v)
    return line - 1


def read_text_corpus(path: str | os.PathLike, doc_per: str = "line",
                     pattern: str = "*.txt") -> list[str]:
    """Documents of a plain-text corpus.

    `path` is a UTF-8 file (one document per non-blank line) or a folder whose files matching
    `pattern` (recursively, sorted by path) are read; with doc_per="file" each file is one
    document. Empty files raise.
    """
    path = pathlib.Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob(pattern) if p.is_file())
        if not files:
            raise DataError(path, f"no files matching {pattern!r} in this folder")
    else:
        raise DataError(path, "corpus path not found (expected a text file or a folder of "
                              f"{pattern} files, one document per line)")
    if doc_per not in ("line", "file"):
        raise ValueError(f"doc_per must be 'line' or 'file', got {doc_per!r}")
    docs: list[str] = []
    for file in files:
        text = file.read_text(encoding="utf-8-sig")
        if not text.strip():
            raise DataError(file, "file is empty")
        if doc_per == "file":
            docs.append(text.strip())
        else:
            docs.extend(line.strip() for line in text.split("\n") if line.strip())
    return docs


def read_jsonl_task(folder: str | os.PathLike, name: str = "jsonl"):
    """A user classification task: `folder/train.json`, `folder/dev.json` (JSON Lines with
    `sentence`, optional `sentence2`, and `label`). Labels (str or int) are gathered from train,
    sorted (numerically when all are integers); a dev label not seen in train raises.

    Returns (TaskSpec, {"train": rows, "dev": rows}), rows {"idx", "sentence", "sentence2",
    "label"} with int labels.
    """
    from gau_jax.data.tasks import TaskSpec

    folder = pathlib.Path(folder)
    paths = {s: folder / f"{s}.json" for s in ("train", "dev")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise DataError(folder, f"task=jsonl needs {', '.join(missing)} (JSON Lines with "
                                "'sentence', optional 'sentence2', 'label')")
    raw: dict[str, list[tuple[int, dict]]] = {s: list(iter_jsonl(p)) for s, p in paths.items()}
    for split, rows in raw.items():
        for line, row in rows:
            get_field(row, "sentence", paths[split], line)
            if "sentence2" in row:
                get_field(row, "sentence2", paths[split], line)
            get_field(row, "label", paths[split], line, (str, int))
    labels = {str(row["label"]).strip() for _, row in raw["train"]}
    numeric = all(v.lstrip("-").isdigit() for v in labels)
    names = tuple(sorted(labels, key=(lambda v: (int(v), v)) if numeric else None))
    has_pair = any("sentence2" in row for rows in raw.values() for _, row in rows)
    spec = TaskSpec(name, "classification", names,
                    ("sentence", "sentence2") if has_pair else ("sentence",))
    out = {split: [{"idx": row_index(row, line), "sentence": row["sentence"],
                    "sentence2": row.get("sentence2", ""),
                    "label": encode_label(row["label"], names, paths[split], line)}
                   for line, row in rows]
           for split, rows in raw.items()}
    return spec, out
