"""A trained workdir's model on any rows: logits, decoded predictions, prediction objects.

    run = load_run("runs/ft_cluener")                  # DIR/best (default) or checkpoint="latest"
    run = load_run("runs/multitask", task="tnews")     # one task of a multi-task run
    pred = predict(run, examples)                      # parsed rows of any split, labels optional
    pred.objects                                       # [{"id", "label"}, ...] | {qid: answer}
    logits = predict_logits(run, batch)                # one batch of the task's layout

The model is rebuilt from DIR/train_config.json (the resolved run config: task(s), method,
model, lengths) by the same method plugin that trained it (gau_jax/train/methods.py), around the
head(s) the task kinds ask for, so every method and task kind works; params are the run's whole
tree (head included) of DIR/best or the latest checkpoint (gau_jax/workdir.py `read_params`),
read as host numpy (no optimizer state). An LST run trained from cached trunk features stores no
trunk: it is loaded from the run's config.init_from. Decoding is the task kind's
(gau_jax/tasks/evaluation.py).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from gau_jax import pretrained as pretrained_lib
from gau_jax import workdir as layout
from gau_jax.data.readers import read_jsonl_task
from gau_jax.data.tasks import TaskSpec, run_task
from gau_jax.data.tokenizer import ChineseTokenizer, load_tokenizer
from gau_jax.tasks import TaskOptions, kind_of
from gau_jax.tasks.evaluation import logits_fn, predict_rows
from gau_jax.train import methods


@dataclasses.dataclass
class Run:
    """A trained model ready to predict (module docstring)."""

    workdir: Path
    config: ml_collections.ConfigDict  # the resolved run config (DIR/train_config.json)
    spec: TaskSpec
    model: Any
    params: Any
    tokenizer: ChineseTokenizer
    label_names: tuple[str, ...]
    step: int
    source: str                        # what was read
    fn: Any = None                     # jitted (params, batch) → logits


@dataclasses.dataclass
class Prediction:
    """Predictions of `examples`, in their order (raw: see gau_jax/tasks/kind.py Decoded)."""

    task: str
    kind: str
    objects: Any                       # prediction objects (tasks.submission.write_submission)
    raw: list


def run_tasks(config: Mapping[str, Any]) -> list[str]:
    """The task names of a run config: config.tasks split on "+", else [config.task]."""
    return [t for t in str(config.get("tasks") or "").split("+") if t] or [config["task"]]


def _spec(name: str, label_names: tuple[str, ...]) -> TaskSpec:
    """A task name, or "name@folder" of a multi-task run (its labels read from the folder)."""
    if "@" in name:
        label, folder = name.split("@", 1)
        return read_jsonl_task(folder, name=label)[0]
    return run_task(name, label_names)


def _heads(config, specs: list[TaskSpec], multi: bool, label_names: tuple[str, ...]):
    opts = TaskOptions.of(config)
    heads = []
    for spec in specs:
        k = spec.num_classes if multi else (config.get("num_classes") or len(label_names)
                                             or spec.num_classes)
        heads.append((spec.name if multi else "", kind_of(spec).head(spec, k, opts)))
    return tuple(heads) if multi else heads[0][1]


def load_run(workdir: str | Path, checkpoint: str = "best", task: str | None = None) -> Run:
    """The model of a fine-tuning or multi-task workdir with its best (default) or latest
    params; `task` picks one task of a multi-task run (required there)."""
    root = Path(workdir)
    train_cfg = layout.read_train_config(root)
    if layout.stage_of(train_cfg) not in ("finetune", "multitask"):
        raise ValueError(f"{root / layout.TRAIN_CONFIG}: not a fine-tuning run (stage="
                         f"{layout.stage_of(train_cfg)!r})")
    config = ml_collections.ConfigDict(train_cfg)
    labels_path = root / layout.LABELS
    label_names = tuple(json.loads(labels_path.read_text())) if labels_path.exists() else ()
    names = run_tasks(train_cfg)
    multi = bool(train_cfg.get("tasks"))
    specs = [_spec(n, label_names) for n in names]
    if multi:
        if task not in [s.name for s in specs]:
            raise ValueError(f"{root} is a multi-task run of {[s.name for s in specs]}: pick "
                             f"one with task= (--task), got {task!r}")
    elif task not in (None, specs[0].name):
        raise ValueError(f"{root} trained task {specs[0].name!r}, not {task!r}")
    spec = next(s for s in specs if s.name == (task or specs[0].name))
    built = methods.get(config.method).build(config, config.model,
                                             _heads(config, specs, multi, label_names))
    params, step, source = layout.read_params(root, checkpoint)
    if config.method == "lst" and "encoder" not in params:  # trained from cached features
        if not config.get("init_from"):
            raise ValueError(f"{source}: an LST run from cached features stores no trunk and "
                             "its config.init_from is empty")
        pre = pretrained_lib.load(config.init_from)
        params = {**params, "encoder": pretrained_lib.trunk_params(pre, config.model)}
        source += f" + frozen trunk of {pre.source}"
    tok = load_tokenizer(root / layout.VOCAB)
    run = Run(root, config, spec, built.model, params, tok, label_names, step, source)
    run.fn = logits_fn(built.model, spec.name if multi else None)
    return run


def predict_logits(run: Run, batch: Mapping[str, np.ndarray]) -> np.ndarray:
    """Float32 logits of one batch (classification [b, K], MC [b, C], GlobalPointer
    [b, T, n, n]) with the run's params."""
    return np.asarray(run.fn(run.params, batch))


def predict(run: Run, examples: Sequence[Mapping], batch_size: int | None = None,
            max_answer_length: int | None = None) -> Prediction:
    """Prediction objects and raw outputs of `examples` (parsed rows, labels optional)."""
    opts = TaskOptions.of(run.config)
    if max_answer_length:
        opts = dataclasses.replace(opts, max_answer_length=int(max_answer_length))
    rows = [examples[i] for i in range(len(examples))]
    decoded, _ = predict_rows(run.spec, rows, run.tokenizer, fn=run.fn, params=run.params,
                              opts=opts, batch_size=batch_size or run.config.batch_size,
                              label_names=run.label_names)
    return Prediction(run.spec.name, run.spec.kind, decoded.objects, decoded.raw)
