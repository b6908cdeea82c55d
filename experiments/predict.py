"""Write the CLUE submission file of a fine-tuned workdir for a split or any file in the task's
format:

    python -m experiments.predict --workdir WORKDIR [--split dev|test] [--input FILE] \
        [--output FILE] [--checkpoint best|latest] [--max_rows N] [--batch_size B] [--data_dir D] \
        [--task T]

The task, its data folder (data_dir; --data_dir another copy) and bad_rows come from
WORKDIR/train_config.json; --input reads FILE instead (labels optional: CLUE's test files have
none). The model is the workdir's
best dev checkpoint (default; a run that kept none falls back to its latest, with a warning) or
its latest one, whatever the method (full, LST, LoRA, ...; gau_jax/train/trained_run.py). A
multi-task run (configs/multitask.py) serves each of its tasks: --task names which.
The output (default WORKDIR/<task>_predict.json, CLUE's name; a folder gets that name inside)
is what CLUE's leaderboard reads: one {"id", "label"} object a line with the label as the data
writes it, or {question_id: answer_text} for cmrc2018 (gau_jax/tasks/submission.py). Before it
is written the predictions are checked against the input rows (one per id, valid labels).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from absl import app, flags, logging

from gau_jax.tasks import evaluation, submission
from gau_jax.workdir import stage_of

CHECKPOINTS = ("best", "latest")


def train_config(workdir: str | os.PathLike) -> dict[str, Any]:
    """WORKDIR/train_config.json (the resolved config of the run that wrote the workdir)."""
    path = Path(workdir) / "train_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; --workdir must be a fine-tuning run's folder "
                                "(python -m experiments.train --config configs/finetune.py:...)")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if stage_of(cfg) not in ("finetune", "multitask"):
        raise ValueError(f"{path}: stage={stage_of(cfg)!r}, not a fine-tuning run")
    return cfg


def run_task_name(cfg: dict[str, Any], task: str | None) -> str:
    """The task to serve: the run's own, or `task` (required) of a multi-task run."""
    if cfg.get("tasks"):
        names = [t.split("@")[0] for t in cfg["tasks"].split("+")]
        if task not in names:
            raise ValueError(f"a multi-task run of {names}: pick one with --task, got {task!r}")
        return task
    if task not in (None, cfg["task"]):
        raise ValueError(f"the run trained task {cfg['task']!r}, not --task={task!r}")
    return cfg["task"]


def load_examples(workdir: str | os.PathLike, split: str = "dev", input_file: str | None = None,
                  max_rows: int = 0, data_dir: str | None = None,
                  task: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """(task, parsed rows) of the workdir's task (`task` of a multi-task run): a split of
    data_dir (default: the run's), or `input_file`."""
    cfg = train_config(workdir)
    name = run_task_name(cfg, task)
    rows = submission.split_examples(name, data_dir or cfg.get("data_dir") or None, split,
                                     input_file=input_file, bad_rows=cfg.get("bad_rows", "raise"),
                                     max_rows=max_rows)
    return name, rows


def predict_examples(workdir: str | os.PathLike, examples: Sequence[dict[str, Any]],
                     checkpoint: str = "best", batch_size: int | None = None,
                     task: str | None = None) -> Any:
    """Prediction objects of the workdir's model for parsed rows (submission.py's shapes)."""
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"--checkpoint={checkpoint!r}: choose one of {CHECKPOINTS}")
    from gau_jax.train.trained_run import load_run, predict

    run = load_run(workdir, checkpoint, task)
    return predict(run, examples, batch_size=batch_size).objects


def output_path(task: str, workdir: str | os.PathLike, output: str | None) -> Path:
    """--output, a folder's CLUE-named file, or WORKDIR/<task>_predict.json."""
    if not output:
        return Path(workdir) / submission.submission_name(task)
    out = Path(output)
    return out / submission.submission_name(task) if out.is_dir() else out


def run_predict(workdir: str | os.PathLike, split: str = "dev", input_file: str | None = None,
                output: str | None = None, checkpoint: str = "best", max_rows: int = 0,
                batch_size: int | None = None, data_dir: str | None = None,
                task: str | None = None) -> Path:
    """Predicts, checks and writes the submission file; returns its path."""
    task, rows = load_examples(workdir, split, input_file, max_rows, data_dir, task)
    preds = predict_examples(workdir, rows, checkpoint, batch_size, task)
    return evaluation.write_predictions(task, preds, rows, output_path(task, workdir, output))


def run_flags(split_help: str) -> dict[str, Any]:
    """The flags of both commands (this one and experiments/evaluate.py), by name."""
    defined = {
        "workdir": flags.DEFINE_string("workdir", None,
                                       "fine-tuning run folder (train_config.json)"),
        "split": flags.DEFINE_string("split", "dev", split_help),
        "checkpoint": flags.DEFINE_enum("checkpoint", "best", CHECKPOINTS,
                                        "best dev or latest params"),
        "max_rows": flags.DEFINE_integer("max_rows", 0, "only the first N rows (0 = all)"),
        "batch_size": flags.DEFINE_integer("batch_size", None,
                                           "prediction batch (default: the run's)"),
        "data_dir": flags.DEFINE_string("data_dir", None,
                                        "CLUE folder (default: the run's data_dir)"),
        "task": flags.DEFINE_string("task", None, "which task of a multi-task run"),
    }
    flags.mark_flags_as_required(["workdir"])
    return defined


def run_main(body: Callable[[], None]) -> None:
    """absl's app.run of `body`: no positional arguments; logging at WARNING (Orbax's and JAX's
    INFO lines are internals, not results; warnings still show); an OSError or ValueError (bad
    input) is printed as one line, `Type: message`, and the command exits 2."""

    def _main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        logging.set_verbosity(logging.WARNING)
        try:
            body()
        except (OSError, ValueError) as e:
            print(f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)
            sys.exit(2)

    app.run(_main)


def main() -> None:
    """The command line (module docstring)."""
    f = run_flags("split of the task's data_dir: dev | test | train")
    input_file = flags.DEFINE_string("input", None, "a file in the task's format, not a split")
    output = flags.DEFINE_string("output", None, "submission file or folder "
                                 "(default WORKDIR/<task>_predict.json)")

    def body() -> None:
        print(run_predict(f["workdir"].value, f["split"].value, input_file.value, output.value,
                          f["checkpoint"].value, f["max_rows"].value, f["batch_size"].value,
                          f["data_dir"].value, f["task"].value))

    run_main(body)


if __name__ == "__main__":
    main()
