"""The encoder of RoFormerV2 and GAU-α: embeddings, post-norm blocks, tied MLM head.

    h_0 = Norm(Drop(E_tok[ids] + E_seg[segments]))                     (no absolute positions)
    roformer_v2 block:  x ← Norm(x + α·Drop(MHA(x)));  x ← Norm(x + α·Drop(FFN_relu(x)))
    gau block:          x ← Norm(x + α·Drop(GAU(x)))
    MLM logits = Drop(h_L) · E_tokᵀ                                      (tied, no bias)

Norm is the parameter-free RMS norm; α is the residual coefficient (1, or ramped 0 → 1 when training
RoFormerV2 from scratch). Identical layers run under `nn.scan` (params stacked [L, ...]; the loop
fully unrolled by default, scan_unroll = 0, which XLA runs as fast as separate layers, or rolled,
scan_unroll = 1, compiling one layer) or as separate modules; `stack_layers` / `unstack_layers`
convert parameters between the two layouts.

RoFormerV2: Su, "RoFormerV2：自然语言理解的极限探索", kexue.fm/archives/8998; GAU-α: Su,
"GAU-α：尝鲜体验快好省的下一代Attention", kexue.fm/archives/9052; both on RoPE (arXiv:2104.09864).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gau_jax.layers.adapter import Adapter
from gau_jax.layers.attention import MultiHeadAttention
from gau_jax.layers.gau import GatedAttentionUnit
from gau_jax.layers.initializers import su_init
from gau_jax.layers.norms import rms_norm
from gau_jax.models import presets

CHECKPOINT_POLICIES = {"full": None, "dots": jax.checkpoint_policies.checkpoint_dots}
ACTIVATION_AXES = ("batch", "length", "embed")  # logical axes of [b, n, d] block boundaries


def constrain_activations(x: jnp.ndarray) -> jnp.ndarray:
    """Sharding constraint of a [b, n, d] block input / output by logical axis names.

    The trainer's jit strategy supplies the rules while it traces its steps (batch → the
    data-parallel mesh axes); without rules or a mesh (pmap, plain calls) this is the identity.
    One example (the train step's per-example vmap) constrains only its own dims, leaving the
    vmapped batch axis to the compiler; a batch the batch axes do not divide is left alone."""
    rules, mesh = nn.get_logical_axis_rules(), jax.sharding.get_abstract_mesh()
    if not rules or mesh.empty:
        return x
    axes = nn.logical_to_mesh_axes(ACTIVATION_AXES, rules)[0]
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    if x.shape[0] == 1:
        return nn.with_logical_constraint(x, (None, *ACTIVATION_AXES[1:]))
    if x.shape[0] % int(np.prod([mesh.shape[a] for a in axes])):
        return x
    return nn.with_logical_constraint(x, ACTIVATION_AXES)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Hashable, validated copy of a model ConfigDict (see presets.base_config for the fields)."""

    preset: str
    block: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    key_size: int
    attention_norm: str
    attention_fixed_n: int
    softmax_plus_min_n: int
    hidden_dropout: float
    attention_dropout: float
    norm_eps: float
    use_bias: bool
    type_vocab_size: int
    chunk_size: int
    rope_base: float
    init_order: int
    adapter_size: int
    dtype: str
    scan_layers: bool
    remat: str
    attention_impl: str = "xla"
    scan_unroll: int = 0

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)


@flax.struct.dataclass
class EncoderOutput:
    last_hidden_state: jnp.ndarray                 # [b, n, d]
    hidden_states: jnp.ndarray | None = None       # [L+1, b, n, d]: h_0 (embeddings) … h_L
    logits: jnp.ndarray | None = None              # [b, n, vocab] float32


