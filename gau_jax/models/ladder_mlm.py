"""A pretrained ladder: MLM pretraining of the trunk with an LST side network trained beside it.

The trunk (any encoder preset) trains on its own masked-LM loss, unchanged. The side network of
LST (gau_jax/models/lst.py: Down_k ladders, gates, side blocks of width d_s = d/r) reads the
trunk's hidden states through `stop_gradient` and learns the same MLM task from them:

    trunk:   h_0 … h_L = Encoder(x);            logits_T = h_L · Eᵀ               (tied head)
    side:    s = Side(sg(h_0), sg(h_ℓ(0)), …);  logits_S = Up(s) · sg(E)ᵀ           [b, k, V]
    loss  =  xent(logits_T) + xent(logits_S)     (sg = stop_gradient)

so ∂loss/∂θ_trunk = ∂xent(logits_T)/∂θ_trunk, and the trunk's gradient is clipped by its own
norm (`ladder_groups`: the optimizer clips trunk and side apart): the trunk trains as it would
without the side (only its dropout masks come from another stream), and the side learns to read
a trunk that is still moving. Up [d_s, d] and the frozen copy of the
token embeddings E map the side's states to the vocabulary; both stay behind when fine-tuning.

Params: {"encoder": trunk, "ladder": {down_k, gate_i, side_i} (LST's own names and shapes for
the same config.lst), "ladder_up": {"kernel"}}. A workdir of this model is an init_from like any
other (its encoder sits at "encoder"); method=lst with lst.init = "ladder" also copies "ladder"
into the side network (gau_jax/train/lst_method.py).

The LST paper initialises its side network by pruning the trunk instead: Sung, Cho & Bansal,
"LST: Ladder Side-Tuning for Parameter and Memory Efficient Transfer Learning", NeurIPS 2022
(arXiv:2206.06522).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gau_jax.layers.initializers import su_init
from gau_jax.models.encoder import Encoder, EncoderConfig, EncoderOutput, encoder_config
from gau_jax.models.lst import LadderSideTuning, LSTConfig, feature_indices, lst_config, side_config

LADDER, LADDER_UP = "ladder", "ladder_up"  # top-level param names of the side and its Up


class LadderMLM(nn.Module):
    """Encoder + LST side network, both with an MLM head (module docstring).

    Returns the trunk's EncoderOutput with `side_logits` [b, k, V] (the side's MLM logits at the
    same positions) as a second value."""

    trunk: EncoderConfig
    lst: LSTConfig

    @nn.compact
    def __call__(self, input_ids: jnp.ndarray, attention_mask: jnp.ndarray | None = None,
                 segment_ids: jnp.ndarray | None = None, *, deterministic: bool = True,
                 return_logits: bool = True, residual_scale: float | jnp.ndarray = 1.0,
                 logit_positions: jnp.ndarray | None = None
                 ) -> tuple[EncoderOutput, jnp.ndarray | None]:
        encoder = Encoder(self.trunk, name="encoder")
        out = encoder(input_ids, attention_mask, segment_ids, deterministic=deterministic,
                      output_hidden_states=True, return_logits=return_logits,
                      residual_scale=residual_scale, logit_positions=logit_positions)
        idx = jnp.asarray(feature_indices(self.trunk, self.lst))
        features = jnp.moveaxis(out.hidden_states[idx], 0, 2)             # [b, n, K, d]
        side = LadderSideTuning(self.trunk, self.lst, 0, use_trunk=False, return_states=True,
                                name=LADDER)
        s = side(input_ids, attention_mask, segment_ids, deterministic=deterministic,
                 features=jax.lax.stop_gradient(features))                 # [b, n, d_s]
        if not return_logits:
            return out, None
        if logit_positions is not None:
            s = jnp.take_along_axis(s, logit_positions[..., None], axis=1)
        d_s = side_config(self.trunk, self.lst).hidden_size
        up = self.param(LADDER_UP, lambda *a: {"kernel": su_init(1, 2)(*a)},
                        (d_s, self.trunk.hidden_size))["kernel"]
        h = jnp.einsum("bkc,cd->bkd", s, up.astype(s.dtype))
        table = jax.lax.stop_gradient(
            encoder.variables["params"]["embeddings"]["token_embedding"]["embedding"])
        side_logits = jnp.einsum("bkd,vd->bkv", h, table.astype(h.dtype),
                                 preferred_element_type=jnp.float32)
        return out, side_logits


def build_ladder_mlm(model_config: Any, lst: Any = None) -> LadderMLM:
    """LadderMLM for a model config and config.lst (validated first: errors name the field)."""
    trunk = model_config if isinstance(model_config, EncoderConfig) else \
        encoder_config(model_config)
    c = lst_config(lst)
    side_config(trunk, c)
    return LadderMLM(trunk, c)


def ladder_groups(params: Any) -> Any:
    """Clip groups of a LadderMLM's params: "trunk" (encoder) and "side" (everything else)."""
    return {k: jax.tree.map(lambda _, k=k: "trunk" if k == "encoder" else "side", v)
            for k, v in params.items()}
