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

Dropout: example i of the global batch at step t draws its masks from
key(t, i) = fold_in(fold_in(rng, t), i) (`apply_rows` runs the model per example under vmap), so
the masks depend on the step and the example's position in the global batch only — not on how
the batch is split over devices, processes, pmap / jit or gradient-accumulation micro-batches.

Non-finite steps: when the loss or the gradient norm of a step is NaN / Inf, its update is not
applied (params and optimizer state unchanged) and `state.skipped` / `state.bad_streak` count it;
with skip_nonfinite=False every later update is also held back, so the trainer can stop at its
next sync naming the step while the parameters stay the last good ones.
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


def apply_rows(model, params, rng, args: tuple, rows: dict | None = None,
               extract: Callable = lambda out: out, **kwargs):
    """extract(model.apply({"params": params}, *args, **rows, **kwargs)) for a batch.

    rng None: no dropout rng; one key [2]: one stream for the batch; per-example keys [b, 2]
    (the train step's): each example runs alone under vmap with its own dropout key. args and
    rows hold per-example arrays (None allowed); kwargs are shared."""
    rows = rows or {}
    if rng is None or rng.ndim == 1:
        extra = {} if rng is None else {"rngs": {"dropout": rng}}
        return extract(model.apply({"params": params}, *args, **rows, **kwargs, **extra))

    def one(key, row_args, row_kwargs):
        row_args = [None if a is None else a[None] for a in row_args]
        row_kwargs = {k: None if v is None else v[None] for k, v in row_kwargs.items()}
        out = model.apply({"params": params}, *row_args, **row_kwargs, **kwargs,
                          rngs={"dropout": key})
        return jax.tree_util.tree_map(lambda x: x[0], extract(out))

    return jax.vmap(one)(rng, tuple(args), rows)


def row_keys(state: TrainState, index: jax.Array) -> jax.Array:
    """Per-example dropout keys [b, 2] of the current step (module docstring)."""
    base = step_key(state)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(index)


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
        logits = apply_rows(model, params, rng, (batch["input_ids"], batch["attention_mask"],
                                                  batch["segment_ids"]),
                            {"logit_positions": idx}, lambda out: out.logits,
                            deterministic=not train, return_logits=True,
                            **model_kwargs(residual_scale, None))
        return weighted_sums(logits, targets, weights)

    return sums


def classification_sums_fn(model) -> SumsFn:
    """Sentence(-pair) classification sums for a Classifier-like model returning [b, K] logits."""

    def sums(params, batch, rng, residual_scale, train):
        logits = apply_rows(model, params, rng, (batch["input_ids"], batch["attention_mask"],
                                                  batch["segment_ids"]),
                            deterministic=not train, **model_kwargs(residual_scale, None))
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
    skip_nonfinite: bool = False,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """(state, batch) -> (new state, metrics); wrap in jax.jit (mesh) or jax.pmap(axis_name)."""

    def train_step(state: TrainState, batch: Batch):
        total_w = _psum(jnp.sum(batch[weight_key(batch)].astype(jnp.float32)), axis_name)
        denom = jnp.maximum(total_w, 1e-6)
        alpha = residual_alpha(state.step, residual_ramp_steps)
        rows = batch[weight_key(batch)].shape[0]
        offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * rows
        index = offset + jnp.arange(rows, dtype=jnp.int32)  # position in the global batch

        def grads_of(mb, idx):
            def loss_fn(params):
                sums = sums_fn(params, mb, row_keys(state, idx), alpha, True)
                return sums["loss"] / denom, sums

            (_, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
            return grads, sums

        if grad_accum_steps == 1:
            grads, sums = grads_of(batch, index)
        else:
            micro, micro_index = split_microbatches((batch, index), grad_accum_steps)
            first = jax.tree_util.tree_map(lambda x: x[0], (micro, micro_index))
            zeros = jax.eval_shape(lambda: grads_of(*first))
            zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)

            def body(acc, xs):
                return jax.tree_util.tree_map(jnp.add, acc, grads_of(*xs)), None

            (grads, sums), _ = jax.lax.scan(body, zeros, (micro, micro_index))
        grads, sums = _psum((grads, sums), axis_name)
        loss, grad_norm = sums["loss"] / denom, optax.global_norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        apply = finite if skip_nonfinite else finite & (state.skipped == 0)
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(apply, a, b),
                                                       new, old)
        skipped = state.skipped + (~apply).astype(jnp.int32)
        streak = jnp.where(finite, 0, state.bad_streak + 1).astype(jnp.int32)
        metrics = {"loss": loss, "accuracy": sums["correct"] / denom, "weight": total_w,
                   "grad_norm": grad_norm, "skipped_updates": skipped, "bad_streak": streak}
        new_state = state.replace(step=state.step + 1, params=keep(params, state.params),
                                  opt_state=keep(opt_state, state.opt_state), skipped=skipped,
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
