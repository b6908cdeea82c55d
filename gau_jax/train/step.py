"""Loss sums and the train / eval step (one optimizer update per call).

A task supplies `sums_fn(params, batch, rng, residual_scale, train) -> {"loss", "weight",
"correct"}` (sums over the batch: Σ w·xent, Σ w, Σ w·[argmax = target]). The step minimises

    L = Σ_i w_i·xent_i / Σ_i w_i        over the *global* batch,

with Σ w computed first from the batch (it does not depend on params). Gradient accumulation
splits the batch into k micro-batches (micro-batch j = rows j, j+k, ...; a strided split keeps
each device's rows local), sums ∂(Σ_mb w·xent / Σ w) over them in a `lax.scan`, so k micro-batches
give the same update as one big batch. Under pmap the same sums are `psum`-ed over `axis_name`.

RoFormerV2 from scratch ramps the residual coefficient α_t = min(1, t / ramp_steps)
(x ← Norm(x + α·F(x))); ramp_steps = 0 leaves the model's default (α = 1, argument not passed).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from gau_jax.train.state import TrainState, step_key

Batch = dict[str, jax.Array]
SumsFn = Callable[..., dict[str, jax.Array]]


def model_kwargs(residual_scale, rng) -> dict:
    """apply() kwargs of a sums_fn: residual_scale unless None (model default), the dropout rng
    unless None (deterministic callers)."""
    kw = {} if residual_scale is None else {"residual_scale": residual_scale}
    return kw | ({} if rng is None else {"rngs": {"dropout": rng}})


def weighted_sums(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> dict:
    logits = logits.astype(jnp.float32)
    xent = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    weights = weights.astype(jnp.float32)
    hit = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
    return {"loss": jnp.sum(weights * xent), "weight": jnp.sum(weights),
            "correct": jnp.sum(weights * hit)}


def mlm_sums_fn(model, max_predictions: int = 0) -> SumsFn:
    """Masked-LM sums for an Encoder (tied logits over the vocabulary).

    max_predictions = k > 0 scores only the k highest-weight positions of each row (BERT's
    max_predictions_per_seq): the [b, n, V] logits shrink to [b, k, V]. A row with more than k
    masked tokens loses the excess from the loss; k >= every row's masked count changes nothing.
    """

    def sums(params, batch, rng, residual_scale, train):
        targets, weights, idx = batch["mlm_targets"], batch["mlm_weights"], None
        if max_predictions > 0:
            weights, idx = jax.lax.top_k(weights.astype(jnp.float32), max_predictions)
            targets = jnp.take_along_axis(targets, idx, axis=1)
        out = model.apply({"params": params}, batch["input_ids"], batch["attention_mask"],
                          batch["segment_ids"], deterministic=not train, return_logits=True,
                          logit_positions=idx, **model_kwargs(residual_scale, rng))
        return weighted_sums(out.logits, targets, weights)

    return sums


def classification_sums_fn(model) -> SumsFn:
    """Sentence(-pair) classification sums for a Classifier-like model returning [b, K] logits."""

    def sums(params, batch, rng, residual_scale, train):
        logits = model.apply({"params": params}, batch["input_ids"], batch["attention_mask"],
                             batch["segment_ids"], deterministic=not train,
                             **model_kwargs(residual_scale, rng))
        return weighted_sums(logits, batch["labels"], batch["weights"])

    return sums


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


def make_train_step(
    sums_fn: SumsFn,
    tx: optax.GradientTransformation,
    *,
    grad_accum_steps: int = 1,
    residual_ramp_steps: int = 0,
    axis_name: str | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """(state, batch) -> (new state, metrics); wrap in jax.jit (mesh) or jax.pmap(axis_name)."""

    def train_step(state: TrainState, batch: Batch):
        total_w = _psum(jnp.sum(batch[weight_key(batch)].astype(jnp.float32)), axis_name)
        denom = jnp.maximum(total_w, 1e-6)
        alpha = residual_alpha(state.step, residual_ramp_steps)
        salt = 0 if axis_name is None else jax.lax.axis_index(axis_name) * grad_accum_steps

        def grads_of(mb, i):
            def loss_fn(params):
                sums = sums_fn(params, mb, step_key(state, salt + i), alpha, True)
                return sums["loss"] / denom, sums

            (_, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
            return grads, sums

        if grad_accum_steps == 1:
            grads, sums = grads_of(batch, 0)
        else:
            micro = split_microbatches(batch, grad_accum_steps)
            zeros = jax.eval_shape(lambda: grads_of(jax.tree_util.tree_map(lambda x: x[0], micro),
                                                    0))
            zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)

            def body(acc, xs):
                mb, i = xs
                out = grads_of(mb, i)
                return jax.tree_util.tree_map(jnp.add, acc, out), None

            (grads, sums), _ = jax.lax.scan(
                body, zeros, (micro, jnp.arange(grad_accum_steps)))
        grads, sums = _psum((grads, sums), axis_name)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": sums["loss"] / denom, "accuracy": sums["correct"] / denom,
                   "weight": total_w, "grad_norm": optax.global_norm(grads)}
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    return train_step


def make_eval_step(
    sums_fn: SumsFn, *, residual_ramp_steps: int = 0, axis_name: str | None = None
) -> Callable[[TrainState, Batch], dict]:
    """(state, batch) -> {"loss", "weight", "correct"} sums (deterministic forward)."""

    def eval_step(state: TrainState, batch: Batch):
        alpha = residual_alpha(state.step, residual_ramp_steps)
        sums = sums_fn(state.params, batch, state.rng, alpha, False)
        return _psum(sums, axis_name)

    return eval_step