class Block(nn.Module):
    """One post-norm layer: a RoFormerV2 (MHA + FFN) or a GAU-α (GAU) block."""

    config: EncoderConfig
    deterministic: bool = True
    collect: bool = False  # return the output too (for hidden_states under scan)
    rope_param: bool = False  # RoPE's θ as a frozen param (LST side blocks: gau_jax/models/lst.py)

    def _sublayer(self, x, branch, residual_scale):
        c = self.config
        y = nn.Dropout(c.hidden_dropout)(branch, deterministic=self.deterministic)
        if c.adapter_size:
            y = Adapter(c.adapter_size, c.compute_dtype)(y)
        return rms_norm(x + residual_scale.astype(y.dtype) * y, c.norm_eps)

    @nn.compact
    def __call__(self, x, mask, positions, residual_scale):
        c = self.config
        init = su_init(c.num_layers, c.init_order)
        common = dict(normalization=c.attention_norm, fixed_n=c.attention_fixed_n,
                      plus_min_n=c.softmax_plus_min_n,
                      use_bias=c.use_bias, dropout_rate=c.attention_dropout,
                      rope_base=c.rope_base, dtype=c.compute_dtype, kernel_init=init,
                      attention_impl=c.attention_impl, rope_param=self.rope_param)
        if c.block == "gau":
            gau = GatedAttentionUnit(c.intermediate_size, c.key_size, chunk_size=c.chunk_size,
                                     name="gau", **common)
            x = self._sublayer(x, gau(x, mask, positions, self.deterministic), residual_scale)
        else:
            mha = MultiHeadAttention(c.num_heads, c.key_size, name="attention", **common)
            x = self._sublayer(x, mha(x, mask, positions, self.deterministic), residual_scale)
            x = self._sublayer(x, FeedForward(c, init, name="ffn")(x), residual_scale)
        x = constrain_activations(x)
        return x, (as_bits(x) if self.collect else None)


class FeedForward(nn.Module):
    """ReLU FFN: relu(x W_1 + b_1) W_2 + b_2 (biases only with use_bias)."""

    config: EncoderConfig
    kernel_init: Any

    @nn.compact
    def __call__(self, x):
        c = self.config
        dense = lambda f, name: nn.Dense(f, use_bias=c.use_bias, dtype=c.compute_dtype,
                                         param_dtype=jnp.float32, kernel_init=self.kernel_init,
                                         name=name)
        return dense(x.shape[-1], "output")(nn.relu(dense(c.intermediate_size, "intermediate")(x)))


class Embeddings(nn.Module):
    """Token + segment embeddings → dropout → RMS norm."""

    config: EncoderConfig

    def setup(self):
        c = self.config
        init = su_init(c.num_layers, c.init_order, embedding=True)
        self.token_embedding = nn.Embed(c.vocab_size, c.hidden_size, dtype=c.compute_dtype,
                                        param_dtype=jnp.float32, embedding_init=init)
        self.segment_embedding = nn.Embed(c.type_vocab_size, c.hidden_size,
                                          dtype=c.compute_dtype, param_dtype=jnp.float32,
                                          embedding_init=init)
        self.dropout = nn.Dropout(c.hidden_dropout)

    def __call__(self, input_ids, segment_ids, deterministic: bool):
        x = self.token_embedding(input_ids) + self.segment_embedding(segment_ids)
        return rms_norm(self.dropout(x, deterministic=deterministic), self.config.norm_eps)

    def attend(self, h):
        """Tied output projection h·E_tokᵀ in float32."""
        table = self.token_embedding.embedding
        return jnp.einsum("bnd,vd->bnv", h, table.astype(h.dtype),
                          preferred_element_type=jnp.float32)


class Encoder(nn.Module):
    """RoFormerV2 / GAU-α encoder with the tied MLM head."""

    config: EncoderConfig

    @nn.compact
    def __call__(self, input_ids: jnp.ndarray, attention_mask: jnp.ndarray | None = None,
                 segment_ids: jnp.ndarray | None = None, *, deterministic: bool = True,
                 output_hidden_states: bool = False, return_logits: bool = True,
                 residual_scale: float | jnp.ndarray = 1.0,
                 positions: jnp.ndarray | None = None,
                 logit_positions: jnp.ndarray | None = None) -> EncoderOutput:
        c = self.config
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        if segment_ids is None:
            segment_ids = jnp.zeros_like(input_ids)
        embeddings = Embeddings(c, name="embeddings")
        x = constrain_activations(embeddings(input_ids, segment_ids, deterministic))
        scale = jnp.asarray(residual_scale, jnp.float32)
        block = Block
        if c.remat != "none":
            block = nn.remat(Block, policy=CHECKPOINT_POLICIES[c.remat],
                             prevent_cse=not c.scan_layers)
        if c.scan_layers:
            stack = nn.scan(block, variable_axes={"params": 0},
                            split_rngs={"params": True, "dropout": True},
                            in_axes=(nn.broadcast, nn.broadcast, nn.broadcast),
                            length=c.num_layers, unroll=c.scan_unroll or c.num_layers)
            h0 = x
            x, ys = stack(c, deterministic, output_hidden_states, name="layers")(
                x, attention_mask, positions, scale)
            hidden = (from_bits(jnp.concatenate([as_bits(h0)[None], ys]), x.dtype)
                      if output_hidden_states else None)
        else:
            states = [x]
            for i in range(c.num_layers):
                x, _ = block(c, deterministic, name=f"layers_{i}")(
                    x, attention_mask, positions, scale)
                states.append(x)
            hidden = (from_bits(jnp.stack([as_bits(h) for h in states]), x.dtype)
                      if output_hidden_states else None)
        logits = None
        if return_logits:
            # logit_positions [b, k]: the head scores only these rows (masked tokens), [b, k, V]
            h = x if logit_positions is None else jnp.take_along_axis(
                x, logit_positions[..., None], axis=1)
            h = nn.Dropout(c.hidden_dropout)(h, deterministic=deterministic)
            logits = embeddings.attend(h)
        return EncoderOutput(last_hidden_state=x, hidden_states=hidden, logits=logits)


