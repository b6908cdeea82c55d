"""CLUE submission files by task name, written, read back and checked.

File names are CLUE 1.1's (`TaskSpec.submission_file`, else `<task>_predict.json`): tnews11_,
cluewsc11_, ocnli_50k_, chid11_, c311_predict.json for the tasks whose 1.1 test differs, and
afqmc_, iflytek_, cmnli_, csl_, cmrc2018_, cluener_predict.json (bojone/CLUE-bert4keras
src/<task>.py `test_predict(..., out_file=...)`; CLUEbenchmark/CLUE
baselines/paddlenlp/classification/run_clue_classifier.py, mrc/run_c3.py, mrc/run_chid.py).

The file's shape is the task kind's (gau_jax/tasks/kind.py `TaskKind.write / read / check`):
JSON Lines of {"id", "label"} with the label as the data writes it, or one JSON object
{id: label} (CMRC2018). Ids are the data's own: a row's `id` / `idx` (else its 0-based line
number: gau_jax/data/clue_parsers.py). `check_predictions` rejects a prediction file with a
missing, duplicate or unknown id, or a label outside the task's set, naming the file and the id.
"""

from __future__ import annotations

import collections
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gau_jax.data.readers import DataError
from gau_jax.data.tasks import get_task
from gau_jax.tasks.kind import Predictions, SubmissionError, kind_of
from gau_jax.tasks.kind import example_id as _example_id

__all__ = ["Predictions", "SubmissionError", "check_predictions", "example_id", "gold_objects",
           "label_string", "read_submission", "split_examples", "submission_name",
           "write_submission"]


def submission_name(task: str) -> str:
    """CLUE 1.1's file name for the task: 'afqmc' -> 'afqmc_predict.json', 'tnews' ->
    'tnews11_predict.json' (module docstring)."""
    return get_task(task).submission_file or f"{task}_predict.json"


def example_id(task: str, example: Mapping) -> Any:
    """The id a prediction of `example` (a parsed or TFDS row) carries."""
    get_task(task)
    return _example_id(example)


def label_string(task: str, example: Mapping) -> Any:
    """The gold label of a parsed row as the data writes it (None when unlabelled); CMRC2018:
    the list of answer texts."""
    spec = get_task(task)
    return kind_of(spec).label(spec, example)


def gold_objects(task: str, examples: Iterable[Mapping]) -> Predictions:
    """The gold of parsed rows in prediction-object form (CMRC2018: {qid: [answer texts]})."""
    spec = get_task(task)
    return kind_of(spec).gold(spec, examples)


def write_submission(task: str, predictions: Predictions, path: str | os.PathLike
                     ) -> pathlib.Path:
    """Writes `predictions` as the task's submission file (whole or not at all)."""
    return kind_of(get_task(task)).write(predictions, pathlib.Path(path))


def read_submission(task: str, path: str | os.PathLike) -> Predictions:
    """A submission file back as prediction objects; malformed lines name file and line."""
    return kind_of(get_task(task)).read(pathlib.Path(path))


def check_predictions(task: str, predictions: Predictions, examples: Sequence[Mapping],
                      path: str | os.PathLike = "<predictions>") -> None:
    """SubmissionError naming `path` and the id when predictions and the split's rows
    (`examples`, parsed; labels not needed) do not match one to one, or a label is invalid."""
    spec = get_task(task)
    kind_of(spec).check(spec, predictions, examples, path)


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
