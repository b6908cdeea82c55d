"""Ladder Side-Tuning (LST): a frozen, deterministic trunk feeding a narrow trainable side network.

Sung, Cho & Bansal, "LST: Ladder Side-Tuning for Parameter and Memory Efficient Transfer
Learning", NeurIPS 2022 (arXiv:2206.06522); Su's additive variant: kexue.fm/archives/9138.

Trunk (any encoder preset, dropout off, forward only): h_0 (embeddings) … h_L, passed through
`stop_gradient`. Side network of width d_s = d/r with L_s blocks (r lowered on small trunks so that
d_s >= lst.min_side_width: `side_reduction`); trunk layer ℓ(i) feeds ladder i
(default ℓ(i) = (i+1)·L/L_s − 1, 0-based, so the last ladder reads h_L):

    s ← Down_0(h_0)
    gated (paper):  s ← μ_i·s + (1−μ_i)·Down_{i+1}(h_ℓ(i));  s ← SideBlock_i(s)
                    μ_i = sigmoid(α_i/T), T = 0.1, α_i = 0 at init (μ = 0.5)
    additive (Su):  s ← SideBlock_i(s) + Down_{i+1}(h_ℓ(i))
    head:  "side"   logits = Dense(Drop(s[:, 0]))
           "up"     logits = Dense(Drop(Up(s[:, 0])))
           "gated"  logits = Dense(Drop(μ·h_L[:, 0] + (1−μ)·Up(s[:, 0])))   (μ as above)
    Any task head (gau_jax/models/heads.py, `task_head`) reads the side network's token states
    t = s | Up(s) | μ·h_L + (1−μ)·Up(s) (per token, as above): classification / multiple choice
    only t[:, 0] ([CLS]; multiple-choice [b, C, n] inputs run as b·C rows), GlobalPointer (CMRC2018
    spans, CLUENER entities) every token's t.

SideBlock is `encoder.Block` (RoFormerV2 MHA+FFN, or single-head GAU) with an EncoderConfig of the
side size, so its init is Su's rule with L_s layers. The trunk's params live under "encoder"
(where init_from loads) and are frozen: `trainable` masks them out so they get no optimizer state,
and the train step takes no gradient for them. lst.trunk_dtype = bfloat16 stores (`cast_trunk`)
and runs the frozen trunk in bfloat16; the side network, its params and the optimizer stay
float32. Each side block keeps RoPE's θ_i as a frozen param `rope_inv_freq` (base^(−2i/k) for a
random init and for a pruned one with lst.prune_form = "side"; the trunk's θ of the kept pairs
with "exact", so that a pruned side block rotates its pairs as the trunk did).
With `features=` (cached trunk outputs [b, n, K, d]: h_0 then the ladder states, see
`feature_indices`) the module skips the trunk; built with `use_trunk=False` it has no trunk params.

The side layers run under `lax.scan` (lst.scan_layers; False = unrolled, same math) over their
per-layer params (down_k, gate_i, side_i stay separate in the tree; the loop stacks them), so
lst.remat recomputes each block in the backward pass on XLA:CPU too. Each layer slices its own h_k
from the features and projects it there (`_down`): no copy of the features is kept. A bfloat16
trunk's features are stacked and sliced as their uint16 bits (`as_bits`: XLA:CPU would stack them
in float32 and keep a bfloat16 copy for the forward and another for the backward loop).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gau_jax.layers.initializers import su_init
from gau_jax.models.encoder import (
    CHECKPOINT_POLICIES,
    Block,
    Encoder,
    EncoderConfig,
    as_bits,
    encoder_config,
    from_bits,
)
from gau_jax.models.heads import (
    Heads,
    HeadSpec,
    apply_heads,
    as_heads,
    head_inputs,
    reads_cls_only,
    select_head,
)
from gau_jax.models.presets import BLOCKS, ConfigError

FUSIONS = ("gated", "additive")
HEADS = ("side", "up", "gated")
INITS = ("random", "fisher", "magnitude", "ladder")
PRUNE_FORMS = ("side", "exact")
FISHER_ESTIMATES = ("per_example", "batch_mean")
TRUNK_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class LSTConfig:
    """Every option of method=lst: `config.lst` of configs/finetune.py is made from these defaults.

    The module reads the side-network fields; the init / cache fields are read by the LST method
    of the trainer (gau_jax/train/lst_method.py: pruned init, feature cache)."""

    reduction: int = 8                 # r: side width d/r (also FFN / GAU widths / r)
    min_side_width: int = 32           # small trunks: r lowered so d/r >= this (side_reduction)
    side_layers: int = 0               # L_s (0 = len(ladder_layers), or the trunk's L)
    ladder_layers: tuple[int, ...] = ()  # trunk layers (0-based) feeding ladders; () = default ℓ
    fusion: str = "gated"              # "gated" (paper, μ = sigmoid(α/T)) | "additive" (Su)
    side_block: str = "gau"            # "gau" (single head) | "roformer_v2" (multi-head)
    side_heads: int = 0                # roformer_v2 side heads (0 = the trunk's number of heads)
    head: str = "side"                 # "side" | "up" | "gated" (see module docstring)
    gate_temperature: float = 0.1      # T of μ = sigmoid(α/T)
    dropout: float = 0.1               # side-network dropout (hidden and attention)
    remat: str = "full"                # side blocks recomputed in backward: none | full | dots
    scan_layers: bool = True           # side blocks under lax.scan (False: unrolled, same math)
    # Trainer side (gau_jax/train/lst_method.py).
    init: str = "random"               # "random" (Su, L_s) | "fisher" | "magnitude" (pruned trunk)
    #                                    | "ladder" (init_from's pretrained ladder: ladder_mlm.py)
    fisher_examples: int = 1024        # train rows (a seeded random sample) whose squared
    #                                    task-loss grads rank channels
    fisher_estimate: str = "per_example"  # Σ_i (∂ℓ_i/∂θ)² (LST paper) | "batch_mean": Σ_batches
    #                                    (∂ mean_batch ℓ/∂θ)², faster, biased (cross terms, 1/B²)
    fisher_batch_size: int = 8         # rows per jitted gradient call (batch_mean: rows averaged)
    prune_form: str = "side"           # pruned blocks: "side" (the side's own RoPE frequencies,
    #                                    kernels x sqrt(fan-in ratio)) | "exact" (the trunk's
    #                                    function on the kept channels); gau_jax/models/lst_init.py
    cache: bool = False                # train from cached trunk features (built once on disk)
    cache_dir: str = ""                # "" = DIR/feature_cache
    cache_dtype: str = "bfloat16"      # float32 | bfloat16 | float16
    cache_budget_gb: float = 20.0      # refuse to build a cache estimated above this
    trunk_dtype: str = "bfloat16"      # frozen trunk stored and run in: float32 | bfloat16


def lst_config(c: Any = None) -> LSTConfig:
    """LSTConfig from a ConfigDict / dict / None (unknown keys are an error naming them)."""
    if c is None:
        return LSTConfig()
    if isinstance(c, LSTConfig):
        return c
    d = dict(c.to_dict() if hasattr(c, "to_dict") else c)
    unknown = set(d) - {f.name for f in dataclasses.fields(LSTConfig)}
    if unknown:
        raise ConfigError(f"config.lst has unknown field(s) {sorted(unknown)}")
    if "ladder_layers" in d:
        d["ladder_layers"] = tuple(int(i) for i in d["ladder_layers"])
    if d.get("init", "random") not in INITS:
        raise ConfigError(f"config.lst.init={d['init']!r} unknown; choose one of {INITS}")
    for key, choices in (("fisher_estimate", FISHER_ESTIMATES), ("trunk_dtype", TRUNK_DTYPES),
                         ("prune_form", PRUNE_FORMS)):
        if key in d and d[key] not in choices:
            raise ConfigError(f"config.lst.{key}={d[key]!r} unknown; choose one of {choices}")
    return LSTConfig(**d)


def ladder_layers(trunk: EncoderConfig, lst: LSTConfig) -> tuple[int, ...]:
    """The validated trunk layers ℓ(0) … ℓ(L_s−1) (0-based)."""
    L = trunk.num_layers
    if lst.ladder_layers:
        layers = lst.ladder_layers
        if lst.side_layers and lst.side_layers != len(layers):
            raise ConfigError(f"config.lst.side_layers={lst.side_layers} != "
                              f"len(config.lst.ladder_layers)={len(layers)}")
    else:
        ls = lst.side_layers or L
        if not 0 < ls <= L:
            raise ConfigError(f"config.lst.side_layers={ls} must be in [1, trunk layers={L}]")
        layers = tuple((i + 1) * L // ls - 1 for i in range(ls))
    bad = [i for i in layers if not 0 <= i < L]
    if bad:
        raise ConfigError(f"config.lst.ladder_layers {bad} outside the trunk's layers 0..{L - 1}")
    return tuple(layers)


def feature_indices(trunk: EncoderConfig, lst: LSTConfig) -> tuple[int, ...]:
    """Indices into hidden_states [L+1, …] that the side network reads: 0, then ℓ(i)+1."""
    return (0,) + tuple(i + 1 for i in ladder_layers(trunk, lst))


def side_reduction(trunk: EncoderConfig, lst: LSTConfig) -> int:
    """The reduction the side network uses: lst.reduction, unless d/r < lst.min_side_width;
    then the largest r' < r dividing d and e with d/r' >= min_side_width (1 if none), so the
    side width is about max(d/r, min_side_width), capped at d. A 64-wide tiny trunk at r = 8
    would get an 8-wide side (GAU key size 4), which does not learn (README, "Defaults");
    at base size (d = 768, r = 8 → 96) nothing changes. min_side_width = 0 turns this off."""
    r, d, e, floor = lst.reduction, trunk.hidden_size, trunk.intermediate_size, \
        lst.min_side_width
    if floor <= 0 or d // r >= floor:
        return r
    fits = [k for k in range(1, r) if d % k == 0 and e % k == 0 and d // k >= floor]
    return max(fits, default=1)


def side_config(trunk: EncoderConfig, lst: LSTConfig) -> EncoderConfig:
    """EncoderConfig of the side blocks: width d/r, L_s layers, Su's init rule with L_s."""
    r = lst.reduction
    if lst.fusion not in FUSIONS:
        raise ConfigError(f"config.lst.fusion={lst.fusion!r} unknown; choose one of {FUSIONS}")
    if lst.remat not in ("none", *CHECKPOINT_POLICIES):
        raise ConfigError(f"config.lst.remat={lst.remat!r} unknown; choose none | full | dots")
    if lst.head not in HEADS:
        raise ConfigError(f"config.lst.head={lst.head!r} unknown; choose one of {HEADS}")
    if lst.side_block not in BLOCKS:
        raise ConfigError(f"config.lst.side_block={lst.side_block!r} unknown; choose one of "
                          f"{BLOCKS}")
    if r <= 0 or trunk.hidden_size % r or trunk.intermediate_size % r:
        raise ConfigError(f"config.lst.reduction={r} must divide the trunk's hidden_size="
                          f"{trunk.hidden_size} and intermediate_size={trunk.intermediate_size}")
    r = side_reduction(trunk, lst)
    d_s, n_side = trunk.hidden_size // r, len(ladder_layers(trunk, lst))
    if lst.side_block == "gau":
        s = trunk.key_size // r if trunk.block == "gau" else min(128, d_s)
        heads, key, inter, norm, order = 1, max(2, s - s % 2), trunk.intermediate_size // r, \
            "softmax_plus", 3
        if trunk.block != "gau":
            inter = 2 * d_s
    else:
        heads = lst.side_heads or (trunk.num_heads if trunk.block == "roformer_v2" else 1)
        if d_s % heads or (d_s // heads) % 2:
            raise ConfigError(f"config.lst.side_heads={heads} must divide the side width {d_s} "
                              "into heads of even size")
        key, norm, order = d_s // heads, "softmax", 2
        inter = trunk.intermediate_size // r if trunk.block == "roformer_v2" else 4 * d_s
    if lst.side_block == trunk.block:  # the trunk's own attention (what a pruned init copies)
        norm = trunk.attention_norm
    cfg = dataclasses.asdict(trunk)
    cfg.update(block=lst.side_block, hidden_size=d_s, num_layers=n_side, num_heads=heads,
               intermediate_size=inter, key_size=key, attention_norm=norm, init_order=order,
               hidden_dropout=lst.dropout, attention_dropout=lst.dropout, adapter_size=0,
               chunk_size=0, scan_layers=False, remat="none", preset=f"{trunk.preset}/side")
    return encoder_config(cfg)


def frozen_trunk_config(trunk: EncoderConfig, dtype: str | None = None) -> EncoderConfig:
    """The trunk as LST runs it: dropout off, no adapters, computing in `dtype` (lst.trunk_dtype;
    None = the model's)."""
    return dataclasses.replace(trunk, hidden_dropout=0.0, attention_dropout=0.0, adapter_size=0,
                               dtype=dtype or trunk.dtype)


class LadderSideTuning(nn.Module):
    """Frozen trunk ("encoder") + ladders + side network + classification head."""

    trunk: EncoderConfig
    lst: LSTConfig
    num_classes: int
    use_trunk: bool = True  # False: no trunk params; features must be passed (cached training)
    task_head: HeadSpec | Heads | None = None  # None: classification of num_classes
    #                                              (every head's dropout: lst.dropout)
    return_states: bool = False  # True: no head; return the side's token states s [b, n, d_s]

    @nn.compact
    def __call__(self, input_ids: jnp.ndarray | None = None,
                 attention_mask: jnp.ndarray | None = None,
                 segment_ids: jnp.ndarray | None = None, *, deterministic: bool = True,
                 residual_scale: float | jnp.ndarray = 1.0,
                 features: jnp.ndarray | None = None, task: str | None = None) -> jnp.ndarray:
        cfg, lst = side_config(self.trunk, self.lst), self.lst
        heads = tuple((n, dataclasses.replace(h, dropout_rate=lst.dropout)) for n, h in
                      as_heads(self.task_head or HeadSpec("classification", self.num_classes)))
        head = select_head(heads, task)[1]
        if input_ids is not None and not self.return_states:
            input_ids, attention_mask, segment_ids, choices = head_inputs(
                head, input_ids, attention_mask, segment_ids)
        else:
            choices = 0
        indices = feature_indices(self.trunk, lst)
        K, d = len(indices), self.trunk.hidden_size
        if features is None and self.use_trunk:
            out = Encoder(frozen_trunk_config(self.trunk, lst.trunk_dtype), name="encoder")(
                input_ids, attention_mask, segment_ids, deterministic=True,
                output_hidden_states=True, return_logits=False)
            source = jax.lax.stop_gradient(out.hidden_states)           # [L+1, b, n, d]
            self.sow("intermediates", "trunk_features", source[jnp.asarray(indices)])
            axis, rows = 0, indices                          # h_k = source[indices[k]]
        else:  # cached [b, n, K, d] (zeros of the right shape to init a trunk-less model)
            if features is None:
                features = jnp.zeros((*input_ids.shape, K, d), self.trunk.compute_dtype)
            source = jax.lax.stop_gradient(features)
            axis, rows = 2, tuple(range(K))                  # h_k = source[:, :, k]
        feature_dtype, source = source.dtype, as_bits(source)  # one copy for both loops
        feature = lambda src, k: from_bits(jax.lax.dynamic_index_in_dim(
            src, jnp.asarray(rows, jnp.int32)[k], axis, keepdims=False), feature_dtype)  # h_k
        if attention_mask is None:
            attention_mask = jnp.ones(feature(source, 0).shape[:2], jnp.int32)
        dt = cfg.compute_dtype
        init = su_init(cfg.num_layers, cfg.init_order)
        kernels = jnp.stack([self.param(f"down_{k}", lambda *a: {"kernel": init(*a)},
                                        (d, cfg.hidden_size))["kernel"] for k in range(K)])
        down = jax.checkpoint(partial(_down, feature, dt))
        scale = jnp.asarray(residual_scale, jnp.float32)
        s = down(source, 0, kernels[0])
        if self.is_initializing():  # create side_i's params (the loop below reads them)
            for i in range(cfg.num_layers):
                Block(cfg, name=f"side_{i}", rope_param=True)(s, attention_mask, None, scale)
        xs = {"block": jax.tree.map(lambda *p: jnp.stack(p), *[
                  self.variables["params"][f"side_{i}"] for i in range(cfg.num_layers)]),
              "down": kernels[1:], "k": jnp.arange(1, K)}
        if lst.fusion == "gated":
            xs["mu"] = jnp.stack([self.gate(f"gate_{i}") for i in range(cfg.num_layers)])
        if not deterministic:
            xs["rng"] = jax.random.split(self.make_rng("dropout"), cfg.num_layers)
        block = Block(cfg, deterministic, parent=None, rope_param=True)

        def fuse(s: jnp.ndarray, ladder: jnp.ndarray, x: dict) -> jnp.ndarray:
            """Fusion of ladder i + 1 and SideBlock_i (module docstring)."""
            run = lambda h: block.apply({"params": x["block"]}, h, attention_mask, None, scale,
                                        rngs={"dropout": x["rng"]} if "rng" in x else {})[0]
            if "mu" in x:
                mu = x["mu"].astype(dt)
                return run(mu * s + (1 - mu) * ladder)
            return run(s) + ladder

        if lst.remat != "none":  # Down stays outside: its small output is kept, not recomputed
            fuse = jax.checkpoint(fuse, policy=CHECKPOINT_POLICIES[lst.remat],
                                  prevent_cse=not lst.scan_layers)
        layer = lambda s, x: (fuse(s, down(source, x["k"], x["down"]), x), None)
        if lst.scan_layers:
            s, _ = jax.lax.scan(layer, s, xs)
        else:
            for i in range(cfg.num_layers):
                s, _ = layer(s, jax.tree.map(lambda a, i=i: a[i], xs))
        if self.return_states:
            return s
        t = s[:, :1] if reads_cls_only(heads, task, self.is_initializing()) else s  # head input
        if lst.head != "side":
            t = nn.Dense(d, use_bias=False, dtype=dt, param_dtype=jnp.float32,
                         kernel_init=su_init(1, 2), name="up")(t)
        if lst.head == "gated":
            mu = self.gate("head_gate").astype(dt)
            t = mu * feature(source, K - 1)[:, :t.shape[1]].astype(dt) + (1 - mu) * t
        return apply_heads(self, heads, task, t, attention_mask, deterministic=deterministic,
                           num_choices=choices)

    def gate(self, name: str) -> jnp.ndarray:
        """μ = sigmoid(α/T), α a scalar parameter initialised to 0."""
        alpha = self.param(name, nn.initializers.zeros, (), jnp.float32)
        return jax.nn.sigmoid(alpha / self.lst.gate_temperature)


def _down(feature, dtype, source: jnp.ndarray, k: jnp.ndarray,
          kernel: jnp.ndarray) -> jnp.ndarray:
    """Down_k(h_k) = h_k · W_k [b, n, d_s] (the features' dtype, float32 accumulation).

    Run under `jax.checkpoint`: the weight gradient re-slices h_k from the features instead of
    keeping every ladder input for the backward pass. The barrier ties the features to the
    loop-varying k, so XLA cannot hoist a whole-array op on them out of the side loop (XLA:CPU
    upcasts a bfloat16 slice to float32: hoisted, that is a float32 copy of all the features)."""
    source, k = jax.lax.optimization_barrier((source, k))
    x = feature(source, k)
    return jnp.einsum("bnd,de->bne", x, kernel.astype(x.dtype),
                      preferred_element_type=jnp.float32).astype(dtype)


def trainable_side(params: Any) -> Any:
    """Mask: everything except the trunk ("encoder") and the side blocks' RoPE frequencies
    (rope_inv_freq: constants, the trunk's θ of the kept pairs after a pruned init) trains."""
    return jax.tree_util.tree_map_with_path(
        lambda p, _: getattr(p[0], "key", None) != "encoder"
        and getattr(p[-1], "key", None) != "rope_inv_freq", params)


def cast_trunk(params: Any, lst: Any = None) -> Any:
    """The params with the frozen trunk ("encoder") stored in lst.trunk_dtype (side untouched)."""
    dtype = jnp.dtype(lst_config(lst).trunk_dtype)
    if "encoder" not in params or dtype == jnp.float32:
        return params
    return dict(params, encoder=jax.tree.map(lambda x: x.astype(dtype), params["encoder"]))


def build_model(model_config: Any, num_classes: int, lst: Any = None,
                use_trunk: bool = True, head: HeadSpec | Heads | None = None
                ) -> LadderSideTuning:
    """LadderSideTuning for a trunk model config and config.lst (validated here)."""
    trunk = model_config if isinstance(model_config, EncoderConfig) else \
        encoder_config(model_config)
    lcfg = lst_config(lst)
    side_config(trunk, lcfg)  # validate early: errors name the config.lst field
    return LadderSideTuning(trunk, lcfg, num_classes, use_trunk, head)
