"""All eleven CLUE tasks: full fine-tuning and LST of one small pretrained trunk, scored as CLUE
scores them (accuracy; CMRC2018 EM / F1 of the official script; CLUENER exact-span F1 (Su's)
/ the leaderboard's text-per-type macro F1 (CLUENER2020 score.py)).

    python -m experiments.clue_results --config configs/clue_results.py:full \
        --workdir runs/clue_results --config.data_dir=../shared/data/clue

Stage 1, the trunk (skipped with config.init_from): experiments/lst_clue.py's TRUNK recipe,
MLM-pretrained for pretrain_steps on People's Daily 1998 plus the train texts of corpus_tasks
into WORKDIR/trunk-<hash> (lst_clue.pretrain_trunk).
Stage 2, per task and method: `configs/finetune.py:task=T,model=gau_alpha_tiny,method=M` from
that trunk with the config's overrides (shared, then task_overrides[T]) for `steps` steps; then
`experiments.evaluate` (the same checks and metric functions as the command) of the final params
on the first dev_rows dev rows, next to a constant baseline on those rows: the majority label
(classification), chance 1 / #choices (C3, ChID), an empty answer (CMRC2018), no entities
(CLUENER). Every run has its own workdir WORKDIR/runs/<task>_<method>_<steps>steps-<hash of every
override>; a finished run is a line of WORKDIR/runs.jsonl under that name, so a rerun skips it
and a changed setting trains a new run. Results: results_dir (default: WORKDIR)/clue.md.
LST: Sung, Cho & Bansal 2022 (arXiv:2206.06522).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_collections

from configs import finetune
from experiments import cli, lst_clue
from experiments.evaluate import evaluate
from gau_jax.data.readers import DataError
from gau_jax.data.tasks import get_task
from gau_jax.tasks import evaluation, submission
from gau_jax.tasks.evaluation import baseline
from gau_jax.train.loop import Trainer
from gau_jax.train.optim import count_trainable
from gau_jax.train.runlog import RunLog, markdown_table, results_header, run_key

# For scale only: GAU-α base on CLUE's full dev sets (Su 2022, the GAU-α release post; CMRC2018
# as CLUE ranks it). Other data, a ~40x larger model trained for epochs: not comparable.
GAU_ALPHA_BASE = {"afqmc": 74.17, "tnews": 57.76, "iflytek": 61.41, "cmnli": 81.82,
                  "ocnli": 75.86, "cluewsc2020": 79.93, "csl": 85.67, "cmrc2018": 58.09,
                  "c3": 68.24, "chid": 87.91, "cluener": 80.01}

# Su's CLUE dev table (github.com/ZhuiyiTechnology/GAU-alpha README.md, kexue.fm/archives/9052),
# base models on CLUE's full dev sets: GAU-α's row is GAU_ALPHA_BASE, this is the row Su marks
# RoFormerV2* (his post explains the star). Its "chid" is CLUE's ChID.
ROFORMER_V2_STAR_BASE = {"iflytek": 60.87, "tnews": 56.54, "afqmc": 72.75, "cmnli": 80.34,
                         "ocnli": 75.36, "cluewsc2020": 80.92, "csl": 84.67, "cmrc2018": 57.91,
                         "c3": 64.62, "chid": 85.09, "cluener": 81.08}


def parse_lr(text: str, methods: list[str]) -> dict[str, float]:
    """'3e-3' (every method) or 'full=1e-2,lst=3e-2'."""
    if "=" not in text:
        return dict.fromkeys(methods, float(text))
    lr = {k.strip(): float(v) for k, v in (item.split("=") for item in text.split(","))}
    missing = [m for m in methods if m not in lr]
    if missing:
        raise ValueError(f"config.learning_rate {text!r} has no rate for {missing}")
    return lr


def run_overrides(c: ml_collections.ConfigDict, task: str, method: str, lr: float,
                  trunk: str) -> dict[str, Any]:
    """Every configs/finetune.py field this experiment sets for one run (its identity)."""
    o = {**c.overrides.to_dict(), **(c.task_overrides.get(task) or {})}
    return {"task": task, "method": method, "trunk": trunk, "data_dir": c.data_dir,
            "total_steps": c.steps, "learning_rate": lr, "seed": c.seed, **o}


def finetune_config(o: dict[str, Any], init_from: Path) -> ml_collections.ConfigDict:
    ft = finetune.get_config(f"task={o['task']},model=gau_alpha_tiny,method={o['method']}")
    fields = {k: v for k, v in o.items() if k not in ("task", "method", "trunk")}
    ft.update_from_flattened_dict({
        **fields, "init_from": str(init_from), "eval_every_steps": o["total_steps"],
        "checkpoint_every_steps": o["total_steps"], "log_every_steps": o["total_steps"],
        "progress_bar": False, "tensorboard": False, "async_checkpoints": False,
        "keep_best": False})
    return ft


def finetune_and_score(config: ml_collections.ConfigDict, workdir: Path,
                       dev_rows: int) -> dict[str, Any]:
    """Train (or finish) one run, then score its final params on the first dev_rows rows."""
    trainer = Trainer(config, workdir)
    try:
        params = trainer.host_state().params
        trainable = 100.0 * count_trainable(params, trainer.setup.trainable) / count_trainable(
            params)
        summary = trainer.run()
    finally:
        trainer.close()
    result = evaluate(workdir, "dev", "latest", max_rows=dev_rows)
    return {"result": result, "trainable_pct": trainable, "wall_time_s": summary["wall_time_s"],
            "train_loss": summary["train_loss"], "steps": summary["step"]}


def run(c: ml_collections.ConfigDict, workdir: str | Path) -> list[dict]:
    """Trunk (unless init_from), every (task, method) run not yet in runs.jsonl, the report."""
    workdir = Path(workdir)
    init_from = lst_clue.trunk_for(c, workdir)
    methods = list(cli.names(c.methods))
    lr = parse_lr(c.learning_rate, methods)
    log = RunLog(workdir / "runs.jsonl", key_fields=("run",))
    rows = []
    for task in cli.names(c.tasks):
        try:
            dev = submission.split_examples(task, c.data_dir, "dev", max_rows=c.dev_rows,
                                            bad_rows=finetune.get_config(f"task={task}").bad_rows)
        except DataError as e:
            rows.append({"task": task, "missing": str(e)})
            print(f"{task}: not run ({e})", flush=True)
            continue
        base = None
        for method in methods:
            o = run_overrides(c, task, method, lr[method], init_from.name if not c.init_from
                              else c.init_from)
            name = run_key(f"{task}_{method}_{c.steps}steps", o)
            row = log.get({"run": name})
            if row is None:
                base = baseline(task, dev) if base is None else base
                out = finetune_and_score(finetune_config(o, init_from), workdir / "runs" / name,
                                         c.dev_rows)
                row = log.append({"run": name, "task": task, "method": method,
                                  "lr": lr[method], "baseline": base, **out})
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)
    text = report(rows, c, init_from)
    out_dir = cli.results_dir(c, workdir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "clue.md").write_text(text, encoding="utf-8")
    print(text)
    return rows


def _score(result: dict[str, Any]) -> str:
    if result["metric"] == "em":
        return f"{result['em']:.1f} / {result['f1']:.1f}"
    if "f1_leaderboard" in result:  # CLUENER: exact-span F1 / the leaderboard's (score.py)
        return f"{result['f1']:.1f} / {result['f1_leaderboard']:.1f}"
    return f"{result[result['metric']]:.1f}"


def report(rows: list[dict], c: ml_collections.ConfigDict, trunk: Path) -> str:
    md = results_header("CLUE, all eleven tasks: full fine-tuning and LST "
                        "(generated by experiments/clue_results.py)", c.command)
    if c.init_from:
        md += [f"Trunk: {c.init_from} (init_from).", ""]
    else:
        summary = json.loads((trunk / "summary.json").read_text())
        md += [f"Trunk: {lst_clue.trunk_shape()}, MLM-pretrained here for {c.pretrain_steps} "
               f"steps on People's Daily 1998 + the train texts of "
               f"{', '.join(cli.names(c.corpus_tasks))} (experiments/lst_clue.py TRUNK recipe); "
               f"dev MLM accuracy {100 * summary['dev']['accuracy']:.1f} %, "
               f"{summary['wall_time_s'] / 60:.1f} min.", ""]
    md += [f"Fine-tuning: {c.steps} steps per run, learning rate {c.learning_rate}, seed "
           f"{c.seed}, overrides {c.overrides.to_dict()}, per task {c.task_overrides.to_dict()}. "
           f"Scores (percent) of the final params on the first {c.dev_rows or 'all'} dev rows "
           "(CMRC2018: questions), with `experiments.evaluate`'s checks and metric functions; "
           "baseline: majority label, chance (C3, ChID), empty answer (CMRC2018), no entities "
           "(CLUENER) on the same rows. Wall time: the training loop of the run (compiles "
           "included), on a CPU shared with other jobs.", ""]
    by = {(r["task"], r.get("method")): r for r in rows}
    table = []
    for task in cli.names(c.tasks):
        if (task, None) in by:
            table.append([task, evaluation.main_metric(get_task(task)), "–", "not run: no data",
                          *["–"] * (len(cli.names(c.methods)) + 2),
                          GAU_ALPHA_BASE.get(task, "–")])
            continue
        runs = [by.get((task, m)) for m in cli.names(c.methods)]
        if not all(runs):
            continue
        first = runs[0]["result"]
        metric = "EM / F1" if first["metric"] == "em" else \
            "span F1 / leaderboard F1" if "f1_leaderboard" in first else first["metric"]
        table.append([task, metric, f"{runs[0]['baseline']:.1f}",
                      *(_score(r["result"]) for r in runs),
                      " / ".join(str(r["steps"]) for r in runs),
                      " / ".join(f"{r['wall_time_s']:.0f}" for r in runs), first["rows"],
                      GAU_ALPHA_BASE.get(task, "–")])
    methods = list(cli.names(c.methods))
    md.append(markdown_table(["task", "metric", "baseline", *methods,
                              f"steps ({' / '.join(methods)})",
                              f"wall s ({' / '.join(methods)})", "dev rows",
                              "GAU-α base, full CLUE (Su)"], table))
    md += ["", "Data: the CLUE folder's splits: AFQMC is DataCLUE's "
           "10k subset with its clean 2k test_public as dev; IFLYTEK, CSL, CLUEWSC2020 and ChID "
           "are FewCLUE's few-shot splits; CMRC2018 trains on the 1,002-question trial set; no "
           "CMNLI. The numbers are not comparable with published CLUE dev scores; the last "
           "column (GAU-α base on CLUE's full dev sets, Su 2022) only gives the scale."]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    cli.main(run, "clue_results")
