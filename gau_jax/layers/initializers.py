"""Su's initialiser for RoFormerV2 / GAU-α.

A truncated normal (±2σ) whose *effective* std is

    std = 1 / sqrt(fan) · L^(−1/order)

with L the number of layers, order 2 (RoFormerV2) or 3 (GAU-α). bert4keras writes this as
stddev = 1.13684723/sqrt(fan)·L^(−1/order) passed to a ±2σ truncated normal, whose std is
0.87962566 of its argument; `variance_scaling(..., "truncated_normal")` applies the same correction.
Kernels use fan = fan_in; embedding tables use fan = their width.

From bert4keras' RoFormerV2 (order 2, Su, kexue.fm/archives/8998) and GAU_alpha (order 3,
kexue.fm/archives/9052) initialisers; the L-dependence follows Su's "训练1000层的Transformer
究竟有什么困难？", kexue.fm/archives/8978.
"""

from __future__ import annotations

import jax


def su_init(num_layers: int, order: int,
            embedding: bool = False) -> jax.nn.initializers.Initializer:
    """Truncated normal with effective std L^(−1/order)/sqrt(fan)."""
    gain2 = float(num_layers) ** (-2.0 / order)
    if embedding:  # table [vocab, width]: fan = width
        return jax.nn.initializers.variance_scaling(
            gain2, "fan_in", "truncated_normal", in_axis=-1, out_axis=-2)
    return jax.nn.initializers.variance_scaling(gain2, "fan_in", "truncated_normal")
