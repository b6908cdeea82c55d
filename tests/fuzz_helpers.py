"""Hypothesis strategies shared by the fuzz tests: JSON values, mutations of valid documents,
serialisation to hostile bytes (BOM, CRLF / CR, invalid UTF-8, truncation, huge lines), and the
per-reader count of fuzzed inputs (printed at the end of a `pytest -s` run)."""

from __future__ import annotations

import collections
import copy
import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

COUNTS: collections.Counter = collections.Counter()


def fuzz(max_examples: int):
    """Fixed-seed, bounded settings: the same inputs on every run, no example database."""
    return settings(derandomize=True, database=None, deadline=None, max_examples=max_examples,
                    suppress_health_check=list(HealthCheck))


EDGE = st.one_of(  # each kind equally likely: integers, strings, other values
    st.sampled_from([-2, 0, 7, 2**31, 2**63, 10**30]),
    st.sampled_from(["", " 1 ", "²", "--1", "\ud800", "a\u2028b", "#idiom#", "9" * 30]),
    st.sampled_from([1.0, True, None, [], {}, [[-1, 2]], float("nan")]))
# Edge values of the original's own type (and its near misses), for "typed" edits.
TYPED = {int: st.sampled_from([-2, -1, 0, 7, 2**31, 2**63, -2**63 - 1, 10**30, True, 1.0, "1"]),
         str: st.sampled_from(["", " ", "\ud800", "²", "--1", "a\u2028b", "9" * 30, 1, None]),
         list: st.sampled_from([[], [None], [[0, 0]], [[-2, -1]], [10**30], ["x"] * 8]),
         dict: st.sampled_from([{}, [], {"": None}]),
         float: st.sampled_from([float("nan"), float("inf"), -1.0, 1e300, "0.1", None, True]),
         bool: st.sampled_from(["false", "true", 0, 1, None])}
_DELETE = object()


def one_field_changed(d: dict) -> st.SearchStrategy:
    """`d` (a flat config) with exactly one key deleted or set to an edge value of its type."""
    def change(key: str) -> st.SearchStrategy:
        values = st.one_of(st.just(_DELETE), TYPED.get(type(d[key]), EDGE), EDGE)
        return values.map(lambda v: {k: x for k, x in {**d, key: v}.items() if x is not _DELETE})

    return st.sampled_from(sorted(d)).flatmap(change)
SCALAR = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
          | st.text(max_size=12) | EDGE)
JSON = st.recursive(SCALAR, lambda c: st.lists(c, max_size=4)
                    | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=8)


def _slots(value: Any, out: list) -> list:
    """(container, key) of every node below `value`."""
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    for k, v in list(items):
        out.append((value, k))
        _slots(v, out)
    return out


@st.composite
def mutated(draw, value: Any, max_edits: int = 2) -> Any:
    """`value` with up to max_edits random deletions, replacements and duplications."""
    value = copy.deepcopy(value)
    for _ in range(draw(st.sampled_from([1, 1, 1, 0] + list(range(2, max_edits + 1))))):
        slots = _slots(value, [])
        if not slots:
            break
        parent, key = draw(st.sampled_from(slots))
        op = draw(st.sampled_from(["delete", "json", "edge", "typed", "typed", "dup"]))
        if op == "delete":
            del parent[key]
        elif op == "dup" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif op == "dup":  # a sibling key of the same value
            parent[draw(st.text(max_size=6))] = copy.deepcopy(parent[key])
        elif op == "typed" and type(parent[key]) in TYPED:
            parent[key] = draw(TYPED[type(parent[key])])
        else:
            parent[key] = draw(JSON if op == "json" else EDGE)
    return value


def dumps(value: Any, ascii_: bool, repeat: tuple[str, Any] | None = None) -> bytes:
    """JSON bytes; a lone surrogate becomes an escape (ascii_) or CESU-8 bytes (invalid UTF-8).
    repeat=(key, value) writes that key a second time, before the object's own keys."""
    text = json.dumps(value, ensure_ascii=ascii_)
    if repeat is not None and isinstance(value, dict) and value:
        text = json.dumps({repeat[0]: repeat[1]}, ensure_ascii=ascii_)[:-1] + ", " + text[1:]
    return text.encode("utf-8", "surrogatepass")


def has_duplicate_keys(data: bytes) -> bool:
    """Whether some JSON object in `data` (valid JSON) repeats a key."""
    found = []

    def hook(pairs):
        found.append(len({k for k, _ in pairs}) != len(pairs))
        return dict(pairs)

    json.loads(data.decode("utf-8-sig"), object_pairs_hook=hook)
    return any(found)


@st.composite
def hostile_bytes(draw, lines: list[bytes], edits: bool = True,
                  extra: list[bytes] | None = None) -> bytes:
    """`lines` joined with random line ends, maybe a BOM, maybe one line of `extra` (default:
    blank, huge, a BOM inside) inserted, then (edits) maybe random byte edits or a truncation."""
    eol = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    lines = list(lines)
    extra = extra or [b"", b" \t ", b'{"x": "' + b"y" * 200_000 + b'"}', b"\xef\xbb\xbf{}"]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(extra)))
    data = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + eol.join(lines) \
        + (eol if draw(st.booleans()) else b"")
    for _ in range(draw(st.integers(0, 2 if edits else 0))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        edit = draw(st.sampled_from(["byte", "cut", "drop"]))
        if edit == "byte":
            data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1:]
        elif edit == "cut":
            data = data[:i]
        else:
            data = data[:i] + data[i + 1:]
    return data


def split_lines(data: bytes) -> list[bytes]:
    """The lines of `data` as the readers define them (BOM dropped; \\n, \\r\\n, \\r end lines),
    computed independently of them."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return lines[:-1] if lines and lines[-1] == b"" else lines


def nonblank(data: bytes) -> list[tuple[int, bytes]]:
    """(1-based line, bytes) of the lines that are not blank."""
    return [(i, line) for i, line in enumerate(split_lines(data), 1)
            if line.decode("utf-8", "replace").strip()]
