"""Strict file readers: JSON Lines, whole-JSON documents and plain-text corpora.

Every problem raises `DataError` naming the file, the 1-based line number (and the byte offset of
invalid UTF-8) and the field, so a bad row never turns silently into a default (no label ever
becomes 0 by accident). Files are read as bytes and decoded here: a UTF-8 BOM is dropped, `\\n`,
`\\r\\n` and `\\r` end lines (never U+2028), and invalid UTF-8, duplicate object keys, NaN/Infinity,
lone UTF-16 surrogate escapes and absurdly nested or long numbers are all DataErrors.

With `on_bad` (a callback, see `bad_row_counter`) a reader reports a bad JSON Lines row to it
and goes on instead of raising; a file without one good record still raises.
"""

from __future__ import annotations

import codecs
import collections
import json
import logging
import os
import pathlib
import re
from collections.abc import Callable, Iterator
from typing import Any

OnBad = Callable[["DataError"], None] | None
BAD_ROWS = ("raise", "skip")
_INT = re.compile(r"[+-]?[0-9]{1,19}")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class DataError(ValueError):
    """Bad input data; the message names file, line and field."""

    def __init__(self, path: str | os.PathLike, message: str, line: int | None = None,
                 field: str | None = None):
        where = f"{path}" + (f":{line}" if line is not None else "")
        what = f" field {field!r}:" if field is not None else ""
        super().__init__(f"{where}:{what} {message}")
        self.path, self.line, self.field = str(path), line, field


def bad_row_counter(bad_rows: str, stats: collections.Counter, log_first: int = 5) -> OnBad:
    """on_bad for bad_rows="skip" (count in stats["skipped"], log the first few), None for
    "raise"."""
    if bad_rows not in BAD_ROWS:
        raise ValueError(f"bad_rows must be one of {BAD_ROWS}, got {bad_rows!r}")
    if bad_rows == "raise":
        return None

    def on_bad(error: DataError) -> None:
        stats["skipped"] += 1
        if stats["skipped"] <= log_first:
            logging.warning("skipping bad row: %s", error)

    return on_bad


def report(on_bad: OnBad, error: DataError) -> None:
    """Raise `error` (on_bad is None), else hand it to on_bad: the row is skipped."""
    if on_bad is None:
        raise error
    on_bad(error)


