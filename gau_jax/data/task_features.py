"""Feature rows for the span task (CMRC2018) and what the other task kinds share.

A task's parsed examples become `Features`: one unpadded numpy row per model input, a `meta`
entry per row that maps predictions back to the original text, and `stats` that count every
truncation, window and unalignable answer (printed by the run via `Features.describe`).

CMRC2018 (SQuAD-style extractive reading comprehension) follows BERT's `run_squad.py`
(Devlin et al., 2019): a row is `[CLS] question [SEP] window [SEP]`, windows of the context's
tokens start every `stride` tokens (BERT's doc_stride) until one reaches the context's end, and a
window that does not contain the whole answer is labelled with the [CLS] position (0, 0). Labels
are span targets of a GlobalPointer with one "answer" type (Su, 2021, "GlobalPointer: a unified
treatment of nested and flat NER"): `spans` [k, 3] = (type, start token, end token), end inclusive.

Character offsets come from the tokenizer (`ChineseTokenizer.encode_pieces`), so a token span
(i, j) decodes to `context[offsets[i][0]:offsets[j][1]]`, the exact original substring. A gold
answer whose boundaries fall inside a token (e.g. "95" in the token "1995") cannot be decoded
exactly: it is trained on the covering tokens and counted as `answers_inexact`; one that covers no
token at all (only whitespace) is dropped and counted as `answers_unaligned`. Whitespace around a
gold answer (" 1999年") belongs to no token: the target is the stripped text, counted as
`answers_whitespace_stripped` (CMRC2018's scorer strips answers too).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from gau_jax.data.tasks import as_text
from gau_jax.data.tokenizer import ChineseTokenizer

NO_OFFSET = -1  # offsets of a token outside the context / text ([CLS], [SEP], question)


@dataclasses.dataclass
class Features:
    """Feature rows of one (task, split): span, entity or multiple-choice rows.

    rows[r]: numpy arrays `input_ids`, `segment_ids` ([n]; multiple choice [c] lists of them)
    plus `spans` [k, 3] (span / ner) or `label` (multiple choice). meta[r]: the row's example id
    (`id`), the example's position in the input sequence (`index`) and what decoding needs (text,
    token offsets [n, 2] with NO_OFFSET outside the text, window, choices).
    """

    rows: list[dict[str, Any]]
    meta: list[dict[str, Any]]
    stats: collections.Counter
    max_len: int
    pad_id: int
    num_types: int = 0
    num_choices: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def describe(self, name: str = "") -> str:
        """One line for the run's log: every count, truncations included (zeros shown)."""
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.stats.items()))
        return f"{name + ': ' if name else ''}{len(self.rows)} rows ({parts})"


def text_of(row: Mapping, key: str) -> str:
    return as_text(row[key])


def texts_of(value: Any) -> list[str]:
    """A list of strings from a parsed list or a TFDS Sequence(Text) array of bytes."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    return [as_text(v) for v in value]


def records(value: Any) -> list[dict[str, Any]]:
    """A TFDS Sequence-of-dict ({key: array}) or a list of dicts, as a list of dicts."""
    if isinstance(value, Mapping):
        keys = list(value)
        columns = [list(value[k].tolist() if hasattr(value[k], "tolist") else value[k])
                   for k in keys]
        return [dict(zip(keys, vals, strict=True)) for vals in zip(*columns, strict=True)]
    return [dict(v) for v in value]


def example_id(row: Mapping) -> Any:
    """`id` (C3, CMRC2018: text) or `idx` (int) of a parsed / TFDS row."""
    if "id" in row:
        v = row["id"]
        return as_text(v) if isinstance(v, bytes | str) else int(v)
    return int(row["idx"])


def offsets_array(offsets: Sequence[tuple[int, int]], before: int, after: int) -> np.ndarray:
    """[before + len(offsets) + after, 2] int32, NO_OFFSET rows around the text's tokens."""
    out = np.full((before + len(offsets) + after, 2), NO_OFFSET, np.int32)
    if offsets:
        out[before:before + len(offsets)] = np.asarray(offsets, np.int32)
    return out


