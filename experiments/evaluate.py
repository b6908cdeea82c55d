"""CLUE metrics of a fine-tuned workdir on a split, or of an existing prediction file:

    python -m experiments.evaluate --workdir WORKDIR [--split dev] [--checkpoint best|latest] \
        [--predictions FILE] [--json OUT] [--max_rows N] [--batch_size B] [--data_dir D]

The task, its data folder (--data_dir: another copy of it) and bad_rows come from
WORKDIR/train_config.json. Without
--predictions the workdir's best dev checkpoint (default) or latest one predicts the split
(experiments/predict.py); with it, FILE (a CLUE submission file, `<task>_predict.json`) is read
instead. Either way the predictions are checked against the split (a missing, duplicate or
unknown id, or a label outside the task's set, is an error naming file and id) and scored with
gau_jax/tasks/evaluation.py, the functions training-time evaluation uses. --max_rows N scores
the first N rows only (a prediction file must then cover exactly those). Prints, and with
--json writes, one object:

    {"task", "metric", "accuracy"}                       classification, C3, ChID
    {"task", "metric", "em", "f1", "total", "unanswered"} CMRC2018 (official script v5)
    {"task", "metric", "f1", "precision", "recall",      CLUENER: "f1" exact-span micro F1
     "f1_leaderboard", "f1_types"}                       (Su's); "f1_leaderboard" CLUENER2020
                                                         score.py's text-per-type macro F1

plus "split", "rows" and "checkpoint" or "predictions". Scores are percentages.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from absl import flags

from experiments.predict import load_examples, predict_examples, run_flags, run_main
from gau_jax.atomic import write_text_atomic
from gau_jax.tasks import evaluation, submission


def evaluate(workdir: str | os.PathLike, split: str = "dev", checkpoint: str = "best",
             predictions: str | os.PathLike | None = None, max_rows: int = 0,
             batch_size: int | None = None, data_dir: str | None = None,
             task: str | None = None) -> dict[str, Any]:
    """The task's CLUE metrics (module docstring) as a dict (`task`: one of a multi-task
    run's)."""
    task, rows = load_examples(workdir, split, max_rows=max_rows, data_dir=data_dir, task=task)
    if predictions is not None:
        preds, source = submission.read_submission(task, predictions), str(predictions)
    else:
        preds = predict_examples(workdir, rows, checkpoint, batch_size, task)
        source = f"{workdir}:{checkpoint}"
    result = evaluation.evaluate_predictions(task, preds, rows, source)
    where = {"predictions": str(predictions)} if predictions else {"checkpoint": checkpoint}
    return {**result, "split": split, "rows": len(rows), **where}


def write_json(result: dict[str, Any], path: str | os.PathLike) -> Path:
    return write_text_atomic(path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")


def main() -> None:
    """The command line (module docstring)."""
    f = run_flags("split of the task's data_dir with labels")
    preds = flags.DEFINE_string("predictions", None, "score this submission file instead")
    out = flags.DEFINE_string("json", None, "also write the result to this file")

    def body() -> None:
        result = evaluate(f["workdir"].value, f["split"].value, f["checkpoint"].value,
                          preds.value, f["max_rows"].value, f["batch_size"].value,
                          f["data_dir"].value, f["task"].value)
        if out.value:
            write_json(result, out.value)
        print(json.dumps(result, ensure_ascii=False))

    run_main(body)


if __name__ == "__main__":
    main()