def decode_utf8(data: bytes, path: str | os.PathLike, line: int = 1, offset: int = 0) -> str:
    """`data` (starting at byte `offset`, line `line` of `path`) as text; a BOM is dropped."""
    if offset == 0 and data.startswith(codecs.BOM_UTF8):
        data, offset = data[len(codecs.BOM_UTF8):], len(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        at = line + data.count(b"\n", 0, e.start)
        raise DataError(path, f"invalid UTF-8 (bytes {data[e.start:e.end]!r} at byte offset "
                              f"{offset + e.start}); save the file as UTF-8", line=at) from None


def iter_lines(path: str | os.PathLike, on_bad: OnBad = None) -> Iterator[tuple[int, str]]:
    """(line number, text without its line end) of each line of a UTF-8 file (with on_bad, a
    line that is not UTF-8 is passed to it and skipped)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    lineno = offset = 0
    with open(path, "rb") as f:
        for chunk in f:  # ends at b"\n"; UTF-8 multi-byte sequences never hold \r or \n bytes
            start, offset = offset, offset + len(chunk)
            body = chunk[:-1] if chunk.endswith(b"\n") else chunk
            body = body[:-1] if body.endswith(b"\r") else body
            for piece in body.split(b"\r"):
                lineno += 1
                try:
                    text = decode_utf8(piece, path, lineno, start)
                except DataError as e:
                    report(on_bad, e)
                    text = None
                start += len(piece) + 1
                if text is not None:
                    yield lineno, text


class _BadJson(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _BadJson(f"duplicate key {dup!r} in one object")
    return obj


def _constant(name: str) -> Any:
    raise _BadJson(f"{name} is not valid JSON")


def parse_json(text: str, path: str | os.PathLike, line: int | None = None) -> Any:
    """json.loads with every failure as a DataError (`line`: where `text` starts, if known)."""
    def at(lineno: int | None) -> int | None:
        return None if lineno is None else lineno + (line or 1) - 1

    try:
        value = json.loads(text, object_pairs_hook=_object, parse_constant=_constant)
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON ({e.msg} at column {e.colno})",
                        line=at(e.lineno)) from None
    except RecursionError:
        raise DataError(path, "malformed JSON (nested too deeply)", line=line) from None
    except ValueError as e:  # duplicate keys, NaN, integers of more than 4300 digits
        raise DataError(path, f"malformed JSON ({e})", line=line) from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            first = _SURROGATE_ESCAPE.search(text).start()
            raise DataError(path, "malformed JSON (a \\uD800-\\uDFFF escape that is not half of "
                                  "a surrogate pair: not text)",
                            line=at(text.count("\n", 0, first) + 1)) from None
    return value


def iter_jsonl(path: str | os.PathLike,
               on_bad: OnBad = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; raises on bad JSON or an empty file
    (with on_bad, a bad line is passed to it and skipped)."""
    n = 0
    for lineno, line in iter_lines(path, on_bad):
        if not line.strip():
            continue
        try:
            row = parse_json(line, path, lineno)
            if not isinstance(row, dict):
                raise DataError(path, f"expected a JSON object, got {type(row).__name__}",
                                line=lineno)
        except DataError as e:
            report(on_bad, e)
            continue
        n += 1
        yield lineno, row
    if n == 0:
        raise DataError(path, "file is empty (no JSON records)" if on_bad is None else
                              "no valid JSON records")


def load_json(path: str | os.PathLike) -> Any:
    """A whole JSON document (C3, CMRC2018); CRLF and a BOM are accepted."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    text = decode_utf8(path.read_bytes(), path)
    if not text.strip():
        raise DataError(path, "file is empty")
    return parse_json(text, path, 1)


def get_field(row: Any, field: str, path: str | os.PathLike, line: int | None,
              types: type | tuple[type, ...] = str, where: str = "") -> Any:
    """row[field] checked for presence and type (`where`: the field's parent, for messages)."""
    name = f"{where}.{field}" if where else field
    if not isinstance(row, dict):
        raise DataError(path, f"expected an object, got {type(row).__name__}", line=line,
                        field=where or None)
    if field not in row or row[field] is None:
        raise DataError(path, "missing", line=line, field=name)
    value = row[field]
    if not isinstance(value, types) or isinstance(value, bool) and bool not in _tuple(types):
        names = "/".join(t.__name__ for t in _tuple(types))
        raise DataError(path, f"expected {names}, got {type(value).__name__} {_short(value)}",
                        line=line, field=name)
    return value


def get_strings(row: Any, field: str, path: str | os.PathLike, line: int | None,
                where: str = "") -> list[str]:
    """row[field] checked to be a list of strings."""
    value = get_field(row, field, path, line, list, where)
    if not all(isinstance(v, str) for v in value):
        raise DataError(path, f"expected a list of strings, got {_short(value)}", line=line,
                        field=f"{where}.{field}" if where else field)
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
        raise DataError(path, f"unknown label {_short(value)} (expected one of {shown})",
                        line=line, field=field) from None


def own_id(row: dict, path: str | os.PathLike, line: int | None,
           fields: tuple[str, ...] = ("id", "idx")) -> int | None:
    """The row's own integer id (an int or a decimal string), None if it has none."""
    for f in fields:
        v = row.get(f)
        if isinstance(v, str) and _INT.fullmatch(v.strip()):
            v = int(v)
        if isinstance(v, int) and not isinstance(v, bool):
            if not -2**63 <= v < 2**63:
                raise DataError(path, f"id {_short(v)} does not fit in 64 bits", line=line,
                                field=f)
            return v
    return None


def row_index(row: dict, line: int, fields: tuple[str, ...] = ("id", "idx"),
              path: str | os.PathLike = "<row>") -> int:
    """The row's own integer id (kept for submission files), else its 0-based line."""
    v = own_id(row, path, line, fields)
    return line - 1 if v is None else v


class UniqueIds:
    """Raises DataError when one split repeats a row id."""

    def __init__(self) -> None:
        self.seen: dict[Any, int | None] = {}

    def check(self, value: Any, path: str | os.PathLike, line: int | None,
              field: str = "id") -> None:
        if value is None:
            return
        if value in self.seen:
            first = self.seen[value]
            raise DataError(path, f"duplicate id {_short(value)}" + (
                f" (first on line {first})" if first is not None else ""), line=line, field=field)
        self.seen[value] = line


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
        text = decode_utf8(file.read_bytes(), file).replace("\r\n", "\n").replace("\r", "\n")
        if not text.strip():
            raise DataError(file, "file is empty")
        if doc_per == "file":
            docs.append(text.strip())
        else:
            docs.extend(line.strip() for line in text.split("\n") if line.strip())
    return docs


def _label_names(labels: set[str]) -> tuple[str, ...]:
    """Sorted label names: numerically when all are (at most 19-digit) integers."""
    if all(_INT.fullmatch(v) for v in labels):
        return tuple(sorted(labels, key=lambda v: (int(v), v)))
    return tuple(sorted(labels))


def read_jsonl_task(folder: str | os.PathLike, name: str = "jsonl", bad_rows: str = "raise",
                    stats: collections.Counter | None = None):
    """A user classification task: `folder/train.json`, `folder/dev.json` (JSON Lines with
    `sentence`, optional `sentence2`, and `label`; `id`/`idx`, when given, unique per split).
    Labels (str or int) are gathered from train, sorted (numerically when all are integers); a
    dev label not seen in train raises. With bad_rows="skip" a bad row is skipped and counted
    in `stats["skipped"]` instead.

    Returns (TaskSpec, {"train": rows, "dev": rows}), rows {"idx", "sentence", "sentence2",
    "label"} with int labels.
    """
    from gau_jax.data.tasks import jsonl_task

    stats = collections.Counter() if stats is None else stats
    on_bad = bad_row_counter(bad_rows, stats)
    folder = pathlib.Path(folder)
    paths = {s: folder / f"{s}.json" for s in ("train", "dev")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise DataError(folder, f"task=jsonl needs {', '.join(missing)} (JSON Lines with "
                                "'sentence', optional 'sentence2', 'label')")

    def checked(path: pathlib.Path) -> Iterator[tuple[int, dict]]:
        ids = UniqueIds()
        for line, row in iter_jsonl(path, on_bad):
            try:
                get_field(row, "sentence", path, line)
                if "sentence2" in row:
                    get_field(row, "sentence2", path, line)
                get_field(row, "label", path, line, (str, int))
                ids.check(own_id(row, path, line), path, line)
            except DataError as e:
                report(on_bad, e)
                continue
            yield line, row

    raw = {split: list(checked(p)) for split, p in paths.items()}
    for split, rows in raw.items():
        if not rows:
            raise DataError(paths[split], "no valid rows")
    names = _label_names({str(row["label"]).strip() for _, row in raw["train"]})
    has_pair = any("sentence2" in row for rows in raw.values() for _, row in rows)
    spec = jsonl_task(names, has_pair, name)
    out: dict[str, list[dict]] = {}
    for split, rows in raw.items():
        out[split] = []
        for line, row in rows:
            try:
                label = encode_label(row["label"], names, paths[split], line)
            except DataError as e:
                report(on_bad, e)
                continue
            out[split].append({"idx": row_index(row, line, path=paths[split]),
                               "sentence": row["sentence"],
                               "sentence2": row.get("sentence2", ""), "label": label})
    return spec, out
