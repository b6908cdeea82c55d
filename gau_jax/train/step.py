"""Loss sums and the train / eval step (one optimizer update per call).

A task supplies `sums_fn(params, batch, rng, residual_scale, train) -> {"loss", "weight",
"correct"}` (sums over the batch: Σ w·xent, Σ w, Σ w·[argmax = target]). The step minimises

    L = Σ_i w_i·xent_i / Σ_i w_i        over the *global* batch,

with Σ w computed first from the batch (it does not depend on params). A sums_fn may return an
"objective" sum, minimised instead of "loss" (a pretrained ladder's trunk + side loss; "loss" is
still the reported one), and extra "<x>_loss" / "<x>_correct" sums, reported as metrics
(`extra_metrics`). Gradient accumulation
splits the batch into k micro-batches (micro-batch j = rows j, j+k, ...; a strided split keeps
each device's rows local), sums ∂(Σ_mb w·xent / Σ w) over them in a `lax.scan`, so k micro-batches
give the same update as one big batch. Under pmap the same sums are `psum`-ed over `axis_name`.

RoFormerV2 from scratch ramps the residual coefficient α_t = min(1, t / ramp_steps)
(x ← Norm(x + α·F(x))); ramp_steps = 0 leaves the model's default (α = 1, argument not passed).

Dropout: example i of the global batch at step t draws its masks from
key(t, i) = fold_in(fold_in(rng, t), i) (`apply_rows` runs the model per example under vmap), so
the masks depend on the step and the example's position in the global batch only — not on how
the batch is split over devices, processes, pmap / jit or gradient-accumulation micro-batches.

Frozen parameters: with a `trainable` mask (a method's Built.trainable) the params split into
the trainable partition θ_t and the frozen one θ_f, and the step differentiates L(θ_t; θ_f) with
respect to θ_t only — θ_f enters as a non-differentiated input, so no weight gradient of a
frozen kernel is ever computed (LoRA / adapters / BitFit then cost ≈ 4N instead of 6N FLOPs per
token). The reported grad norm (and the optimizer's clipping) cover θ_t only; the optimizer sees
zeros for θ_f (its multi_transform gives them no state). No mask: every leaf trains, as before.

Non-finite steps: when the loss or the gradient norm of a step is NaN / Inf, its update is not
applied (params and optimizer state unchanged) and `state.skipped` / `state.bad_streak` count it;
with skip_nonfinite=False every later update is also held back, so the trainer can stop at its
next sync naming the step while the parameters stay the last good ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from gau_jax.models.ladder_mlm import LadderMLM
from gau_jax.tasks.losses import Batch, SumsFn, apply_rows, model_kwargs, weighted_sums
from gau_jax.train.state import TrainState, step_key


def row_keys(state: TrainState, index: jax.Array) -> jax.Array:
    """Per-example dropout keys [b, 2] of the current step (module docstring)."""
    base = step_key(state)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(index)


def mlm_sums_fn(model, max_predictions: int = 0) -> SumsFn:
    """Masked-LM sums for an Encoder (tied logits over the vocabulary).

    max_predictions = k > 0 scores only the k highest-weight positions of each row (BERT's
    max_predictions_per_seq): the [b, n, V] logits shrink to [b, k, V]. A row with more than k
    masked tokens loses the excess from the loss; k >= every row's masked count changes nothing.

    With a LadderMLM (gau_jax/models/ladder_mlm.py) the side network's MLM sums come too:
    "objective" = trunk + side cross-entropy (what the step minimises; the side's gradient stops
    at the ladders), "loss" / "correct" the trunk's, "ladder_loss" / "ladder_correct" the side's.
    """
    ladder = isinstance(model, LadderMLM)
    extract = (lambda out: (out[0].logits, out[1])) if ladder else (lambda out: out.logits)

    def sums(params, batch, rng, residual_scale, train):
        targets, weights, idx = batch["mlm_targets"], batch["mlm_weights"], None
        if max_predictions > 0:
            weights, idx = jax.lax.top_k(weights.astype(jnp.float32), max_predictions)
            targets = jnp.take_along_axis(targets, idx, axis=1)
        logits = apply_rows(model, params, rng, (batch["input_ids"], batch["attention_mask"],
                                                  batch["segment_ids"]),
                            {"logit_positions": idx}, extract,
                            deterministic=not train, return_logits=True,
                            **model_kwargs(residual_scale, None))
        if not ladder:
            return weighted_sums(logits, targets, weights)
        trunk, side = (weighted_sums(x, targets, weights) for x in logits)
        return {**trunk, "objective": trunk["loss"] + side["loss"],
                "ladder_loss": side["loss"], "ladder_correct": side["correct"]}

    return sums


def extra_metrics(sums: dict, denom: jax.Array) -> dict:
    """Per-token means of a sums_fn's extra sums: "<x>_loss" → "<x>_loss", "<x>_correct" →
    "<x>_accuracy" (e.g. a pretrained ladder's); "loss", "weight", "correct", "objective" are
    not extra."""
    out = {}
    for k, v in sums.items():
        if k.endswith("_loss"):
            out[k] = v / denom
        elif k.endswith("_correct"):
            out[k[:-len("_correct")] + "_accuracy"] = v / denom
    return out


def weight_key(batch: Batch) -> str:
    return "mlm_weights" if "mlm_weights" in batch else "weights"


def residual_alpha(step: jax.Array, ramp_steps: int) -> jax.Array | None:
    """α_t = min(1, t / ramp_steps), or None (model default) when ramp_steps <= 0."""
    if ramp_steps <= 0:
        return None
    return jnp.minimum(1.0, step.astype(jnp.float32) / ramp_steps)


def split_microbatches(batch: Batch, k: int) -> Batch:
    """[B, ...] → [k, B/k, ...] with micro-batch j = rows j, j+k, j+2k, ..."""

    def split(x):
        if x.shape[0] % k:
            raise ValueError(f"batch of {x.shape[0]} rows is not divisible by grad_accum_steps={k}")
        return jnp.moveaxis(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 1, 0)

    return jax.tree_util.tree_map(split, batch)


def _psum(tree, axis_name):
    return tree if axis_name is None else jax.lax.psum(tree, axis_name)


def split_trainable(params: Any, trainable: Any = None) -> tuple[list, list, Callable]:
    """(trainable leaves, frozen leaves, combine) with combine(t, f) = the params tree again.

    trainable: bool pytree or function of params (None = all train); its leaves must be Python
    / NumPy bools (a function of the tree's paths, as every method's mask is)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    if trainable is None:
        flags = [True] * len(leaves)
    else:
        mask = trainable(params) if callable(trainable) else trainable
        try:
            flags = [bool(f) for f in treedef.flatten_up_to(mask)]
        except (TypeError, ValueError, jax.errors.ConcretizationTypeError) as e:
            raise ValueError("make_train_step: the trainable mask must be a pytree of Python bools "
                             f"with the params' structure ({e})") from e
    train = [x for x, f in zip(leaves, flags, strict=True) if f]
    frozen = [x for x, f in zip(leaves, flags, strict=True) if not f]

    def combine(t: list, f: list) -> Any:
        it, jf = iter(t), iter(f)
        return treedef.unflatten([next(it) if flag else next(jf) for flag in flags])

    return train, frozen, combine


def accumulate_grads(grads_of: Callable, batch: Batch, index: jax.Array,
                     grad_accum_steps: int = 1) -> tuple[Any, dict]:
    """(grads, sums) of grads_of(batch, index) for the whole batch, as the sum over
    `grad_accum_steps` strided micro-batches (split_microbatches) in a lax.scan when above 1."""
    if grad_accum_steps == 1:
        return grads_of(batch, index)
    micro, micro_index = split_microbatches((batch, index), grad_accum_steps)
    first = jax.tree_util.tree_map(lambda x: x[0], (micro, micro_index))
    zeros = jax.eval_shape(lambda: grads_of(*first))
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)

    def body(acc, xs):
        return jax.tree_util.tree_map(jnp.add, acc, grads_of(*xs)), None

    (grads, sums), _ = jax.lax.scan(body, zeros, (micro, micro_index))
    return grads, sums


