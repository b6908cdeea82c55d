"""Direct fine-tuning vs RoFormerV2's multi-task stage then fine-tuning, on one small trunk, at
the same optimisation steps per task (configs/multitask_results.py says the protocol):

    python -m experiments.multitask --config configs/multitask_results.py:full \
        --workdir runs/multitask_results --config.data_dir=../shared/data/clue

Every run has its own workdir under WORKDIR/runs/ named by its settings; a finished run is a
line of WORKDIR/runs.jsonl, so a rerun skips it (the experiment can run in pieces). Results:
results_dir (default: WORKDIR)/multitask.md, with the baselines (gau_jax/tasks: majority label,
chance, no entities) on the same dev rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_collections

from configs import finetune, multitask
from experiments import cli, lst_clue
from experiments.evaluate import evaluate
from gau_jax.data.tasks import get_task
from gau_jax.tasks import evaluation, submission
from gau_jax.train.loop import Trainer
from gau_jax.train.runlog import RunLog, markdown_table, mean_spread, results_header, run_key

QUIET = {"progress_bar": False, "tensorboard": False, "async_checkpoints": False,
         "keep_best": False}


def _train(config: ml_collections.ConfigDict, workdir: Path) -> dict[str, Any]:
    trainer = Trainer(config, workdir)
    try:
        return trainer.run()
    finally:
        trainer.close()


def _settings(c, steps: int, seed: int, init_from: Path) -> dict[str, Any]:
    return {**c.overrides.to_dict(), "total_steps": steps, "seed": seed,
            "learning_rate": c.learning_rate, "init_from": str(init_from),
            "data_dir": c.data_dir, "eval_every_steps": steps, "checkpoint_every_steps": steps,
            "log_every_steps": steps, **QUIET}


def finetune_run(c, task: str, steps: int, seed: int, init_from: Path, workdir: Path,
                 log: RunLog, arm: str) -> dict:
    """One fine-tuning run (or its line in runs.jsonl) and its dev score."""
    o = _settings(c, steps, seed, init_from)
    name = run_key(f"{arm}_{task}_{steps}steps_seed{seed}", o)
    row = log.get({"run": name})
    if row is None:
        ft = finetune.get_config(f"task={task},model=gau_alpha_tiny,method=full")
        ft.update_from_flattened_dict(o)
        summary = _train(ft, workdir / "runs" / name)
        result = evaluate(workdir / "runs" / name, "dev", "latest", max_rows=c.dev_rows)
        row = log.append({"run": name, "arm": arm, "task": task, "seed": seed,
                          "result": result, "wall_time_s": summary["wall_time_s"]})
    return row


def stage_run(c, seed: int, trunk: Path, workdir: Path, log: RunLog) -> tuple[Path, dict]:
    """The multi-task stage of one seed: its workdir and its record (dev scores per task)."""
    tasks = cli.names(c.tasks)
    steps = len(tasks) * c.steps // 2
    o = {**_settings(c, steps, seed, trunk), "mixture_alpha": 0.0}
    name = run_key(f"stage_{'+'.join(tasks)}_{steps}steps_seed{seed}", o)
    wd = workdir / "runs" / name
    row = log.get({"run": name})
    if row is None:
        mt = multitask.get_config(f"tasks={'+'.join(tasks)},model=gau_alpha_tiny,method=full")
        mt.update_from_flattened_dict(o)
        summary = _train(mt, wd)
        results = {t: evaluate(wd, "dev", "latest", max_rows=c.dev_rows, task=t) for t in tasks}
        row = log.append({"run": name, "arm": "stage", "seed": seed, "results": results,
                          "wall_time_s": summary["wall_time_s"]})
    return wd, row


def run(c: ml_collections.ConfigDict, workdir: str | Path) -> list[dict]:
    """The trunk (unless init_from), both arms for every seed, the report."""
    workdir = Path(workdir)
    if not c.data_dir:
        raise ValueError("config.data_dir is empty: set the CLUE folder, "
                         "--config.data_dir=/path/to/clue")
    trunk_cfg = ml_collections.ConfigDict({"tasks": tuple(cli.names(c.corpus_tasks)),
                                           "data_dir": c.data_dir,
                                           "pretrain_steps": c.pretrain_steps})
    trunk = Path(c.init_from) if c.init_from else lst_clue.pretrain_trunk(trunk_cfg, workdir)
    log = RunLog(workdir / "runs.jsonl", key_fields=("run",))
    rows = []
    for seed in cli.names(c.seeds):
        seed = int(seed)
        for task in cli.names(c.tasks):
            rows.append(finetune_run(c, task, c.steps, seed, trunk, workdir, log, "direct"))
        stage, record = stage_run(c, seed, trunk, workdir, log)
        rows.append(record)
        for task in cli.names(c.tasks):
            rows.append(finetune_run(c, task, c.steps // 2, seed, stage, workdir, log,
                                     "stage+ft"))
    text = report(rows, c, trunk)
    out = cli.results_dir(c, workdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "multitask.md").write_text(text, encoding="utf-8")
    print(text)
    return rows


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    mean, sd = mean_spread(values)
    return f"{mean:.1f} ± {sd:.1f}" if len(values) > 1 else f"{mean:.1f}"


def report(rows: list[dict], c: ml_collections.ConfigDict, trunk: Path) -> str:
    md = results_header("Multi-task stage vs direct fine-tuning (generated by "
                        "experiments/multitask.py)", c.command)
    tasks, seeds = cli.names(c.tasks), cli.names(c.seeds)
    if c.init_from:
        md += [f"Trunk: {c.init_from} (init_from).", ""]
    else:
        summary = json.loads((trunk / "summary.json").read_text())
        md += [f"Trunk: {lst_clue.trunk_shape()}, MLM-pretrained here for {c.pretrain_steps} "
               f"steps (experiments/lst_clue.py TRUNK recipe); dev MLM accuracy "
               f"{100 * summary['dev']['accuracy']:.1f} %.", ""]
    md += [f"Protocol: per task {c.steps} optimisation steps in each arm. Direct: fine-tuned from "
           f"the trunk for {c.steps} steps. Stage + ft: the multi-task stage on "
           f"{'+'.join(tasks)} for {len(tasks) * c.steps // 2} steps with a uniform mixture "
           f"(each task {c.steps // 2} steps in expectation), then fine-tuned from the stage "
           f"for {c.steps // 2} steps. Full fine-tuning, AdaFactor, learning rate "
           f"{c.learning_rate}, overrides {c.overrides.to_dict()}; seeds {', '.join(seeds)} "
           f"(mean ± sd). Scores: percent, `experiments.evaluate` of the final params on the "
           f"first {c.dev_rows or 'all'} dev rows; \"stage only\" is the stage's own head for "
           "the task, before fine-tuning.", ""]
    direct = {t: [r["result"] for r in rows if r.get("arm") == "direct" and r["task"] == t]
              for t in tasks}
    staged = {t: [r["result"] for r in rows if r.get("arm") == "stage+ft" and r["task"] == t]
              for t in tasks}
    stage = {t: [r["results"][t] for r in rows if r.get("arm") == "stage"] for t in tasks}
    table = []
    for t in tasks:
        metric = evaluation.main_metric(get_task(t))
        dev = submission.split_examples(t, c.data_dir, "dev", max_rows=c.dev_rows,
                                        bad_rows=finetune.get_config(f"task={t}").bad_rows)
        score = lambda rs, m=metric: _cell([r[m] for r in rs])
        table.append([t, get_task(t).kind, metric, f"{evaluation.baseline(t, dev):.1f}",
                      score(direct[t]), score(stage[t]), score(staged[t])])
    md.append(markdown_table(["task", "kind", "metric", "baseline", "direct",
                              "stage only", "stage + ft"], table))
    walls = [r["wall_time_s"] for r in rows if "wall_time_s" in r]
    md += ["", f"Wall time of all training loops: {sum(walls) / 60:.1f} min (compiles included, "
           "a 2-core CPU shared with other jobs).", ""]
    md += cli.reading_notes(cli.results_dir(c, "."), "multitask")
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    cli.main(run, "multitask")
