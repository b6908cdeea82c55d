"""Optimizers, schedules and parameter masks (the optax side of training).

Learning rate: piecewise linear through (0, lr·w0), (warmup_steps, lr), (total_steps, lr·end_factor)
with w0 = 0 when warmup_steps > 0 (Su's ``piecewise_linear``; no warmup is needed with his init).

Update of a trainable leaf θ with gradient g (frozen leaves: update 0 and *no* optimizer state):

    g ← g · min(1, clip / ‖g_trainable‖₂)            global-norm clipping (clip > 0); with
                                                      clip groups (a pretrained ladder: the
                                                      trunk, the side) each group's own norm
    Δ ← Opt(g; lr_t)                                  lamb | adafactor | adamw
    Δ ← Δ − lr_t · wd · θ   on kernels only          decoupled weight decay (inside Opt)

Weight decay applies to leaves named ``kernel`` (dense weights); never to embeddings, norm scales
or biases. Frozen leaves are routed by ``optax.multi_transform`` to ``optax.set_to_zero()`` so the
inner optimizer never sees them: the LST / PEFT methods rely on this to keep memory low.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gau_jax.models.tree import path_names

PyTree = Any
OPTIMIZERS = ("lamb", "adafactor", "adamw", "sgd")


def piecewise_linear_schedule(
    learning_rate: float, total_steps: int, warmup_steps: int = 0, end_factor: float = 1.0
) -> optax.Schedule:
    """lr(t): linear 0→lr over warmup_steps, then linear lr→lr·end_factor until total_steps."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps={warmup_steps} must lie in [0, total_steps={total_steps})")
    knots_t = ([0.0] if warmup_steps > 0 else []) + [float(warmup_steps), float(total_steps)]
    knots_v = ([0.0] if warmup_steps > 0 else []) + [1.0, float(end_factor)]
    knots_t, knots_v = np.asarray(knots_t), np.asarray(knots_v) * learning_rate

    def schedule(step):
        return jax.numpy.interp(step, knots_t, knots_v)

    return schedule


def decay_mask(params: PyTree) -> PyTree:
    """True for leaves that get weight decay: dense kernels (not embeddings, scales, biases)."""
    return jax.tree_util.tree_map_with_path(lambda p, _: path_names(p)[-1] == "kernel", params)


def trainable_all(params: PyTree) -> PyTree:
    """Mask for full fine-tuning / pretraining: every leaf trainable."""
    return jax.tree_util.tree_map(lambda _: True, params)


def make_optimizer(
    name: str,
    schedule: optax.Schedule,
    *,
    weight_decay: float = 0.0,
    grad_clip_norm: float = 0.0,
    trainable: PyTree | Callable[[PyTree], PyTree] | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    relative_step: bool = True,
    clip_groups: Callable[[PyTree], PyTree] | None = None,
) -> optax.GradientTransformation:
    """Builds clip → optimizer (with decoupled, masked weight decay); frozen leaves get no state.

    `trainable` is a bool pytree (or a function of params returning one); None = all trainable.
    relative_step (adafactor only): each step is lr × max(RMS(param), 1e-3), relative to the
    parameter's scale; False makes it lr itself, so a leaf that starts at zero (an adapter's
    up-projection, a bias) moves at the rate of every other leaf instead of lr·1e-3.
    clip_groups: params → a label per leaf; each label's leaves are clipped by their own norm
    (`clip_by_group_norm`), so one group's gradient never scales another's update.
    """
    wd = weight_decay if weight_decay else 0.0
    if name == "lamb":
        opt = optax.lamb(schedule, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=decay_mask)
    elif name == "adafactor":
        # Su fine-tunes with AdaFactor; multiply_by_parameter_scale makes the step relative to
        # the RMS of each parameter, as in the T5 recipe.
        opt = optax.adafactor(
            schedule,
            multiply_by_parameter_scale=relative_step,
            weight_decay_rate=wd or None,
            weight_decay_mask=decay_mask,
        )
    elif name == "adamw":
        opt = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=decay_mask)
    elif name == "sgd":
        opt = optax.sgd(schedule)
    else:
        raise ValueError(f"config.optimizer={name!r} is not one of {OPTIMIZERS}")
    if grad_clip_norm and grad_clip_norm > 0:
        clip = (optax.clip_by_global_norm(grad_clip_norm) if clip_groups is None
                else clip_by_group_norm(grad_clip_norm, clip_groups))
        opt = optax.chain(clip, opt)
    if trainable is None:
        return opt

    def labels(params):
        mask = trainable(params) if callable(trainable) else trainable
        return jax.tree_util.tree_map(lambda t: "train" if t else "frozen", mask)

    return optax.multi_transform({"train": opt, "frozen": optax.set_to_zero()}, labels)


def clip_by_group_norm(max_norm: float,
                       groups: Callable[[PyTree], PyTree]) -> optax.GradientTransformation:
    """g_G ← g_G · min(1, max_norm / ‖g_G‖₂) for each group G of leaves (groups(tree): a label
    per leaf); one group is optax.clip_by_global_norm."""

    def update(updates, state, params=None):
        del params
        labels, treedef = jax.tree_util.tree_flatten(groups(updates))
        leaves = treedef.flatten_up_to(updates)
        norms = {g: optax.global_norm([x for x, h in zip(leaves, labels, strict=True) if h == g])
                 for g in dict.fromkeys(labels)}
        scale = {g: jnp.where(n < max_norm, 1.0, max_norm / n) for g, n in norms.items()}
        out = [(x * scale[g].astype(x.dtype)) for x, g in zip(leaves, labels, strict=True)]
        return treedef.unflatten(out), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def schedule_from_config(config) -> optax.Schedule:
    """lr(t) of `config` (learning_rate, total_steps, warmup_steps, end_lr_factor)."""
    return piecewise_linear_schedule(
        config.learning_rate, config.total_steps, config.warmup_steps, config.end_lr_factor
    )


def optimizer_from_config(config, trainable=None,
                          clip_groups=None) -> optax.GradientTransformation:
    """The optimizer that `config` (fields below) describes; see configs/pretrain.py."""
    schedule = schedule_from_config(config)
    return make_optimizer(
        config.optimizer,
        schedule,
        weight_decay=config.weight_decay,
        grad_clip_norm=config.grad_clip_norm,
        trainable=trainable,
        relative_step=config.relative_step,
        clip_groups=clip_groups,
    )


def count_leaves(tree: PyTree) -> tuple[int, int]:
    """(number of array leaves, total elements) of a pytree (e.g. an optimizer state)."""
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if hasattr(x, "shape")]
    return len(leaves), int(sum(np.prod(x.shape) for x in leaves))


def count_trainable(params: PyTree, trainable: Callable[[PyTree], PyTree] | None = None) -> int:
    """Elements of `params` that the mask function `trainable` keeps (None = all of them)."""
    if trainable is not None:
        params = jax.tree_util.tree_map(lambda p, keep: p if keep else None, params,
                                        trainable(params))
    return count_leaves(params)[1]