def char_to_token_span(offsets: Sequence[tuple[int, int]], start: int,
                       end: int) -> tuple[int, int] | None:
    """(first, last) token overlapping characters [start, end) (end exclusive), or None when no
    token overlaps them."""
    hits = [k for k, (s, e) in enumerate(offsets) if s < end and e > start and e > s]
    return (hits[0], hits[-1]) if hits else None


def window_starts(n_tokens: int, room: int, stride: int) -> list[int]:
    """Token starts of the windows of length <= room over n_tokens tokens (BERT doc_stride)."""
    starts, start = [], 0
    while True:
        starts.append(start)
        if start + room >= n_tokens:
            return starts
        start += min(room, stride)


class LastEncoding:
    """tokenizer.encode_pieces with the last text remembered: consecutive questions of one
    CMRC2018 paragraph or C3 document share their context's encoding."""

    def __init__(self, tokenizer: ChineseTokenizer):
        self.tokenizer, self.text, self.value = tokenizer, None, None

    def __call__(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        if text != self.text:
            self.text, self.value = text, self.tokenizer.encode_pieces(text)
        return self.value


def _cmrc_example(row: Mapping) -> tuple[str, str, str, list[tuple[str, int]]]:
    answers = [(as_text(a["text"]), int(a["answer_start"])) for a in records(row["answers"])]
    return example_id(row), text_of(row, "context"), text_of(row, "question"), answers


def span_features(examples: Iterable[Mapping], tokenizer: ChineseTokenizer, *,
                  max_len: int = 512, stride: int = 128,
                  max_question_len: int = 64) -> Features:
    """CMRC2018 windows (module docstring). Questions longer than max_question_len tokens (at
    most half of max_len - 3) keep their head and are counted; every answer with a position
    (answer_start >= 0) is a target."""
    if stride < 1:
        raise ValueError(f"stride={stride} must be >= 1")
    if max_len < 8:
        raise ValueError(f"max_len={max_len} is too short for [CLS] question [SEP] context [SEP]")
    max_question_len = min(max_question_len, (max_len - 3) // 2)
    cls, sep = tokenizer.cls_id, tokenizer.sep_id
    rows, meta, stats, encode_context = [], [], collections.Counter(), LastEncoding(tokenizer)
    for key in ("questions", "windows", "questions_truncated", "windows_without_answer",
                "answers_whitespace_stripped", "answers_inexact", "answers_unaligned",
                "answers_longer_than_window"):
        stats[key] = 0
    for index, row in enumerate(examples):
        qid, context, question, answers = _cmrc_example(row)
        stats["questions"] += 1
        q_ids, _ = tokenizer.encode_pieces(question)
        if len(q_ids) > max_question_len:
            q_ids = q_ids[:max_question_len]
            stats["questions_truncated"] += 1
        c_ids, c_off = encode_context(context)
        gold = set()
        for text, start in answers:
            if start < 0:
                continue
            stripped = text.strip()
            if stripped != text:
                stats["answers_whitespace_stripped"] += 1
            start += len(text) - len(text.lstrip())
            span = char_to_token_span(c_off, start, start + len(stripped))
            if span is None:
                stats["answers_unaligned"] += 1
                continue
            if context[c_off[span[0]][0]:c_off[span[1]][1]] != stripped:
                stats["answers_inexact"] += 1
            gold.add(span)
        room = max_len - len(q_ids) - 3
        base = len(q_ids) + 2
        inside_any = set()
        for w, s0 in enumerate(window_starts(len(c_ids), room, stride)):
            n_ctx = min(room, len(c_ids) - s0)
            spans = sorted((0, i - s0 + base, j - s0 + base) for i, j in gold
                           if s0 <= i and j < s0 + n_ctx)
            inside_any.update((i, j) for i, j in gold if s0 <= i and j < s0 + n_ctx)
            if not spans:
                spans = [(0, 0, 0)]
                stats["windows_without_answer"] += 1
            ids = [cls, *q_ids, sep, *c_ids[s0:s0 + n_ctx], sep]
            rows.append({
                "input_ids": np.asarray(ids, np.int32),
                "segment_ids": np.asarray([0] * base + [1] * (n_ctx + 1), np.int32),
                "spans": np.asarray(spans, np.int32).reshape(-1, 3)})
            meta.append({"id": qid, "index": index, "window": w, "context": context,
                         "offsets": offsets_array(c_off[s0:s0 + n_ctx], base, 1),
                         "answers": [t for t, _ in answers]})
            stats["windows"] += 1
        stats["answers_longer_than_window"] += len(gold - inside_any)
    return Features(rows, meta, stats, max_len, tokenizer.pad_id, num_types=1)


def span_text(meta_row: Mapping, i: int, j: int) -> str | None:
    """The exact original substring of tokens i..j (inclusive), None unless both are text
    tokens with i <= j."""
    off = meta_row["offsets"]
    if not (0 <= i <= j < len(off)) or off[i, 0] == NO_OFFSET or off[j, 0] == NO_OFFSET:
        return None
    text = meta_row["context"] if "context" in meta_row else meta_row["text"]
    return text[int(off[i, 0]):int(off[j, 1])]


def best_span(logits: np.ndarray, offsets: np.ndarray,
              max_answer_len: int) -> tuple[float, int, int] | None:
    """(score, i, j) of the highest-scoring span i <= j of text tokens at most max_answer_len
    text tokens long in an [n, n] score matrix (n >= the row's length); None without text
    tokens. Searches the max_answer_len diagonals of the text block only (O(n * len))."""
    idx = np.nonzero(offsets[:, 0] != NO_OFFSET)[0]
    if not len(idx):
        return None
    logits = np.asarray(logits)
    if idx[-1] - idx[0] + 1 == len(idx):  # one contiguous block (every row built here): a view
        sub = logits[idx[0]:idx[-1] + 1, idx[0]:idx[-1] + 1]
    else:
        sub = logits[np.ix_(idx, idx)]
    best = None
    for d in range(min(max_answer_len, len(idx))):
        diag = np.diagonal(sub, d)
        k = int(np.argmax(diag))
        if best is None or diag[k] > best[0]:
            best = (float(diag[k]), int(idx[k]), int(idx[k + d]))
    return best


class AnswerAggregator:
    """CMRC2018 answers from GlobalPointer scores: for each question the best span over all its
    windows (scores of one type are comparable across windows, not softmax-normalised per
    window). Feed eval batches with `add`, read `{question_id: text}` with `answers()`."""

    def __init__(self, features: Features, max_answer_len: int = 64):
        if features.num_types != 1:
            raise ValueError(f"AnswerAggregator needs span features (one type), got "
                             f"{features.num_types} types")
        self.features, self.max_answer_len = features, max_answer_len
        self.best: dict[Any, tuple[float, str]] = {}

    def add(self, row_ids: np.ndarray, logits: np.ndarray) -> None:
        """row_ids [b] (batch["row_ids"], -1 = filler), logits [b, 1, n, n] or [b, n, n]."""
        logits = np.asarray(logits)
        if logits.ndim == 4:
            logits = logits[:, 0]
        for r, scores in zip(np.asarray(row_ids).tolist(), logits, strict=True):
            if r < 0:
                continue
            meta = self.features.meta[r]
            found = best_span(scores, meta["offsets"], self.max_answer_len)
            if found is None:
                continue
            score, i, j = found
            if meta["id"] not in self.best or score > self.best[meta["id"]][0]:
                self.best[meta["id"]] = (score, span_text(meta, i, j))

    def answers(self) -> dict[Any, str]:
        """Every question of the features in order; "" when none of its windows had a span."""
        out: dict[Any, str] = {}
        for m in self.features.meta:
            out.setdefault(m["id"], self.best.get(m["id"], (0.0, ""))[1])
        return out
