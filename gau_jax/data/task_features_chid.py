"""Feature rows of CLUE's ChID (gau_jax/data/chid_parser.py rows): one row per blank, one
sequence per candidate, as bojone/CLUE-bert4keras src/chid.py lays them out:

    [CLS] candidate [SEP] left [unused1] right [SEP]           segment ids all 0

`left` / `right` are the passage's text before / after the blank; the passage's other blanks
become 4 [MASK] (an idiom's 4 characters), the blank itself `[unused1]` ([MASK] when the vocab
has no `[unused1]`). A passage longer than the room left by the longest candidate is cut as Su
cuts it (`sample_split`): one token at a time from the far end of the longer side (the start of
`left` or the end of `right`), a piece between two blanks dropped whole, with its [MASK]s,
once it is used up; cut rows are counted (`contexts_truncated`).

Row: `input_ids` / `segment_ids` (lists of one array per candidate), `label` (the answer index,
-1 without answers). meta: `id` (the blank's tag), `index` (its example), `blank` (its position
among the example's blanks), `choices`, `label`.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Mapping

import numpy as np

from gau_jax.data.task_features import Features, example_id, texts_of
from gau_jax.data.task_features_ner_mc import BLANK_MASKS
from gau_jax.data.tasks import TaskSpec
from gau_jax.data.tokenizer import ChineseTokenizer

BLANK_TAG = re.compile(r"#idiom\d{6}#")
BLANK_MARK = "[unused1]"


def _size(left: list[list[int]], right: list[list[int]]) -> int:
    """Tokens of the pieces plus the [MASK]s of the blanks between them."""
    gaps = max(len(left) - 1, 0) + max(len(right) - 1, 0)
    return sum(map(len, left)) + sum(map(len, right)) + BLANK_MASKS * gaps


def _cut_to(left: list[list[int]], right: list[list[int]], room: int) -> bool:
    """Cut the pieces (in place) until `_size` fits `room`; whether anything was cut (module
    docstring: Su's sample_split in tokens)."""
    cut = False
    while _size(left, right) > room:
        cut = True
        use_left = sum(map(len, left)) > sum(map(len, right))
        side, end = (left, 0) if use_left else (right, -1)
        if len(side[end]) > 1 or (len(side) == 1 and side[end]):
            side[end] = side[end][1:] if use_left else side[end][:-1]
        elif len(side) > 1:
            side.pop(end)
        else:  # no tokens left on either side: only [MASK]s of empty pieces on the left
            left.pop(0)
    return cut


def _joined(pieces: list[list[int]], mask: int) -> list[int]:
    out: list[int] = []
    for k, p in enumerate(pieces):
        out += ([mask] * BLANK_MASKS if k else []) + p
    return out


def idiom_cloze_features(examples: Iterable[Mapping], tokenizer: ChineseTokenizer,
                         spec: TaskSpec, *, max_len: int) -> Features:
    """The rows of the module docstring; `spec.num_choices` candidates a row."""
    if max_len < 16:
        raise ValueError(f"max_len={max_len} is too short for [CLS] idiom [SEP] passage [SEP]")
    cls, sep, mask = tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id
    mark = tokenizer.vocab.get(BLANK_MARK, mask)
    content_field, cands_field = spec.text_fields
    rows, meta, stats = [], [], collections.Counter()
    for key in ("examples", "blanks", "contexts_truncated"):
        stats[key] = 0
    for index, row in enumerate(examples):
        stats["examples"] += 1
        cands = texts_of(row[cands_field])
        c_ids = [[cls, *tokenizer.encode_pieces(c)[0], sep] for c in cands]
        room = max_len - max(map(len, c_ids)) - 2  # [unused1] and the last [SEP]
        if room < 1:
            raise ValueError(f"max_len={max_len} leaves no room for the passage of example "
                             f"{example_id(row)!r} beside its longest candidate")
        labels = [int(v) for v in np.asarray(row["labels"]).tolist()]
        blank = 0
        for passage in texts_of(row[content_field]):
            pieces = [tokenizer.encode_pieces(t)[0] for t in BLANK_TAG.split(passage)]
            for k, tag in enumerate(BLANK_TAG.findall(passage)):
                left = [list(p) for p in pieces[:k + 1]]
                right = [list(p) for p in pieces[k + 1:]]
                stats["contexts_truncated"] += int(_cut_to(left, right, room))
                body = [*_joined(left, mask), mark, *_joined(right, mask), sep]
                seqs = [np.asarray(c + body, np.int32) for c in c_ids]
                rows.append({"input_ids": seqs, "segment_ids": [np.zeros_like(s) for s in seqs],
                             "label": labels[blank]})
                meta.append({"id": tag, "index": index, "blank": blank, "row": example_id(row),
                             "choices": cands, "label": labels[blank]})
                blank += 1
                stats["blanks"] += 1
    return Features(rows, meta, stats, max_len, tokenizer.pad_id, num_choices=spec.num_choices)
