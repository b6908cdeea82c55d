"""`TaskKind`: what one kind of task needs, from parsed rows to a scored submission file.

A task (gau_jax/data/tasks.py `TaskSpec`: files, fields, labels, parser, recipe) names its kind;
the kind owns everything that depends on it:

    features(spec, rows, tok, opts)            feature rows (None: batches read the rows)
    batches(spec, rows, tok, features, opts, train=, batch_size=, seed=, shard=)
                                               grain batches (docs/batches.md)
    head(spec, num_classes, opts)              the HeadSpec (gau_jax/models/heads.py)
    sums_fn(model)                             loss sums (gau_jax/tasks/losses.py)
    decode(spec, rows, outputs, features, label_names, opts, complete)
                                               (batch, logits) pairs → Decoded prediction objects
    label(spec, row) / gold(spec, rows)        the gold as the data writes it
    score(spec, predictions, gold)             CLUE's metrics (gau_jax/data/clue_metrics.py);
                                               `metric` names the one runs are ranked by
    baseline(spec, rows)                       the metric of a baseline: a constant prediction
                                               (majority label, empty answer, no entities) or
                                               chance (1 / #choices)
    write / read / check                       the submission file (CLUE's `<task>_predict.json`)
    row_texts(spec, row)                       the strings of a row (for a character vocabulary)
    lst_cache                                  whether LST may cache the trunk's features

Prediction objects: a list of {"id", "label"} (ids: `example_id`), or {id: answer} for kinds whose
file is one JSON object (`one_object`). The registry maps a kind's name to its one instance:
`register(kind)`, `get_kind(name)`, `kind_of(spec)`. `TaskOptions` are the lengths and head
options a run config may set, with their defaults (the one source: configs/finetune.py reads
them from here).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gau_jax.atomic import write_text_atomic
from gau_jax.data.pipeline import DATA_THREADS, feature_dataset
from gau_jax.data.readers import DataError, iter_jsonl
from gau_jax.data.task_features import example_id as _row_id
from gau_jax.data.tasks import TaskSpec
from gau_jax.models.heads import GP_EFFICIENT, GP_HEAD_SIZE, HEAD_DROPOUT, HeadSpec

Predictions = list[dict[str, Any]] | dict[str, Any]
SPAN_LOSSES = ("multilabel", "softmax_cells")


class SubmissionError(ValueError):
    """A prediction file (or object) that does not fit its split; names file and id."""


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """Lengths and head options of a run (config fields of the same names)."""

    max_length: int = 128            # tokens per sequence incl. [CLS] / [SEP]
    pad_multiple: int = 32           # batches padded to a multiple of this
    data_threads: int = DATA_THREADS  # grain threads building batches
    stride: int = 128                # span: a window starts every `stride` context tokens
    max_question_length: int = 64    # span: question tokens kept (the rest is counted)
    max_answer_length: int = 64      # span: longest decoded answer, in tokens
    truncate: str = "keep_head"      # multiple choice: long contexts keep_head | keep_tail
    classifier_dropout: float = HEAD_DROPOUT  # dropout on [CLS] before the Dense
    gp_head_size: int = GP_HEAD_SIZE  # GlobalPointer q / k width per type
    gp_efficient: bool = GP_EFFICIENT  # Efficient GlobalPointer (shared q/k, per-type biases)
    gp_bias: bool = True             # GlobalPointer projections with biases (Su's: without)
    span_loss: str = "multilabel"    # span: multilabel (GlobalPointer's) | softmax_cells (Su's
    #                                  CMRC2018: softmax over a window's context cells)

    def __post_init__(self):
        if self.span_loss not in SPAN_LOSSES:
            raise ValueError(f"config.span_loss={self.span_loss!r}: choose one of {SPAN_LOSSES}")

    @classmethod
    def of(cls, config: Any) -> TaskOptions:
        """The options of a run config (a ConfigDict or mapping); absent fields: defaults."""
        get = config.get if hasattr(config, "get") else lambda k, d: getattr(config, k, d)
        return cls(**{f.name: type(f.default)(get(f.name, f.default))
                      for f in dataclasses.fields(cls)})


@dataclasses.dataclass
class Decoded:
    """Prediction objects of one ordered pass, the raw output per row (classification /
    multiple choice: the logits row; entities: the (type, i, j, score) spans; span: None) and
    the indices of the rows predicted."""

    objects: Predictions
    raw: list
    seen: set[int]


def example_id(row: Mapping) -> Any:
    """The id a prediction of `row` carries: its `id` / `idx`, else None (built-in tasks)."""
    return _row_id(row) if "id" in row or "idx" in row else None


class TaskKind:
    """The base of every kind (module docstring); subclasses fill in the abstract parts."""

    name: str = ""
    metric: str = "accuracy"         # the dev metric keep_best compares by default
    metrics: tuple[str, ...] = ("accuracy",)  # every score `score` reports (config.best_metric)
    lst_cache: bool = False          # LST may train on cached trunk features
    decodes_dev: bool = False        # dev metric needs decoding on the host (RunSetup.dev_eval)
    one_object: bool = False         # submission: one JSON object {id: label}, not JSON Lines

    # ---------------------------------------------------------------- model side
    def head(self, spec: TaskSpec, num_classes: int, opts: TaskOptions) -> HeadSpec:
        raise NotImplementedError

    def sums_fn(self, model: Any, opts: TaskOptions | None = None):
        """The loss sums of `model`'s outputs (opts: the run's, for kinds with a loss choice)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- data side
    def features(self, spec: TaskSpec, rows: Sequence[Mapping], tok: Any,
                 opts: TaskOptions) -> Any:
        return None

    collator: type | None = None     # feature-row kinds: their batch collator class

    def batches(self, spec: TaskSpec, rows: Any, tok: Any, features: Any, opts: TaskOptions, *,
                train: bool, batch_size: int, seed: int = 0,
                shard: tuple[int, int] | None = None) -> Iterable[dict[str, Any]]:
        """Batches of the feature rows through `collator` (kinds that read their rows directly
        override this)."""
        shard = shard or (None, None)
        return feature_dataset(features.rows, self.collator(features, batch_size,
                                                            opts.pad_multiple),
                               batch_size=batch_size, train=train, seed=seed,
                               shard_index=shard[0], shard_count=shard[1],
                               num_threads=opts.data_threads)

    def row_texts(self, spec: TaskSpec, row: Mapping) -> list[str]:
        raise NotImplementedError

    # ---------------------------------------------------------------- predictions
    def decode(self, spec: TaskSpec, rows: Sequence[Mapping], outputs: Iterable[tuple],
               features: Any, label_names: Sequence[str], opts: TaskOptions,
               complete: bool = True) -> Decoded:
        raise NotImplementedError

    def label(self, spec: TaskSpec, row: Mapping) -> Any:
        """The gold label of a parsed row as the data writes it (None when unlabelled)."""
        raise NotImplementedError

    def gold(self, spec: TaskSpec, rows: Iterable[Mapping]) -> Predictions:
        return [{"id": example_id(r), "label": self.label(spec, r)} for r in rows]

    def score(self, spec: TaskSpec, predictions: Predictions, gold: Predictions
              ) -> dict[str, Any]:
        raise NotImplementedError

    def constant(self, spec: TaskSpec, rows: Sequence[Mapping]) -> Predictions:
        """The baseline's prediction of every row (one constant answer)."""
        raise NotImplementedError

    def baseline(self, spec: TaskSpec, rows: Sequence[Mapping]) -> float:
        """The main metric of the baseline on `rows` (labelled), in percent."""
        result = self.score(spec, self.constant(spec, rows), self.gold(spec, rows))
        return float(result[self.metric])

    def label_problem(self, spec: TaskSpec, label: Any, row: Mapping) -> str | None:
        """Why `label` is not a valid prediction for `row` (None when it is)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- files
    def write(self, predictions: Predictions, path: pathlib.Path) -> pathlib.Path:
        """The submission file, whole or not at all."""
        if self.one_object:
            if not isinstance(predictions, Mapping):
                raise SubmissionError(f"{path}: predictions must be one object {{id: label}}")
            text = json.dumps({str(k): v for k, v in predictions.items()}, ensure_ascii=False,
                              indent=2) + "\n"
        else:
            text = "".join(json.dumps({"id": p["id"], "label": p["label"]}, ensure_ascii=False)
                           + "\n" for p in predictions)
        return write_text_atomic(path, text)

    def read(self, path: pathlib.Path) -> Predictions:
        """A submission file back as prediction objects; malformed lines name file and line."""
        if not path.is_file():
            raise SubmissionError(f"{path}: no such prediction file")
        if self.one_object:
            try:
                obj = json.loads(path.read_text(encoding="utf-8"),
                                 object_pairs_hook=_unique_keys(path))
            except json.JSONDecodeError as e:
                raise SubmissionError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise SubmissionError(f"{path}: expected one JSON object {{id: label}}")
            return obj
        out = []
        try:
            for line, row in iter_jsonl(path):
                if not isinstance(row, dict) or set(row) != {"id", "label"}:
                    raise SubmissionError(f"{path}:{line}: expected {{\"id\": .., \"label\": ..}},"
                                          f" got {json.dumps(row, ensure_ascii=False)[:80]}")
                out.append(row)
        except DataError as e:
            raise SubmissionError(str(e)) from None
        return out

    def check(self, spec: TaskSpec, predictions: Predictions, rows: Sequence[Mapping],
              path: str | os.PathLike = "<predictions>") -> None:
        """SubmissionError naming `path` and the id when predictions and the split's rows do not
        match one to one, or a label is invalid."""
        by_id = {example_id(r): r for r in rows}
        if self.one_object:
            if not isinstance(predictions, Mapping):
                raise SubmissionError(f"{path}: expected one object {{id: label}}")
            pairs = [(str(k), v) for k, v in predictions.items()]
        else:
            pairs = [(p.get("id"), p.get("label")) if isinstance(p, Mapping) else (None, None)
                     for p in predictions]
        seen: set = set()
        for i, _ in pairs:
            if i in seen:
                raise SubmissionError(f"{path}: duplicate id {i!r}")
            if i not in by_id:
                raise SubmissionError(f"{path}: id {i!r} is not in the split ({len(by_id)} rows;"
                                      f" ids such as {next(iter(by_id), None)!r})")
            seen.add(i)
        missing = [i for i in by_id if i not in seen]
        if missing:
            raise SubmissionError(f"{path}: {len(missing)} id(s) without a prediction, first "
                                  f"{missing[0]!r}")
        for i, label in pairs:
            why = self.label_problem(spec, label, by_id[i])
            if why:
                raise SubmissionError(f"{path}: id {i!r}: {why}")


def _unique_keys(path: pathlib.Path):
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        seen = collections.Counter(k for k, _ in pairs)
        dup = [k for k, n in seen.items() if n > 1]
        if dup:
            raise SubmissionError(f"{path}: duplicate id {dup[0]!r} in the prediction object")
        return dict(pairs)

    return hook


def by_id(predictions: Sequence[Mapping], gold: Sequence[Mapping]) -> list[tuple[Any, Any]]:
    """(predicted label or None, gold label) per gold row, matched by id."""
    labels = {p["id"]: p["label"] for p in predictions}
    return [(labels.get(g["id"]), g["label"]) for g in gold]


_REGISTRY: dict[str, TaskKind] = {}


def register(kind: TaskKind) -> TaskKind:
    """Make `kind.name` a value of TaskSpec.kind (a later registration replaces it)."""
    _REGISTRY[kind.name] = kind
    return kind


def available() -> list[str]:
    return sorted(_REGISTRY)


def get_kind(name: str) -> TaskKind:
    if name not in _REGISTRY:
        raise ValueError(f"task kind {name!r} unknown; registered: {available()}")
    return _REGISTRY[name]


def best_metric(spec: TaskSpec, chosen: str = "") -> str:
    """The dev metric keep_best compares: `chosen` (config.best_metric) when the task's kind
    reports it, else the kind's own; ValueError naming the field for one it does not report."""
    kind = kind_of(spec)
    if not chosen:
        return kind.metric
    if chosen not in kind.metrics:
        raise ValueError(f"config.best_metric={chosen!r}: task {spec.name!r} ({spec.kind}) "
                         f"reports {kind.metrics}")
    return chosen


def kind_of(spec: TaskSpec) -> TaskKind:
    """The TaskKind of a task."""
    return get_kind(spec.kind)
