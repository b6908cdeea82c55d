"""A trained workdir's model on any examples: logits, decoded predictions, prediction objects.

    run = load_run("runs/ft_cluener")                  # DIR/best (default) or checkpoint="latest"
    pred = predict(run, examples)                      # parsed rows of any split, labels optional
    pred.objects                                       # [{"id", "label"}, ...] | {qid: answer}
    logits = predict_logits(run, batch)                # one batch of the task's layout

The model is rebuilt from DIR/train_config.json (the resolved run config: task, method, model,
lengths) by the same method plugin that trained it (gau_jax/train/methods.py), so every method
and head kind works; params are the run's whole tree (head included) from DIR/best/<step> or the
latest DIR/checkpoints/<step>, read as host numpy (no optimizer state). An LST run trained from
cached trunk features stores no trunk: it is loaded from the run's config.init_from. Decoding is
gau_jax/train/decode.py's (CLUE's prediction objects).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from gau_jax import pretrained as pretrained_lib
from gau_jax.convert import workdir as workdir_lib
from gau_jax.data.task_pipeline import task_batches
from gau_jax.data.tasks import CLUE_TASKS, TaskSpec, get_task
from gau_jax.data.tokenizer import ChineseTokenizer, load_tokenizer
from gau_jax.models import unstack_layers
from gau_jax.train import decode, methods
from gau_jax.train.inputs import task_features

CHECKPOINTS = ("best", "latest")


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
    """Predictions of `examples`, in their order (raw: see decode.predictions)."""

    task: str
    kind: str
    objects: Any                       # prediction objects (submission.write_submission)
    raw: list


def _spec(config: ml_collections.ConfigDict, label_names: tuple[str, ...]) -> TaskSpec:
    if config.task in CLUE_TASKS or config.task == "sentiment":
        return get_task(config.task)
    if config.task == "jsonl":  # the spec readers.read_jsonl_task builds, labels from the run
        return TaskSpec("jsonl", "classification", label_names, ("sentence", "sentence2"))
    raise ValueError(f"train_config.json: task {config.task!r} unknown")


def _params(root: Path, checkpoint: str) -> tuple[Any, int, str]:
    """(params tree, step, what was read) of DIR/best or the latest DIR/checkpoints step."""
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint={checkpoint!r}: choose one of {CHECKPOINTS}")
    if checkpoint == "best":
        step = workdir_lib.latest_step(root / "best")
        if step is not None:
            return (workdir_lib.restore_numpy(root / "best" / str(step) / "params", "params"),
                    step, f"best step {step} of {root}")
        logging.warning("%s has no best checkpoint (keep_best off?): using the latest", root)
    step = workdir_lib.latest_step(root / "checkpoints")
    if step is None:
        raise FileNotFoundError(f"{root}: no finalized checkpoint in {root / 'checkpoints'}"
                                + (f" or {root / 'best'}" if checkpoint == "best" else ""))
    return (workdir_lib.restore_numpy(root / "checkpoints" / str(step) / "state", "params"),
            step, f"checkpoint step {step} of {root}")


def load_run(workdir: str | Path, checkpoint: str = "best") -> Run:
    """The model of a fine-tuning workdir with its best (default) or latest params."""
    root = Path(workdir)
    train_cfg = workdir_lib.read_train_config(root)
    if train_cfg.get("kind") != "finetune":
        raise ValueError(f"{root / 'train_config.json'}: not a fine-tuning run (kind="
                         f"{train_cfg.get('kind')!r})")
    config = ml_collections.ConfigDict(train_cfg)
    labels_path = root / "labels.json"
    label_names = tuple(json.loads(labels_path.read_text())) if labels_path.exists() else ()
    spec = _spec(config, label_names)
    num_classes = config.get("num_classes") or len(label_names) or spec.num_classes
    built = methods.get(config.method).build(config, config.model, num_classes)
    params, step, source = _params(root, checkpoint)
    if config.method == "lst" and "encoder" not in params:  # trained from cached features
        if not config.get("init_from"):
            raise ValueError(f"{source}: an LST run from cached features stores no trunk and "
                             "its config.init_from is empty")
        pre = pretrained_lib.load(config.init_from)
        trunk = pre.params if config.model.scan_layers else unstack_layers(pre.params)
        params = {**params, "encoder": trunk}
        source += f" + frozen trunk of {pre.source}"
    tok = load_tokenizer(root / "vocab.txt")
    run = Run(root, config, spec, built.model, params, tok, label_names, step, source)
    run.fn = decode.logits_fn(built.model)
    return run


def predict_logits(run: Run, batch: Mapping[str, np.ndarray]) -> np.ndarray:
    """Float32 logits of one batch (classification [b, K], MC [b, C], GlobalPointer
    [b, T, n, n]) with the run's params."""
    return np.asarray(run.fn(run.params, batch))


def predict(run: Run, examples: Sequence[Mapping], batch_size: int | None = None,
            max_answer_length: int | None = None) -> Prediction:
    """Prediction objects and raw outputs of `examples` (parsed rows, labels optional)."""
    c, spec = run.config, run.spec
    examples = [examples[i] for i in range(len(examples))]
    features = None if spec.kind == "classification" else \
        task_features(spec, examples, run.tokenizer, c)
    batches = task_batches(spec, examples, run.tokenizer, features, train=False,
                           batch_size=batch_size or c.batch_size, max_len=c.max_length,
                           pad_multiple=c.pad_multiple, num_threads=c.get("data_threads", 4),
                           shard_index=0, shard_count=1)
    answer = max_answer_length or c.get("max_answer_length", decode.MAX_ANSWER_LENGTH)
    objects, raw, _ = decode.predictions(spec, examples, decode.run(run.fn, run.params, batches),
                                         features, run.label_names, answer)
    return Prediction(spec.name, spec.kind, objects, raw)
