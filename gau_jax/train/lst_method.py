"""The Ladder Side-Tuning method (config.method = "lst"): model, frozen trunk, input hook.

    build    LadderSideTuning(trunk = model config, config.lst) (gau_jax/models/lst.py); the
             trunk's params sit at "encoder" (init_from loads them there) and are frozen
    prepare  config.lst.init = fisher | magnitude: the side network starts pruned from the trunk
             (gau_jax/models/lst_init.py) — applied as the trainer's post_init hook, after the
             pretrained trunk is in place; ladder: from the side network init_from pretrained
             beside its trunk (pretraining with ladder=True; gau_jax/models/ladder_mlm.py),
             which must have this run's side shape (LADDER_SHAPE fields of config.lst)
             config.lst.trunk_dtype = bfloat16: the frozen trunk is stored (and run) in
             bfloat16, cast after the pretrained trunk is loaded (same post_init hook)
             config.lst.cache = True: trunk features are computed once (gau_jax/train/
             feature_cache.py) and the run trains a trunk-less side network on them
             (task kinds with `lst_cache`; the others run the frozen trunk every step)
Every task kind works: the head reads the side network's token states, and the Fisher init
ranks channels by the gradients of that head's own loss (the task kind's sums_fn) on
lst.fisher_examples train rows drawn at random (seeded; fisher_sample). A multi-task
run has one side network with a head per task; it takes lst.init = random | magnitude | ladder.

Sung, Cho & Bansal, "LST: Ladder Side-Tuning for Parameter and Memory Efficient Transfer
Learning", NeurIPS 2022 (arXiv:2206.06522).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from gau_jax import workdir as layout
from gau_jax.models.encoder import encoder_config
from gau_jax.models.ladder_mlm import LADDER
from gau_jax.models.lst import (
    build_model,
    cast_trunk,
    feature_indices,
    frozen_trunk_config,
    lst_config,
    trainable_side,
)
from gau_jax.models.lst_init import fisher_scores, magnitude_scores, pruned_side_params
from gau_jax.tasks import TaskOptions, kind_of
from gau_jax.train import feature_cache, methods
from gau_jax.train.checkpoint import merge_pretrained


def build(config: Any, model_config: Any, head: Any) -> methods.Built:
    """Frozen trunk + side network + the task head(s) on the side network's token states; all
    but "encoder" trains."""
    model = build_model(model_config, 0, config.lst, head=methods.as_head(config, head))
    return methods.Built(model, model_config, trainable_side, ("encoder",))


def _pruned_params(inputs, config, trunk_params, splits, spec) -> dict:
    """Side params {down_k, side_i} pruned from the trunk by config.lst.init (Fisher: on
    fisher_sample's rows of splits["train"])."""
    c = lst_config(config.lst)
    trunk = encoder_config(config.model)
    if c.init == "magnitude":
        scores = magnitude_scores(trunk_params)
    else:  # the task head's loss on the frozen trunk (a fresh head, as at the run's start)
        clf = methods.task_model(frozen_trunk_config(trunk), inputs.model.task_head)
        batches, rows = fisher_sample(spec, splits, inputs, config)
        batches = iter(batches)
        first = next(batches)
        head = clf.init(jax.random.PRNGKey(config.seed), first["input_ids"])["params"]
        sums = kind_of(spec).sums_fn(clf, TaskOptions.of(config))

        def loss(p, b):
            s = sums({**head, "encoder": p}, b, None, None, False)
            return s["loss"] / jnp.maximum(s["weight"], 1e-6)

        sample = _rebatch(itertools.chain([first], batches), c.fisher_batch_size, rows)
        scores = fisher_scores(loss, trunk_params, sample, rows,
                               per_example=c.fisher_estimate == "per_example")
    return pruned_side_params(trunk_params, scores, trunk, c)


# The config.lst fields that shape the side network's params: a pretrained ladder must agree.
LADDER_SHAPE = ("reduction", "min_side_width", "side_layers", "ladder_layers", "fusion",
                "side_block", "side_heads", "gate_temperature")


def ladder_params(config) -> dict:
    """{down_k, gate_i, side_i}: the side network config.init_from pretrained beside its trunk
    (read from the same step as the trunk), after checking it has this run's shape."""
    root = Path(config.init_from) if config.init_from else None
    src = layout.read_train_config(root) if root is not None else {}
    if not src.get("ladder"):
        where = f"{root} ({'ladder' if 'ladder' in src else 'no ladder'} in its "\
            f"{layout.TRAIN_CONFIG})" if root is not None else "config.init_from is empty"
        raise ValueError(f"config.lst.init=ladder starts the side network from a pretraining "
                         f"workdir run with --config.ladder=True: {where}")
    theirs, ours = lst_config(src.get("lst")), lst_config(config.lst)
    diff = [f"lst.{f}: {getattr(theirs, f)!r} there, {getattr(ours, f)!r} here"
            for f in LADDER_SHAPE if getattr(theirs, f) != getattr(ours, f)]
    if diff:
        raise ValueError(f"config.lst.init=ladder: the ladder of {root} has another shape ("
                         + "; ".join(diff) + "): set these config.lst fields as pretraining did")
    tree, source = layout.read_workdir_params(root, src)
    logging.info("LST: side network from the pretrained ladder of %s", source)
    return tree[LADDER]


def fisher_sample(spec, splits: dict, inputs, config) -> tuple[Any, int]:
    """(batches, rows): the rows the Fisher init sees — min(lst.fisher_examples, train rows)
    drawn without replacement in a seeded random order (config.seed), as the LST authors'
    shuffled loader does (not the split's first rows in its stored order, the same for every
    seed). Every process draws the same rows."""
    rows = min(lst_config(config.lst).fisher_examples, len(splits["train"]))
    batches = kind_of(spec).batches(spec, splits["train"], inputs.tokenizer,
                                    inputs.features.get("train"), TaskOptions.of(config),
                                    train=True, batch_size=config.batch_size, seed=config.seed,
                                    shard=(0, 1))
    return batches, rows


def _rebatch(batches, size: int, limit: int):
    """The real rows (weight > 0) of `batches` in groups of `size`, `limit` rows in all."""
    for b in batches:
        keep = np.nonzero(b["weights"] > 0)[0][:limit]
        for s in range(0, len(keep), size):
            yield {k: v[keep[s:s + size]] for k, v in b.items()}
        limit -= len(keep)
        if limit <= 0:
            return


def prepare(inputs, config, workdir: Path, splits: dict, spec):
    """Applies config.lst.init (pruned side network) and config.lst.cache (module docstring)."""
    c = lst_config(config.lst)
    if spec is None:  # a multi-task run: one side network, a head per task
        if c.cache or c.init == "fisher":
            raise ValueError("a multi-task LST run takes config.lst.cache=False and "
                             "config.lst.init=random | magnitude | ladder (the Fisher init "
                             f"ranks by one task's loss): got cache={c.cache}, init={c.init!r}")
        if c.init in ("random", "ladder"):
            side = ladder_params(config) if c.init == "ladder" else {}
            return _with_post_init(inputs, _side_init(side, c))
    kind = kind_of(spec) if spec is not None else None
    if kind is not None and c.cache and not kind.lst_cache:
        raise ValueError(f"config.lst.cache=True caches classification inputs only; task "
                         f"{spec.name!r} is a {spec.kind} task: set config.lst.cache=False")
    if c.init in ("random", "ladder") and not c.cache:
        side = ladder_params(config) if c.init == "ladder" else {}
        return _with_post_init(inputs, _side_init(side, c))
    dummy = np.ones((1, config.max_length), np.int32)
    full = jax.jit(inputs.model.init)(jax.random.PRNGKey(config.seed), dummy)["params"]
    trunk_params = inputs.pretrained if inputs.pretrained is not None else full["encoder"]
    opts = TaskOptions.of(config)  # every process sees all rows: the same init, one cache
    ordered = {s: list(kind.batches(spec, splits[s], inputs.tokenizer, inputs.features.get(s),
                                    opts, train=False, batch_size=config.batch_size,
                                    shard=(0, 1)))
               for s in ("train", "dev")} if c.cache else {}
    side = ladder_params(config) if c.init == "ladder" else {}
    if c.init in ("fisher", "magnitude"):
        logging.info("LST: %s-pruned side init from the trunk", c.init)
        side = jax.tree_util.tree_map(np.asarray, _pruned_params(inputs, config, trunk_params,
                                                                 splits, spec))
    if not c.cache:
        return _with_post_init(inputs, _side_init(side, c))
    trunk = encoder_config(config.model)
    idx = feature_indices(trunk, c)
    fp = feature_cache.fingerprint(config.model.to_dict(), trunk_params, inputs.tokenizer.vocab,
                                   idx, c.cache_dtype)
    path = Path(c.cache_dir or workdir / "feature_cache")
    if jax.process_index() == 0:  # one writer; the others wait for it, then read
        feature_cache.build_cache(path, trunk, idx, trunk_params, ordered, c.cache_dtype,
                                  c.cache_budget_gb, fp)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"feature_cache {path}")
    meta = feature_cache.build_cache(path, trunk, idx, trunk_params, ordered, c.cache_dtype,
                                     c.cache_budget_gb, fp)  # built: checks and reads meta.json
    model = build_model(config.model, 0, c, use_trunk=False, head=inputs.model.task_head)
    kw = dict(batch_size=config.batch_size, pad_multiple=config.pad_multiple,
              shard=(jax.process_index(), jax.process_count()))
    train = feature_cache.CachedSplit.open(path, "train", meta, seed=config.seed, **kw)
    dev = feature_cache.CachedSplit.open(path, "dev", meta, **kw)
    side_full = {k: v for k, v in full.items() if k != "encoder"}  # = the uncached side's init
    return dataclasses.replace(
        inputs, model=model, sums_fn=feature_cache.cached_sums_fn(model), train=train,
        dev_batches=dev.one_pass, trainable=trainable_side, pretrained=None,
        post_init=_side_init({**side_full, **side}))


def _with_post_init(inputs, post_init):
    """inputs whose post_init runs its own hook (e.g. a multi-task init_from's head), then
    `post_init`."""
    first = inputs.post_init
    if first is None or post_init is None:
        return dataclasses.replace(inputs, post_init=post_init or first)
    return dataclasses.replace(inputs, post_init=lambda params: post_init(first(params)))


def _side_init(side: dict, lst: Any = None):
    """RunSetup.post_init that puts the pruned side parameters (top-level keys) into params and
    stores the frozen trunk in lst.trunk_dtype (models/lst.py: cast_trunk)."""
    if not side and lst_config(lst).trunk_dtype == "float32":
        return None

    def post_init(params):
        for key, value in side.items():
            params = merge_pretrained(params, value, (key,))
        return cast_trunk(params, lst)

    return post_init


METHOD = methods.register(methods.Method("lst", build, prepare))
