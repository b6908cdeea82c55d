"""TFDS builder for the 11 CLUE tasks from a local folder, stored as ArrayRecord (no TensorFlow).

One builder, `gau_clue`, with one BuilderConfig per task (afqmc, tnews, iflytek, cmnli, ocnli,
cluewsc2020, csl, cmrc2018, c3, chid (CLUE's), chid_fewclue, cluener).
It reads `manual_dir`, which may be the CLUE root
(`<root>/<task>/train.json ...`) or the task folder itself; nothing is downloaded. Rows are parsed
by clue_parsers.py. Prepared splits are read back with `builder.as_data_source()` (grain-ready
random access, no TF).

Each prepared copy has its own folder, keyed by a fingerprint of its source files (resolved path,
size, mtime), the bad_rows mode and the builder version: `<data_dir>/<task>-<fingerprint>/`
(`.1`, `.2`, ... after `force=True`). Two CLUE folders of one task, or a source that changed,
thus never share or overwrite files, and prepare() never deletes a copy: a run in progress may
still read it. Old copies stay until removed by hand (`rm -r <data_dir>/<task>-*` once no run uses
them; `<data_dir>/gau_clue` is the layout of earlier versions).

    builder = prepare("tnews", "/path/to/clue", data_dir="/tmp/tfds")
    sources = load_sources("tnews", "/path/to/clue", data_dir="/tmp/tfds")  # {split: source}
"""

from __future__ import annotations

import collections
import hashlib
import os
import pathlib
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from gau_jax.data.clue_parsers import layout_hint, parse_split, split_files
from gau_jax.data.readers import BAD_ROWS, DataError
from gau_jax.data.tasks import CLUE_TASKS, CLUENER_TYPES, TaskSpec

_F = tfds.features
_TEXT = _F.Text()


def _features(spec: TaskSpec) -> _F.FeaturesDict:
    label = _F.ClassLabel(names=list(spec.label_names)) if spec.label_names else None
    idx = _F.Scalar(dtype=np.int64)
    if spec.format == "tnews":
        d = {"idx": idx, "sentence": _TEXT, "keywords": _TEXT, "label": label}
    elif spec.format == "csl":
        d = {"idx": idx, "abst": _TEXT, "keyword": _F.Sequence(_TEXT), "label": label}
    elif spec.format == "cluewsc2020":
        d = {"idx": idx, "text": _TEXT, "span1_index": _F.Scalar(dtype=np.int32),
             "span1_text": _TEXT, "span2_index": _F.Scalar(dtype=np.int32), "span2_text": _TEXT,
             "label": label}
    elif spec.format == "jsonl":  # sentence(-pair) classification
        d = {"idx": idx, **{f: _TEXT for f in spec.text_fields}, "label": label}
    elif spec.format == "chid_fewclue":
        d = {"idx": idx, "content": _TEXT, "candidates": _F.Sequence(_TEXT), "label": label}
    elif spec.format == "chid":  # CLUE's: a row of passages, its blanks and their answers
        d = {"idx": idx, "content": _F.Sequence(_TEXT), "candidates": _F.Sequence(_TEXT),
             "blanks": _F.Sequence(_TEXT), "labels": _F.Sequence(_F.Scalar(dtype=np.int32))}
    elif spec.format == "c3":
        d = {"id": _TEXT, "context": _F.Sequence(_TEXT), "question": _TEXT,
             "choice": _F.Sequence(_TEXT), "answer": _TEXT, "label": _F.Scalar(dtype=np.int32)}
    elif spec.format == "cmrc2018":
        d = {"id": _TEXT, "context": _TEXT, "question": _TEXT,
             "answers": _F.Sequence({"text": _TEXT, "answer_start": _F.Scalar(dtype=np.int32)})}
    elif spec.format == "cluener":
        d = {"idx": idx, "text": _TEXT, "entities": _F.Sequence({
            "type": _F.ClassLabel(names=list(CLUENER_TYPES)), "start": _F.Scalar(dtype=np.int32),
            "end": _F.Scalar(dtype=np.int32), "text": _TEXT})}
    else:  # pragma: no cover - the registry and this table are kept in step
        raise KeyError(spec.format)
    return _F.FeaturesDict(d)


def find_task_dir(task: str, clue_dir: str | os.PathLike) -> pathlib.Path:
    """`clue_dir/<task's folder>` or `clue_dir` itself when it already is the task folder."""
    spec = CLUE_TASKS[task]
    root = pathlib.Path(clue_dir)
    firsts = [names[0] for names in (spec.files["train"], spec.older_files.get("train")) if names]
    for cand in (root / spec.dir_name, root):
        if any((cand / first).is_file() for first in firsts):
            return cand
    raise DataError(root, f"no CLUE {task!r} data: looked for "
                          f"{root / spec.dir_name / firsts[0]} and "
                          f"{root / firsts[0]}; expected layout {layout_hint(spec)}")