def _update_if(apply: jax.Array, tx: optax.GradientTransformation, state: TrainState,
               grads: Any, train_p: list, trainable: Any) -> tuple[list, Any]:
    """(trainable leaves, optimizer state) after tx's update of `grads` when `apply`, else
    both unchanged. A cond, not a select of old and new: the update runs in place on the
    donated state."""

    def update(_):
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return optax.apply_updates(train_p, split_trainable(updates, trainable)[0]), opt_state

    return jax.lax.cond(apply, update, lambda _: (train_p, state.opt_state), None)


def make_train_step(
    sums_fn: SumsFn,
    tx: optax.GradientTransformation,
    *,
    grad_accum_steps: int = 1,
    residual_ramp_steps: int = 0,
    axis_name: str | None = None,
    skip_nonfinite: bool = False,
    trainable: Any = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """(state, batch) -> (new state, metrics); wrap in jax.jit (mesh) or jax.pmap(axis_name).

    trainable: a bool pytree of the params, or a function of the params returning one (a
    method's Built.trainable); None = every leaf trains (module docstring: frozen parameters)."""

    def train_step(state: TrainState, batch: Batch):
        total_w = _psum(jnp.sum(batch[weight_key(batch)].astype(jnp.float32)), axis_name)
        denom = jnp.maximum(total_w, 1e-6)
        alpha = residual_alpha(state.step, residual_ramp_steps)
        rows = batch[weight_key(batch)].shape[0]
        offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * rows
        index = offset + jnp.arange(rows, dtype=jnp.int32)  # position in the global batch

        train_p, frozen_p, combine = split_trainable(state.params, trainable)

        def grads_of(mb, idx):
            def loss_fn(tp):
                sums = sums_fn(combine(tp, frozen_p), mb, row_keys(state, idx), alpha, True)
                return sums.get("objective", sums["loss"]) / denom, sums

            (_, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(train_p)
            return grads, sums

        grads, sums = _psum(accumulate_grads(grads_of, batch, index, grad_accum_steps),
                            axis_name)
        loss, grad_norm = sums["loss"] / denom, optax.global_norm(grads)
        grads = combine(grads, [jnp.zeros_like(x) for x in frozen_p])  # frozen: ignored
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        apply = finite if skip_nonfinite else finite & (state.skipped == 0)
        trained, opt_state = _update_if(apply, tx, state, grads, train_p, trainable)
        params = combine(trained, frozen_p)  # frozen leaves pass through as is
        skipped = state.skipped + (~apply).astype(jnp.int32)
        streak = jnp.where(finite, 0, state.bad_streak + 1).astype(jnp.int32)
        metrics = {"loss": loss, "accuracy": sums["correct"] / denom, "weight": total_w,
                   "grad_norm": grad_norm, "skipped_updates": skipped, "bad_streak": streak,
                   **extra_metrics(sums, denom)}
        new_state = state.replace(step=state.step + 1, params=params,
                                  opt_state=opt_state, skipped=skipped,
                                  bad_streak=streak)
        return new_state, metrics

    return train_step


def make_eval_step(
    sums_fn: SumsFn, *, residual_ramp_steps: int = 0, axis_name: str | None = None
) -> Callable[[TrainState, Batch], dict]:
    """(state, batch) -> {"loss", "weight", "correct"} sums (deterministic forward)."""

    def eval_step(state: TrainState, batch: Batch):
        alpha = residual_alpha(state.step, residual_ramp_steps)
        sums = sums_fn(state.params, batch, None, alpha, False)
        return _psum(sums, axis_name)

    return eval_step
