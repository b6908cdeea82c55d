"""Loss sums of one batch, row by row: what every task kind's loss and the MLM loss share.

A loss is a `sums_fn(params, batch, rng, residual_scale, train) -> {"loss", "weight",
"correct"}`: sums over the batch's rows, Σ w·xent, Σ w and Σ w·[argmax = target]; the train step
(gau_jax/train/step.py) divides by the global Σ w. `apply_rows` runs the model with one dropout
stream per row (the train step's per-example keys) so that a row's loss does not depend on the
other rows of its batch. The sums of each task kind's head (classification, multiple choice,
GlobalPointer) are below; the task kinds (gau_jax/tasks) name theirs.

    classification   xent = −log softmax(logits)[label]                        [b, K]
    multiple choice  the same over choices, absent choices at NEG_INF           [b, C]
    GlobalPointer    multi-label cross-entropy (Su 2020, kexue.fm/archives/7359), mean over
                     types: log(1 + Σ_{neg} e^{s}) + log(1 + Σ_{pos} e^{−s})    [b, T, n, n]
"""

from __future__ import annotations

from collections.abc import Callable

import flax
import jax
import jax.numpy as jnp
import optax

from gau_jax.models.global_pointer import NEG_INF, global_pointer_loss, span_softmax_loss

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
    (the train step's): each example runs alone under vmap with its own dropout key — unless
    the model draws no dropout mask at all (every rate 0: `draws_dropout`), when the batch runs
    as one call (same values, no per-example copies). args and rows hold per-example arrays
    (None allowed); kwargs are shared."""
    rows = rows or {}
    if rng is not None and rng.ndim == 2 and not draws_dropout(model, params, args, rows, kwargs):
        rng = None
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


def draws_dropout(model, params, args: tuple, rows: dict, kwargs: dict) -> bool:
    """Whether model.apply asks for a "dropout" key (an abstract trace: no FLOPs, no compile)."""
    try:
        jax.eval_shape(lambda p, a, r: model.apply({"params": p}, *a, **r, **kwargs),
                       params, tuple(args), rows)
    except flax.errors.InvalidRngError:
        return True
    return False


def argmax_hits(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """[argmax(logits) = target] (first maximum wins, as jnp.argmax) from plain max / any
    reductions: XLA:CPU runs argmax's variadic reduce ~5x slower over a vocabulary."""
    top = jnp.max(logits, -1, keepdims=True)
    at_target = jnp.take_along_axis(logits, targets[..., None], -1)[..., 0]
    earlier = jnp.arange(logits.shape[-1]) < targets[..., None]
    tie_before = jnp.any((logits >= top) & earlier, -1)
    return (at_target >= top[..., 0]) & ~tie_before


def weighted_sums(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> dict:
    logits = logits.astype(jnp.float32)
    xent = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    weights = weights.astype(jnp.float32)
    hit = argmax_hits(logits, targets).astype(jnp.float32)
    return {"loss": jnp.sum(weights * xent), "weight": jnp.sum(weights),
            "correct": jnp.sum(weights * hit)}


def classification_sums_fn(model) -> SumsFn:
    """Sentence(-pair) classification sums for a Classifier-like model returning [b, K] logits."""

    def sums(params, batch, rng, residual_scale, train):
        logits = apply_rows(model, params, rng, (batch["input_ids"], batch["attention_mask"],
                                                  batch["segment_ids"]),
                            deterministic=not train, **model_kwargs(residual_scale, None))
        return weighted_sums(logits, batch["labels"], batch["weights"])

    return sums


def multiple_choice_sums_fn(model) -> SumsFn:
    """Multiple-choice sums: logits [b, C] from [b, C, n] inputs (absent choices, and those with
    batch["choice_mask"] = 0, at NEG_INF), softmax cross-entropy on the right choice."""

    def sums(params, batch, rng, residual_scale, train):
        logits = apply_rows(model, params, rng, (batch["input_ids"], batch["attention_mask"],
                                                  batch["segment_ids"]),
                            deterministic=not train, **model_kwargs(residual_scale, None))
        if "choice_mask" in batch:
            logits = jnp.where(batch["choice_mask"] > 0, logits, NEG_INF)
        return weighted_sums(logits, batch["labels"], batch["weights"])

    return sums


def global_pointer_sums_fn(model) -> SumsFn:
    """GlobalPointer sums: Σ w·MCCE (mean over types) against batch["span_labels"] [b, T, n, n];
    "correct" counts rows whose predicted set {s > 0} equals the gold set exactly (the CLUE
    metric itself, EM / entity F1, is decoded on the host: RunSetup.dev_eval)."""

    def sums(params, batch, rng, residual_scale, train):
        logits = apply_rows(model, params, rng, (batch["input_ids"], batch["attention_mask"],
                                                  batch["segment_ids"]),
                            deterministic=not train, **model_kwargs(residual_scale, None))
        gold = batch["span_labels"] > 0
        loss = global_pointer_loss(logits, gold)
        exact = jnp.all((logits > 0) == gold, axis=(1, 2, 3)).astype(jnp.float32)
        w = batch["weights"].astype(jnp.float32)
        return {"loss": jnp.sum(w * loss), "weight": jnp.sum(w), "correct": jnp.sum(w * exact)}

    return sums


def context_cells(segment_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """[b, n, n] bool: cells (i, j), i ≤ j, whose tokens are both [CLS] or context, in a span
    row `[CLS] question [SEP] window [SEP]` (segment 1 = window + last [SEP]): Su's CMRC2018
    mask (src/cmrc2018.py) — question, both [SEP] and padding out."""
    real = attention_mask > 0
    n = real.shape[-1]
    pos = jnp.arange(n)
    last = pos[None, :] == (jnp.sum(real, -1, keepdims=True) - 1)
    ok = ((segment_ids == 1) & real & ~last) | (pos[None, :] == 0)
    return ok[:, :, None] & ok[:, None, :] & jnp.triu(jnp.ones((n, n), bool))


def span_softmax_sums_fn(model) -> SumsFn:
    """Span sums with Su's CMRC2018 loss: softmax cross-entropy over a row's context cells
    (`context_cells`, span_softmax_loss); "correct" counts rows whose best cell is gold."""

    def sums(params, batch, rng, residual_scale, train):
        logits = apply_rows(model, params, rng, (batch["input_ids"], batch["attention_mask"],
                                                  batch["segment_ids"]),
                            deterministic=not train, **model_kwargs(residual_scale, None))
        cells = context_cells(batch["segment_ids"], batch["attention_mask"])
        loss = span_softmax_loss(logits, batch["span_labels"], cells)
        b = logits.shape[0]
        flat = jnp.where(cells, logits[:, 0], NEG_INF).reshape(b, -1)
        best = jnp.argmax(flat, -1)
        hit = jnp.take_along_axis(batch["span_labels"].reshape(b, -1), best[:, None], -1)[:, 0]
        w = batch["weights"].astype(jnp.float32)
        return {"loss": jnp.sum(w * loss), "weight": jnp.sum(w),
                "correct": jnp.sum(w * (hit > 0).astype(jnp.float32))}

    return sums