def as_bits(x: jnp.ndarray) -> jnp.ndarray:
    """A bfloat16 array as its uint16 bit pattern (other dtypes unchanged), for stacking and
    slicing only. XLA:CPU moves bfloat16 data through float32 (a concatenate of bfloat16 layer
    outputs becomes float32 copies and a float32 stack, then a convert), so the stacked hidden
    states of a bfloat16 trunk cost 3x their size; as integers they are moved as they are. On
    GPU / TPU the bitcast is free."""
    return jax.lax.bitcast_convert_type(x, jnp.uint16) if x.dtype == jnp.bfloat16 else x


def from_bits(x: jnp.ndarray, dtype: jnp.dtype) -> jnp.ndarray:
    """Inverse of `as_bits`: uint16 bits back to `dtype` (bfloat16); other arrays unchanged."""
    return jax.lax.bitcast_convert_type(x, dtype) if x.dtype == jnp.uint16 else x


def encoder_config(cfg: ml_collections.ConfigDict | dict) -> EncoderConfig:
    """Validate a model ConfigDict (or dict) and freeze it into an EncoderConfig."""
    cfg = ml_collections.ConfigDict(dict(cfg))
    presets.validate(cfg)
    fields = {f.name for f in dataclasses.fields(EncoderConfig)}
    unknown = set(cfg.keys()) - fields
    if unknown:
        raise presets.ConfigError(f"unknown model config field(s): {sorted(unknown)}")
    optional = {f.name for f in dataclasses.fields(EncoderConfig)
                if f.default is not dataclasses.MISSING}
    missing = fields - optional - set(cfg.keys())
    if missing:
        raise presets.ConfigError(f"model config lacks field(s): {sorted(missing)}")
    return EncoderConfig(**{k: cfg[k] for k in fields if k in cfg})


def build_encoder(cfg: ml_collections.ConfigDict | dict | EncoderConfig) -> Encoder:
    """The Flax encoder for a model config (validated first; ConfigError names the bad field)."""
    if not isinstance(cfg, EncoderConfig):
        cfg = encoder_config(cfg)
    return Encoder(cfg)


_LAYER_KEY = re.compile(r"layers_(\d+)$")


def _stack(*xs):
    """np.stack for host numpy leaves (they stay on the host), jnp.stack otherwise."""
    if all(isinstance(x, (np.ndarray, np.generic)) for x in xs):
        return np.stack(xs)
    return jnp.stack(xs)


def stack_layers(params: dict) -> dict:
    """Unrolled params (layers_0 … layers_{L−1}) → scanned params (layers, leading axis L).

    numpy leaves stay numpy, jax arrays stay jax; params without layers_i are returned as is."""
    keys = sorted((k for k in params if _LAYER_KEY.match(k)),
                  key=lambda k: int(_LAYER_KEY.match(k).group(1)))
    if not keys:
        return params
    if keys != [f"layers_{i}" for i in range(len(keys))] or "layers" in params:
        raise ValueError(f"stack_layers: expected layers_0 … layers_{len(keys) - 1} and no "
                         f"'layers', got {sorted(k for k in params if k.startswith('layers'))}")
    out = {k: v for k, v in params.items() if k not in keys}
    out["layers"] = jax.tree.map(_stack, *[params[k] for k in keys])
    return out


def unstack_layers(params: dict) -> dict:
    """Scanned params (layers, leading axis L) → unrolled params (layers_0 … layers_{L−1});
    numpy stays numpy, jax stays jax; already unrolled params are returned as is."""
    if "layers" not in params:
        return params
    out = {k: v for k, v in params.items() if k != "layers"}
    n = jax.tree.leaves(params["layers"])[0].shape[0]
    for i in range(n):
        out[f"layers_{i}"] = jax.tree.map(lambda x, i=i: x[i], params["layers"])
    return out