def source_fingerprint(task: str, clue_dir: str | os.PathLike, bad_rows: str = "raise") -> str:
    """16 hex digits of the source files' paths, sizes and mtimes, bad_rows and the version."""
    task_dir = find_task_dir(task, clue_dir)
    h = hashlib.sha256(f"{GauClue.VERSION}:{bad_rows};".encode())
    for split, paths in sorted(split_files(CLUE_TASKS[task], task_dir).items()):
        for p in paths:
            st = p.stat()
            h.update(f"{split}:{p.resolve()}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


class GauClue(tfds.core.GeneratorBasedBuilder):
    """CLUE tasks from a local folder in CLUE's layout (see module docstring)."""

    name = "gau_clue"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.1.0": "CMRC2018 answer texts checked against answer_start."}
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=t, description=f"CLUE {t}")
                       for t in CLUE_TASKS]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Point manual_dir at a CLUE root folder holding <task>/train.json, <task>/dev.json "
        "(C3: d-train.json, m-train.json, d-dev.json, m-dev.json; OCNLI: train.50k.json or "
        "train.json) as CLUE distributes them, or at one task folder."
    )

    @property
    def spec(self) -> TaskSpec:
        return CLUE_TASKS[self.builder_config.name]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=_features(self.spec), metadata=tfds.core.MetadataDict(),
            homepage="https://github.com/CLUEbenchmark/CLUE",
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
        manual = pathlib.Path(self._manual_root or dl_manager.manual_dir)
        task_dir = find_task_dir(self.spec.name, manual)
        self.info.metadata["source_fingerprint"] = source_fingerprint(
            self.spec.name, manual, self._bad_rows)
        self.info.metadata["dropped"], self.info.metadata["skipped"] = {}, {}
        return {split: self._generate_examples(paths, split)
                for split, paths in split_files(self.spec, task_dir).items()}

    _manual_root: str | None = None
    _bad_rows: str = "raise"

    def _generate_examples(self, paths: list[pathlib.Path], split: str):
        stats: collections.Counter = collections.Counter()
        yield from parse_split(self.spec, paths, split, stats, self._bad_rows)
        self.info.metadata["dropped"][split] = int(stats["dropped"])
        self.info.metadata["skipped"][split] = int(stats["skipped"])


def _builder(task: str, data_dir: str | os.PathLike) -> GauClue:
    if task not in CLUE_TASKS:
        raise KeyError(f"unknown CLUE task {task!r}; known: {', '.join(CLUE_TASKS)}")
    return GauClue(config=task, data_dir=str(data_dir), file_format="array_record")


def _copies(base: pathlib.Path) -> list[tuple[int, pathlib.Path]]:
    """(generation, folder) of the prepared copies `base`, `base.1`, ... that exist."""
    found = []
    for p in base.parent.glob(base.name + "*"):
        rest = p.name[len(base.name):]
        if rest == "" or rest.startswith(".") and rest[1:].isdigit() and rest[1:].isascii():
            found.append((int(rest[1:] or 0), p))
    return sorted(found)


def prepared_dir(task: str, clue_dir: str | os.PathLike, data_dir: str | os.PathLike,
                 bad_rows: str = "raise") -> pathlib.Path:
    """`<data_dir>/<task>-<fingerprint>`: where the first prepared copy of this source goes."""
    return pathlib.Path(data_dir) / f"{task}-{source_fingerprint(task, clue_dir, bad_rows)}"


def prepare(task: str, clue_dir: str | os.PathLike, data_dir: str | os.PathLike,
            force: bool = False, bad_rows: str = "raise") -> GauClue:
    """Prepare (or reuse) the ArrayRecord files of `task` from `clue_dir` in their own folder
    under `data_dir` (module docstring); force=True prepares a new copy beside the old ones.
    bad_rows="skip" skips and counts bad rows (`skipped_counts`) instead of raising."""
    if bad_rows not in BAD_ROWS:
        raise ValueError(f"bad_rows must be one of {BAD_ROWS}, got {bad_rows!r}")
    find_task_dir(task, clue_dir)  # clear error before TFDS gets involved
    base = prepared_dir(task, clue_dir, data_dir, bad_rows)
    copies = _copies(base)
    if not force:
        for _, folder in reversed(copies):
            builder = _builder(task, folder)
            if builder.is_prepared():
                return builder
    if not copies:
        target = base
    elif force or _builder(task, copies[-1][1]).is_prepared():
        target = base.with_name(f"{base.name}.{copies[-1][0] + 1}")
    else:
        target = copies[-1][1]  # an unfinished copy: TFDS finishes it in its own temp folder
    builder = _builder(task, target)
    builder._manual_root, builder._bad_rows = str(clue_dir), bad_rows
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(manual_dir=str(clue_dir)),
    )
    return _builder(task, target)


def load_sources(task: str, clue_dir: str | os.PathLike, data_dir: str | os.PathLike,
                 bad_rows: str = "raise") -> dict[str, Any]:
    """{split: random-access source} of a prepared (prepared now if needed) CLUE task."""
    builder = prepare(task, clue_dir, data_dir, bad_rows=bad_rows)
    return {split: builder.as_data_source(split=split) for split in builder.info.splits}


def dropped_counts(builder: GauClue) -> dict[str, int]:
    """Rows dropped per split while preparing (OCNLI/CMNLI `-` labels)."""
    return dict(builder.info.metadata.get("dropped", {}))


def skipped_counts(builder: GauClue) -> dict[str, int]:
    """Bad rows skipped per split while preparing with bad_rows="skip"."""
    return dict(builder.info.metadata.get("skipped", {}))
