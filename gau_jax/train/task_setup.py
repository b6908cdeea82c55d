"""What a fine-tuning or multi-task run trains on: the task kinds' pieces put together.

    finetune   config.task → (TaskSpec, splits) (gau_jax/data/sources.py) → its TaskKind
               (gau_jax/tasks): features, batches, head, loss sums, dev metric; the method's
               plugin (gau_jax/train/methods.py) builds the model around the kind's head.
    multitask  config.tasks = "tnews+afqmc+cmrc2018+c3" (a user's JSON Lines task:
               "name@/path/to/folder"): one trunk, one head per task (gau_jax/models/heads.py
               `Heads`), train batches from `TaskMixture` (gau_jax/tasks/mixture.py, rates
               ∝ size^config.mixture_alpha), dev = every task's CLUE dev metric, kept best by
               their mean ("mean").

init_from may be a multi-task workdir: the trunk comes from it as from any workdir, and, when it
trained config.task with the same method, that task's head too (LST: with its side network).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gau_jax import workdir as layout
from gau_jax.data import sources
from gau_jax.data.readers import read_jsonl_task
from gau_jax.data.tasks import TaskSpec, check_task
from gau_jax.models.heads import HEAD_PARAMS
from gau_jax.tasks import TaskOptions, kind_of
from gau_jax.tasks.evaluation import DevEval
from gau_jax.tasks.kind import best_metric
from gau_jax.tasks.mixture import TaskMixture, mark, mixture_rates, task_of
from gau_jax.train import methods
from gau_jax.train.checkpoint import merge_pretrained
from gau_jax.train.inputs import RunSetup, load_trunk, local_batch_size, tokenizer_for


def _say(text: str) -> None:
    if jax.process_index() == 0:
        print(text, flush=True)


def _load(name: str, config) -> tuple[TaskSpec, dict]:
    """(spec, splits) of a task name or "name@folder" (a user's JSON Lines task)."""
    if "@" in name:
        label, folder = name.split("@", 1)
        return read_jsonl_task(folder, name=label, bad_rows=config.bad_rows)
    spec, splits = sources.load_task(name, config.data_dir or None, bad_rows=config.bad_rows)
    for split in ("train", "dev"):
        if split not in splits:
            raise ValueError(f"task {name!r} (data_dir={config.data_dir!r}) has no {split} split")
    return spec, splits


def task_names(config) -> list[str]:
    """config.tasks split on "+" (multi-task), else [config.task]."""
    if config.get("tasks"):
        names = [t.strip() for t in str(config.tasks).split("+") if t.strip()]
        for n in names:
            if "@" not in n:
                check_task(n)
        if len(set(names)) != len(names):
            raise ValueError(f"config.tasks={config.tasks!r} names a task twice")
        return names
    check_task(config.task)
    return [config.task]


class _TaskData:
    """One task's spec, kind, rows and features."""

    def __init__(self, name: str, config, opts: TaskOptions):
        self.spec, self.splits = _load(name, config)
        self.name, self.kind, self.opts = self.spec.name, kind_of(self.spec), opts
        self.features: dict[str, Any] = {}

    def texts(self):
        for row in self.splits["train"]:
            yield from (t for t in self.kind.row_texts(self.spec, row) if t)

    def featurise(self, tok) -> None:
        for s in ("train", "dev"):
            f = self.kind.features(self.spec, self.splits[s], tok, self.opts)
            if f is not None:
                self.features[s] = f
                _say(f.describe(f"{self.name} {s}"))

    def train_rows(self) -> int:
        return len(self.features["train"]) if "train" in self.features else \
            len(self.splits["train"])

    def batches(self, tok, split: str, config, *, train: bool):
        return self.kind.batches(self.spec, self.splits[split], tok, self.features.get(split),
                                 self.opts, train=train, batch_size=local_batch_size(config),
                                 seed=config.seed)


def _total_steps(config, rows: int) -> None:
    if config.total_steps <= 0:  # epochs × steps per epoch of the featurised train split
        config.total_steps = int(config.epochs) * math.ceil(rows / config.batch_size)
        _say(f"total_steps = {config.epochs} epochs x ceil({rows} train rows / batch "
             f"{config.batch_size}) = {config.total_steps}")


def task_inputs(config, workdir: Path) -> RunSetup:
    """The RunSetup of a fine-tuning (one task) or multi-task (config.tasks) run."""
    names = task_names(config)
    method = methods.get(config.method)
    trunk, vocab = load_trunk(config) if config.init_from else (None, None)
    opts = TaskOptions.of(config)
    tasks = [_TaskData(n, config, opts) for n in names]
    tok = tokenizer_for(config, workdir, lambda: itertools.chain(*(t.texts() for t in tasks)),
                        vocab)
    if trunk is None:
        config.model.vocab_size = tok.vocab_size
    multi = bool(config.get("tasks"))
    heads = tuple((t.name if multi else "", t.kind.head(t.spec, _classes(config, t.spec, multi),
                                                        opts)) for t in tasks)
    built = method.build(config, config.model, heads if multi else heads[0][1])
    config.model = built.model_config  # what was built (e.g. with adapters, or biases)
    for t in tasks:
        t.featurise(tok)
    sizes: dict[str, Any] = {}
    for t in tasks:
        pre = f"{t.name} " if multi else ""
        sizes.update({f"{pre}{s}": len(rows) for s, rows in t.splits.items()})
        sizes.update({f"{pre}{s} rows": len(f) for s, f in t.features.items()})
    common = dict(trainable=built.trainable, pretrained=trunk, encoder_path=built.encoder_path,
                  keep_fresh=built.keep_fresh, model_config=built.model_config, tokenizer=tok,
                  config=config, data_sizes=sizes)
    if not multi:
        t = tasks[0]
        _total_steps(config, t.train_rows())
        inputs = RunSetup(model=built.model, sums_fn=t.kind.sums_fn(built.model, opts),
                        train=iter(t.batches(tok, "train", config, train=True)),
                        dev_batches=lambda: t.batches(tok, "dev", config, train=False),
                        label_names=tuple(t.spec.label_names), features=t.features,
                        best_metric=best_metric(t.spec, config.get("best_metric", "")),
                        post_init=_head_from(config, t.name),
                        **common)
        if t.kind.decodes_dev:
            inputs.dev_eval = DevEval(built.model, t.spec, t.splits["dev"],
                                      t.features["dev"], tok, opts, config.batch_size,
                                      config.eval_batches)
        if method.prepare is not None:
            inputs = method.prepare(inputs, config, workdir, t.splits, t.spec)
        return inputs
    rates = mixture_rates({t.name: t.train_rows() for t in tasks},
                          config.get("mixture_alpha", 1.0))
    _total_steps(config, sum(t.train_rows() for t in tasks))
    sizes.update({f"{t.name} rate": round(rates[t.name], 4) for t in tasks})
    train = TaskMixture({t.name: iter(t.batches(tok, "train", config, train=True))
                         for t in tasks}, rates, config.seed)
    inputs = RunSetup(model=built.model, sums_fn=mixture_sums_fn(built.model, tasks),
                    train=train, dev_batches=lambda: _dev_batches(tasks, tok, config),
                    dev_eval=MultiTaskDevEval(built.model, tasks, tok, opts, config),
                    best_metric="mean", label_names=(), **common)
    if method.prepare is not None:  # no task: a method's per-task hooks refuse by name
        inputs = method.prepare(inputs, config, workdir, None, None)
    return inputs


def _classes(config, spec: TaskSpec, multi: bool) -> int:
    return spec.num_classes if multi or not config.num_classes else int(config.num_classes)


class _HeadView:
    """One task's view of a multi-task model: apply(...) with task=name."""

    def __init__(self, model, task: str):
        self.model, self.task = model, task

    def apply(self, variables, *args, **kwargs):
        return self.model.apply(variables, *args, task=self.task, **kwargs)


def mixture_sums_fn(model, tasks: list[_TaskData]):
    """The loss sums of a marked batch (gau_jax/tasks/mixture.py): its task's kind's sums on
    its task's head."""
    fns = {t.name: t.kind.sums_fn(_HeadView(model, t.name), t.opts) for t in tasks}

    def sums(params, batch, rng, residual_scale, train):
        task, batch = task_of(batch)
        if task not in fns:
            raise ValueError(f"batch of task {task!r}; the run's tasks: {sorted(fns)}")
        return fns[task](params, batch, rng, residual_scale, train)

    return sums


def _dev_batches(tasks: list[_TaskData], tok, config):
    for t in tasks:
        for batch in t.batches(tok, "dev", config, train=False):
            yield mark(batch, t.name)


class MultiTaskDevEval:
    """params → "<task>/<metric>" for every task's CLUE metrics and "mean", the mean of the
    tasks' main metrics (what keep_best compares)."""

    def __init__(self, model, tasks: list[_TaskData], tok, opts: TaskOptions, config):
        self.evals = {t.name: (t.kind.metric, DevEval(model, t.spec, t.splits["dev"],
                                                      t.features.get("dev"), tok, opts,
                                                      config.batch_size, config.eval_batches,
                                                      task=t.name)) for t in tasks}

    def __call__(self, params) -> dict[str, float]:
        out, main = {}, []
        for name, (metric, ev) in self.evals.items():
            result = ev(params)
            out.update({f"{name}/{k}": v for k, v in result.items()})
            main.append(result[metric])
        out["mean"] = float(np.mean(main))
        return out


def _head_from(config, task: str):
    """post_init carrying a multi-task init_from's head of `task` (and, for LST, its side
    network) when that run used the same method; None otherwise."""
    if not config.init_from or not (Path(config.init_from) / layout.TRAIN_CONFIG).is_file():
        return None
    src = layout.read_train_config(Path(config.init_from))
    if task not in [n.split("@")[0] for n in str(src.get("tasks") or "").split("+")] or \
            src.get("method") != config.method:
        return None
    tree, _, source = layout.read_params(config.init_from, "best", warn=False)

    def post_init(params):
        base = ("base",) if "base" in params and "base" in tree else ()
        src_root = tree["base"] if base else tree
        head = {k: v for k, v in src_root[task].items() if k in HEAD_PARAMS}
        for key, value in head.items():
            params = merge_pretrained(params, value, (*base, key))
        if config.method == "lst":  # the side network the head reads
            for key, value in tree.items():
                if key != "encoder" and key in params and key not in HEAD_PARAMS:
                    params = merge_pretrained(params, value, (key,))
        _say(f"init_from: {task}'s head from {source}")
        return params

    return post_init
