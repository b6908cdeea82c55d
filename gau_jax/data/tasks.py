"""Task registry: for every task its kind, label names, text fields, file layout and recipe.

`TaskSpec.texts(example)` gives the (text_a, text_b or None) the encoder reads for
classification tasks, from a prepared example (TFDS data source row or in-memory dict).
CLUEWSC2020 marks its spans in the text as CLUE's baseline does (`_span1_`, `[span2]`);
CSL reads `；`-joined keywords as text_a and the abstract as text_b.

ChID comes in two variants that share a folder name, `chid/`, and differ in everything else:
CLUE's (CLUEbenchmark/CLUE README.md: rows of passages with numbered `#idiomNNNNNN#` blanks
sharing 10 candidates, answers in `train_answer.json` / `dev_answer.json`, submitted to CLUE 1.1
as one object in `chid11_predict.json`) is task `chid`, the one CLUE's leaderboard and Su's
src/chid.py (the GAU-α table) score; FewCLUE's (CLUEbenchmark/FewCLUE datasets/chid/: one
`#idiom#` blank, 7 candidates, the answer in the row) is task `chid_fewclue`. A spec is fixed by
its name (a trained run's workdir records only the name), so the variant is not switched
silently by the files: a folder of the other variant is refused with an error naming the task
to use (gau_jax/data/chid_parser.py).
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
class Recipe:
    """Su's CLUE fine-tuning recipe of a task (bojone/CLUE-bert4keras, src/<task>.py)."""

    max_length: int
    batch_size: int             # rows per update (Su's batch x accumulation steps)
    epochs: int
    grad_accum_steps: int = 1
    bad_rows: str = "raise"     # "skip": CMRC2018's answers whose answer_start misses their text
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # other config fields
    #                             of the recipe (task options: gau_jax/tasks TaskOptions)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One task: the facts of its data. `kind` names its task kind (gau_jax/tasks: what is
    built, trained, decoded, scored and written for it): classification | multiple_choice |
    idiom_cloze | span | entities."""

    name: str
    kind: str
    label_names: tuple[str, ...] = ()
    text_fields: tuple[str, ...] = ()
    label_field: str = "label"
    label_descriptions: tuple[str, ...] = ()
    files: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    text_fn: Callable[[Mapping], tuple[str, str | None]] | None = None
    format: str = "jsonl"       # row / file layout (gau_jax/data/clue_parsers.py, clue.py):
    #                             jsonl | tnews | csl | cluewsc2020 | chid (CLUE's) |
    #                             chid_fewclue | c3 | cmrc2018 | cluener
    num_choices: int = 0        # multiple choice: most choices a question has
    choice_layout: str = ""     # multiple choice: "passage_question" (C3) | "idiom_blank" (ChID)
    answer_is_index: bool = False  # multiple choice: the label is the choice's index, not text
    recipe: Recipe | None = None
    no_label: str = ""          # a label value marking a row without a label (NLI's "-"): skipped
    submission_file: str = ""   # CLUE 1.1's name of its predictions; "" = <name>_predict.json
    older_files: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    #                             per split, the files read when `files[split]` are not all there
    #                             (an older release's names: OCNLI's train.json, C3's d-/m-test)
    folder: str = ""            # the task's folder under the CLUE root; "" = its name

    @property
    def dir_name(self) -> str:
        return self.folder or self.name

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def reads_text_pair(self) -> bool:
        """Whether an example is one (text_a, text_b or None) pair: `texts` reads it."""
        return self.kind == "classification"

    def texts(self, example: Mapping) -> tuple[str, str | None]:
        if self.text_fn is not None:
            return self.text_fn(example)
        return _field_texts(*self.text_fields)(example)


# File names as CLUE 1.1's archives (storage.googleapis.com/cluebenchmark/tasks/<task>_public.zip)
# have them, read from CLUE's and Su's scripts: a task whose test set has a 1.0 and a 1.1 version
# ships `test1.0.json` / `test1.1.json` (C3, ChID: bojone/CLUE-bert4keras src/c3.py, src/chid.py;
# CLUEbenchmark/CLUE baselines/models_pytorch/mrc_pytorch/run_mrc_c3.sh, run_mrc_chid.sh), except
# TNEWS and CLUEWSC2020, whose 1.1 test is `test.json` beside `test1.0.json` (src/tnews.py,
# src/wsc.py); OCNLI's release names its training sets `train.50k.json`, `train.3k.json`, ...
# (CLUEbenchmark/OCNLI data/ocnli/; Su trains on train.50k.json: src/ocnli.py).
_JSONL = {"train": ("train.json",), "dev": ("dev.json",), "test": ("test.json",)}
_TEST11 = {**_JSONL, "test": ("test1.1.json",)}
_C3 = {"train": ("d-train.json", "m-train.json"), "dev": ("d-dev.json", "m-dev.json"),
       "test": ("test1.1.json",)}
_OCNLI = {**_JSONL, "train": ("train.50k.json",)}
# CLUE's ChID: the answers beside the passages (CLUEbenchmark/CLUE baselines/models_pytorch/
# mrc_pytorch/run_mrc_chid.sh; bojone/CLUE-bert4keras src/chid.py)
_CHID = {"train": ("train.json", "train_answer.json"), "dev": ("dev.json", "dev_answer.json"),
         "test": ("test1.1.json",)}
_SENTENCE = Recipe(128, 32, 10)  # Su's recipe of the sentence(-pair) classification tasks
# Su's GlobalPointer in src/cluener.py and src/cmrc2018.py: the standard one (not Efficient),
# projections without biases; CMRC2018 also trains a softmax over a window's context cells
# and decodes the best cell with no length cap (a window holds at most 512 tokens).
_SU_GP = {"gp_efficient": False, "gp_bias": False}
_SU_CMRC = {**_SU_GP, "span_loss": "softmax_cells", "max_answer_length": 512}


def _cls(name: str, labels: tuple[str, ...], fields: tuple[str, ...], **kw: Any) -> TaskSpec:
    return TaskSpec(name, "classification", labels, fields, files=kw.pop("files", _JSONL),
                    recipe=kw.pop("recipe", _SENTENCE), **kw)


CLUE_TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        _cls("afqmc", ("0", "1"), ("sentence1", "sentence2")),
        _cls("tnews", TNEWS_LABELS, ("sentence",), label_descriptions=TNEWS_DESCRIPTIONS,
             format="tnews", submission_file="tnews11_predict.json"),
        _cls("iflytek", IFLYTEK_LABELS, ("sentence",)),
        _cls("cmnli", NLI_LABELS, ("sentence1", "sentence2"), no_label="-"),
        _cls("ocnli", NLI_LABELS, ("sentence1", "sentence2"), no_label="-",
             submission_file="ocnli_50k_predict.json", files=_OCNLI,
             older_files={"train": ("train.json",)}),
        _cls("cluewsc2020", ("true", "false"), ("text",), text_fn=_wsc_texts,
             format="cluewsc2020", recipe=Recipe(128, 32, 30),
             submission_file="cluewsc11_predict.json"),
        _cls("csl", ("0", "1"), ("keyword", "abst"), text_fn=_csl_texts, format="csl"),
        # CLUE's ChID (CLUEbenchmark/CLUE README.md, chid_public.zip): a row holds passages with
        # numbered #idiomNNNNNN# blanks sharing 10 candidates, the answers in <split>_answer.json;
        # Su's src/chid.py: maxlen 64, 12 blanks x 10 candidates a batch x 2 accumulation steps.
        TaskSpec("chid", "idiom_cloze", (), ("content", "candidates"), files=_CHID,
                 older_files={"test": ("test.json",)}, format="chid", num_choices=10,
                 answer_is_index=True, recipe=Recipe(64, 24, 5, 2),
                 submission_file="chid11_predict.json"),
        # FewCLUE's ChID (CLUEbenchmark/FewCLUE datasets/chid/): one #idiom# blank, 7 candidates,
        # the int answer in the row; read from the same `chid` folder.
        TaskSpec("chid_fewclue", "multiple_choice", tuple(str(i) for i in range(7)),
                 ("content", "candidates"), files=_TEST11, older_files={"test": ("test.json",)},
                 format="chid_fewclue", num_choices=7, choice_layout="idiom_blank",
                 answer_is_index=True, recipe=Recipe(64, 24, 5, 2), folder="chid"),
        # Su's src/c3.py: batch 4 questions x 4 accumulation steps (optimizer4) = 16 an update
        TaskSpec("c3", "multiple_choice", (), ("context", "question", "choice"), files=_C3,
                 older_files={"test": ("d-test.json", "m-test.json")}, format="c3",
                 num_choices=4, choice_layout="passage_question", answer_is_index=True,
                 recipe=Recipe(512, 16, 10, 4), submission_file="c311_predict.json"),
        TaskSpec("cmrc2018", "span", (), ("context", "question"), label_field="answers",
                 files=_JSONL, format="cmrc2018", recipe=Recipe(512, 32, 10, 2, "skip", _SU_CMRC)),
        TaskSpec("cluener", "entities", CLUENER_TYPES, ("text",), label_field="entities",
                 files=_JSONL, format="cluener", recipe=Recipe(256, 32, 10, options=_SU_GP)),
    ]
}

# The nine tasks of CLUE 1.1's leaderboard (OCNLI in CMNLI's place: CLUEbenchmark/CLUE README.md;
# CLUENER is ranked on its own board): the files experiments/submit.py requires by default.
CLUE11_TASKS = ("afqmc", "tnews", "iflytek", "ocnli", "cluewsc2020", "csl", "cmrc2018", "chid",
                "c3")

SENTIMENT = TaskSpec("sentiment", "classification", ("negative", "positive"), ("sentence",))


def jsonl_task(label_names: tuple[str, ...], pair: bool = True, name: str = "jsonl") -> TaskSpec:
    """A user's JSON Lines classification task (gau_jax/data/readers.py read_jsonl_task)."""
    return TaskSpec(name, "classification", tuple(label_names),
                    ("sentence", "sentence2") if pair else ("sentence",))


def run_task(name: str, label_names: tuple[str, ...] = ()) -> TaskSpec:
    """The spec of a trained run's task: a user's JSON Lines task from the run's label names
    (DIR/labels.json), else `get_task`."""
    if name == "jsonl":
        return jsonl_task(label_names)
    return get_task(name)


def get_task(name: str) -> TaskSpec:
    """The spec of a CLUE task or of the built-in `sentiment` task."""
    if name == "sentiment":
        return SENTIMENT
    if name not in CLUE_TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(CLUE_TASKS)}, sentiment, jsonl")
    return CLUE_TASKS[name]


# Tasks the fine-tuning trainer runs: every CLUE task, sentiment and jsonl (a user's JSON Lines).
FINETUNE_TASKS = ("sentiment", "jsonl", *CLUE_TASKS)


def check_task(task: str) -> None:
    """ValueError naming the supported tasks when `task` cannot be fine-tuned here."""
    if task not in FINETUNE_TASKS:
        raise ValueError(f"config.task={task!r} unknown; choose one of {FINETUNE_TASKS}")
