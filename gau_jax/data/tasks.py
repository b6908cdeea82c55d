"""Task registry: for every task its kind, label names, text fields and split files.

`TaskSpec.texts(example)` gives the (text_a, text_b or None) the encoder reads for
classification tasks, from a prepared example (TFDS data source row or in-memory dict).
CLUEWSC2020 marks its spans in the text as CLUE's baseline does (`_span1_`, `[span2]`);
CSL reads `；`-joined keywords as text_a and the abstract as text_b.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

TNEWS_LABELS = ("100", "101", "102", "103", "104", "106", "107", "108", "109", "110", "112",
                "113", "114", "115", "116")
TNEWS_DESCRIPTIONS = ("news_story", "news_culture", "news_entertainment", "news_sports",
                      "news_finance", "news_house", "news_car", "news_edu", "news_tech",
                      "news_military", "news_travel", "news_world", "news_stock",
                      "news_agriculture", "news_game")
IFLYTEK_LABELS = tuple(str(i) for i in range(119))
NLI_LABELS = ("neutral", "entailment", "contradiction")
CLUENER_TYPES = ("address", "book", "company", "game", "government", "movie", "name",
                 "organization", "position", "scene")


def as_text(value: Any) -> str:
    """TFDS data sources hand back Text features as bytes."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    if hasattr(value, "tolist"):
        return as_text(value.tolist())
    raise TypeError(f"expected text, got {type(value).__name__}")


def _field_texts(*fields: str) -> Callable[[Mapping], tuple[str, str | None]]:
    def texts(ex: Mapping) -> tuple[str, str | None]:
        a = as_text(ex[fields[0]])
        b = as_text(ex[fields[1]]) if len(fields) > 1 else None
        return a, (b if b else None) if len(fields) > 1 else None

    return texts


def _csl_texts(ex: Mapping) -> tuple[str, str | None]:
    keywords = [as_text(k) for k in ex["keyword"]]
    return "；".join(keywords), as_text(ex["abst"])


def wsc_marked_text(text: str, i1: int, t1: str, i2: int, t2: str) -> str:
    """Text with span1 wrapped in `_` and span2 in `[ ]` (CLUE baseline convention)."""
    marks = sorted([(i1, len(t1), "_", "_"), (i2, len(t2), "[", "]")], reverse=True)
    for start, length, left, right in marks:
        text = text[:start] + left + text[start:start + length] + right + text[start + length:]
    return text


def _wsc_texts(ex: Mapping) -> tuple[str, str | None]:
    return wsc_marked_text(as_text(ex["text"]), int(ex["span1_index"]), as_text(ex["span1_text"]),
                           int(ex["span2_index"]), as_text(ex["span2_text"])), None


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One task. kind: classification | multiple_choice | span | ner."""

    name: str
    kind: str
    label_names: tuple[str, ...] = ()
    text_fields: tuple[str, ...] = ()
    label_field: str = "label"
    label_descriptions: tuple[str, ...] = ()
    files: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    text_fn: Callable[[Mapping], tuple[str, str | None]] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def texts(self, example: Mapping) -> tuple[str, str | None]:
        if self.text_fn is not None:
            return self.text_fn(example)
        return _field_texts(*self.text_fields)(example)


_JSONL = {"train": ("train.json",), "dev": ("dev.json",), "test": ("test.json",)}
_C3 = {"train": ("d-train.json", "m-train.json"), "dev": ("d-dev.json", "m-dev.json"),
       "test": ("d-test.json", "m-test.json")}


def _cls(name: str, labels: tuple[str, ...], fields: tuple[str, ...], **kw: Any) -> TaskSpec:
    return TaskSpec(name, "classification", labels, fields, files=_JSONL, **kw)


CLUE_TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        _cls("afqmc", ("0", "1"), ("sentence1", "sentence2")),
        _cls("tnews", TNEWS_LABELS, ("sentence",), label_descriptions=TNEWS_DESCRIPTIONS),
        _cls("iflytek", IFLYTEK_LABELS, ("sentence",)),
        _cls("cmnli", NLI_LABELS, ("sentence1", "sentence2")),
        _cls("ocnli", NLI_LABELS, ("sentence1", "sentence2")),
        _cls("cluewsc2020", ("true", "false"), ("text",), text_fn=_wsc_texts),
        _cls("csl", ("0", "1"), ("keyword", "abst"), text_fn=_csl_texts),
        TaskSpec("chid", "multiple_choice", tuple(str(i) for i in range(7)),
                 ("content", "candidates"), files=_JSONL),
        TaskSpec("c3", "multiple_choice", (), ("context", "question", "choice"), files=_C3),
        TaskSpec("cmrc2018", "span", (), ("context", "question"), label_field="answers",
                 files=_JSONL),
        TaskSpec("cluener", "ner", CLUENER_TYPES, ("text",), label_field="entities",
                 files=_JSONL),
    ]
}

SENTIMENT = TaskSpec("sentiment", "classification", ("negative", "positive"), ("sentence",))


def get_task(name: str) -> TaskSpec:
    """The spec of a CLUE task or of the built-in `sentiment` task."""
    if name == "sentiment":
        return SENTIMENT
    if name not in CLUE_TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(CLUE_TASKS)}, sentiment, jsonl")
    return CLUE_TASKS[name]


# Tasks the fine-tuning trainer runs: every CLUE task (classification: [CLS] → Dense; span and
# ner: GlobalPointer; multiple_choice: one [CLS] score per choice), sentiment and jsonl.
FINETUNE_TASKS = ("sentiment", "jsonl", *CLUE_TASKS)


def check_task(task: str) -> None:
    """ValueError naming the supported tasks when `task` cannot be fine-tuned here."""
    if task not in FINETUNE_TASKS:
        raise ValueError(f"config.task={task!r} unknown; choose one of {FINETUNE_TASKS}")
