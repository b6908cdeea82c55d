"""Collect the test predictions of fine-tuned workdirs into the zip CLUE's leaderboard takes:

    python -m experiments.submit WORKDIR [WORKDIR ...] [--output clue_submission.zip] \
        [--data_dir D] [--require afqmc,tnews,...]

Each WORKDIR is a fine-tuning run (train_config.json) whose test predictions
`python -m experiments.predict --workdir WORKDIR --split test` wrote as WORKDIR/<CLUE 1.1 name>
(tnews11_predict.json, c311_predict.json, ...: gau_jax/tasks/submission.py); a multi-task run
gives each of its tasks whose file is there. Every file is read back and checked against the
task's test split (--data_dir, else the run's data_dir; gau_jax/data/clue_parsers.py): the
command refuses, naming the task, a file with another number of rows than the split or with
missing, duplicate or unknown ids or invalid labels, two workdirs of one task, and a task of
--require (default: CLUE 1.1's nine leaderboard tasks, gau_jax/data/tasks.py CLUE11_TASKS)
without a file. The zip holds the files under their CLUE names at its top level, as CLUE's
submission example (CLUEbenchmark/CLUE README.md, clue_submit_examples.zip) and the PaddleNLP
baseline's instructions (baselines/paddlenlp/README.md "参加 CLUE 竞赛": zip the result files)
describe it.
"""

from __future__ import annotations

import io
import os
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from absl import flags

from experiments.predict import run_main, train_config
from gau_jax.atomic import write_text_atomic
from gau_jax.data.tasks import CLUE11_TASKS
from gau_jax.tasks import submission


def run_tasks(cfg: dict) -> list[str]:
    """The tasks of a run: its one `task`, or each of a multi-task run's `tasks`."""
    if cfg.get("tasks"):
        return [t.split("@")[0] for t in cfg["tasks"].split("+")]
    return [cfg["task"]]


def collect(workdirs: Sequence[str | os.PathLike], data_dir: str | None = None
            ) -> dict[str, Path]:
    """{task: its checked prediction file} of the workdirs (module docstring)."""
    found: dict[str, Path] = {}
    for wd in workdirs:
        cfg = train_config(wd)
        tasks, files = run_tasks(cfg), {}
        for task in tasks:
            path = Path(wd) / submission.submission_name(task)
            if path.is_file():
                files[task] = path
        if not files:
            names = ", ".join(submission.submission_name(t) for t in tasks)
            raise ValueError(f"{wd}: no test predictions ({names}); write them with python -m "
                             f"experiments.predict --workdir {wd} --split test")
        for task, path in files.items():
            if task in found:
                raise ValueError(f"task {task}: predictions in two workdirs, {found[task]} and "
                                 f"{path}")
            check_file(task, path, data_dir or cfg.get("data_dir") or None,
                       cfg.get("bad_rows", "raise"))
            found[task] = path
    return found


def check_file(task: str, path: Path, data_dir: str | None, bad_rows: str = "raise") -> None:
    """ValueError naming the task when `path` does not predict each row of its test split once
    with a valid label."""
    if data_dir is None:
        raise ValueError(f"task {task}: no data_dir to count the test rows of {path}; give "
                         "--data_dir (the CLUE folder)")
    rows = submission.split_examples(task, data_dir, "test", bad_rows=bad_rows)
    preds = submission.read_submission(task, path)
    if len(preds) != len(rows):
        raise ValueError(f"task {task}: {path} has {len(preds)} predictions, the test split "
                         f"of {data_dir} has {len(rows)} rows")
    submission.check_predictions(task, preds, rows, path)


def write_zip(files: dict[str, Path], output: str | os.PathLike,
              require: Sequence[str] = CLUE11_TASKS) -> Path:
    """The zip of `files` (each under its CLUE name); ValueError naming the tasks of `require`
    without a file."""
    missing = [t for t in require if t not in files]
    if missing:
        raise ValueError(f"no test predictions for task(s) {', '.join(missing)} "
                         f"({', '.join(submission.submission_name(t) for t in missing)}); "
                         "give their workdirs, or name fewer tasks with --require")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for task in sorted(files):
            z.write(files[task], submission.submission_name(task))
    out = Path(output)
    write_text_atomic(out, buf.getvalue())
    return out


def run_submit(workdirs: Sequence[str | os.PathLike], output: str | os.PathLike,
               data_dir: str | None = None, require: Sequence[str] = CLUE11_TASKS) -> Path:
    """Collects, checks and zips (module docstring); returns the zip's path."""
    for task in require:
        submission.submission_name(task)  # KeyError for an unknown task
    return write_zip(collect(workdirs, data_dir), output, require)


def main() -> None:
    """The command line (module docstring)."""
    output = flags.DEFINE_string("output", "clue_submission.zip", "the zip to write")
    data_dir = flags.DEFINE_string("data_dir", None,
                                   "CLUE folder with the test files (default: each run's)")
    require = flags.DEFINE_list("require", list(CLUE11_TASKS),
                                "tasks the zip must hold (default: CLUE 1.1's nine)")
    workdirs: list[str] = []

    def body() -> None:
        print(run_submit(workdirs, output.value, data_dir.value, require.value))

    # absl takes the flags; the positional arguments are the workdirs
    argv = flags.FLAGS(sys.argv, known_only=False)
    workdirs.extend(argv[1:])
    if not workdirs:
        print("usage: python -m experiments.submit WORKDIR [WORKDIR ...] [--output Z]",
              file=sys.stderr)
        sys.exit(2)
    sys.argv = argv[:1]
    run_main(body)


if __name__ == "__main__":
    main()
