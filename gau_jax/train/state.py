"""The train state: everything a step reads and writes, as one pytree.

    TrainState(step, params, opt_state, rng, skipped, bad_streak)

`rng` is a fixed base key; the dropout key of example i at step t is fold_in(fold_in(rng, t), i)
(gau_jax/train/step.py), so a resumed run draws exactly the keys an uninterrupted one would.
The optimizer (an optax.GradientTransformation) is not part of the state: it is static and is
passed to the step builder.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: number of optimizer updates done
    params: Any  # model parameters (float32)
    opt_state: Any  # optax state (no entries for frozen leaves)
    rng: jax.Array  # uint32[2] base PRNG key (raw, so it checkpoints as a plain array)
    skipped: jax.Array  # int32: updates not applied because their loss / grad was non-finite
    bad_streak: jax.Array  # int32: consecutive non-finite steps up to now


def create_state(params: Any, tx: optax.GradientTransformation, seed: int) -> TrainState:
    """Fresh state at step 0."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=jax.random.PRNGKey(seed + 1),
        skipped=jnp.zeros((), jnp.int32),
        bad_streak=jnp.zeros((), jnp.int32),
    )


def step_key(state: TrainState) -> jax.Array:
    """Dropout key of the current step, fold_in(rng, t); example i then folds in i (step.py)."""
    return jax.random.fold_in(state.rng, state.step)
