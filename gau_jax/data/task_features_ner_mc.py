"""Feature rows for entities (CLUENER) and multiple choice (C3, ChID); see task_features.py.

CLUENER (Xu et al., 2020, "CLUENER2020"): a row is `[CLS] text [SEP]`; each entity, a character
span with inclusive end as the data writes it, becomes the GlobalPointer target (type, i, j) with
i, j the first and last token covering it (Su, 2021, GlobalPointer). Decoding maps tokens back
through the tokenizer's character offsets: `text[offsets[i][0]:offsets[j][1]]`, end inclusive
`offsets[j][1] - 1`. Texts longer than max_len - 2 tokens keep their head; entities cut off are
counted (`entities_truncated`), as are entities whose boundaries fall inside a token
(`entities_inexact`: trained on the covering tokens, they decode to a longer text).

Multiple choice (each choice scored from its own sequence, softmax over choices; Devlin et al.,
2019, SWAG): C3 (Sun et al., 2020) `[CLS] context [SEP] question [SEP] choice [SEP]` as Su's
bojone/CLUE-bert4keras src/c3.py and CLUE's baseline (CLUEbenchmark/CLUE
baselines/models_pytorch/mrc_pytorch/run_c3.py) lay it out, the context being the document's
sentences joined by "\n", segment 0 up to the first [SEP], 1 after it; ChID (Zheng et al.,
2019; FewCLUE's variant: one `#idiom#` blank, 7 candidates) `[CLS] candidate [SEP] left
[MASK]x4 right [SEP]`. Choices are padded to the task's maximum (C3 4, ChID 7) and
`choice_mask` marks the real ones. A context that does not fit keeps its head
(truncate="keep_head") or tail ("keep_tail"); question + choice take at most half of the
sequence (the question's tail kept next to the choice); ChID keeps a window centred on the
blank. Every cut is counted (`contexts_truncated`, `questions_truncated`, `choices_truncated`).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from gau_jax.data.task_features import (
    NO_OFFSET,
    Features,
    LastEncoding,
    char_to_token_span,
    example_id,
    offsets_array,
    records,
    text_of,
    texts_of,
)
from gau_jax.data.tasks import CLUENER_TYPES, TaskSpec, as_text
from gau_jax.data.tokenizer import ChineseTokenizer

TRUNCATE = ("keep_head", "keep_tail")
BLANK = "#idiom#"
BLANK_MASKS = 4  # an idiom's length in characters


def _entities(row: Mapping) -> list[tuple[int, int, int, str]]:
    """(type index, start, end exclusive, text) of a parsed or TFDS CLUENER row."""
    out = []
    for e in records(row["entities"]):
        t = e["type"]
        t = CLUENER_TYPES.index(as_text(t)) if isinstance(t, str | bytes) else int(t)
        out.append((t, int(e["start"]), int(e["end"]), as_text(e["text"])))
    return out


def ner_features(examples: Iterable[Mapping], tokenizer: ChineseTokenizer, *,
                 max_len: int = 256) -> Features:
    """CLUENER rows (module docstring); meta: id, text, offsets [n, 2], gold entities."""
    room = max_len - 2
    if room < 1:
        raise ValueError(f"max_len={max_len} leaves no room for text between [CLS] and [SEP]")
    rows, meta, stats = [], [], collections.Counter()
    for key in ("rows_truncated", "entities", "entities_truncated", "entities_inexact",
                "entities_unaligned"):
        stats[key] = 0
    for index, row in enumerate(examples):
        text = text_of(row, "text")
        ids, off = tokenizer.encode_pieces(text)
        if len(ids) > room:
            stats["rows_truncated"] += 1
        spans = set()
        for t, s, e, _ in _entities(row):
            stats["entities"] += 1
            span = char_to_token_span(off, s, e)
            if span is None:
                stats["entities_unaligned"] += 1
                continue
            i, j = span
            if j >= room:
                stats["entities_truncated"] += 1
                continue
            if off[i][0] != s or off[j][1] != e:
                stats["entities_inexact"] += 1
            spans.add((t, i + 1, j + 1))
        ids, off = ids[:room], off[:room]
        rows.append({"input_ids": np.asarray([tokenizer.cls_id, *ids, tokenizer.sep_id],
                                             np.int32),
                     "segment_ids": np.zeros(len(ids) + 2, np.int32),
                     "spans": np.asarray(sorted(spans), np.int32).reshape(-1, 3)})
        meta.append({"id": example_id(row), "index": index, "text": text,
                     "offsets": offsets_array(off, 1, 1)})
    return Features(rows, meta, stats, max_len, tokenizer.pad_id,
                    num_types=len(CLUENER_TYPES))


def ner_entities(meta_row: Mapping, spans: Iterable[tuple]) -> dict[str, dict[str, list]]:
    """Predicted token spans (type, i, j[, score]) of one row -> CLUENER's label dictionary
    {type: {entity text: [[start, end], ...]}} (character offsets, end inclusive). Spans not on
    text tokens ([CLS], [SEP], padding) or with i > j are dropped."""
    off, text = meta_row["offsets"], meta_row["text"]
    out: dict[str, dict[str, list]] = {}
    for t, i, j, *_ in spans:
        i, j = int(i), int(j)
        if not (0 <= i <= j < len(off)) or off[i, 0] == NO_OFFSET or off[j, 0] == NO_OFFSET:
            continue
        name = CLUENER_TYPES[t] if not isinstance(t, str) else t
        start, end = int(off[i, 0]), int(off[j, 1]) - 1
        where = out.setdefault(name, {}).setdefault(text[start:end + 1], [])
        if [start, end] not in where:
            where.append([start, end])
    return out


def _cut(ids: list[int], room: int, truncate: str) -> list[int]:
    return ids[:room] if truncate == "keep_head" else ids[len(ids) - room:] if room else []


def _joined(parts: tuple[list[int], ...], cls: int, sep: int) -> np.ndarray:
    """[CLS] part_1 [SEP] part_2 [SEP] ... part_k [SEP]."""
    return np.asarray([cls, *(t for part in parts for t in (*part, sep))], np.int32)


def _segments(parts: tuple[list[int], ...]) -> np.ndarray:
    """Segment 0 for [CLS] part_1 [SEP], 1 for everything after it."""
    rest = sum(len(part) + 1 for part in parts[1:])
    return np.asarray([0] * (len(parts[0]) + 2) + [1] * rest, np.int32)


LAYOUTS = ("passage_question", "idiom_blank")  # TaskSpec.choice_layout: C3's, ChID's


def _choice_parts(spec: TaskSpec, row: Mapping) -> tuple[Any, str, list[str]]:
    """passage_question: (context sentences, question, choices); idiom_blank: (content with
    the blank, "", candidates); fields named by spec.text_fields."""
    if spec.choice_layout == "passage_question":
        context, question, choices = spec.text_fields
        return texts_of(row[context]), text_of(row, question), texts_of(row[choices])
    content, candidates = spec.text_fields
    return text_of(row, content), "", texts_of(row[candidates])


def choice_features(examples: Iterable[Mapping], tokenizer: ChineseTokenizer, spec: TaskSpec,
                    *, max_len: int, truncate: str = "keep_head") -> Features:
    """Multiple-choice rows (module docstring) in spec.choice_layout: row `input_ids` /
    `segment_ids` are lists with one array per real choice, `label` the gold index (-1
    unlabelled); meta: id, choices, label."""
    if spec.choice_layout not in LAYOUTS or spec.num_choices < 1:
        raise ValueError(f"task {spec.name!r}: choice_layout {spec.choice_layout!r} / "
                         f"num_choices {spec.num_choices} (layouts: {LAYOUTS})")
    task = spec.name
    if truncate not in TRUNCATE:
        raise ValueError(f"truncate={truncate!r}; choose one of {TRUNCATE}")
    if max_len < 16:
        raise ValueError(f"max_len={max_len} is too short for a multiple-choice sequence")
    cls, sep, mask = tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id
    rows, meta, stats, encode_context = [], [], collections.Counter(), LastEncoding(tokenizer)
    for key in ("examples", "contexts_truncated", "questions_truncated", "choices_truncated"):
        stats[key] = 0
    half = (max_len - 3) // 2
    for index, row in enumerate(examples):
        stats["examples"] += 1
        ex_id = example_id(row)
        context, question, choices = _choice_parts(spec, row)
        if not 1 <= len(choices) <= spec.num_choices:
            raise ValueError(f"{task} example {ex_id!r}: {len(choices)} choices, expected 1 to "
                             f"{spec.num_choices}")
        label = int(row["label"])
        seqs, cut_context = [], False
        if spec.choice_layout == "passage_question":
            ctx_ids = encode_context("\n".join(context))[0]
            q_ids = tokenizer.encode_pieces(question)[0]
            for choice in choices:
                c_ids = tokenizer.encode_pieces(choice)[0]
                if len(c_ids) > half:
                    c_ids = c_ids[:half]
                    stats["choices_truncated"] += 1
                q = q_ids
                if len(q) + len(c_ids) > half:  # the question's tail stays next to the choice
                    q = q[len(q) + len(c_ids) - half:]
                    stats["questions_truncated"] += 1
                room = max_len - 4 - len(q) - len(c_ids)
                cut_context |= len(ctx_ids) > room
                seqs.append((_cut(ctx_ids, room, truncate), q, c_ids))
        else:
            if context.count(BLANK) != 1:
                raise ValueError(f"{task} example {ex_id!r}: content needs exactly one {BLANK}")
            left, right = (tokenizer.encode_pieces(p)[0] for p in context.split(BLANK))
            for cand in choices:
                c_ids = tokenizer.encode_pieces(cand)[0]
                if len(c_ids) > half:
                    c_ids = c_ids[:half]
                    stats["choices_truncated"] += 1
                room = max_len - 3 - len(c_ids) - BLANK_MASKS
                n_left = min(len(left), max(room // 2, room - len(right)))
                n_right = min(len(right), room - n_left)
                cut_context |= n_left < len(left) or n_right < len(right)
                body = left[len(left) - n_left:] + [mask] * BLANK_MASKS + right[:n_right]
                seqs.append((c_ids, body))
        stats["contexts_truncated"] += int(cut_context)
        rows.append({"input_ids": [_joined(parts, cls, sep) for parts in seqs],
                     "segment_ids": [_segments(parts) for parts in seqs], "label": label})
        meta.append({"id": ex_id, "index": index, "choices": list(choices), "label": label})
    return Features(rows, meta, stats, max_len, tokenizer.pad_id,
                    num_choices=spec.num_choices)

