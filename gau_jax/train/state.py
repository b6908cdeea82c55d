"""The train state: everything a step reads and writes, as one pytree.

    TrainState(step, params, opt_state, rng)

`rng` is a fixed base key; the dropout key of step t is fold_in(rng, t) (and, under pmap, folded
with the device index), so a resumed run draws exactly the keys an uninterrupted one would.
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


def create_state(params: Any, tx: optax.GradientTransformation, seed: int) -> TrainState:
    """Fresh state at step 0."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=jax.random.PRNGKey(seed + 1),
    )


def step_key(state: TrainState, salt: jax.Array | int = 0) -> jax.Array:
    """Dropout key of the current step (salt: device index under pmap, micro-batch index)."""
    return jax.random.fold_in(jax.random.fold_in(state.rng, state.step), salt)
